//! The workspace: a folder holding a SQLite catalog of datasets and the artifacts made from them (imported
//! data, token stores; later mixes, activation caches, SAEs). Every artifact is made through one
//! lifecycle ([`lifecycle`]: claim, visible row with status and progress, work under `tmp/`, commit or
//! nothing) and recorded with its parents, so a crash at any moment leaves the old state or a clearly
//! marked partial, and several processes (notebook kernels) can share one workspace.
//!
//! Rooms: `db` (connection, migrations), `artifacts` (every artifact's row, tags, lineage), `datasets`
//! (the dataset table), `artifact` (files written atomically), `lifecycle` (the one way to make an
//! artifact), `lineage` (its display); this file holds the workspace and the dataset stage (add, import).

mod artifact;
mod artifacts;
mod datasets;
mod db;
mod lifecycle;
mod lineage;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};

pub use artifact::*;
pub use artifacts::*;
pub use datasets::*;
pub use db::{Catalog, SCHEMA_VERSION};
pub use lifecycle::{ArtifactPlan, IfReady, Produced, Request, StageRecord, WorkDir};
pub use lineage::Lineage;

use crate::display::{Card, MimeBundle, Render, Table};
use crate::error::{Error, Result, count};
use crate::jobs::{Job, JobContext};
use crate::sources::{Format, Sample, SchemaView, Source, SourceSpec, TextField};
use crate::stats::{DatasetStats, StatsAccumulator};

/// The environment variable that overrides the default workspace folder (`~/.saekit`).
pub const WORKSPACE_ENV: &str = "SAEKIT_HOME";

/// Rows after which an imported dataset's Parquet file is closed (it ends with the batch that crosses it).
const ROWS_PER_SHARD: usize = 100_000;

/// A workspace folder and its catalog. Cheap to clone: clones share one catalog (a job started from a
/// workspace uses it too, without reopening it).
#[derive(Clone)]
pub struct Workspace {
    inner: Arc<WorkspaceInner>,
}

struct WorkspaceInner {
    root: PathBuf,
    catalog: Catalog,
}

impl std::fmt::Debug for Workspace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Workspace({})", self.root().display())
    }
}

/// Anything in the catalog with an artifact id: what [`Workspace::lineage`] starts from.
pub trait Artifact {
    fn artifact_id(&self) -> i64;
}

impl Artifact for i64 {
    fn artifact_id(&self) -> i64 {
        *self
    }
}

impl Artifact for ArtifactRow {
    fn artifact_id(&self) -> i64 {
        self.id
    }
}

impl Workspace {
    /// Opens (creating if needed) the workspace at `root`, and clears what crashed writers left behind
    /// (once, here: jobs share the opened workspace).
    pub fn open(root: impl AsRef<Path>) -> Result<Workspace> {
        let root = root.as_ref().to_path_buf();
        std::fs::create_dir_all(&root).map_err(|e| Error::io(&root, e))?;
        let root = root.canonicalize().map_err(|e| Error::io(&root, e))?;
        let catalog = Catalog::open(&root.join("catalog.sqlite"))?;
        recover(&root, &catalog)?;
        Ok(Workspace { inner: Arc::new(WorkspaceInner { root, catalog }) })
    }

    /// Opens the workspace at `$SAEKIT_HOME`, or `~/.saekit`.
    pub fn open_default() -> Result<Workspace> {
        Workspace::open(default_root()?)
    }

    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// The catalog, for lower-level access.
    pub fn catalog(&self) -> &Catalog {
        &self.inner.catalog
    }

    /// Registers files as a dataset without copying them: reads them once to check them and compute
    /// statistics, the schema and a fingerprint. A dataset of that name left failed or interrupted by
    /// an earlier attempt is taken over; a ready one is [`Error::AlreadyExists`] (see
    /// [`Workspace::ensure_dataset`] for a call that is safe to repeat).
    pub fn add_dataset(&self, name: &str, source: &Source) -> Result<Dataset> {
        self.make(AddDataset::by_reference(name, source))
    }

    /// [`Workspace::add_dataset`] as a background job: returns at once; progress in bytes read.
    pub fn add_dataset_job(&self, name: &str, source: &Source) -> Job<Dataset> {
        self.make_job(AddDataset::by_reference(name, source))
    }

    /// Copies a source into the workspace as Parquet (a `text` column then the metadata columns), so it
    /// survives the original files moving, and registers it. Statistics come from the same pass.
    pub fn import_dataset(&self, name: &str, source: &Source) -> Result<Dataset> {
        self.make(AddDataset::import(name, source))
    }

    /// [`Workspace::import_dataset`] as a background job: returns at once; progress in bytes read. A
    /// cancelled import leaves no file and no row behind (or the earlier failed row, if it took one over).
    pub fn import_dataset_job(&self, name: &str, source: &Source) -> Job<Dataset> {
        self.make_job(AddDataset::import(name, source))
    }

    /// The ready dataset `name` if it was registered from this source (same files, format and text
    /// mapping) and its files are unchanged (same sizes and modification times, or else the same
    /// content hash); otherwise (re)registers it by reference. Safe to run again and again from a
    /// notebook cell. A changed dataset that something was made from is [`Error::InUse`]: delete it
    /// (with its dependents) first.
    pub fn ensure_dataset(&self, name: &str, source: &Source) -> Result<Dataset> {
        match self.dataset(name) {
            Ok(dataset) if dataset.status() == DatasetStatus::Ready && dataset.name() == name => {
                if dataset.was_made_from(source)? {
                    return Ok(dataset);
                }
                let import = dataset.row.artifact_path.is_some();
                self.delete_dataset(name)?;
                if import { self.import_dataset(name, source) } else { self.add_dataset(name, source) }
            }
            _ => self.add_dataset(name, source),
        }
    }

    /// A dataset by name (or id), with its status as of now.
    pub fn dataset(&self, name_or_id: &str) -> Result<Dataset> {
        Ok(Dataset { row: self.catalog().dataset(name_or_id)?, ws: self.clone() })
    }

    pub(crate) fn dataset_by_id(&self, id: i64) -> Result<Dataset> {
        let row = self.catalog().with_conn(|conn| self.catalog().dataset_by_id(conn, id))?;
        Ok(Dataset { row, ws: self.clone() })
    }

    /// Every dataset in the catalog.
    pub fn datasets(&self) -> Result<DatasetList> {
        self.find(&DatasetFilter::default())
    }

    /// The datasets matching a filter (by name, source, status, tag).
    pub fn find(&self, filter: &DatasetFilter) -> Result<DatasetList> {
        let rows = self.catalog().list_datasets(filter)?;
        Ok(DatasetList { datasets: rows.into_iter().map(|row| Dataset { row, ws: self.clone() }).collect() })
    }

    /// Sets a dataset's tags.
    pub fn tag(&self, name: &str, tags: &[&str]) -> Result<Dataset> {
        let row = self.catalog().dataset(name)?;
        let tags: Vec<String> = tags.iter().map(|t| t.to_string()).collect();
        self.catalog().set_tags(row.id, &tags)?;
        self.dataset(name)
    }

    /// Deletes a dataset and every artifact file it owns. Files registered by reference (not imported)
    /// are left alone. A dataset that something was made from (a tokenization) is [`Error::InUse`],
    /// naming those; [`Workspace::delete_dataset_cascade`] deletes them too.
    pub fn delete_dataset(&self, name: &str) -> Result<()> {
        self.remove_owned(self.catalog().delete_dataset(name, false)?)
    }

    /// Deletes a dataset and everything made from it (tokenizations, and what was made from those).
    pub fn delete_dataset_cascade(&self, name: &str) -> Result<()> {
        self.remove_owned(self.catalog().delete_dataset(name, true)?)
    }

    /// Deletes any artifact (by id), refusing one that others were made from unless `cascade`.
    pub fn delete_artifact(&self, artifact: &impl Artifact, cascade: bool) -> Result<()> {
        let owned = self
            .catalog()
            .with_write_tx(|tx| self.catalog().delete_artifact_in(tx, artifact.artifact_id(), cascade))?;
        self.remove_owned(owned)
    }

    fn remove_owned(&self, paths: Vec<PathBuf>) -> Result<()> {
        let owned = self.root().join(ARTIFACTS_DIR);
        for path in paths {
            // Only what saekit wrote is saekit's to delete.
            if path.starts_with(&owned) {
                remove_artifact(&path)?;
            }
        }
        Ok(())
    }

    /// What `artifact` was made from and what was made from it, as a table and a small graph.
    pub fn lineage(&self, artifact: &impl Artifact) -> Result<Lineage> {
        Lineage::of(self.catalog(), artifact.artifact_id())
    }
}

/// A request to register local files as dataset `name`: by reference, or copied into the workspace as
/// Parquet (`import`). Run it with [`Workspace::make`], [`Workspace::make_job`] or
/// [`Workspace::make_with`] (or the shorthands `add_dataset`, `import_dataset` and their `_job` forms).
#[derive(Debug, Clone)]
pub struct AddDataset {
    pub name: String,
    pub source: Source,
    pub import: bool,
}

/// What an add or import was asked for: the artifact's parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AddParams {
    /// Where the data comes from: `local`.
    pub origin: String,
    /// `add` (by reference) or `import` (copied in).
    pub mode: String,
    /// The source as given.
    pub source: SourceSpec,
}

impl AddDataset {
    pub fn by_reference(name: &str, source: &Source) -> AddDataset {
        AddDataset { name: name.to_string(), source: source.clone(), import: false }
    }

    pub fn import(name: &str, source: &Source) -> AddDataset {
        AddDataset { name: name.to_string(), source: source.clone(), import: true }
    }
}

impl Request for AddDataset {
    type Output = Dataset;

    fn label(&self) -> String {
        format!("{} {}", if self.import { "import" } else { "add" }, self.name)
    }

    fn run(&self, ws: &Workspace, ctx: &JobContext) -> Result<Dataset> {
        check_name(&self.name)?;
        let source = &self.source;
        let params = AddParams {
            origin: "local".into(),
            mode: if self.import { "import" } else { "add" }.into(),
            source: source.spec().clone(),
        };
        let plan = ArtifactPlan {
            kind: DATASET_KIND,
            name: self.name.clone(),
            working: if self.import { DatasetStatus::Importing } else { DatasetStatus::Adding },
            params: serde_json::to_value(&params).unwrap_or_default(),
            parents: Vec::new(),
            dir: self.import.then_some("datasets"),
            if_ready: IfReady::Refuse,
        };
        let produced = ws.produce(plan, ctx, |dir, ctx| {
            let files: Vec<String> = source.files().iter().map(|f| f.to_string_lossy().into_owned()).collect();
            // First, so the last phase a finished job shows is the one that counts its bytes.
            let fingerprint = fingerprint(source, ctx)?;
            let Some(dir) = dir else {
                let (schema, stats) = scan(source, ctx)?;
                return Ok(DatasetRecord {
                    source: "local".into(),
                    repo_id: None,
                    spec: serde_json::to_value(source.spec()).unwrap_or_default(),
                    paths: files,
                    metadata: dataset_metadata(source, &schema, &stats),
                    num_rows: Some(stats.documents),
                    num_bytes: Some(source.total_bytes()),
                    fingerprint: Some(fingerprint),
                });
            };
            ctx.phase("importing", "bytes", Some(source.total_bytes()));
            let schema = source.schema()?;
            let (stats, written) = write_parquet_shards(source, dir.path(), ctx)?;
            let num_bytes = written.iter().filter_map(|f| std::fs::metadata(f).ok()).map(|m| m.len()).sum();
            // Relative to the workspace root, so the workspace can move; see Dataset::source.
            let relative = dir.final_path().strip_prefix(ws.root()).unwrap_or(dir.final_path()).to_path_buf();
            let paths: Vec<String> = written
                .iter()
                .map(|f| relative.join(f.file_name().unwrap_or_default()).to_string_lossy().into_owned())
                .collect();
            let spec = SourceSpec {
                paths: paths.clone(),
                format: Some(Format::Parquet),
                text: TextField::Column("text".into()),
                ..source.spec().clone()
            };
            let mut metadata = dataset_metadata(source, &schema, &stats);
            metadata["imported_from"] = json!(files);
            Ok(DatasetRecord {
                source: "local".into(),
                repo_id: None,
                spec: serde_json::to_value(&spec).unwrap_or_default(),
                paths,
                metadata,
                num_rows: Some(stats.documents),
                num_bytes: Some(num_bytes),
                fingerprint: Some(fingerprint),
            })
        })?;
        ws.dataset_by_id(produced.id())
    }
}

/// Reads a source once for its schema and statistics, counting bytes read in a `reading` phase.
pub(crate) fn scan(source: &Source, ctx: &JobContext) -> Result<(SchemaView, DatasetStats)> {
    ctx.phase("reading", "bytes", Some(source.total_bytes()));
    let schema = source.schema()?;
    let stats = DatasetStats::compute_with(source.documents()?, |read| {
        ctx.set_done(read.bytes_read);
        !ctx.is_cancelled()
    })?;
    Ok((schema, stats))
}

/// Sizes and modification times of a source's files, without their hash.
fn file_stamps(source: &Source) -> Result<Vec<(String, u64, i128)>> {
    source
        .files()
        .iter()
        .map(|f| {
            let meta = std::fs::metadata(f).map_err(|e| Error::io(f, e))?;
            let mtime = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_nanos() as i128);
            Ok((f.to_string_lossy().into_owned(), meta.len(), mtime))
        })
        .collect()
}

/// A source's [`Fingerprint`]: every file's size and modification time, and sha256 over their bytes.
fn fingerprint(source: &Source, ctx: &JobContext) -> Result<Fingerprint> {
    use std::io::Read;
    let files = file_stamps(source)?;
    ctx.phase("fingerprinting", "bytes", Some(files.iter().map(|f| f.1).sum()));
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    for (path, _, _) in &files {
        let mut file = std::fs::File::open(path).map_err(|e| Error::io(Path::new(path), e))?;
        loop {
            let n = file.read(&mut buf).map_err(|e| Error::io(Path::new(path), e))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            ctx.advance(n as u64);
        }
        ctx.check()?;
    }
    let sha256 = hasher.finalize().iter().map(|b| format!("{b:02x}")).collect();
    Ok(Fingerprint { files, sha256 })
}

fn default_root() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os(WORKSPACE_ENV).filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    let home = std::env::var_os("HOME").ok_or_else(|| {
        Error::InvalidArgument(format!("neither ${WORKSPACE_ENV} nor $HOME is set; open a workspace by path"))
    })?;
    Ok(PathBuf::from(home).join(".saekit"))
}

/// Dataset names: letters, digits, `-_./`, not digits only (those are ids).
pub(crate) fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 200
        && !name.chars().all(|c| c.is_ascii_digit())
        && name.chars().all(|c| c.is_alphanumeric() || "-_./".contains(c));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "dataset name {name:?}: use letters, digits, `-`, `_`, `.` and `/` (not digits only: those are ids)"
        )))
    }
}

fn dataset_metadata(source: &Source, schema: &SchemaView, stats: &DatasetStats) -> serde_json::Value {
    json!({
        "format": source.format().as_str(),
        "files": source.files().len(),
        "schema": schema,
        "stats": stats,
        "saekit_version": crate::VERSION,
    })
}

/// Writes a source's documents as zstd Parquet files of about [`ROWS_PER_SHARD`] rows in `dir`,
/// computing statistics in the same pass.
fn write_parquet_shards(source: &Source, dir: &Path, ctx: &JobContext) -> Result<(DatasetStats, Vec<PathBuf>)> {
    let mut documents = source.documents()?;
    let counters = documents.counters();
    let schema = documents.schema();
    let mut stats = StatsAccumulator::new(&schema);
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).map_err(|e| Error::format(dir, e))?))
        .build();
    let mut files = Vec::new();
    let mut writer: Option<(ArrowWriter<std::fs::File>, usize)> = None;
    for batch in documents.by_ref() {
        let batch = batch?;
        ctx.check()?;
        ctx.set_done(counters.bytes.load(std::sync::atomic::Ordering::Relaxed));
        stats.add(&batch)?;
        if writer.is_none() {
            let path = dir.join(format!("part-{:05}.parquet", files.len()));
            let file = std::fs::File::create(&path).map_err(|e| Error::io(&path, e))?;
            let w =
                ArrowWriter::try_new(file, schema.clone(), Some(props.clone())).map_err(|e| Error::format(&path, e))?;
            files.push(path);
            writer = Some((w, 0));
        }
        if let Some((w, rows)) = writer.as_mut() {
            let path = files.last().cloned().unwrap_or_default();
            w.write(&batch).map_err(|e| Error::format(&path, e))?;
            *rows += batch.num_rows();
            if *rows >= ROWS_PER_SHARD
                && let Some((w, _)) = writer.take()
            {
                w.close().map_err(|e| Error::format(&path, e))?;
            }
        }
    }
    if let Some((w, _)) = writer.take() {
        let path = files.last().cloned().unwrap_or_default();
        w.close().map_err(|e| Error::format(&path, e))?;
    }
    Ok((stats.finish(documents.report().skipped), files))
}

/// A dataset in the catalog, as it was when read (see [`Dataset::refresh`]), with the workspace it is in.
#[derive(Debug, Clone)]
pub struct Dataset {
    row: DatasetRow,
    ws: Workspace,
}

impl Artifact for Dataset {
    fn artifact_id(&self) -> i64 {
        self.row.id
    }
}

impl Dataset {
    /// The workspace it is in.
    pub fn workspace(&self) -> &Workspace {
        &self.ws
    }

    /// The dataset as the catalog has it now (status, progress, tags).
    pub fn refresh(&self) -> Result<Dataset> {
        self.ws.dataset_by_id(self.row.id)
    }

    /// What it was made from and what was made from it.
    pub fn lineage(&self) -> Result<Lineage> {
        self.ws.lineage(self)
    }

    /// Whether it was registered from `source` (same files, format and text mapping) whose files have
    /// not changed since: same sizes and modification times, or else the same content hash.
    pub fn was_made_from(&self, source: &Source) -> Result<bool> {
        let asked: Option<AddParams> = serde_json::from_value(self.row.params.clone()).ok();
        let Some(asked) = asked else { return Ok(false) };
        if &asked.source != source.spec() {
            return Ok(false);
        }
        let stamps = file_stamps(source)?;
        let Some(recorded) = &self.row.fingerprint else {
            // Registered by saekit before fingerprints (catalog v1): the same files at the same total size.
            return Ok(self.row.num_bytes == Some(stamps.iter().map(|f| f.1).sum()));
        };
        if stamps == recorded.files {
            return Ok(true);
        }
        let sizes = |files: &[(String, u64, i128)]| files.iter().map(|f| (f.0.clone(), f.1)).collect::<Vec<_>>();
        if sizes(&stamps) != sizes(&recorded.files) {
            return Ok(false);
        }
        Ok(fingerprint(source, &JobContext::detached("fingerprint"))?.sha256 == recorded.sha256)
    }

    pub fn name(&self) -> &str {
        &self.row.name
    }

    pub fn id(&self) -> i64 {
        self.row.id
    }

    pub fn status(&self) -> DatasetStatus {
        self.row.status
    }

    /// The catalog row, with every stored field.
    pub fn row(&self) -> &DatasetRow {
        &self.row
    }

    /// Opens the dataset's data for reading.
    pub fn source(&self) -> Result<Source> {
        let mut spec: SourceSpec = serde_json::from_value(self.row.spec.clone()).map_err(|e| {
            Error::InvalidArgument(format!("dataset `{}` has an unreadable source spec: {e}", self.row.name))
        })?;
        // Imported data lives in the workspace (its stored paths are relative to the workspace root):
        // read it from wherever the workspace is now.
        if let Some(dir) = &self.row.artifact_path {
            spec.paths = vec![dir.to_string_lossy().into_owned()];
        }
        Source::from_spec(spec)
    }

    /// Page `page` (from 0) of the dataset's documents, `per_page` to a page.
    pub fn page(&self, page: usize, per_page: usize) -> Result<Sample> {
        let mut sample = self.source()?.page(page, per_page)?;
        sample.total_rows = self.row.num_rows;
        Ok(sample)
    }

    /// The statistics computed when the dataset was added.
    pub fn stats(&self) -> Option<DatasetStats> {
        serde_json::from_value(self.row.metadata.get("stats")?.clone()).ok()
    }

    /// The schema seen when the dataset was added, as (column, type) pairs.
    pub fn columns(&self) -> Vec<(String, String)> {
        let columns =
            self.row.metadata.pointer("/schema/columns").and_then(|c| c.as_array()).cloned().unwrap_or_default();
        columns
            .iter()
            .map(|c| {
                let get = |k: &str| c.get(k).and_then(|v| v.as_str()).unwrap_or_default().to_string();
                (get("name"), get("data_type"))
            })
            .collect()
    }
}

impl Render for Dataset {
    fn bundle(&self) -> MimeBundle {
        let r = &self.row;
        let mut card = Card::new(format!("Dataset {}", r.name))
            .badge(r.status.to_string())
            .fact("id", r.id.to_string())
            .fact(
                "source",
                match &r.repo_id {
                    Some(repo) => format!("{} ({repo})", r.source),
                    None => r.source.clone(),
                },
            )
            .fact("files", files_summary(&r.paths))
            .fact("rows", r.num_rows.map(count).unwrap_or_else(|| "–".into()))
            .fact("size on disk", r.num_bytes.map(crate::display::bytes).unwrap_or_else(|| "–".into()));
        if let Some(format) = r.metadata.get("format").and_then(|f| f.as_str()) {
            let stored =
                if r.artifact_path.is_some() { format!("parquet (imported from {format})") } else { format.into() };
            card = card.fact("format", stored);
        }
        let columns = self.columns();
        if !columns.is_empty() {
            let shown: Vec<String> = columns.iter().map(|(n, t)| format!("{n}: {t}")).collect();
            card = card.fact("columns", shown.join(", "));
        }
        if !r.tags.is_empty() {
            card = card.fact("tags", r.tags.join(", "));
        }
        if let Some(error) = &r.error {
            card = card.fact("error", error.clone());
        }
        if let Some(progress) = &r.progress
            && r.status.is_working()
        {
            card = card.fact("progress", progress.summary());
        }
        card = card.fact("updated", r.updated_at.clone());
        if r.params.as_object().is_some_and(|p| !p.is_empty()) {
            card = card.section(&Table::fields("asked for", &r.params).bundle());
        }
        if let Some(stats) = self.stats() {
            card = card.section(&stats.bundle());
        }
        card.bundle()
    }
}

fn files_summary(paths: &[String]) -> String {
    match paths {
        [] => "none".into(),
        [one] => one.clone(),
        [first, ..] => format!("{} files ({first}, …)", paths.len()),
    }
}

/// A listing of datasets: iterate it (`for d in &ws.datasets()?`), index it by position or name
/// (`list[0]`, `list["austen"]`), or display it as a table.
#[derive(Debug, Clone)]
pub struct DatasetList {
    pub datasets: Vec<Dataset>,
}

impl DatasetList {
    pub fn iter(&self) -> std::slice::Iter<'_, Dataset> {
        self.datasets.iter()
    }

    /// The dataset of that name, if listed.
    pub fn get(&self, name: &str) -> Option<&Dataset> {
        self.datasets.iter().find(|d| d.name() == name)
    }

    pub fn len(&self) -> usize {
        self.datasets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.datasets.is_empty()
    }

    pub fn names(&self) -> Vec<&str> {
        self.datasets.iter().map(|d| d.name()).collect()
    }
}

impl<'a> IntoIterator for &'a DatasetList {
    type Item = &'a Dataset;
    type IntoIter = std::slice::Iter<'a, Dataset>;
    fn into_iter(self) -> Self::IntoIter {
        self.datasets.iter()
    }
}

impl IntoIterator for DatasetList {
    type Item = Dataset;
    type IntoIter = std::vec::IntoIter<Dataset>;
    fn into_iter(self) -> Self::IntoIter {
        self.datasets.into_iter()
    }
}

impl std::ops::Index<usize> for DatasetList {
    type Output = Dataset;
    fn index(&self, index: usize) -> &Dataset {
        &self.datasets[index]
    }
}

impl std::ops::Index<&str> for DatasetList {
    type Output = Dataset;
    /// Panics, naming what is listed, when no dataset has that name.
    fn index(&self, name: &str) -> &Dataset {
        match self.get(name) {
            Some(dataset) => dataset,
            None => panic!("no dataset `{name}` in this list ({})", self.names().join(", ")),
        }
    }
}

impl Render for DatasetList {
    fn bundle(&self) -> MimeBundle {
        let mut table = Table::new(
            format!("{} datasets", self.datasets.len()),
            &["id", "name", "status", "source", "rows", "size", "tags", "updated"],
        );
        for d in &self.datasets {
            let r = &d.row;
            table.row(vec![
                r.id.to_string(),
                r.name.clone(),
                r.status.to_string(),
                r.source.clone(),
                r.num_rows.map(count).unwrap_or_default(),
                r.num_bytes.map(crate::display::bytes).unwrap_or_default(),
                r.tags.join(", "),
                r.updated_at.clone(),
            ]);
        }
        table.bundle()
    }
}
