//! Curation: training examples read from JSONL (plain, `.gz`, `.zst`), CSV (with a column list when it
//! has no header) or Parquet into records of the user's shape ([`ReadSpec`]: `input`, `output`, `task`,
//! `metadata`, …), preprocessed ([`preprocess`]: clean, filter, quality, enrich, counted per step),
//! validated ([`validate`]: schema, quality, duplicates, balance, readiness, with
//! thresholds and a self-contained report), split exactly ([`split`]: seeded, stratified, no identical
//! input in two splits) and written ([`export`]: JSONL, CSV, Parquet, the Hugging Face JSON document,
//! sharded with a manifest of hashes). Duplicates use the same steps as mixes ([`crate::steps`]).
//!
//! [`Records`] are held in memory (one JSON object each), as validation and splits need every record at
//! once; conversion streams ([`stream::convert`]: batches through the chain, written as they come).
//!
//! Rooms: this file (records and reading), `preprocess`, `validate`, `split`, `export`, `render`.

pub mod export;
pub mod preprocess;
pub mod render;
pub mod run;
pub mod split;
pub mod stream;
pub mod validate;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub use export::{ExportFormat, ExportReport, ExportSpec, ExportedFile, ParquetCompression};
pub use preprocess::{CurateStep, Normalization, StepReport};
pub use run::{Curate, CurateInput, Curated};
pub use split::{SplitSpec, Splits};
pub use validate::{Check, QualityRule, Thresholds, ValidateSpec, ValidationReport};

use crate::error::{Error, Result};
use crate::sources::lines::{at, read_bytes, scan};
use crate::sources::open::open_text_stream;

/// How to read a file into records.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReadSpec {
    /// CSV without a header line: its columns, in order.
    pub columns: Option<Vec<String>>,
    /// (field of the record, dotted path in the file's row): the record's shape. Empty: rows as they are.
    pub mapping: Vec<(String, String)>,
    /// With a mapping: the field that gets every unmapped column as an object (e.g. `metadata`).
    pub rest: Option<String>,
}

impl ReadSpec {
    pub fn new() -> ReadSpec {
        ReadSpec::default()
    }

    /// CSV columns when the file has no header line.
    pub fn columns(mut self, columns: &[&str]) -> ReadSpec {
        self.columns = Some(columns.iter().map(|c| c.to_string()).collect());
        self
    }

    /// The record's `field` is the file's `from` (a dotted path).
    pub fn map(mut self, field: impl Into<String>, from: impl Into<String>) -> ReadSpec {
        self.mapping.push((field.into(), from.into()));
        self
    }

    /// Unmapped columns go under `field` as an object.
    pub fn rest(mut self, field: impl Into<String>) -> ReadSpec {
        self.rest = Some(field.into());
        self
    }
}

/// Examples in memory: one JSON object each, with the line (JSONL, CSV) or row (Parquet) it came from.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Records {
    pub path: PathBuf,
    /// `jsonl`, `csv` or `parquet`.
    pub format: String,
    pub rows: Vec<Map<String, Value>>,
    /// Where each record is in its file: the 1-based line for JSONL and CSV, the 0-based row for Parquet.
    pub lines: Vec<u64>,
    /// sha256 of the file as stored.
    pub sha256: String,
}

/// The format of a path, looking through `.gz`/`.zst`.
pub(crate) fn format_of(path: &Path) -> Result<&'static str> {
    let name = path.file_name().unwrap_or_default().to_string_lossy().to_ascii_lowercase();
    let name = [".gz", ".gzip", ".zst", ".zstd"].iter().find_map(|s| name.strip_suffix(s)).unwrap_or(&name).to_string();
    if name.ends_with(".jsonl") || name.ends_with(".ndjson") || name.ends_with(".json") {
        Ok("jsonl")
    } else if name.ends_with(".csv") {
        Ok("csv")
    } else if name.ends_with(".parquet") {
        Ok("parquet")
    } else {
        Err(Error::Format {
            path: path.to_path_buf(),
            message: "cannot tell the format: expected .jsonl/.json/.ndjson, .csv or .parquet (optionally .gz/.zst)"
                .into(),
        })
    }
}

impl Records {
    /// Reads a file of examples (JSONL, CSV or Parquet; `.gz`/`.zst` for text formats) into records of
    /// `spec`'s shape. Bad lines are errors naming the file and the line.
    pub fn read(path: impl AsRef<Path>, spec: &ReadSpec) -> Result<Records> {
        let path = path.as_ref();
        let format = format_of(path)?;
        let (mut rows, lines, sha256) = match format {
            "jsonl" => read_jsonl(path)?,
            "csv" => read_csv(path, spec.columns.as_deref())?,
            _ => read_parquet(path)?,
        };
        if !spec.mapping.is_empty() {
            for row in &mut rows {
                *row = map_row(std::mem::take(row), spec);
            }
        }
        Ok(Records { path: path.to_path_buf(), format: format.into(), rows, lines, sha256 })
    }

    /// Records made in memory (tests, notebooks), numbered from line 1.
    pub fn from_rows(rows: Vec<Map<String, Value>>) -> Records {
        let lines = (1..=rows.len() as u64).collect();
        Records { path: PathBuf::from("(memory)"), format: "memory".into(), rows, lines, sha256: String::new() }
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Where record `i` is, for messages: `line 12` or `row 11`.
    pub fn location(&self, i: usize) -> String {
        match self.format.as_str() {
            "parquet" => format!("row {}", self.lines[i]),
            "collection" => format!("record {}", self.lines[i]),
            _ => format!("line {}", self.lines[i]),
        }
    }

    /// A field of record `i` as text (strings as they are, other scalars written out, structures as
    /// JSON), or "" when absent.
    pub fn text(&self, i: usize, field: &str) -> String {
        let path: Vec<&str> = field.split('.').collect();
        match at(&Value::Object(self.rows[i].clone()), &path) {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
        }
    }

    /// The records at `indices`, in that order.
    pub fn subset(&self, indices: &[usize]) -> Records {
        Records {
            path: self.path.clone(),
            format: self.format.clone(),
            rows: indices.iter().map(|&i| self.rows[i].clone()).collect(),
            lines: indices.iter().map(|&i| self.lines[i]).collect(),
            sha256: self.sha256.clone(),
        }
    }
}

pub(crate) fn map_row(row: Map<String, Value>, spec: &ReadSpec) -> Map<String, Value> {
    let whole = Value::Object(row);
    let mut out = Map::new();
    let mut used: Vec<&str> = Vec::new();
    for (field, from) in &spec.mapping {
        let path: Vec<&str> = from.split('.').collect();
        used.push(path[0]);
        if let Some(v) = at(&whole, &path) {
            out.insert(field.clone(), v.clone());
        }
    }
    if let (Some(rest), Value::Object(row)) = (&spec.rest, whole) {
        let others: Map<String, Value> = row.into_iter().filter(|(k, _)| !used.contains(&k.as_str())).collect();
        if !others.is_empty() {
            out.insert(rest.clone(), Value::Object(others));
        }
    }
    out
}

type Read = (Vec<Map<String, Value>>, Vec<u64>, String);

fn read_jsonl(path: &Path) -> Result<Read> {
    let (bytes, sha) = read_bytes(path)?;
    let (mut rows, mut lines) = (Vec::new(), Vec::new());
    scan(path, &bytes, |line, _, value| {
        if let Value::Object(m) = value {
            rows.push(m.clone());
            lines.push(line);
        }
        Ok(())
    })?;
    Ok((rows, lines, sha))
}

pub(crate) fn file_sha256(path: &Path) -> Result<String> {
    export::sha256_file(path).map(|(sha, _)| sha)
}

fn read_csv(path: &Path, columns: Option<&[String]>) -> Result<Read> {
    let stream = open_text_stream(path, Arc::new(AtomicU64::new(0)))?;
    let mut reader = csv::ReaderBuilder::new().has_headers(columns.is_none()).flexible(false).from_reader(stream);
    let header: Vec<String> = match columns {
        Some(c) => c.to_vec(),
        None => reader
            .headers()
            .map_err(|e| Error::Csv { path: path.to_path_buf(), line: 1, message: e.to_string() })?
            .iter()
            .map(str::to_string)
            .collect(),
    };
    let (mut rows, mut lines) = (Vec::new(), Vec::new());
    for record in reader.records() {
        let record = record.map_err(|e| {
            let line = e.position().map_or(0, |p| p.line());
            match e.kind() {
                csv::ErrorKind::UnequalLengths { expected_len, len, .. } => Error::CsvFieldCount {
                    path: path.to_path_buf(),
                    line,
                    record: e.position().map_or(0, |p| p.record()),
                    expected: *expected_len,
                    found: *len,
                },
                _ => Error::Csv { path: path.to_path_buf(), line, message: e.to_string() },
            }
        })?;
        if record.len() != header.len() {
            return Err(Error::CsvFieldCount {
                path: path.to_path_buf(),
                line: record.position().map_or(0, |p| p.line()),
                record: record.position().map_or(0, |p| p.record()),
                expected: header.len() as u64,
                found: record.len() as u64,
            });
        }
        let row: Map<String, Value> =
            header.iter().zip(record.iter()).map(|(k, v)| (k.clone(), Value::String(v.to_string()))).collect();
        lines.push(record.position().map_or(0, |p| p.line()));
        rows.push(row);
    }
    Ok((rows, lines, file_sha256(path)?))
}

fn read_parquet(path: &Path) -> Result<Read> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| Error::NotParquet { path: path.to_path_buf(), reason: e.to_string() })?
        .build()
        .map_err(|e| Error::NotParquet { path: path.to_path_buf(), reason: e.to_string() })?;
    let mut rows = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| Error::format(path, e))?;
        let mut writer = arrow::json::ArrayWriter::new(Vec::new());
        writer.write(&batch).map_err(|e| Error::format(path, e))?;
        writer.finish().map_err(|e| Error::format(path, e))?;
        let bytes = writer.into_inner();
        if bytes.is_empty() {
            continue;
        }
        let values: Vec<Map<String, Value>> = serde_json::from_slice(&bytes).map_err(|e| Error::format(path, e))?;
        rows.extend(values);
    }
    let lines = (0..rows.len() as u64).collect();
    Ok((rows, lines, file_sha256(path)?))
}
