//! The dataset stage: local files registered as a dataset, by reference (read once for schema, statistics
//! and a fingerprint) or imported (copied into the workspace as Parquet), through the catalog's lifecycle.

use std::path::{Path, PathBuf};

use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::{
    ArtifactPlan, DATASET_KIND, Dataset, DatasetRecord, DatasetStatus, Fingerprint, IfReady, Request, Workspace,
    check_name,
};
use crate::error::{Error, Result};
use crate::jobs::JobContext;
use crate::sources::{Format, SchemaView, Source, SourceSpec, TextField};
use crate::stats::{DatasetStats, StatsAccumulator};

/// Rows after which an imported dataset's Parquet file is closed (it ends with the batch that crosses it).
const ROWS_PER_SHARD: usize = 100_000;

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
            resumable: false,
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
            let paths = dir.committed_paths(ws.root(), &written);
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
pub(super) fn file_stamps(source: &Source) -> Result<Vec<(String, u64, i128)>> {
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
pub(super) fn fingerprint(source: &Source, ctx: &JobContext) -> Result<Fingerprint> {
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

/// What a dataset's metadata records of its data: format, file count, schema, statistics, saekit version.
pub(crate) fn dataset_metadata(source: &Source, schema: &SchemaView, stats: &DatasetStats) -> serde_json::Value {
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
