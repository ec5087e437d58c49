//! The workspace: a folder holding a SQLite catalog of datasets and the artifacts made from them
//! (imported data, token stores, recipes, training runs). Artifacts are written under `tmp/` and enter
//! the catalog only when complete, so a crash at any moment leaves the old state or a clearly marked
//! partial; several processes (notebook kernels) can share one workspace.

mod artifact;
mod db;

use std::path::{Path, PathBuf};

use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use serde_json::json;

pub use artifact::*;
pub use db::*;

use crate::display::{Card, MimeBundle, Render, Table};
use crate::error::{Error, Result, count};
use crate::jobs::{Job, JobContext};
use crate::sources::{Format, Sample, SchemaView, Source, SourceSpec, TextField};
use crate::stats::{DatasetStats, StatsAccumulator};

/// The environment variable that overrides the default workspace folder (`~/.saekit`).
pub const WORKSPACE_ENV: &str = "SAEKIT_HOME";

/// Rows after which an imported dataset's Parquet file is closed (it ends with the batch that crosses it).
const ROWS_PER_SHARD: usize = 100_000;

/// A workspace folder and its catalog.
pub struct Workspace {
    root: PathBuf,
    catalog: Catalog,
}

impl std::fmt::Debug for Workspace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Workspace({})", self.root.display())
    }
}

impl Workspace {
    /// Opens (creating if needed) the workspace at `root`, and clears what crashed writers left behind.
    pub fn open(root: impl AsRef<Path>) -> Result<Workspace> {
        let root = root.as_ref().to_path_buf();
        std::fs::create_dir_all(&root).map_err(|e| Error::io(&root, e))?;
        let root = root.canonicalize().map_err(|e| Error::io(&root, e))?;
        let catalog = Catalog::open(&root.join("catalog.sqlite"))?;
        recover(&root, &catalog)?;
        Ok(Workspace { root, catalog })
    }

    /// Opens the workspace at `$SAEKIT_HOME`, or `~/.saekit`.
    pub fn open_default() -> Result<Workspace> {
        Workspace::open(default_root()?)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The catalog, for lower-level access.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// Registers files as a dataset without copying them: reads them once to check them and compute
    /// statistics and the schema. A dataset of that name left pending or failed by an interrupted
    /// earlier attempt is taken over; a ready one is an error.
    pub fn add_dataset(&self, name: &str, source: &Source) -> Result<Dataset> {
        self.add_dataset_with(name, source, &JobContext::detached("add"))
    }

    /// [`Workspace::add_dataset`] as a background job: returns at once; progress in bytes read.
    pub fn add_dataset_job(&self, name: &str, source: &Source) -> Job<Dataset> {
        let (root, name, source) = (self.root.clone(), name.to_string(), source.clone());
        Job::spawn(&format!("add {name}"), move |ctx| Workspace::open(&root)?.add_dataset_with(&name, &source, ctx))
    }

    /// [`Workspace::add_dataset`], reporting progress to (and stopping when cancelled through) `ctx`.
    pub fn add_dataset_with(&self, name: &str, source: &Source, ctx: &JobContext) -> Result<Dataset> {
        let claim = self.begin_dataset(name, source, "local")?;
        let scanned = (|| -> Result<(SchemaView, DatasetStats)> {
            ctx.phase("reading", "bytes", Some(source.total_bytes()));
            let schema = source.schema()?;
            let stats = DatasetStats::compute_with(source.documents()?, |read| {
                ctx.set_done(read.bytes_read);
                !ctx.is_cancelled()
            })?;
            Ok((schema, stats))
        })();
        self.finish_dataset(&claim, source, scanned)
    }

    /// Copies a source into the workspace as Parquet (a `text` column then the metadata columns), so it
    /// survives the original files moving, and registers it. Statistics come from the same pass.
    pub fn import_dataset(&self, name: &str, source: &Source) -> Result<Dataset> {
        self.import_dataset_with(name, source, &JobContext::detached("import"))
    }

    /// [`Workspace::import_dataset`] as a background job: returns at once; progress in bytes read. A
    /// cancelled import leaves no file and no row behind (or the earlier failed row, if it took one over).
    pub fn import_dataset_job(&self, name: &str, source: &Source) -> Job<Dataset> {
        let (root, name, source) = (self.root.clone(), name.to_string(), source.clone());
        Job::spawn(&format!("import {name}"), move |ctx| {
            Workspace::open(&root)?.import_dataset_with(&name, &source, ctx)
        })
    }

    /// [`Workspace::import_dataset`], reporting progress to (and stopping when cancelled through) `ctx`.
    pub fn import_dataset_with(&self, name: &str, source: &Source, ctx: &JobContext) -> Result<Dataset> {
        let claim = self.begin_dataset(name, source, "local")?;
        let row = &claim.row;
        let written = (|| -> Result<(SchemaView, DatasetStats, ArtifactWriter, Vec<PathBuf>)> {
            ctx.phase("importing", "bytes", Some(source.total_bytes()));
            let schema = source.schema()?;
            let writer = ArtifactWriter::begin(&self.root, "datasets")?;
            let (stats, files) = write_parquet_shards(source, writer.dir(), ctx)?;
            Ok((schema, stats, writer, files))
        })();
        match written {
            Err(e) => self.finish_dataset(&claim, source, Err(e)),
            Ok((schema, stats, writer, files)) => {
                let names: Vec<String> =
                    files.iter().map(|f| f.file_name().unwrap_or_default().to_string_lossy().into_owned()).collect();
                let num_bytes = files.iter().filter_map(|f| std::fs::metadata(f).ok()).map(|m| m.len()).sum();
                let imported = writer.commit(&self.catalog, |tx, dir| {
                    // Relative to the workspace root, so the workspace can move; see Dataset::source.
                    let relative = dir.strip_prefix(&self.root).unwrap_or(dir);
                    let paths: Vec<String> =
                        names.iter().map(|n| relative.join(n).to_string_lossy().into_owned()).collect();
                    let spec = SourceSpec {
                        paths: paths.clone(),
                        format: Some(Format::Parquet),
                        text: TextField::Column("text".into()),
                        ..source.spec().clone()
                    };
                    let mut metadata = dataset_metadata(source, &schema, &stats);
                    metadata["imported_from"] = json!(source.files());
                    let update = DatasetUpdate {
                        status: Some(DatasetStatus::Ready),
                        spec: Some(serde_json::to_value(&spec).unwrap_or_default()),
                        paths: Some(paths),
                        artifact_path: Some(dir.to_path_buf()),
                        metadata: Some(metadata),
                        num_rows: Some(stats.documents),
                        num_bytes: Some(num_bytes),
                        error: Some(None),
                    };
                    self.catalog.update_dataset_in(tx, row.id, &update).map(|_| ())
                });
                match imported {
                    Ok(()) => self.dataset(name),
                    Err(e) => {
                        self.abandon(&claim, &e);
                        Err(e)
                    }
                }
            }
        }
    }

    /// Claims `name` for this process (a lock held until the returned guard drops), then inserts a
    /// pending row, or takes over a pending or failed one left by an attempt that is no longer running.
    fn begin_dataset(&self, name: &str, source: &Source, kind: &str) -> Result<Claim> {
        check_name(name)?;
        let lock = NameLock::acquire(&self.root, "dataset", name)?;
        let spec = serde_json::to_value(source.spec()).unwrap_or_default();
        let paths: Vec<String> = source.files().iter().map(|f| f.to_string_lossy().into_owned()).collect();
        let (row, created) = match self.catalog.dataset(name) {
            Ok(existing) if existing.name == name && existing.status != DatasetStatus::Ready => {
                let update = DatasetUpdate {
                    status: Some(DatasetStatus::Pending),
                    spec: Some(spec),
                    paths: Some(paths),
                    error: Some(None),
                    ..Default::default()
                };
                (self.catalog.update_dataset(existing.id, &update)?, false)
            }
            _ => (
                self.catalog.insert_dataset(&NewDataset {
                    name: name.to_string(),
                    source: kind.to_string(),
                    spec,
                    paths,
                    status: DatasetStatus::Pending,
                    ..Default::default()
                })?,
                true,
            ),
        };
        Ok(Claim { row, created, _lock: lock })
    }

    fn finish_dataset(
        &self,
        claim: &Claim,
        source: &Source,
        scanned: Result<(SchemaView, DatasetStats)>,
    ) -> Result<Dataset> {
        match scanned {
            Ok((schema, stats)) => {
                let update = DatasetUpdate {
                    status: Some(DatasetStatus::Ready),
                    metadata: Some(dataset_metadata(source, &schema, &stats)),
                    num_rows: Some(stats.documents),
                    num_bytes: Some(source.total_bytes()),
                    error: Some(None),
                    ..Default::default()
                };
                Ok(Dataset { row: self.catalog.update_dataset(claim.row.id, &update)? })
            }
            Err(e) => {
                self.abandon(claim, &e);
                Err(e)
            }
        }
    }

    /// After a failed attempt: the row is marked failed with the error, so the catalog says what went
    /// wrong; after a cancelled one, a row this attempt created is removed (and a row it took over goes
    /// back to failed).
    fn abandon(&self, claim: &Claim, error: &Error) {
        if matches!(error, Error::Cancelled) && claim.created {
            let _ = self.catalog.delete_dataset(&claim.row.id.to_string());
            return;
        }
        let update = DatasetUpdate {
            status: Some(DatasetStatus::Failed),
            error: Some(Some(error.to_string())),
            ..Default::default()
        };
        let _ = self.catalog.update_dataset(claim.row.id, &update);
    }

    /// A dataset by name (or id).
    pub fn dataset(&self, name_or_id: &str) -> Result<Dataset> {
        Ok(Dataset { row: self.catalog.dataset(name_or_id)? })
    }

    /// Every dataset in the catalog.
    pub fn datasets(&self) -> Result<DatasetList> {
        self.find(&DatasetFilter::default())
    }

    /// The datasets matching a filter (by name, source, status, tag).
    pub fn find(&self, filter: &DatasetFilter) -> Result<DatasetList> {
        let rows = self.catalog.list_datasets(filter)?;
        Ok(DatasetList { datasets: rows.into_iter().map(|row| Dataset { row }).collect() })
    }

    /// Sets a dataset's tags.
    pub fn tag(&self, name: &str, tags: &[&str]) -> Result<Dataset> {
        let row = self.catalog.dataset(name)?;
        let tags: Vec<String> = tags.iter().map(|t| t.to_string()).collect();
        self.catalog.set_tags(row.id, &tags)?;
        self.dataset(name)
    }

    /// Deletes a dataset, its tokenizations, and every artifact file they own. Files registered by
    /// reference (not imported) are left alone.
    pub fn delete_dataset(&self, name: &str) -> Result<()> {
        let owned = self.root.join(ARTIFACTS_DIR);
        for path in self.catalog.delete_dataset(name)? {
            // Only what saekit wrote is saekit's to delete.
            if path.starts_with(&owned) {
                remove_artifact(&path)?;
            }
        }
        Ok(())
    }

    /// The tokenizations of a dataset, newest first.
    pub fn tokenizations(&self, name: &str) -> Result<Vec<TokenizationRow>> {
        let row = self.catalog.dataset(name)?;
        self.catalog.tokenizations(row.id)
    }
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

/// A dataset in the catalog.
#[derive(Debug, Clone)]
pub struct Dataset {
    row: DatasetRow,
}

impl Dataset {
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
        card = card.fact("updated", r.updated_at.clone());
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

/// A listing of datasets.
#[derive(Debug, Clone)]
pub struct DatasetList {
    pub datasets: Vec<Dataset>,
}

impl DatasetList {
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

/// An exclusive claim on a catalog name, held by one process while it writes the entry: a locked file
/// under `locks/`, released when dropped or when the process dies.
struct NameLock {
    file: std::fs::File,
}

impl NameLock {
    fn acquire(root: &Path, kind: &str, name: &str) -> Result<NameLock> {
        let dir = root.join("locks");
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        // Names may hold `/`: keep the readable characters and add a hash against collisions.
        let readable: String = name.chars().map(|c| if c.is_alphanumeric() || c == '-' { c } else { '_' }).collect();
        let hash = name.bytes().fold(0xcbf29ce484222325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100000001b3));
        let path = dir.join(format!("{kind}-{}-{hash:016x}.lock", readable.chars().take(80).collect::<String>()));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        // A child process forked by another thread can briefly share our lock's open file (until it
        // execs), so a lock just released may look held for a moment: retry a little before saying busy.
        let deadline = std::time::Instant::now() + std::time::Duration::from_millis(500);
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(NameLock { file }),
                Err(std::fs::TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                Err(std::fs::TryLockError::WouldBlock) => return Err(Error::Busy { what: format!("{kind} `{name}`") }),
                Err(std::fs::TryLockError::Error(e)) => return Err(Error::io(&path, e)),
            }
        }
    }
}

impl Drop for NameLock {
    fn drop(&mut self) {
        // Unlock explicitly: closing our descriptor would not release a lock that a forked child still shares.
        let _ = self.file.unlock();
    }
}

/// A dataset row this process is writing: the row, whether this attempt created it, and the name lock.
struct Claim {
    row: DatasetRow,
    created: bool,
    _lock: NameLock,
}
