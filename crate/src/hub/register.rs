//! A Hub download as a workspace dataset: fetch the plan's files into the HF cache, then register them by
//! reference (or, with a row cap, import exactly the first rows), read once for schema and statistics,
//! in one catalog write that also records where they came from. Nothing enters the catalog before that
//! write, so a cancel or a crash at any point leaves no half-registered dataset, only cache files that
//! the next attempt reuses or resumes.

use std::path::{Path, PathBuf};

use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use serde_json::json;

use super::download;
use super::plan::DownloadPlan;
use crate::catalog::{ArtifactWriter, Dataset, DatasetStatus, DatasetUpdate, NewDataset, Workspace};
use crate::error::{Error, Result};
use crate::jobs::{Job, JobContext};
use crate::sources::{Format, Source, TextField};
use crate::stats::DatasetStats;

impl Workspace {
    /// Downloads a plan's files and registers them as dataset `name`; see [`Workspace::download_dataset_with`].
    pub fn download_dataset(&self, name: &str, plan: &DownloadPlan) -> Result<Dataset> {
        self.download_dataset_with(name, plan, &JobContext::detached("download"))
    }

    /// [`Workspace::download_dataset`] as a background job: returns at once; progress in bytes fetched
    /// (the file being fetched, its bytes and any retries in the detail), then bytes read. Cancelling
    /// leaves nothing in the catalog and the partial file in the cache, where the next attempt resumes it.
    pub fn download_dataset_job(&self, name: &str, plan: &DownloadPlan) -> Job<Dataset> {
        let (root, name, plan) = (self.root().to_path_buf(), name.to_string(), plan.clone());
        Job::spawn(&format!("download {name}"), move |ctx| {
            Workspace::open(&root)?.download_dataset_with(&name, &plan, ctx)
        })
    }

    /// Fetches the plan's files into the Hub cache (resuming what is partial, skipping what is cached),
    /// then registers them as dataset `name`, recording the repository, revision, commit, config and
    /// splits (never the token). With `max_rows`, the first that many rows are imported into the
    /// workspace as Parquet instead. A failed or pending dataset of that name is replaced; a ready one is
    /// an error.
    pub fn download_dataset_with(&self, name: &str, plan: &DownloadPlan, ctx: &JobContext) -> Result<Dataset> {
        crate::catalog::check_name(name)?;
        if let Ok(existing) = self.catalog().dataset(name)
            && existing.name == name
            && existing.status == DatasetStatus::Ready
        {
            return Err(Error::AlreadyExists {
                kind: "dataset",
                name: name.into(),
                catalog: self.catalog().path().to_path_buf(),
            });
        }
        let mut rows_so_far = 0u64;
        let paths = download::run_until(plan, ctx, |path| match plan.max_rows {
            Some(cap) => {
                rows_so_far += count_rows(path)?;
                Ok(rows_so_far >= cap)
            }
            None => Ok(false),
        })?;
        let hub_source = with_text(Source::open_many(&paths)?, &plan.text);
        match plan.max_rows {
            None => {
                let (schema, stats) = scan(&hub_source, ctx)?;
                let spec = serde_json::to_value(hub_source.spec()).unwrap_or_default();
                let metadata = metadata(&hub_source, plan, &paths, &schema, &stats);
                let files: Vec<String> = hub_source.files().iter().map(|f| f.to_string_lossy().into_owned()).collect();
                let new = NewDataset {
                    name: name.into(),
                    source: "hub".into(),
                    repo_id: Some(plan.repo_id.clone()),
                    spec,
                    paths: files,
                    status: DatasetStatus::Ready,
                    metadata,
                    num_rows: Some(stats.documents),
                    num_bytes: Some(hub_source.total_bytes()),
                    ..Default::default()
                };
                self.catalog().with_write_tx(|tx| {
                    replace_unready(self, tx, name)?;
                    self.catalog().insert_dataset_in(tx, &new)
                })?;
            }
            Some(cap) => {
                let writer = ArtifactWriter::begin(self.root(), "datasets")?;
                ctx.phase("importing", "rows", Some(cap));
                let file = write_first_rows(&hub_source, cap, writer.dir(), ctx)?;
                let local = with_text(Source::open_as([&file], Format::Parquet)?, &plan.text);
                let (schema, stats) = scan(&local, ctx)?;
                let mut metadata = metadata(&local, plan, &paths, &schema, &stats);
                metadata["imported_from"] = json!(hub_source.files());
                let num_bytes = local.total_bytes();
                let file_name = file.file_name().unwrap_or_default().to_string_lossy().into_owned();
                writer.commit(self.catalog(), |tx, dir| {
                    let relative = dir.strip_prefix(self.root()).unwrap_or(dir).join(&file_name);
                    let relative = relative.to_string_lossy().into_owned();
                    let spec = crate::sources::SourceSpec { paths: vec![relative.clone()], ..local.spec().clone() };
                    replace_unready(self, tx, name)?;
                    let row = self.catalog().insert_dataset_in(
                        tx,
                        &NewDataset {
                            name: name.into(),
                            source: "hub".into(),
                            repo_id: Some(plan.repo_id.clone()),
                            spec: serde_json::to_value(&spec).unwrap_or_default(),
                            paths: vec![relative],
                            status: DatasetStatus::Ready,
                            metadata,
                            num_rows: Some(stats.documents),
                            num_bytes: Some(num_bytes),
                            ..Default::default()
                        },
                    )?;
                    let update = DatasetUpdate { artifact_path: Some(dir.to_path_buf()), ..Default::default() };
                    self.catalog().update_dataset_in(tx, row.id, &update).map(|_| ())
                })?;
            }
        }
        self.dataset(name)
    }
}

/// Removes a pending or failed dataset of this name (left by an interrupted attempt) inside `tx`.
fn replace_unready(ws: &Workspace, tx: &rusqlite::Transaction, name: &str) -> Result<()> {
    if let Ok(existing) = ws.catalog().dataset_in(tx, name)
        && existing.name == name
        && existing.status != DatasetStatus::Ready
    {
        ws.catalog().delete_dataset_in(tx, name)?;
    }
    Ok(())
}

fn with_text(source: Source, text: &TextField) -> Source {
    match text {
        TextField::Column(c) => source.text_column(c.clone()),
        TextField::Template(t) => source.text_template(t.clone()),
    }
}

fn scan(source: &Source, ctx: &JobContext) -> Result<(crate::sources::SchemaView, DatasetStats)> {
    ctx.phase("reading", "bytes", Some(source.total_bytes()));
    let schema = source.schema()?;
    let stats = DatasetStats::compute_with(source.documents()?, |read| {
        ctx.set_done(read.bytes_read);
        !ctx.is_cancelled()
    })?;
    Ok((schema, stats))
}

/// An endpoint as recorded: without any `user:password@` part.
fn public_endpoint(endpoint: &str) -> String {
    match (endpoint.find("://"), endpoint.find('@')) {
        (Some(scheme), Some(at)) if at > scheme => format!("{}{}", &endpoint[..scheme + 3], &endpoint[at + 1..]),
        _ => endpoint.to_string(),
    }
}

fn metadata(
    source: &Source,
    plan: &DownloadPlan,
    paths: &[PathBuf],
    schema: &crate::sources::SchemaView,
    stats: &DatasetStats,
) -> serde_json::Value {
    let fetched: Vec<serde_json::Value> = plan
        .files
        .iter()
        .take(paths.len())
        .map(|f| json!({"path": f.path, "split": f.split, "size": f.size, "sha256": f.sha256}))
        .collect();
    json!({
        "format": source.format().as_str(),
        "files": source.files().len(),
        "schema": schema,
        "stats": stats,
        "saekit_version": crate::VERSION,
        "hub": {
            "endpoint": public_endpoint(plan.repo.hub().endpoint()),
            "repo": plan.repo_id,
            "kind": plan.kind,
            "revision": plan.revision,
            "commit": plan.commit,
            "config": plan.config,
            "splits": plan.splits,
            "files": fetched,
            "max_rows": plan.max_rows,
        },
    })
}

/// Rows in a data file: Parquet from its footer, other formats by reading it.
fn count_rows(path: &Path) -> Result<u64> {
    if Format::from_path(path) == Some(Format::Parquet) {
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        let reader = parquet::file::serialized_reader::SerializedFileReader::new(file)
            .map_err(|e| Error::NotParquet { path: path.to_path_buf(), reason: e.to_string() })?;
        use parquet::file::reader::FileReader;
        return Ok(reader.metadata().file_metadata().num_rows().max(0) as u64);
    }
    let mut rows = 0u64;
    for batch in Source::open(path)?.batches()? {
        rows += batch?.batch.num_rows() as u64;
    }
    Ok(rows)
}

/// Writes the source's first `cap` raw rows (every column) to one zstd Parquet file in `dir`.
fn write_first_rows(source: &Source, cap: u64, dir: &Path, ctx: &JobContext) -> Result<PathBuf> {
    let path = dir.join("part-00000.parquet");
    let mut batches = source.batches()?;
    let schema = batches.schema();
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).map_err(|e| Error::format(dir, e))?))
        .build();
    let file = std::fs::File::create(&path).map_err(|e| Error::io(&path, e))?;
    let mut writer = ArrowWriter::try_new(file, schema, Some(props)).map_err(|e| Error::format(&path, e))?;
    let mut written = 0u64;
    for batch in batches.by_ref() {
        ctx.check()?;
        let batch = batch?.batch;
        let take = (cap - written).min(batch.num_rows() as u64) as usize;
        writer.write(&batch.slice(0, take)).map_err(|e| Error::format(&path, e))?;
        written += take as u64;
        ctx.set_done(written);
        if written >= cap {
            break;
        }
    }
    writer.close().map_err(|e| Error::format(&path, e))?;
    Ok(path)
}
