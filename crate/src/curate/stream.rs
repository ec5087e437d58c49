//! Streamed conversion: a file read in batches of records, each batch through the preprocessing
//! [`Chain`] (whose deduplicators remember every batch before it), written out as it comes. Memory is one
//! batch plus what dedup remembers, whatever the file's size. CSV output takes its columns, and Parquet
//! output its schema, from the first batch kept (fields first seen later are left out; say so with a larger batch); shards get their
//! final names (`-00000-of-0000K`) once the count is known.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use serde_json::{Map, Value, json};

use super::export::{ExportFormat, ExportReport, ExportSpec, ExportedFile, sha256_file};
use super::preprocess::{Chain, CurateStep, StepReport};
use super::{ReadSpec, Records, format_of, map_row};
use crate::error::{Error, Result};
use crate::sources::Compression;
use crate::sources::open::{open_text_stream, read_line};

/// Batches of records from a file, in order.
pub struct RecordBatches {
    path: PathBuf,
    spec: ReadSpec,
    rows: usize,
    inner: Inner,
}

enum Inner {
    Jsonl { reader: Box<dyn BufRead + Send>, line: u64, buf: Vec<u8> },
    Csv { reader: csv::Reader<Box<dyn BufRead + Send>>, header: Vec<String> },
    Parquet { reader: parquet::arrow::arrow_reader::ParquetRecordBatchReader, row: u64 },
}

impl RecordBatches {
    /// Opens `path` to read it `rows` records at a time.
    pub fn open(path: impl AsRef<Path>, spec: &ReadSpec, rows: usize) -> Result<RecordBatches> {
        let path = path.as_ref().to_path_buf();
        let counter = Arc::new(AtomicU64::new(0));
        let inner = match format_of(&path)? {
            "jsonl" => Inner::Jsonl { reader: open_text_stream(&path, counter)?, line: 0, buf: Vec::new() },
            "csv" => {
                let stream = open_text_stream(&path, counter)?;
                let mut reader = csv::ReaderBuilder::new().has_headers(spec.columns.is_none()).from_reader(stream);
                let header = match &spec.columns {
                    Some(c) => c.clone(),
                    None => reader
                        .headers()
                        .map_err(|e| Error::Csv { path: path.clone(), line: 1, message: e.to_string() })?
                        .iter()
                        .map(str::to_string)
                        .collect(),
                };
                Inner::Csv { reader, header }
            }
            _ => {
                let file = std::fs::File::open(&path).map_err(|e| Error::io(&path, e))?;
                let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
                    .and_then(|b| b.with_batch_size(rows.max(1)).build())
                    .map_err(|e| Error::NotParquet { path: path.clone(), reason: e.to_string() })?;
                Inner::Parquet { reader, row: 0 }
            }
        };
        Ok(RecordBatches { path, spec: spec.clone(), rows: rows.max(1), inner })
    }

    fn next_batch(&mut self) -> Result<Option<Records>> {
        let (mut rows, mut lines) = (Vec::new(), Vec::new());
        let format = match &mut self.inner {
            Inner::Jsonl { reader, line, buf } => {
                while rows.len() < self.rows && read_line(reader.as_mut(), buf, &self.path)? {
                    *line += 1;
                    let text = String::from_utf8_lossy(buf);
                    if text.trim().is_empty() {
                        continue;
                    }
                    let v: Value = serde_json::from_str(text.trim()).map_err(|e| Error::Json {
                        path: self.path.clone(),
                        line: *line,
                        message: format!("column {}: {e}", e.column()),
                    })?;
                    let Value::Object(m) = v else {
                        return Err(Error::Json {
                            path: self.path.clone(),
                            line: *line,
                            message: format!(
                                "expected a JSON object (one example per line), found {}",
                                crate::sources::lines::kind(&v)
                            ),
                        });
                    };
                    rows.push(m);
                    lines.push(*line);
                }
                "jsonl"
            }
            Inner::Csv { reader, header } => {
                let mut record = csv::StringRecord::new();
                while rows.len() < self.rows {
                    let more = reader.read_record(&mut record).map_err(|e| {
                        let line = e.position().map_or(0, |p| p.line());
                        Error::Csv { path: self.path.clone(), line, message: e.to_string() }
                    })?;
                    if !more {
                        break;
                    }
                    let line = record.position().map_or(0, |p| p.line());
                    if record.len() != header.len() {
                        return Err(Error::CsvFieldCount {
                            path: self.path.clone(),
                            line,
                            record: record.position().map_or(0, |p| p.record()),
                            expected: header.len() as u64,
                            found: record.len() as u64,
                        });
                    }
                    rows.push(
                        header.iter().zip(record.iter()).map(|(k, v)| (k.clone(), Value::String(v.into()))).collect(),
                    );
                    lines.push(line);
                }
                "csv"
            }
            Inner::Parquet { reader, row } => {
                if let Some(batch) = reader.next() {
                    let batch = batch.map_err(|e| Error::format(&self.path, e))?;
                    let mut w = arrow::json::ArrayWriter::new(Vec::new());
                    w.write(&batch).map_err(|e| Error::format(&self.path, e))?;
                    w.finish().map_err(|e| Error::format(&self.path, e))?;
                    let bytes = w.into_inner();
                    if !bytes.is_empty() {
                        let values: Vec<Map<String, Value>> =
                            serde_json::from_slice(&bytes).map_err(|e| Error::format(&self.path, e))?;
                        for v in values {
                            rows.push(v);
                            lines.push(*row);
                            *row += 1;
                        }
                    }
                }
                "parquet"
            }
        };
        if rows.is_empty() {
            return Ok(None);
        }
        if !self.spec.mapping.is_empty() {
            for row in &mut rows {
                *row = map_row(std::mem::take(row), &self.spec);
            }
        }
        Ok(Some(Records { path: self.path.clone(), format: format.into(), rows, lines, sha256: String::new() }))
    }
}

impl Iterator for RecordBatches {
    type Item = Result<Records>;

    fn next(&mut self) -> Option<Result<Records>> {
        self.next_batch().transpose()
    }
}

/// One output file being written, under a temporary name until it is complete.
struct Part {
    tmp: tempfile::NamedTempFile,
    rows: u64,
    writer: Writer,
}

enum Writer {
    Text(Box<dyn Write>),
    Csv {
        w: csv::Writer<Box<dyn Write>>,
        columns: Vec<String>,
    },
    /// Made at the first batch, when the schema is known.
    Parquet {
        w: Option<parquet::arrow::ArrowWriter<std::fs::File>>,
        file: Option<std::fs::File>,
    },
    Hf {
        w: Box<dyn Write>,
        first: bool,
    },
}

fn text_writer(file: std::fs::File, path: &Path) -> Result<Box<dyn Write>> {
    let buffered = std::io::BufWriter::with_capacity(1 << 20, file);
    Ok(match Compression::from_path(path) {
        Compression::None => Box::new(buffered),
        Compression::Gzip => Box::new(flate2::write::GzEncoder::new(buffered, flate2::Compression::default())),
        Compression::Zstd => {
            Box::new(zstd::stream::write::Encoder::new(buffered, 3).map_err(|e| Error::io(path, e))?.auto_finish())
        }
    })
}

/// Converts `input` to `output` in batches of `batch_rows`, through `steps`; returns what was written and
/// what each step did.
pub fn convert(
    input: impl AsRef<Path>,
    read: &ReadSpec,
    steps: &[CurateStep],
    output: impl AsRef<Path>,
    spec: &ExportSpec,
    batch_rows: usize,
) -> Result<(ExportReport, Vec<StepReport>)> {
    let (input, output) = (input.as_ref(), output.as_ref());
    let mut chain = Chain::new(steps, "input", "output")?;
    let dir = output.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_path_buf();
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let source_sha = super::file_sha256(input)?;
    let io = |e| Error::io(output, e);
    let open_part = || -> Result<Part> {
        let tmp =
            tempfile::Builder::new().prefix(".saekit-export-").tempfile_in(&dir).map_err(|e| Error::io(&dir, e))?;
        let file = tmp.as_file().try_clone().map_err(|e| Error::io(tmp.path(), e))?;
        let writer = match spec.format {
            ExportFormat::Jsonl => Writer::Text(text_writer(file, output)?),
            ExportFormat::Csv => {
                Writer::Csv { w: csv::Writer::from_writer(text_writer(file, output)?), columns: Vec::new() }
            }
            ExportFormat::HfJson => {
                // The metadata goes last, when the rows are counted.
                let mut w = text_writer(file, output)?;
                w.write_all(b"{\"data\":[").map_err(|e| Error::io(output, e))?;
                Writer::Hf { w, first: true }
            }
            ExportFormat::Parquet => Writer::Parquet { w: None, file: Some(file) },
        };
        Ok(Part { tmp, rows: 0, writer })
    };
    let mut parts: Vec<Part> = Vec::new();
    let mut total = 0u64;
    let mut current = open_part()?;
    let mut schema: Option<Arc<arrow::datatypes::Schema>> = None;
    for batch in RecordBatches::open(input, read, batch_rows)? {
        let kept = chain.process(batch?)?;
        let mut start = 0;
        while start < kept.len() {
            let room = spec.shard_size.map_or(usize::MAX, |s| s - current.rows as usize);
            let end = (start + room).min(kept.len());
            let indices: Vec<usize> = (start..end).collect();
            write_rows(&mut current, &kept, &indices, spec, output, &mut schema)?;
            total += indices.len() as u64;
            start = end;
            if spec.shard_size.is_some_and(|s| current.rows as usize >= s) {
                parts.push(std::mem::replace(&mut current, open_part()?));
            }
        }
    }
    if current.rows > 0 || parts.is_empty() {
        parts.push(current);
    }
    let sharded = spec.shard_size.is_some();
    let count = parts.len();
    let mut files = Vec::new();
    for (i, part) in parts.into_iter().enumerate() {
        let Part { tmp, rows, writer } = part;
        match writer {
            Writer::Text(mut w) => w.flush().map_err(io)?,
            Writer::Csv { mut w, .. } => w.flush().map_err(io)?,
            Writer::Hf { mut w, .. } => {
                let meta = json!({
                    "source": input.display().to_string(),
                    "source_sha256": source_sha,
                    "rows": rows,
                    "saekit_version": crate::VERSION,
                });
                writeln!(w, "],\"metadata\":{meta}}}").map_err(io)?;
                w.flush().map_err(io)?;
            }
            Writer::Parquet { w, file } => {
                let w = match (w, file) {
                    (Some(w), _) => w,
                    // Nothing kept: an empty file with the schema known, or an `input` column.
                    (None, Some(file)) => {
                        let s = schema.clone().unwrap_or_else(|| {
                            Arc::new(arrow::datatypes::Schema::new(vec![arrow::datatypes::Field::new(
                                "input",
                                arrow::datatypes::DataType::Utf8,
                                true,
                            )]))
                        });
                        parquet::arrow::ArrowWriter::try_new(file, s, Some(super::export::parquet_properties(spec)))
                            .map_err(|e| Error::format(output, e))?
                    }
                    (None, None) => unreachable!("a Parquet part holds its file until its writer is made"),
                };
                w.close().map_err(|e| Error::format(output, e))?;
            }
        }
        let target = if sharded { super::export::shard_path(output, i, count) } else { output.to_path_buf() };
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o644));
        }
        tmp.persist(&target).map_err(|e| Error::io(&target, e.error))?;
        let (sha256, bytes) = sha256_file(&target)?;
        files.push(ExportedFile { path: target, rows, bytes, sha256 });
    }
    let manifest = if sharded {
        Some(super::export::write_shard_manifest(
            output,
            spec,
            total,
            &input.display().to_string(),
            &source_sha,
            &files,
        )?)
    } else {
        None
    };
    Ok((ExportReport { format: spec.format, rows: total, files, manifest }, chain.reports().to_vec()))
}

fn write_rows(
    part: &mut Part,
    records: &Records,
    rows: &[usize],
    spec: &ExportSpec,
    output: &Path,
    schema: &mut Option<Arc<arrow::datatypes::Schema>>,
) -> Result<()> {
    let io = |e| Error::io(output, e);
    match &mut part.writer {
        Writer::Text(w) => {
            for &i in rows {
                serde_json::to_writer(&mut *w, &records.rows[i]).map_err(|e| Error::format(output, e))?;
                w.write_all(b"\n").map_err(io)?;
            }
        }
        Writer::Hf { w, first } => {
            for &i in rows {
                if !*first {
                    w.write_all(b",").map_err(io)?;
                }
                *first = false;
                serde_json::to_writer(&mut *w, &records.rows[i]).map_err(|e| Error::format(output, e))?;
            }
        }
        Writer::Csv { w, columns } => {
            if columns.is_empty() {
                *columns = super::export::columns(records, rows);
                w.write_record(columns.iter()).map_err(|e| Error::format(output, e))?;
            }
            for &i in rows {
                w.write_record(super::export::csv_cells(&records.rows[i], columns))
                    .map_err(|e| Error::format(output, e))?;
            }
        }
        Writer::Parquet { w, file } => {
            let values = super::export::parquet_values(records, rows);
            if schema.is_none() {
                *schema = Some(super::export::infer_schema(&values, output)?);
            }
            let s = schema.clone().expect("set above");
            if w.is_none() {
                let file = file.take().expect("a Parquet part holds its file until its writer is made");
                let props = super::export::parquet_properties(spec);
                *w = Some(
                    parquet::arrow::ArrowWriter::try_new(file, s.clone(), Some(props))
                        .map_err(|e| Error::format(output, e))?,
                );
            }
            super::export::write_values(w.as_mut().expect("made above"), s, &values, spec, output)?;
        }
    }
    part.rows += rows.len() as u64;
    Ok(())
}
