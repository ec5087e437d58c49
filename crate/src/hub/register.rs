//! A Hub download as a workspace dataset, made through the catalog's lifecycle: the name is claimed
//! first (a second kernel downloading the same name is told at once), the row shows `downloading` with
//! per-file progress while the plan's files are fetched into the HF cache, then the files are registered
//! by reference (or, with a row cap, exactly the first rows are imported), read once for schema and
//! statistics, and committed with where they came from. A cancel or a crash leaves no half-registered
//! dataset, only cache files that the next attempt reuses or resumes.

use std::path::{Path, PathBuf};

use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::RepoKind;
use super::download;
use super::plan::DownloadPlan;
use crate::catalog::{
    ArtifactPlan, DATASET_KIND, Dataset, DatasetRecord, DatasetStatus, IfReady, Request, Workspace, dataset_metadata,
    scan,
};
use crate::error::{Error, Result};
use crate::jobs::{Job, JobContext};
use crate::sources::{Format, Source, TextField};
use crate::stats::DatasetStats;

impl Workspace {
    /// Downloads a plan's files and registers them as dataset `name`; see [`Download`].
    pub fn download_dataset(&self, name: &str, plan: &DownloadPlan) -> Result<Dataset> {
        self.make(Download { name: name.into(), plan: plan.clone() })
    }

    /// [`Workspace::download_dataset`] as a background job: returns at once; progress in bytes fetched
    /// (the file being fetched, its bytes and any retries in the detail), then bytes read. Cancelling
    /// leaves nothing in the catalog and the partial file in the cache, where the next attempt resumes it.
    pub fn download_dataset_job(&self, name: &str, plan: &DownloadPlan) -> Job<Dataset> {
        self.make_job(Download { name: name.into(), plan: plan.clone() })
    }
}

/// A request to fetch a plan's files into the Hub cache (resuming what is partial, skipping what is
/// cached) and register them as dataset `name`, recording the repository, revision, commit, config and
/// splits (never the token). With `max_rows`, the first that many rows are imported into the workspace
/// as Parquet instead. A failed or interrupted dataset of that name is taken over; a ready one is an error.
#[derive(Debug, Clone)]
pub struct Download {
    pub name: String,
    pub plan: DownloadPlan,
}

/// What a download was asked for: the artifact's parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DownloadParams {
    /// Where the data comes from: `hub`.
    pub origin: String,
    /// The Hub's address, without any credentials.
    pub endpoint: String,
    pub repo: String,
    pub kind: RepoKind,
    pub revision: String,
    pub commit: Option<String>,
    pub config: Option<String>,
    pub splits: Vec<String>,
    pub max_rows: Option<u64>,
    pub text: TextField,
}

impl Request for Download {
    type Output = Dataset;

    fn label(&self) -> String {
        format!("download {}", self.name)
    }

    fn run(&self, ws: &Workspace, ctx: &JobContext) -> Result<Dataset> {
        crate::catalog::check_name(&self.name)?;
        let plan = &self.plan;
        let params = DownloadParams {
            origin: "hub".into(),
            endpoint: public_endpoint(plan.repo.hub().endpoint()),
            repo: plan.repo_id.clone(),
            kind: plan.kind,
            revision: plan.revision.clone(),
            commit: plan.commit.clone(),
            config: plan.config.clone(),
            splits: plan.splits.clone(),
            max_rows: plan.max_rows,
            text: plan.text.clone(),
        };
        let artifact = ArtifactPlan {
            kind: DATASET_KIND,
            name: self.name.clone(),
            working: DatasetStatus::Downloading,
            params: serde_json::to_value(&params).unwrap_or_default(),
            parents: Vec::new(),
            dir: plan.max_rows.map(|_| "datasets"),
            if_ready: IfReady::Refuse,
            resumable: false,
        };
        let produced = ws.produce(artifact, ctx, |dir, ctx| {
            let mut rows_so_far = 0u64;
            let paths = download::run_until(plan, ctx, |path| match plan.max_rows {
                Some(cap) => {
                    rows_so_far += count_rows(path)?;
                    Ok(rows_so_far >= cap)
                }
                None => Ok(false),
            })?;
            let hub_source = with_text(Source::open_many(&paths)?, &plan.text);
            let (Some(cap), Some(dir)) = (plan.max_rows, dir) else {
                let (schema, stats) = scan(&hub_source, ctx)?;
                return Ok(DatasetRecord {
                    source: "hub".into(),
                    repo_id: Some(plan.repo_id.clone()),
                    spec: serde_json::to_value(hub_source.spec()).unwrap_or_default(),
                    paths: hub_source.files().iter().map(|f| f.to_string_lossy().into_owned()).collect(),
                    metadata: metadata(&hub_source, plan, &paths, &schema, &stats),
                    num_rows: Some(stats.documents),
                    num_bytes: Some(hub_source.total_bytes()),
                    fingerprint: None,
                });
            };
            ctx.phase("importing", "rows", Some(cap));
            let file = write_first_rows(&hub_source, cap, dir.path(), ctx)?;
            let local = with_text(Source::open_as([&file], Format::Parquet)?, &plan.text);
            let (schema, stats) = scan(&local, ctx)?;
            let mut metadata = metadata(&local, plan, &paths, &schema, &stats);
            metadata["imported_from"] = json!(hub_source.files());
            let relative = dir.committed_paths(ws.root(), std::slice::from_ref(&file)).remove(0);
            let spec = crate::sources::SourceSpec { paths: vec![relative.clone()], ..local.spec().clone() };
            Ok(DatasetRecord {
                source: "hub".into(),
                repo_id: Some(plan.repo_id.clone()),
                spec: serde_json::to_value(&spec).unwrap_or_default(),
                paths: vec![relative],
                metadata,
                num_rows: Some(stats.documents),
                num_bytes: Some(local.total_bytes()),
                fingerprint: None,
            })
        })?;
        ws.dataset_by_id(produced.id())
    }
}

fn with_text(source: Source, text: &TextField) -> Source {
    match text {
        TextField::Column(c) => source.text_column(c.clone()),
        TextField::Template(t) => source.text_template(t.clone()),
    }
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
    let mut metadata = dataset_metadata(source, schema, stats);
    metadata["hub"] = json!({
            "endpoint": public_endpoint(plan.repo.hub().endpoint()),
            "repo": plan.repo_id,
            "kind": plan.kind,
            "revision": plan.revision,
            "commit": plan.commit,
            "config": plan.config,
            "splits": plan.splits,
            "files": fetched,
            "max_rows": plan.max_rows,
    });
    metadata
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
