//! Tokenizations in the workspace: a dataset's documents tokenized into a token store, made through the
//! catalog's lifecycle (claimed, visible as `tokenizing` with its progress, committed when complete) with
//! its provenance (tokenizer, parameters, dataset, saekit version) beside the tokens, so training can
//! refuse a tokenizer mismatch. The same dataset, tokenizer and parameters name the same tokenization:
//! asking again returns the one already made.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::engine::tokenize_source;
use super::stats::{TokenStats, visible};
use super::table::{
    TOKENIZATION_KIND, TokenizationParams, TokenizationRecord, TokenizationRow, tokenization_by_name_in,
    tokenization_in, tokenizations_of,
};
use super::{TokenStore, TokenizeParams, Tokenizer, TokenizerInfo};
use crate::catalog::{
    Artifact, ArtifactPlan, Dataset, DatasetStatus, IfReady, Lineage, Request, Workspace, require_ready,
};
use crate::display::{Card, MimeBundle, Render, STYLE, Table, escape};
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

/// A tokenization recorded in the catalog. It knows its tokenizer (loaded from beside the tokens once,
/// when first needed).
#[derive(Debug, Clone)]
pub struct Tokenization {
    row: TokenizationRow,
    tokenizer: Arc<OnceLock<Tokenizer>>,
}

impl Artifact for Tokenization {
    fn artifact_id(&self) -> i64 {
        self.row.id
    }
}

/// A request to tokenize dataset `dataset` with `tokenizer` and `params`; run it with
/// [`Workspace::make`], [`Workspace::make_job`] or [`Workspace::make_with`] (or `tokenize`, `tokenize_job`).
#[derive(Debug, Clone)]
pub struct Tokenize {
    pub dataset: String,
    pub tokenizer: Tokenizer,
    pub params: TokenizeParams,
}

impl Request for Tokenize {
    type Output = Tokenization;

    fn label(&self) -> String {
        format!("tokenize {}", self.dataset)
    }

    fn run(&self, ws: &Workspace, ctx: &JobContext) -> Result<Tokenization> {
        self.params.validate()?;
        let dataset = ws.dataset(&self.dataset)?;
        require_ready(dataset.row())?;
        let info = self.tokenizer.info();
        // One made under another name (by hand, or by saekit before names said what was asked) counts too.
        let made = ws.catalog().with_conn(|conn| tokenizations_of(ws.catalog(), conn, dataset.id()))?;
        // Compared as stored (not as read back with defaults filled in), so an unreadable or older record
        // is never taken for this request.
        let wanted = serde_json::to_value(&self.params).unwrap_or_default();
        let same = |t: &TokenizationRow| {
            t.tokenizer_hash == info.hash
                && ws.catalog().artifact(t.id).is_ok_and(|a| a.params.get("params") == Some(&wanted))
        };
        if let Some(row) = made.into_iter().find(same) {
            let tokenization = Tokenization::from_row(row);
            let _ = tokenization.tokenizer.set(self.tokenizer.clone());
            return Ok(tokenization);
        }
        let asked = TokenizationParams { tokenizer: (&info).into(), params: self.params.clone() };
        let plan = ArtifactPlan {
            kind: TOKENIZATION_KIND,
            name: tokenization_name(dataset.name(), &asked),
            working: DatasetStatus::Tokenizing,
            params: serde_json::to_value(&asked).unwrap_or_default(),
            parents: vec![dataset.id()],
            dir: Some("tokens"),
            if_ready: IfReady::Reuse,
            resumable: false,
        };
        let (tokenizer, params) = (&self.tokenizer, &self.params);
        let produced = ws.produce(plan, ctx, |dir, ctx| {
            let dir = dir.ok_or_else(|| Error::InvalidArgument("a tokenization needs a directory".into()))?.path();
            let source = dataset.source()?;
            let outcome = tokenize_source(&source, tokenizer, params, dir, 0, ctx)?;
            let provenance = Provenance {
                tokenizer: info.clone(),
                params: params.clone(),
                dataset: dataset.name().to_string(),
                dataset_id: dataset.id(),
                source: serde_json::to_value(source.spec()).unwrap_or_default(),
                saekit_version: crate::VERSION.to_string(),
            };
            write_json(&dir.join("provenance.json"), &provenance)?;
            tokenizer.save(&dir.join(TOKENIZER_FILE))?;
            write_json(&dir.join("stats.json"), &outcome.stats)?;
            Ok(TokenizationRecord {
                tokenizer: info.name.clone(),
                tokenizer_hash: info.hash.clone(),
                num_documents: outcome.stats.documents,
                num_sequences: outcome.store.num_sequences,
                num_tokens: outcome.store.num_tokens,
                statistics: serde_json::to_value(&outcome.stats).unwrap_or_default(),
            })
        })?;
        let tokenization = ws.tokenization_by_id(produced.id())?;
        if tokenization.row.tokenizer_hash == info.hash {
            let _ = tokenization.tokenizer.set(tokenizer.clone());
        }
        Ok(tokenization)
    }
}

/// `<dataset>/<tokenizer>/<shape>-<8 hex digits of sha256(tokenizer hash, parameters)>`, where the shape
/// is `packed-N` or `window-N`: one name per thing asked, readable at a glance.
fn tokenization_name(dataset: &str, asked: &TokenizationParams) -> String {
    let key = Sha256::digest(serde_json::to_string(asked).unwrap_or_default().as_bytes());
    let key: String = key.iter().take(4).map(|b| format!("{b:02x}")).collect();
    let shape = if asked.params.packing.is_some() { "packed" } else { "window" };
    let key = format!("{shape}-{}-{key}", asked.params.max_length);
    // A tokenizer loaded from a file is named by its path: keep the name short.
    let tokenizer = asked.tokenizer.name.trim_end_matches("/tokenizer.json").rsplit('/').next().unwrap_or("tokenizer");
    format!("{dataset}/{tokenizer}/{key}")
}

impl Workspace {
    /// Tokenizes a ready dataset into a new token store, registered in the catalog when complete. The
    /// same dataset, tokenizer and parameters again return the tokenization already made.
    pub fn tokenize(&self, dataset: &str, tokenizer: &Tokenizer, params: &TokenizeParams) -> Result<Tokenization> {
        self.make(Tokenize { dataset: dataset.into(), tokenizer: tokenizer.clone(), params: params.clone() })
    }

    /// [`Workspace::tokenize`] as a background job: returns at once; progress in bytes read; a
    /// cancelled job leaves no store and no row.
    pub fn tokenize_job(&self, dataset: &str, tokenizer: &Tokenizer, params: &TokenizeParams) -> Job<Tokenization> {
        self.make_job(Tokenize { dataset: dataset.into(), tokenizer: tokenizer.clone(), params: params.clone() })
    }

    /// The tokenizations of a dataset, newest first.
    pub fn tokenizations(&self, dataset: &str) -> Result<Vec<TokenizationRow>> {
        let row = self.catalog().dataset(dataset)?;
        self.catalog().with_conn(|conn| tokenizations_of(self.catalog(), conn, row.id))
    }

    /// A dataset's most recent tokenization.
    pub fn latest_tokenization(&self, dataset: &str) -> Result<Tokenization> {
        let rows = self.tokenizations(dataset)?;
        let found = rows.into_iter().next().map(Tokenization::from_row);
        if let Some(t) = &found {
            self.note(t.id(), crate::catalog::Touch::Read);
        }
        found.ok_or_else(|| Error::NotFound {
            kind: "tokenization of dataset",
            name: dataset.to_string(),
            catalog: self.catalog().path().to_path_buf(),
        })
    }

    /// A tokenization by name or id.
    pub fn tokenization(&self, name_or_id: &str) -> Result<Tokenization> {
        let row = self.catalog().with_conn(|conn| tokenization_by_name_in(self.catalog(), conn, name_or_id))?;
        let tokenization = Tokenization::from_row(row);
        self.note(tokenization.id(), crate::catalog::Touch::Read);
        Ok(tokenization)
    }

    fn tokenization_by_id(&self, id: i64) -> Result<Tokenization> {
        let row = self.catalog().with_conn(|conn| tokenization_in(self.catalog(), conn, id))?;
        Ok(Tokenization::from_row(row))
    }

    /// Deletes a tokenization and its token store (refusing one that something was made from).
    pub fn delete_tokenization(&self, tokenization: &Tokenization) -> Result<()> {
        self.delete_artifact(tokenization, false)
    }
}

impl Dataset {
    /// Tokenizes this dataset; see [`Workspace::tokenize`].
    pub fn tokenize(&self, tokenizer: &Tokenizer, params: &TokenizeParams) -> Result<Tokenization> {
        self.workspace().tokenize(self.name(), tokenizer, params)
    }

    /// Tokenizes this dataset as a background job; see [`Workspace::tokenize_job`].
    pub fn tokenize_job(&self, tokenizer: &Tokenizer, params: &TokenizeParams) -> Job<Tokenization> {
        self.workspace().tokenize_job(self.name(), tokenizer, params)
    }

    /// This dataset's tokenizations, newest first.
    pub fn tokenizations(&self) -> Result<Vec<Tokenization>> {
        let rows = self
            .workspace()
            .catalog()
            .with_conn(|conn| tokenizations_of(self.workspace().catalog(), conn, self.id()))?;
        Ok(rows.into_iter().map(Tokenization::from_row).collect())
    }
}

fn write_json(path: &Path, value: &impl Serialize) -> Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(|e| Error::format(path, e))?;
    std::fs::write(path, text).map_err(|e| Error::io(path, e))
}

impl Tokenization {
    fn from_row(row: TokenizationRow) -> Tokenization {
        Tokenization { row, tokenizer: Arc::new(OnceLock::new()) }
    }

    pub fn row(&self) -> &TokenizationRow {
        &self.row
    }

    pub fn id(&self) -> i64 {
        self.row.id
    }

    pub fn name(&self) -> &str {
        &self.row.name
    }

    /// The parameters it was made with.
    pub fn params(&self) -> &TokenizeParams {
        &self.row.params
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

    /// The tokenizer these tokens were made with, as saved beside them (loaded once).
    pub fn tokenizer(&self) -> Result<Tokenizer> {
        if let Some(tokenizer) = self.tokenizer.get() {
            return Ok(tokenizer.clone());
        }
        let mut tokenizer = Tokenizer::from_file(self.row.artifact_path.join(TOKENIZER_FILE))?;
        tokenizer.rename(&self.row.tokenizer);
        Ok(self.tokenizer.get_or_init(|| tokenizer).clone())
    }

    /// What it was made from and what was made from it (needs the workspace it is in).
    pub fn lineage(&self, ws: &Workspace) -> Result<Lineage> {
        ws.lineage(self)
    }

    /// Refuses a tokenizer other than the one these tokens were made with.
    pub fn check_tokenizer(&self, tokenizer: &Tokenizer) -> Result<()> {
        let hash = tokenizer.hash();
        if hash == self.row.tokenizer_hash {
            return Ok(());
        }
        // Stores made before identities were canonical recorded a hash of the file's bytes: the tokenizer
        // saved beside the tokens decides.
        if self.tokenizer().is_ok_and(|saved| saved.hash() == hash) {
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

    /// Page `page` (from 0) of the sequences, `per_page` to a page, decoded with token boundaries visible
    /// by the tokenizer that made them.
    pub fn page(&self, page: usize, per_page: usize) -> Result<SequencePage> {
        self.page_with(&self.tokenizer()?, page, per_page)
    }

    /// [`Tokenization::page`] decoded by `tokenizer`, which must be the one the tokens were made with.
    pub fn page_with(&self, tokenizer: &Tokenizer, page: usize, per_page: usize) -> Result<SequencePage> {
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
        let mut card = Card::new(format!("Tokenization {}", r.name))
            .badge("ready")
            .fact("id", r.id.to_string())
            .fact(
                "tokenizer",
                format!("{} (sha256 {}…)", r.tokenizer, &r.tokenizer_hash[..12.min(r.tokenizer_hash.len())]),
            )
            .fact("documents", count(r.num_documents))
            .fact("sequences", count(r.num_sequences))
            .fact("tokens", count(r.num_tokens))
            .fact("store", r.artifact_path.display().to_string())
            .fact("saekit", r.saekit_version.clone())
            .fact("created", r.created_at.clone());
        card = card.section(&Table::fields("parameters", &r.params).bundle());
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
