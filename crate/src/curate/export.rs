//! Writing records: JSONL (`.gz`/`.zst` by the name), CSV (nested values as JSON text), Parquet (snappy,
//! zstd, gzip or none; a row group size; an empty object is written as null, Parquet having no empty
//! structs) and the Hugging Face JSON document (`{"metadata": …, "data":
//! [...]}`, read by `datasets.load_dataset("json", field="data")`). Sharded by examples per shard, with
//! Hugging Face's names (`train-00000-of-00003.jsonl`) and a manifest of the shards with their rows and
//! sha256 (`train.shards.json`). Every file is written to a temporary name and renamed when complete.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::Records;
use crate::error::{Error, Result};
use crate::sources::open::Compression;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum ExportFormat {
    #[default]
    Jsonl,
    Csv,
    Parquet,
    /// One JSON document: `{"metadata": {...}, "data": [records]}`.
    HfJson,
}

impl ExportFormat {
    /// The format a file name says (`.jsonl[.gz|.zst]`, `.csv[...]`, `.parquet`, `.json`).
    pub fn from_path(path: &Path) -> Option<ExportFormat> {
        let name = path.file_name()?.to_string_lossy().to_ascii_lowercase();
        let name = [".gz", ".zst"].iter().find_map(|s| name.strip_suffix(s)).unwrap_or(&name).to_string();
        if name.ends_with(".jsonl") || name.ends_with(".ndjson") {
            Some(ExportFormat::Jsonl)
        } else if name.ends_with(".csv") {
            Some(ExportFormat::Csv)
        } else if name.ends_with(".parquet") {
            Some(ExportFormat::Parquet)
        } else if name.ends_with(".json") {
            Some(ExportFormat::HfJson)
        } else {
            None
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum ParquetCompression {
    #[default]
    Snappy,
    Zstd,
    Gzip,
    None,
}

/// How to write.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExportSpec {
    pub format: ExportFormat,
    pub parquet_compression: ParquetCompression,
    pub row_group_size: usize,
    /// Examples per shard (one file when none).
    pub shard_size: Option<usize>,
}

impl Default for ExportSpec {
    fn default() -> Self {
        ExportSpec {
            format: ExportFormat::Jsonl,
            parquet_compression: ParquetCompression::Snappy,
            row_group_size: 10_000,
            shard_size: None,
        }
    }
}

impl ExportSpec {
    pub fn new(format: ExportFormat) -> ExportSpec {
        ExportSpec { format, ..Default::default() }
    }

    pub fn shard_size(mut self, rows: usize) -> ExportSpec {
        self.shard_size = Some(rows);
        self
    }

    pub fn parquet(mut self, compression: ParquetCompression, row_group_size: usize) -> ExportSpec {
        self.parquet_compression = compression;
        self.row_group_size = row_group_size;
        self
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExportedFile {
    pub path: PathBuf,
    pub rows: u64,
    pub bytes: u64,
    pub sha256: String,
}

/// What was written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExportReport {
    pub format: ExportFormat,
    pub rows: u64,
    pub files: Vec<ExportedFile>,
    /// The shard manifest, when sharded.
    pub manifest: Option<PathBuf>,
}

pub(crate) fn shard_path(path: &Path, i: usize, of: usize) -> PathBuf {
    let name = path.file_name().unwrap_or_default().to_string_lossy().into_owned();
    let (stem, ext) = match name.find('.') {
        Some(dot) => (&name[..dot], &name[dot..]),
        None => (name.as_str(), ""),
    };
    path.with_file_name(format!("{stem}-{i:05}-of-{of:05}{ext}"))
}

/// The sha256 of a file (hex) and its size.
pub(crate) fn sha256_file(path: &Path) -> Result<(String, u64)> {
    let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut hasher = Sha256::new();
    let bytes = std::io::copy(&mut file, &mut hasher).map_err(|e| Error::io(path, e))?;
    Ok((hasher.finalize().iter().map(|b| format!("{b:02x}")).collect(), bytes))
}

impl Records {
    /// Writes the records to `path` (or shards beside it) in `spec`'s format.
    pub fn export(&self, path: impl AsRef<Path>, spec: &ExportSpec) -> Result<ExportReport> {
        let path = path.as_ref();
        let all: Vec<usize> = (0..self.len()).collect();
        let chunks: Vec<&[usize]> = match spec.shard_size {
            Some(0) => return Err(Error::InvalidArgument("shard_size must be at least 1".into())),
            Some(size) if !all.is_empty() => all.chunks(size).collect(),
            _ => vec![&all[..]],
        };
        let sharded = spec.shard_size.is_some();
        let mut files = Vec::new();
        for (i, chunk) in chunks.iter().enumerate() {
            let target = if sharded { shard_path(path, i, chunks.len()) } else { path.to_path_buf() };
            write_one(self, chunk, &target, spec)?;
            let (sha256, bytes) = sha256_file(&target)?;
            files.push(ExportedFile { path: target, rows: chunk.len() as u64, bytes, sha256 });
        }
        let manifest = if sharded {
            Some(write_shard_manifest(
                path,
                spec,
                self.len() as u64,
                &self.path.display().to_string(),
                &self.sha256,
                &files,
            )?)
        } else {
            None
        };
        Ok(ExportReport { format: spec.format, rows: self.len() as u64, files, manifest })
    }
}

/// Writes `NAME.shards.json` beside the shards of `path`: the format, rows, source and each shard's rows,
/// bytes and sha256.
pub(crate) fn write_shard_manifest(
    path: &Path,
    spec: &ExportSpec,
    rows: u64,
    source: &str,
    source_sha256: &str,
    files: &[ExportedFile],
) -> Result<PathBuf> {
    let name = path.file_name().unwrap_or_default().to_string_lossy().into_owned();
    let stem = name.split('.').next().unwrap_or("data").to_string();
    let m = path.with_file_name(format!("{stem}.shards.json"));
    let doc = json!({
        "format": spec.format,
        "rows": rows,
        "source": source,
        "source_sha256": source_sha256,
        "shards": files.iter().map(|f| json!({
            "path": f.path.file_name().unwrap_or_default().to_string_lossy(),
            "rows": f.rows, "bytes": f.bytes, "sha256": f.sha256,
        })).collect::<Vec<_>>(),
        "saekit_version": env!("CARGO_PKG_VERSION"),
    });
    crate::files::write_atomically(&m, (serde_json::to_string_pretty(&doc).unwrap_or_default() + "\n").as_bytes())?;
    Ok(m)
}

/// The union of the records' top-level fields, in first-seen order.
pub(crate) fn columns(records: &Records, rows: &[usize]) -> Vec<String> {
    let mut cols: Vec<String> = Vec::new();
    for &i in rows {
        for k in records.rows[i].keys() {
            if !cols.contains(k) {
                cols.push(k.clone());
            }
        }
    }
    cols
}

fn write_one(records: &Records, rows: &[usize], path: &Path, spec: &ExportSpec) -> Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let mut tmp = tempfile::Builder::new().prefix(".saekit-export-").tempfile_in(dir).map_err(|e| Error::io(dir, e))?;
    let io = |e| Error::io(path, e);
    match spec.format {
        ExportFormat::Parquet => write_parquet(records, rows, tmp.as_file_mut(), spec, path)?,
        ExportFormat::HfJson => {
            let data: Vec<&Map<String, Value>> = rows.iter().map(|&i| &records.rows[i]).collect();
            let doc = json!({
                "metadata": {
                    "source": records.path.display().to_string(),
                    "source_sha256": records.sha256,
                    "rows": rows.len(),
                    "saekit_version": env!("CARGO_PKG_VERSION"),
                },
                "data": data,
            });
            let mut w = std::io::BufWriter::new(tmp.as_file_mut());
            serde_json::to_writer(&mut w, &doc).map_err(|e| Error::format(path, e))?;
            w.write_all(b"\n").map_err(io)?;
            w.flush().map_err(io)?;
        }
        ExportFormat::Jsonl | ExportFormat::Csv => {
            let buffered = std::io::BufWriter::with_capacity(1 << 20, tmp.as_file_mut());
            let mut out: Box<dyn Write + '_> = match Compression::from_path(path) {
                Compression::None => Box::new(buffered),
                Compression::Gzip => Box::new(flate2::write::GzEncoder::new(buffered, flate2::Compression::default())),
                Compression::Zstd => {
                    Box::new(zstd::stream::write::Encoder::new(buffered, 3).map_err(io)?.auto_finish())
                }
            };
            if spec.format == ExportFormat::Jsonl {
                for &i in rows {
                    serde_json::to_writer(&mut out, &records.rows[i]).map_err(|e| Error::format(path, e))?;
                    out.write_all(b"\n").map_err(io)?;
                }
            } else {
                let cols = columns(records, rows);
                let mut w = csv::Writer::from_writer(&mut out);
                w.write_record(&cols).map_err(|e| Error::format(path, e))?;
                for &i in rows {
                    w.write_record(csv_cells(&records.rows[i], &cols)).map_err(|e| Error::format(path, e))?;
                }
                w.flush().map_err(io)?;
            }
            out.flush().map_err(io)?;
            drop(out);
        }
    }
    tmp.as_file().sync_all().map_err(io)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o644));
    }
    tmp.persist(path).map_err(|e| Error::io(path, e.error))?;
    Ok(())
}

fn write_parquet(
    records: &Records,
    rows: &[usize],
    file: &mut std::fs::File,
    spec: &ExportSpec,
    path: &Path,
) -> Result<()> {
    let values = parquet_values(records, rows);
    let schema = infer_schema(&values, path)?;
    let props = parquet_properties(spec);
    let mut writer =
        parquet::arrow::ArrowWriter::try_new(file, schema.clone(), Some(props)).map_err(|e| Error::format(path, e))?;
    write_values(&mut writer, schema, &values, spec, path)?;
    writer.close().map_err(|e| Error::format(path, e))?;
    Ok(())
}

/// The rows as JSON values for Arrow, with empty objects as null (Parquet has no empty structs).
pub(crate) fn parquet_values(records: &Records, rows: &[usize]) -> Vec<Value> {
    fn no_empty_objects(v: &mut Value) {
        match v {
            Value::Object(m) if m.is_empty() => *v = Value::Null,
            Value::Object(m) => m.values_mut().for_each(no_empty_objects),
            Value::Array(a) => a.iter_mut().for_each(no_empty_objects),
            _ => {}
        }
    }
    rows.iter()
        .map(|&i| {
            let mut v = Value::Object(records.rows[i].clone());
            if let Value::Object(m) = &mut v {
                m.values_mut().for_each(no_empty_objects);
            }
            v
        })
        .collect()
}

/// The Arrow schema of the values.
pub(crate) fn infer_schema(values: &[Value], path: &Path) -> Result<Arc<arrow::datatypes::Schema>> {
    arrow::json::reader::infer_json_schema_from_iterator(values.iter().map(Ok::<_, arrow::error::ArrowError>))
        .map(Arc::new)
        .map_err(|e| Error::format(path, e))
}

/// The writer properties: compression and row group size.
pub(crate) fn parquet_properties(spec: &ExportSpec) -> parquet::file::properties::WriterProperties {
    use parquet::basic::{Compression as P, GzipLevel, ZstdLevel};
    let compression = match spec.parquet_compression {
        ParquetCompression::Snappy => P::SNAPPY,
        ParquetCompression::Zstd => P::ZSTD(ZstdLevel::default()),
        ParquetCompression::Gzip => P::GZIP(GzipLevel::default()),
        ParquetCompression::None => P::UNCOMPRESSED,
    };
    parquet::file::properties::WriterProperties::builder()
        .set_compression(compression)
        .set_max_row_group_row_count(Some(spec.row_group_size.max(1)))
        .build()
}

/// One CSV row of `row` for `columns`: strings as they are, other values as JSON text, missing as empty.
pub(crate) fn csv_cells<'a>(row: &'a Map<String, Value>, columns: &'a [String]) -> impl Iterator<Item = String> + 'a {
    columns.iter().map(move |c| match row.get(c) {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
    })
}

/// Writes `values` (of `schema`) in row groups of the spec's size.
pub(crate) fn write_values<W: std::io::Write + Send>(
    writer: &mut parquet::arrow::ArrowWriter<W>,
    schema: Arc<arrow::datatypes::Schema>,
    values: &[Value],
    spec: &ExportSpec,
    path: &Path,
) -> Result<()> {
    let mut decoder = arrow::json::ReaderBuilder::new(schema)
        .with_batch_size(spec.row_group_size.max(1))
        .build_decoder()
        .map_err(|e| Error::format(path, e))?;
    for chunk in values.chunks(spec.row_group_size.max(1)) {
        decoder.serialize(chunk).map_err(|e| Error::format(path, e))?;
        if let Some(batch) = decoder.flush().map_err(|e| Error::format(path, e))? {
            writer.write(&batch).map_err(|e| Error::format(path, e))?;
        }
    }
    Ok(())
}
