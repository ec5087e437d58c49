//! Running a recipe: one job, through the catalog's lifecycle.
//!
//! 1. **Resolve** every source to a catalog dataset (local files and Hub datasets are registered first, so
//!    the mix's lineage reaches each of them).
//! 2. **Preprocess** (only when a source has steps, a token cap, or the recipe has steps): read each source
//!    once, in recipe order, through its own steps and then the recipe's (one chain shared by all sources,
//!    so a duplicate across sources is dropped from the later one), up to its caps; remember which rows
//!    were kept (one bit per row read) and write every drop, with its step and reason, to `dropped.parquet`.
//! 3. **Plan** from the epochs alone ([`super::plan`]): exact rows per source, or an error before any row.
//! 4. **Write**: replay the schedule, reading every source front to back (again from the start when its
//!    epoch starts again), into Parquet shards of `text`, `source`, `source_row` and `metadata` (the
//!    source's other columns as JSON), with the provenance in every shard's key-value metadata.
//! 5. Optionally **tokenize** the mixed dataset in the same job.
//!
//! The work is a pipeline: a reader thread per source (reading ahead two batches, turning metadata into
//! JSON), the schedule and the output batches on the job's thread, statistics and token counts on one
//! more, and the Parquet encoding on two shard writers (shard `k` on writer `k mod 2`). Memory is flat in
//! the data: a few record batches per source and per stage, a 32K-row group per shard writer, the
//! kept-row bits (1 bit per source row) and what the dedup steps remember (see [`crate::steps`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{Array, ArrayRef, RecordBatch, StringArray, StringBuilder, UInt64Builder};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use rayon::prelude::*;
use serde_json::json;

use super::plan::{Schedule, Slot, plan};
use super::recipe::{MixRecipe, SourceRef};
use super::table::MixRecord;
use super::{Mix, MixReport, SourceReport};
use crate::catalog::{ArtifactPlan, DATASET_KIND, Dataset, DatasetRecord, DatasetStatus, IfReady, Request, Workspace};
use crate::error::{Error, Result, count};
use crate::hub::{Hub, Selection};
use crate::jobs::JobContext;
use crate::sources::{Format, Source, SourceSpec, TextField};
use crate::stats::StatsAccumulator;
use crate::steps::{Chain, Doc, Dropped, StepCount};
use crate::tokenize::{Encode, Tokenizer};

/// Output rows per record batch.
const OUT_BATCH: usize = 8192;
/// Drops buffered before they are written.
const DROP_BATCH: usize = 4096;

/// A request to run a recipe into dataset `name` (the recipe's name unless given). Run it with
/// [`Workspace::make`], [`Workspace::make_job`] or [`Workspace::make_with`], or [`Workspace::mix`].
#[derive(Debug, Clone)]
pub struct MixRun {
    pub recipe: MixRecipe,
    pub name: String,
    /// The Hub for Hub sources (from the environment when `None`).
    pub hub: Option<Hub>,
}

impl MixRun {
    pub fn new(recipe: &MixRecipe) -> MixRun {
        MixRun { recipe: recipe.clone(), name: recipe.name.clone(), hub: None }
    }

    /// Writes the mix as dataset `name`.
    pub fn named(mut self, name: &str) -> MixRun {
        self.name = name.into();
        self
    }

    /// Takes Hub sources from this Hub (endpoint, cache, token).
    pub fn hub(mut self, hub: Hub) -> MixRun {
        self.hub = Some(hub);
        self
    }
}

/// A source resolved to a dataset, with what the preprocessing pass found.
pub(super) struct Resolved {
    pub dataset: Dataset,
    pub source: Source,
    /// Rows the dataset holds (as registered).
    pub rows: u64,
    /// Kept rows, one bit per row read (`None`: every row up to `epoch`, no preprocessing pass).
    pub kept: Option<Vec<u64>>,
    /// Rows read by the preprocessing pass.
    pub read: u64,
    pub epoch: u64,
    pub steps: Vec<StepCount>,
    pub mix_steps: Vec<StepCount>,
    /// Tokens of the rows the caps counted (past the source's own steps), when a token cap counted them.
    pub epoch_tokens: Option<u64>,
    /// What the epoch's length was capped by (`rows`, `tokens`, `max_fraction`), if anything.
    pub capped_by: Option<&'static str>,
}

impl Request for MixRun {
    type Output = Mix;

    fn label(&self) -> String {
        format!("mix {}", self.name)
    }

    fn run(&self, ws: &Workspace, ctx: &JobContext) -> Result<Mix> {
        let started = Instant::now();
        let recipe = &self.recipe;
        recipe.validate()?;
        crate::catalog::check_name(&self.name)?;
        let tokenizer = recipe.tokenizer.as_deref().map(resolve_tokenizer).transpose()?;
        let encoder = tokenizer.as_ref().map(Tokenizer::encoder);
        let saved = ws.save_recipe(recipe)?;
        let datasets = self.resolve(ws, ctx)?;

        // Without a preprocessing pass the plan needs only the sources' sizes: a mix that cannot be met
        // is refused before anything is claimed.
        let mut datasets = Some(datasets);
        let early = match needs_pass(recipe) {
            false => {
                let mut nowhere = DropWriter::new(PathBuf::new());
                let resolved = preprocess(recipe, datasets.take().unwrap_or_default(), None, &mut nowhere, ctx)?;
                let slots = slots_of(recipe, &resolved);
                let plan = plan(recipe, &slots)?;
                Some((resolved, slots, plan))
            }
            true => None,
        };
        let parents = match (&early, &datasets) {
            (Some((resolved, ..)), _) => resolved.iter().map(|r| r.dataset.id()).collect(),
            (None, Some(d)) => d.iter().map(|(d, _)| d.id()).collect(),
            (None, None) => Vec::new(),
        };
        let artifact = ArtifactPlan {
            kind: DATASET_KIND,
            name: self.name.clone(),
            working: DatasetStatus::Mixing,
            params: json!({
                "origin": "mix",
                "recipe": recipe,
                "recipe_hash": recipe.hash(),
                "recipe_version": saved.version,
                "seed": recipe.seed,
            }),
            parents,
            dir: Some("datasets"),
            if_ready: IfReady::Refuse,
            resumable: false,
        };
        let produced = ws.produce(artifact, ctx, |dir, ctx| {
            let dir = dir.ok_or_else(|| Error::InvalidArgument("a mix writes files".into()))?;
            let (resolved, slots, plan, dropped_rows) = match early {
                Some((resolved, slots, plan)) => (resolved, slots, plan, 0),
                None => {
                    let mut dropped = DropWriter::new(dir.path().join("dropped.parquet"));
                    let resolved =
                        preprocess(recipe, datasets.take().unwrap_or_default(), encoder.as_deref(), &mut dropped, ctx)?;
                    let dropped_rows = dropped.finish()?;
                    let slots = slots_of(recipe, &resolved);
                    let plan = plan(recipe, &slots)?;
                    (resolved, slots, plan, dropped_rows)
                }
            };
            let provenance = provenance(recipe, &saved.version, &resolved);
            let written =
                write_mix(recipe, &resolved, &slots, &plan, dir.path(), &provenance, encoder.as_deref(), ctx)?;
            let paths = dir.committed_paths(ws.root(), &written.files);
            let spec = SourceSpec {
                paths: paths.clone(),
                format: Some(Format::Parquet),
                text: TextField::Column("text".into()),
                on_error: Default::default(),
                infer_rows: 1000,
                batch_rows: 4096,
            };
            let sources: Vec<SourceReport> = recipe
                .sources
                .iter()
                .zip(&resolved)
                .enumerate()
                .map(|(i, (s, r))| SourceReport {
                    name: s.name.clone(),
                    dataset: r.dataset.name().to_string(),
                    dataset_id: r.dataset.id(),
                    revision: revision_of(&r.dataset),
                    weight: s.weight,
                    rows_in_dataset: r.rows,
                    rows_read: r.read,
                    epoch: r.epoch,
                    epoch_tokens: r.epoch_tokens,
                    capped_by: r.capped_by.map(str::to_string),
                    max_draws: slots[i].max_draws,
                    target_rows: plan.targets[i],
                    rows: plan.rows[i],
                    tokens: written.tokens.as_ref().map(|t| t[i]),
                    repetitions: if r.epoch == 0 { 0.0 } else { plan.rows[i] as f64 / r.epoch as f64 },
                    steps: r.steps.clone(),
                    mix_steps: r.mix_steps.clone(),
                    left_out: plan.left_out.iter().find(|(n, _)| n == &s.name).map(|(_, w)| w.clone()),
                })
                .collect();
            let report = MixReport {
                recipe: recipe.name.clone(),
                recipe_hash: recipe.hash(),
                recipe_version: saved.version,
                strategy: recipe.strategy.as_str().into(),
                stop: match recipe.strategy {
                    super::Strategy::Curriculum { .. } => "phases".into(),
                    _ => recipe.stop_rule().describe(),
                },
                seed: recipe.seed,
                total_rows: plan.total,
                phases: plan.phases.clone(),
                sources,
                dropped_rows,
                seconds: started.elapsed().as_secs_f64(),
                saekit_version: crate::VERSION.into(),
            };
            let stats = written.stats;
            let num_bytes = written.files.iter().filter_map(|f| std::fs::metadata(f).ok()).map(|m| m.len()).sum();
            let metadata = json!({
                "format": "parquet",
                "files": written.files.len(),
                "schema": written.schema_view,
                "stats": stats,
                "saekit_version": crate::VERSION,
                "mix": report,
                "provenance": provenance,
            });
            Ok(MixRecord {
                dataset: DatasetRecord {
                    source: "mix".into(),
                    repo_id: None,
                    spec: serde_json::to_value(&spec).unwrap_or_default(),
                    paths,
                    metadata,
                    num_rows: Some(plan.total),
                    num_bytes: Some(num_bytes),
                    fingerprint: None,
                },
                recipe: recipe.clone(),
                report,
            })
        })?;
        let dataset = ws.dataset_by_id(produced.id())?;
        let tokenization = match (&recipe.tokenize, &tokenizer) {
            (Some(params), Some(tokenizer)) => Some(ws.make_with(
                crate::tokenize::Tokenize {
                    dataset: dataset.name().into(),
                    tokenizer: tokenizer.clone(),
                    params: params.clone(),
                },
                ctx,
            )?),
            _ => None,
        };
        Mix::from_dataset(dataset, tokenization)
    }
}

impl MixRun {
    /// Every source as a catalog dataset: named ones looked up, files and Hub datasets registered (or
    /// found registered from the same files).
    fn resolve(&self, ws: &Workspace, ctx: &JobContext) -> Result<Vec<(Dataset, Source)>> {
        let mut out = Vec::new();
        for s in &self.recipe.sources {
            ctx.check()?;
            let dataset = match &s.from {
                SourceRef::Dataset { name } => ws.dataset(name).map_err(|e| match e {
                    Error::NotFound { .. } => Error::InvalidArgument(format!(
                        "mix source `{}`: no dataset `{name}` in the workspace at {}",
                        s.name,
                        ws.root().display()
                    )),
                    other => other,
                })?,
                SourceRef::Files { paths, format, text, on_error } => {
                    let spec = SourceSpec {
                        paths: paths.clone(),
                        format: *format,
                        text: text.clone(),
                        on_error: *on_error,
                        infer_rows: 1000,
                        batch_rows: 4096,
                    };
                    let source = Source::from_spec(spec)
                        .map_err(|e| Error::InvalidArgument(format!("mix source `{}`: {e}", s.name)))?;
                    ctx.set_detail(format!("registering {}", s.name));
                    ws.ensure_dataset(&format!("mix/{}/{}", self.recipe.name, s.name), &source)?
                }
                SourceRef::Hub { repo, config, split, revision, text } => {
                    let name = format!("hub/{repo}/{}/{split}/{revision}", config.as_deref().unwrap_or("default"))
                        .replace(|c: char| !(c.is_alphanumeric() || "-_./".contains(c)), "_");
                    match ws.dataset(&name) {
                        Ok(d) if d.status() == DatasetStatus::Ready => d,
                        _ => {
                            let hub = match &self.hub {
                                Some(hub) => hub.clone(),
                                None => Hub::from_env()?,
                            };
                            let info = hub.dataset(repo).revision(revision).info()?;
                            let mut selection = Selection::new().split(split);
                            if let Some(c) = config {
                                selection = selection.config(c);
                            }
                            let mut plan = info.plan(&selection)?;
                            plan.text = text.clone();
                            ws.make_with(crate::hub::Download { name, plan }, ctx)?
                        }
                    }
                }
            };
            if dataset.status() != DatasetStatus::Ready {
                return Err(Error::InvalidArgument(format!(
                    "mix source `{}`: dataset `{}` is {}, not ready",
                    s.name,
                    dataset.name(),
                    dataset.status().as_str()
                )));
            }
            let source = dataset.source()?;
            out.push((dataset, source));
        }
        Ok(out)
    }
}

/// Whether any source must be read before the plan: it has steps or a token cap, or the recipe has steps.
fn needs_pass(recipe: &MixRecipe) -> bool {
    !recipe.preprocess.is_empty() || recipe.sources.iter().any(|s| !s.preprocess.is_empty() || s.caps.tokens.is_some())
}

fn slots_of(recipe: &MixRecipe, resolved: &[Resolved]) -> Vec<Slot> {
    recipe
        .sources
        .iter()
        .zip(resolved)
        .map(|(s, r)| {
            let reps = s.caps.max_repetitions.unwrap_or(1.0);
            Slot {
                name: s.name.clone(),
                epoch: r.epoch,
                max_draws: (r.epoch as f64 * reps).floor() as u64,
                max_repetitions: reps,
                weight: s.weight,
            }
        })
        .collect()
}

/// `gpt2`, a `tokenizer.json` path, or a Hub model repo id.
fn resolve_tokenizer(name: &str) -> Result<Tokenizer> {
    if name == "gpt2" {
        return Tokenizer::gpt2();
    }
    let path = Path::new(name);
    if path.exists() {
        return Tokenizer::from_file(path);
    }
    Tokenizer::from_hub(name)
}

/// The source's revision: a Hub dataset's commit, else the sha256 of its files, else its id.
fn revision_of(dataset: &Dataset) -> String {
    let row = dataset.row();
    if let Some(commit) = row.params.get("commit").and_then(|c| c.as_str()) {
        return format!("hub commit {commit}");
    }
    if let Some(fp) = &row.fingerprint {
        return format!("sha256 {}", &fp.sha256);
    }
    match row.metadata.get("provenance").and_then(|p| p.get("recipe_hash")).and_then(|h| h.as_str()) {
        Some(hash) => format!("mix of recipe {}", &hash[..12.min(hash.len())]),
        None => format!("dataset #{} made {}", row.id, row.created_at),
    }
}

fn provenance(recipe: &MixRecipe, version: &i64, resolved: &[Resolved]) -> serde_json::Value {
    json!({
        "recipe": recipe.name,
        "recipe_hash": recipe.hash(),
        "recipe_version": version,
        "seed": recipe.seed,
        "saekit_version": crate::VERSION,
        "sources": recipe.sources.iter().zip(resolved).map(|(s, r)| json!({
            "name": s.name,
            "dataset": r.dataset.name(),
            "dataset_id": r.dataset.id(),
            "revision": revision_of(&r.dataset),
        })).collect::<Vec<_>>(),
    })
}

fn set_bit(bits: &mut Vec<u64>, i: u64) {
    let word = (i / 64) as usize;
    if bits.len() <= word {
        bits.resize(word + 1, 0);
    }
    bits[word] |= 1 << (i % 64);
}

fn bit(bits: &[u64], i: u64) -> bool {
    bits.get((i / 64) as usize).is_some_and(|w| w & (1 << (i % 64)) != 0)
}

/// The preprocessing pass (see the module documentation); a source without steps or token caps is not
/// read here, its epoch coming from its size and caps.
fn preprocess(
    recipe: &MixRecipe,
    datasets: Vec<(Dataset, Source)>,
    encoder: Option<&dyn Encode>,
    dropped: &mut DropWriter,
    ctx: &JobContext,
) -> Result<Vec<Resolved>> {
    let mut mix_chain = Chain::new(&recipe.preprocess)?;
    let mut out = Vec::new();
    for (s, (dataset, source)) in recipe.sources.iter().zip(datasets) {
        let rows = dataset.row().num_rows.unwrap_or(0);
        let fraction_cap = s.caps.max_fraction.map(|f| (f * rows as f64).floor() as u64);
        let row_cap = [s.caps.rows, fraction_cap].into_iter().flatten().min();
        let capped_by = |taken: u64, by_tokens: bool| -> Option<&'static str> {
            if by_tokens {
                Some("tokens")
            } else if s.caps.rows == Some(taken) && row_cap == Some(taken) {
                Some("rows")
            } else if fraction_cap == Some(taken) {
                Some("max_fraction")
            } else {
                None
            }
        };
        let mut chain = Chain::new(&s.preprocess)?;
        let needs_pass = !chain.is_empty() || !mix_chain.is_empty() || s.caps.tokens.is_some();
        if !needs_pass || s.weight == 0.0 && !matches!(recipe.strategy, super::Strategy::Curriculum { .. }) {
            let epoch = row_cap.map_or(rows, |c| c.min(rows));
            out.push(Resolved {
                dataset,
                source,
                rows,
                kept: None,
                read: 0,
                epoch: if needs_pass { 0 } else { epoch },
                steps: Vec::new(),
                mix_steps: Vec::new(),
                epoch_tokens: None,
                capped_by: capped_by(epoch, false),
            });
            continue;
        }
        ctx.phase(&format!("preprocessing {}", s.name), "rows", Some(rows));
        mix_chain.reset_counts();
        let mut kept_bits = Vec::new();
        // `taken`: rows past the source's own steps, which the caps count; `epoch`: those the mix's steps
        // kept too. Sub-batches never go past a cap, so no step sees a row the caps exclude.
        let (mut read, mut taken, mut epoch, mut tokens, mut by_tokens) = (0u64, 0u64, 0u64, 0u64, false);
        let mut ended = row_cap == Some(0);
        for batch in source.documents()? {
            if ended {
                break;
            }
            let batch = batch?;
            ctx.check()?;
            let text = text_column(&batch)?;
            let docs: Vec<Doc> = (0..batch.num_rows())
                .map(|i| Doc { text: text.value(i), source: &s.name, row: read + i as u64 })
                .collect();
            let counts: Vec<u64> = match (encoder, s.caps.tokens) {
                (Some(enc), Some(_)) => {
                    docs.par_iter().map(|d| enc.encode(d.text).map(|t| t.len() as u64).unwrap_or(0)).collect()
                }
                _ => Vec::new(),
            };
            let mut pos = 0;
            while pos < docs.len() && !ended {
                let mut size = docs.len() - pos;
                if let Some(cap) = row_cap {
                    size = size.min((cap - taken) as usize);
                }
                if let Some(cap) = s.caps.tokens {
                    let room = cap - tokens;
                    let (mut fit, mut sum) = (0, 0u64);
                    while pos + fit < docs.len() && sum + counts[pos + fit] <= room {
                        sum += counts[pos + fit];
                        fit += 1;
                    }
                    size = size.min(fit.max(1));
                }
                let sub = &docs[pos..pos + size];
                let keep = chain.run(sub, |d| dropped.push(d));
                let mut candidates = Vec::new();
                let mut consumed = size;
                for (j, k) in keep.iter().enumerate() {
                    if !k {
                        continue;
                    }
                    if let Some(cap) = s.caps.tokens {
                        if tokens + counts[pos + j] > cap {
                            (by_tokens, ended, consumed) = (true, true, j + 1);
                            break;
                        }
                        tokens += counts[pos + j];
                    }
                    candidates.push(j);
                    taken += 1;
                    if row_cap == Some(taken) {
                        (ended, consumed) = (true, j + 1);
                        break;
                    }
                }
                let survivors: Vec<Doc> = candidates.iter().map(|&j| sub[j]).collect();
                let kept = if mix_chain.is_empty() {
                    vec![true; survivors.len()]
                } else {
                    mix_chain.run(&survivors, |d| dropped.push(d))
                };
                for (doc, k) in survivors.iter().zip(kept) {
                    if k {
                        set_bit(&mut kept_bits, doc.row);
                        epoch += 1;
                    }
                }
                pos += consumed;
            }
            read += pos as u64;
            ctx.set_done(read);
            if ended {
                break;
            }
        }
        out.push(Resolved {
            dataset,
            source,
            rows,
            kept: Some(kept_bits),
            read,
            epoch,
            steps: chain.counts().to_vec(),
            mix_steps: mix_chain.counts().to_vec(),
            epoch_tokens: s.caps.tokens.map(|_| tokens),
            capped_by: capped_by(taken, by_tokens),
        });
    }
    Ok(out)
}

fn text_column(batch: &RecordBatch) -> Result<&StringArray> {
    batch
        .column(0)
        .as_any()
        .downcast_ref::<StringArray>()
        .ok_or_else(|| Error::Source("a document batch without a text column".into()))
}

/// A batch of a source's documents as the mix takes rows from it: the text and each row's metadata JSON.
type Loaded = (StringArray, Option<Vec<String>>);

/// Batches read ahead: a thread of its own reads the source and turns each batch's metadata into JSON, at
/// most [`READ_AHEAD`] batches ahead; dropping it stops (and joins) the thread.
struct ReadAhead {
    rx: Option<std::sync::mpsc::Receiver<Result<Loaded>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Batches a source's reader may be ahead of the mix.
const READ_AHEAD: usize = 2;

impl ReadAhead {
    fn start(source: &Source) -> Result<ReadAhead> {
        let documents = source.documents()?;
        let (tx, rx) = std::sync::mpsc::sync_channel(READ_AHEAD);
        let thread = std::thread::Builder::new()
            .name("saekit mix reader".into())
            .spawn(move || {
                for batch in documents {
                    let loaded = batch.and_then(|b| Ok((text_column(&b)?.clone(), metadata_json(&b)?)));
                    let failed = loaded.is_err();
                    if tx.send(loaded).is_err() || failed {
                        return;
                    }
                }
            })
            .map_err(|e| Error::Source(format!("cannot start a reader thread: {e}")))?;
        Ok(ReadAhead { rx: Some(rx), thread: Some(thread) })
    }

    fn next(&mut self) -> Result<Option<Loaded>> {
        match self.rx.as_ref().map(|rx| rx.recv()) {
            Some(Ok(loaded)) => loaded.map(Some),
            _ => Ok(None),
        }
    }
}

impl Drop for ReadAhead {
    fn drop(&mut self) {
        drop(self.rx.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Reads one source's epoch front to back, row by row, again from the start when asked past its end.
struct Cursor<'a> {
    resolved: &'a Resolved,
    reader: Option<ReadAhead>,
    batch: Option<Loaded>,
    /// Position in the current batch, the row index of its first row.
    pos: usize,
    first_row: u64,
    /// Epoch rows handed out in this pass.
    in_epoch: u64,
}

impl<'a> Cursor<'a> {
    fn new(resolved: &'a Resolved) -> Cursor<'a> {
        Cursor { resolved, reader: None, batch: None, pos: 0, first_row: 0, in_epoch: 0 }
    }

    fn restart(&mut self) -> Result<()> {
        self.reader = None;
        self.reader = Some(ReadAhead::start(&self.resolved.source)?);
        self.batch = None;
        self.pos = 0;
        self.first_row = 0;
        self.in_epoch = 0;
        Ok(())
    }

    /// The next row of the epoch: (text, row index, metadata JSON).
    fn next(&mut self) -> Result<(&str, u64, Option<&str>)> {
        if self.reader.is_none() || self.in_epoch >= self.resolved.epoch {
            self.restart()?;
        }
        let i = loop {
            if let Some((text, _)) = &self.batch {
                let found = (self.pos..text.len())
                    .find(|&i| self.resolved.kept.as_ref().is_none_or(|k| bit(k, self.first_row + i as u64)));
                match found {
                    Some(i) => {
                        self.pos = i + 1;
                        break i;
                    }
                    None => self.first_row += text.len() as u64,
                }
            }
            let reader = self.reader.as_mut().ok_or_else(|| Error::Source("no reader".into()))?;
            let Some(loaded) = reader.next()? else {
                return Err(Error::Source(format!(
                    "dataset `{}` ended after {} rows while the mix expected {} in its epoch: its files changed \
                     while the mix ran",
                    self.resolved.dataset.name(),
                    count(self.first_row),
                    count(self.resolved.epoch)
                )));
            };
            self.batch = Some(loaded);
            self.pos = 0;
        };
        self.in_epoch += 1;
        let row = self.first_row + i as u64;
        let (text, meta) = self.batch.as_ref().ok_or_else(|| Error::Source("no batch".into()))?;
        Ok((text.value(i), row, meta.as_ref().map(|m| m[i].as_str())))
    }
}

/// The metadata columns of a document batch, one JSON object per row (`None` without metadata columns).
fn metadata_json(batch: &RecordBatch) -> Result<Option<Vec<String>>> {
    if batch.num_columns() <= 1 {
        return Ok(None);
    }
    let meta =
        batch.project(&(1..batch.num_columns()).collect::<Vec<_>>()).map_err(|e| Error::Source(e.to_string()))?;
    let mut writer = arrow::json::LineDelimitedWriter::new(Vec::new());
    writer.write(&meta).map_err(|e| Error::Source(format!("metadata as JSON: {e}")))?;
    writer.finish().map_err(|e| Error::Source(format!("metadata as JSON: {e}")))?;
    let bytes = writer.into_inner();
    let text = String::from_utf8(bytes).map_err(|e| Error::Source(e.to_string()))?;
    Ok(Some(text.lines().map(str::to_string).collect()))
}

/// What writing a mix produced.
struct Written {
    files: Vec<PathBuf>,
    tokens: Option<Vec<u64>>,
    stats: crate::stats::DatasetStats,
    schema_view: crate::sources::SchemaView,
}

fn out_schema(with_metadata: bool) -> SchemaRef {
    let mut fields = vec![
        Field::new("text", DataType::Utf8, false),
        Field::new("source", DataType::Utf8, false),
        Field::new("source_row", DataType::UInt64, false),
    ];
    if with_metadata {
        fields.push(Field::new("metadata", DataType::Utf8, true));
    }
    Arc::new(Schema::new(fields))
}

/// Threads that encode the mixed dataset's Parquet shards, shard `k` on thread `k mod n`, so the
/// compression of one shard overlaps another's.
const SHARD_WRITERS: usize = 2;

/// Writes the shards one thread is given, in order: batches of shard `k` go to `part-0000k.parquet`.
fn write_shards(
    dir: &Path,
    schema: SchemaRef,
    props: WriterProperties,
    batches: std::sync::mpsc::Receiver<(usize, RecordBatch)>,
) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut current: Option<(usize, PathBuf, ArrowWriter<std::fs::File>)> = None;
    for (shard, batch) in batches {
        if current.as_ref().is_none_or(|(k, ..)| *k != shard) {
            if let Some((_, path, w)) = current.take() {
                w.close().map_err(|e| Error::format(&path, e))?;
            }
            let path = dir.join(format!("part-{shard:05}.parquet"));
            let file = std::fs::File::create(&path).map_err(|e| Error::io(&path, e))?;
            let w =
                ArrowWriter::try_new(file, schema.clone(), Some(props.clone())).map_err(|e| Error::format(&path, e))?;
            files.push(path.clone());
            current = Some((shard, path, w));
        }
        if let Some((_, path, w)) = current.as_mut() {
            w.write(&batch).map_err(|e| Error::format(path, e))?;
        }
    }
    if let Some((_, path, w)) = current.take() {
        w.close().map_err(|e| Error::format(&path, e))?;
    }
    Ok(files)
}

#[allow(clippy::too_many_arguments)]
fn write_mix(
    recipe: &MixRecipe,
    resolved: &[Resolved],
    slots: &[Slot],
    plan: &super::plan::MixPlan,
    dir: &Path,
    provenance: &serde_json::Value,
    encoder: Option<&dyn Encode>,
    ctx: &JobContext,
) -> Result<Written> {
    let with_metadata = resolved.iter().any(|r| r.source.arrow_schema().map(|s| s.fields().len() > 1).unwrap_or(false));
    let schema = out_schema(with_metadata);
    // Row groups of 32K rows: a shard writer holds one row group, not a whole shard, while it encodes.
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(32 * 1024))
        .set_key_value_metadata(Some(vec![KeyValue::new("saekit.mix".into(), provenance.to_string())]))
        .build();
    let mut cursors: Vec<Cursor> = resolved.iter().map(Cursor::new).collect();
    let (mut text, mut source, mut row, mut meta) =
        (StringBuilder::new(), StringBuilder::new(), UInt64Builder::new(), StringBuilder::new());
    let mut batch_sources: Vec<usize> = Vec::with_capacity(OUT_BATCH);
    let mut done = vec![0u64; resolved.len()];
    ctx.phase("mixing", "rows", Some(plan.total));
    let mut written = 0u64;
    let mut schedule = Schedule::new(recipe, slots.to_vec()).peekable();
    // Statistics and token counts run on a thread of their own, a batch behind; the Parquet encoding on
    // SHARD_WRITERS more, a shard each.
    let (tx, rx) = std::sync::mpsc::sync_channel::<(usize, RecordBatch, Vec<usize>)>(2);
    let n_sources = resolved.len();
    let (stats, tokens, files) = std::thread::scope(|scope| -> Result<_> {
        let mut shard_tx = Vec::new();
        let mut shard_threads = Vec::new();
        for _ in 0..SHARD_WRITERS {
            let (stx, srx) = std::sync::mpsc::sync_channel::<(usize, RecordBatch)>(2);
            let (schema, props) = (schema.clone(), props.clone());
            shard_tx.push(stx);
            shard_threads.push(scope.spawn(move || write_shards(dir, schema, props, srx)));
        }
        let stats_schema = schema.clone();
        let counter = scope.spawn(move || -> Result<_> {
            let mut stats = StatsAccumulator::new(&stats_schema);
            let mut tokens = encoder.map(|_| vec![0u64; n_sources]);
            for (shard, batch, sources) in rx {
                if let (Some(enc), Some(t)) = (encoder, tokens.as_mut()) {
                    let texts = text_column(&batch)?;
                    let counts: Vec<u64> = (0..batch.num_rows())
                        .into_par_iter()
                        .map(|i| enc.encode(texts.value(i)).map(|t| t.len() as u64).unwrap_or(0))
                        .collect();
                    for (c, s) in counts.iter().zip(&sources) {
                        t[*s] += c;
                    }
                }
                stats.add(&batch)?;
                if shard_tx[shard % SHARD_WRITERS].send((shard, batch)).is_err() {
                    break; // that writer failed: its error is the one to report
                }
            }
            drop(shard_tx);
            Ok((stats, tokens))
        });
        let (mut in_shard, mut shard) = (0usize, 0usize);
        let fed = (|| -> Result<()> {
            while let Some(i) = schedule.next() {
                let (t, r, m) = cursors[i].next()?;
                text.append_value(t);
                source.append_value(&recipe.sources[i].name);
                row.append_value(r);
                if with_metadata {
                    meta.append_option(m);
                }
                batch_sources.push(i);
                done[i] += 1;
                written += 1;
                let last = schedule.peek().is_none();
                if batch_sources.len() >= OUT_BATCH.min(recipe.rows_per_shard - in_shard) || last {
                    let mut columns: Vec<ArrayRef> =
                        vec![Arc::new(text.finish()), Arc::new(source.finish()), Arc::new(row.finish())];
                    if with_metadata {
                        columns.push(Arc::new(meta.finish()));
                    }
                    let batch = RecordBatch::try_new(schema.clone(), columns).map_err(|e| Error::format(dir, e))?;
                    let rows = batch.num_rows();
                    if tx.send((shard, batch, std::mem::take(&mut batch_sources))).is_err() {
                        return Ok(()); // the writer failed: its error is the one to report
                    }
                    in_shard += rows;
                    if in_shard >= recipe.rows_per_shard {
                        (in_shard, shard) = (0, shard + 1);
                    }
                    ctx.check()?;
                    ctx.set_done(written);
                    let detail: Vec<String> = recipe
                        .sources
                        .iter()
                        .zip(&done)
                        .zip(&plan.rows)
                        .filter(|(_, r)| **r > 0)
                        .map(|((s, d), r)| format!("{} {}/{}", s.name, count(*d), count(*r)))
                        .collect();
                    ctx.set_detail(detail.join(" · "));
                }
            }
            Ok(())
        })();
        drop(tx);
        let panicked = || Error::Source("a thread of the mix's writer panicked".into());
        let counted = counter.join().map_err(|_| panicked())?;
        let mut files = Vec::new();
        let mut failed = None;
        for thread in shard_threads {
            match thread.join().map_err(|_| panicked())? {
                Ok(mut f) => files.append(&mut f),
                Err(e) => failed = failed.or(Some(e)),
            }
        }
        if let Some(e) = failed {
            return Err(e);
        }
        fed?;
        let (stats, tokens) = counted?;
        files.sort();
        Ok((stats, tokens, files))
    })?;
    if written != plan.total {
        return Err(Error::Source(format!(
            "the mix wrote {} rows where its plan said {}",
            count(written),
            count(plan.total)
        )));
    }
    let stats = stats.finish(0);
    let schema_view =
        crate::sources::SchemaView::new(&schema, &[], &["text".to_string()], files.len(), "parquet".into());
    Ok(Written { files, tokens, stats, schema_view })
}

/// Writes dropped documents (source, row, step, reason, text) to one Parquet file, a batch at a time.
struct DropWriter {
    path: PathBuf,
    buffer: Vec<Dropped>,
    writer: Option<ArrowWriter<std::fs::File>>,
    rows: u64,
    error: Option<Error>,
}

impl DropWriter {
    fn new(path: PathBuf) -> DropWriter {
        DropWriter { path, buffer: Vec::new(), writer: None, rows: 0, error: None }
    }

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("source", DataType::Utf8, false),
            Field::new("source_row", DataType::UInt64, false),
            Field::new("step", DataType::Utf8, false),
            Field::new("reason", DataType::Utf8, false),
            Field::new("text", DataType::Utf8, false),
        ]))
    }

    fn push(&mut self, d: Dropped) {
        self.buffer.push(d);
        self.rows += 1;
        if self.buffer.len() >= DROP_BATCH
            && let Err(e) = self.write()
        {
            self.error.get_or_insert(e);
        }
    }

    fn write(&mut self) -> Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let drops = std::mem::take(&mut self.buffer);
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from_iter_values(drops.iter().map(|d| d.source.as_str()))),
            Arc::new(arrow::array::UInt64Array::from_iter_values(drops.iter().map(|d| d.row))),
            Arc::new(StringArray::from_iter_values(drops.iter().map(|d| d.step.as_str()))),
            Arc::new(StringArray::from_iter_values(drops.iter().map(|d| d.reason.as_str()))),
            Arc::new(StringArray::from_iter_values(drops.iter().map(|d| d.text.as_str()))),
        ];
        let batch = RecordBatch::try_new(DropWriter::schema(), columns).map_err(|e| Error::format(&self.path, e))?;
        if self.writer.is_none() {
            let file = std::fs::File::create(&self.path).map_err(|e| Error::io(&self.path, e))?;
            let props = WriterProperties::builder().set_compression(Compression::SNAPPY).build();
            self.writer = Some(
                ArrowWriter::try_new(file, DropWriter::schema(), Some(props))
                    .map_err(|e| Error::format(&self.path, e))?,
            );
        }
        if let Some(w) = self.writer.as_mut() {
            w.write(&batch).map_err(|e| Error::format(&self.path, e))?;
        }
        Ok(())
    }

    /// Writes what is buffered and closes the file; returns the rows dropped.
    fn finish(mut self) -> Result<u64> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        self.write()?;
        if let Some(w) = self.writer.take() {
            w.close().map_err(|e| Error::format(&self.path, e))?;
        }
        Ok(self.rows)
    }
}
