//! Tokenizations in the workspace: a dataset's documents tokenized into a token store that is written
//! under `tmp/` and registered in the catalog only when complete, with its provenance (tokenizer hash,
//! parameters, dataset, saekit version) beside the tokens, so training can refuse a tokenizer mismatch.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::engine::tokenize_source;
use super::stats::{TokenStats, visible};
use super::{TokenStore, TokenizeParams, Tokenizer, TokenizerInfo};
use crate::catalog::{ArtifactWriter, DatasetStatus, NewTokenization, TokenizationRow, Workspace};
use crate::display::{Card, MimeBundle, Render, STYLE, escape};
use crate::error::{Error, Result, count};
use crate::jobs::{Job, JobContext};

/// The tokenizer saved beside the tokens it made.
pub const TOKENIZER_FILE: &str = "tokenizer.json";

/// Where a token store came from; written as `provenance.json` beside the tokens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    pub tokenizer: TokenizerInfo,
    pub params: TokenizeParams,
    pub dataset: String,
    pub dataset_id: i64,
    /// How the dataset's files were read (paths, format, text mapping).
    pub source: serde_json::Value,
    pub saekit_version: String,
}

/// A tokenization recorded in the catalog.
#[derive(Debug, Clone)]
pub struct Tokenization {
    row: TokenizationRow,
}

impl Workspace {
    /// Tokenizes a ready dataset into a new token store, registered in the catalog when complete.
    pub fn tokenize(&self, dataset: &str, tokenizer: &Tokenizer, params: &TokenizeParams) -> Result<Tokenization> {
        self.tokenize_with(dataset, tokenizer, params, &JobContext::detached("tokenize"))
    }

    /// [`Workspace::tokenize`] as a background job: returns at once; progress in bytes read; a
    /// cancelled job leaves no store and no row.
    pub fn tokenize_job(&self, dataset: &str, tokenizer: &Tokenizer, params: &TokenizeParams) -> Job<Tokenization> {
        let (root, dataset, tokenizer, params) =
            (self.root().to_path_buf(), dataset.to_string(), tokenizer.clone(), params.clone());
        Job::spawn(&format!("tokenize {dataset}"), move |ctx| {
            Workspace::open(&root)?.tokenize_with(&dataset, &tokenizer, &params, ctx)
        })
    }

    /// [`Workspace::tokenize`], reporting progress to (and stopping when cancelled through) `ctx`.
    pub fn tokenize_with(
        &self,
        dataset: &str,
        tokenizer: &Tokenizer,
        params: &TokenizeParams,
        ctx: &JobContext,
    ) -> Result<Tokenization> {
        params.validate()?;
        let dataset = self.dataset(dataset)?;
        if dataset.status() != DatasetStatus::Ready {
            return Err(Error::InvalidArgument(format!(
                "dataset `{}` is {}, not ready; add or import it again first",
                dataset.name(),
                dataset.status()
            )));
        }
        let source = dataset.source()?;
        let writer = ArtifactWriter::begin(self.root(), "tokens")?;
        let outcome = tokenize_source(&source, tokenizer, params, writer.dir(), 0, ctx)?;
        let provenance = Provenance {
            tokenizer: tokenizer.info(),
            params: params.clone(),
            dataset: dataset.name().to_string(),
            dataset_id: dataset.id(),
            source: serde_json::to_value(source.spec()).unwrap_or_default(),
            saekit_version: crate::VERSION.to_string(),
        };
        write_json(&writer.dir().join("provenance.json"), &provenance)?;
        tokenizer.save(&writer.dir().join(TOKENIZER_FILE))?;
        write_json(&writer.dir().join("stats.json"), &outcome.stats)?;
        let catalog = self.catalog();
        let row = writer.commit(catalog, |tx, dir| {
            catalog.insert_tokenization_in(
                tx,
                &NewTokenization {
                    dataset_id: dataset.id(),
                    tokenizer: provenance.tokenizer.name.clone(),
                    tokenizer_hash: provenance.tokenizer.hash.clone(),
                    params: serde_json::to_value(params).unwrap_or_default(),
                    num_documents: outcome.stats.documents,
                    num_sequences: outcome.store.num_sequences,
                    num_tokens: outcome.store.num_tokens,
                    artifact_path: dir.to_path_buf(),
                    statistics: serde_json::to_value(&outcome.stats).unwrap_or_default(),
                },
            )
        })?;
        Ok(Tokenization { row })
    }

    /// A dataset's most recent tokenization.
    pub fn latest_tokenization(&self, dataset: &str) -> Result<Tokenization> {
        let rows = self.tokenizations(dataset)?;
        rows.into_iter().next().map(|row| Tokenization { row }).ok_or_else(|| Error::NotFound {
            kind: "tokenization of dataset",
            name: dataset.to_string(),
            catalog: self.catalog().path().to_path_buf(),
        })
    }
}

fn write_json(path: &Path, value: &impl Serialize) -> Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(|e| Error::format(path, e))?;
    std::fs::write(path, text).map_err(|e| Error::io(path, e))
}

impl Tokenization {
    pub fn row(&self) -> &TokenizationRow {
        &self.row
    }

    /// Opens the token store.
    pub fn store(&self) -> Result<TokenStore> {
        TokenStore::open(&self.row.artifact_path)
    }

    /// The statistics counted while tokenizing.
    pub fn stats(&self) -> Result<TokenStats> {
        serde_json::from_value(self.row.statistics.clone())
            .map_err(|e| Error::InvalidArgument(format!("tokenization {}: unreadable statistics: {e}", self.row.id)))
    }

    /// The provenance written beside the tokens.
    pub fn provenance(&self) -> Result<Provenance> {
        let path = self.row.artifact_path.join("provenance.json");
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        serde_json::from_str(&text).map_err(|e| Error::format(&path, e))
    }

    /// The tokenizer these tokens were made with, as saved beside them.
    pub fn tokenizer(&self) -> Result<Tokenizer> {
        let mut tokenizer = Tokenizer::from_file(self.row.artifact_path.join(TOKENIZER_FILE))?;
        tokenizer.rename(&self.row.tokenizer);
        Ok(tokenizer)
    }

    /// Refuses a tokenizer other than the one these tokens were made with.
    pub fn check_tokenizer(&self, tokenizer: &Tokenizer) -> Result<()> {
        let hash = tokenizer.hash();
        if hash == self.row.tokenizer_hash {
            return Ok(());
        }
        Err(Error::TokenizerMismatch {
            store: self.row.artifact_path.clone(),
            made_with: format!(
                "{} ({})",
                self.row.tokenizer,
                &self.row.tokenizer_hash[..12.min(self.row.tokenizer_hash.len())]
            ),
            given: format!("{} ({})", tokenizer.name(), &hash[..12]),
        })
    }

    /// Page `page` (from 0) of the sequences, decoded with token boundaries visible.
    pub fn page(&self, tokenizer: &Tokenizer, page: usize, per_page: usize) -> Result<SequencePage> {
        self.check_tokenizer(tokenizer)?;
        let store = self.store()?;
        let first = page * per_page.max(1);
        let sequences = (first..(first + per_page.max(1)).min(store.len()))
            .filter_map(|i| store.get(i).map(|ids| (i, ids.iter().map(|&id| (id, tokenizer.token_text(id))).collect())))
            .collect();
        Ok(SequencePage { sequences, first, total: store.len() })
    }
}

impl Render for Tokenization {
    fn bundle(&self) -> MimeBundle {
        let r = &self.row;
        let mut card = Card::new(format!("Tokenization {}", r.id))
            .fact(
                "tokenizer",
                format!("{} (sha256 {}…)", r.tokenizer, &r.tokenizer_hash[..12.min(r.tokenizer_hash.len())]),
            )
            .fact("parameters", r.params.to_string())
            .fact("documents", count(r.num_documents))
            .fact("sequences", count(r.num_sequences))
            .fact("tokens", count(r.num_tokens))
            .fact("store", r.artifact_path.display().to_string())
            .fact("saekit", r.saekit_version.clone())
            .fact("created", r.created_at.clone());
        if let Ok(stats) = self.stats() {
            card = card.section(&stats.bundle());
        }
        card.bundle()
    }
}

/// Sequences decoded token by token, for reading what the model will see.
#[derive(Debug, Clone)]
pub struct SequencePage {
    /// (index in the store, [(id, text)]) per sequence.
    pub sequences: Vec<(usize, Vec<(u32, String)>)>,
    pub first: usize,
    pub total: usize,
}

impl Render for SequencePage {
    fn bundle(&self) -> MimeBundle {
        let caption = format!(
            "sequences {}–{} of {}",
            count(self.first as u64 + 1),
            count((self.first + self.sequences.len()) as u64),
            count(self.total as u64)
        );
        let mut plain = caption.clone();
        let mut html = format!("{STYLE}<div class=\"saekit\"><div class=\"title\">{}</div>", escape(&caption));
        for (index, tokens) in &self.sequences {
            plain.push_str(&format!("\n[{index}] {} tokens: ", tokens.len()));
            plain.push_str(&tokens.iter().map(|(_, t)| visible(t)).collect::<Vec<_>>().join("|"));
            html.push_str(&format!(
                "<div class=\"muted\">#{index} · {} tokens</div><div class=\"text\" style=\"line-height: 1.9\">",
                tokens.len()
            ));
            for (i, (id, text)) in tokens.iter().enumerate() {
                let shade = if i % 2 == 0 { "rgba(128, 128, 128, 0.15)" } else { "rgba(128, 128, 128, 0.32)" };
                html.push_str(&format!(
                    "<span title=\"{id}\" style=\"background: {shade}; border-radius: 2px; margin-right: 1px\">{}</span>",
                    escape(&visible(text))
                ));
            }
            html.push_str("</div>");
        }
        html.push_str("</div>");
        MimeBundle::new(plain).with("text/html", html)
    }
}
