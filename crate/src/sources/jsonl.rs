//! JSON Lines: one JSON object per line, optionally gzip/zstd compressed. Lines are checked one by one
//! (so errors name the line) and then decoded into Arrow in batches.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use arrow::array::RecordBatch;
use arrow::datatypes::{Schema, SchemaRef};
use arrow::json::ReaderBuilder;
use arrow::json::reader::{Decoder, infer_json_schema_from_iterator};

use super::{Locations, RawBatch, ReadOptions};
use crate::error::{Error, Result};
use crate::sources::open::{check_utf8, open_text_stream, read_line};

/// The most bytes of JSON decoded at once, whatever the batch row count.
const MAX_CHUNK_BYTES: usize = 32 << 20;

/// Checks one line: UTF-8, a JSON object, well formed. Returns the trimmed line.
fn check_line<'a>(raw: &'a [u8], path: &Path, line: u64, offset: u64) -> Result<Option<&'a [u8]>> {
    let text = check_utf8(raw, path, || format!("line {}", crate::error::count(line)), offset)?;
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Ok(None);
    }
    let json_error = |message: String| Error::Json { path: path.to_path_buf(), line, message };
    if !trimmed.starts_with('{') {
        let shown: String = trimmed.chars().take(20).collect();
        return Err(json_error(format!("expected a JSON object (`{{...}}`), found `{shown}`")));
    }
    if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(trimmed) {
        let message = e.to_string();
        let message = message.split(" at line ").next().unwrap_or(&message).to_string();
        return Err(json_error(format!("{message} at column {}", e.column())));
    }
    Ok(Some(trimmed.as_bytes()))
}

/// Infers a schema from the first `rows` records of `path`.
pub fn infer(path: &Path, opts: &ReadOptions) -> Result<Schema> {
    let mut stream = open_text_stream(path, Arc::new(AtomicU64::new(0)))?;
    let (mut buf, mut line, mut offset) = (Vec::new(), 0u64, 0u64);
    let mut values = Vec::new();
    while values.len() < opts.infer_rows && read_line(stream.as_mut(), &mut buf, path)? {
        line += 1;
        let checked = check_line(&buf, path, line, offset);
        offset += buf.len() as u64;
        match checked {
            Ok(Some(json)) => values.push(serde_json::from_slice::<serde_json::Value>(json).map_err(|e| {
                Error::Json { path: path.to_path_buf(), line, message: e.to_string() }
            })?),
            Ok(None) => {}
            Err(e) => opts.bad_record(e)?,
        }
    }
    if values.is_empty() {
        return Err(Error::EmptyFile { path: path.to_path_buf(), expected: "JSON object per line" });
    }
    infer_json_schema_from_iterator(values.iter().map(Ok)).map_err(|e| Error::format(path, e))
}

/// Streams the records of one JSONL file as Arrow batches of a given schema.
pub struct JsonlReader {
    path: PathBuf,
    stream: Box<dyn BufRead + Send>,
    schema: SchemaRef,
    opts: ReadOptions,
    decoder: Decoder,
    buf: Vec<u8>,
    chunk: Vec<u8>,
    /// Line number and byte range in `chunk` of each record in it.
    spans: Vec<(u64, usize, usize)>,
    line: u64,
    offset: u64,
    records: u64,
    done: bool,
}

impl JsonlReader {
    pub fn open(path: &Path, schema: SchemaRef, opts: ReadOptions) -> Result<Self> {
        let stream = open_text_stream(path, opts.counters.bytes.clone())?;
        let decoder = Self::decoder(path, &schema, opts.batch_rows)?;
        Ok(JsonlReader {
            path: path.to_path_buf(),
            stream,
            schema,
            opts,
            decoder,
            buf: Vec::new(),
            chunk: Vec::new(),
            spans: Vec::new(),
            line: 0,
            offset: 0,
            records: 0,
            done: false,
        })
    }

    fn decoder(path: &Path, schema: &SchemaRef, rows: usize) -> Result<Decoder> {
        ReaderBuilder::new(schema.clone())
            .with_batch_size(rows + 1)
            .with_strict_mode(true)
            .build_decoder()
            .map_err(|e| Error::format(path, e))
    }

    /// The next batch, or None at the end of the file.
    pub fn next_batch(&mut self) -> Result<Option<RawBatch>> {
        self.chunk.clear();
        self.spans.clear();
        while !self.done && self.spans.len() < self.opts.batch_rows && self.chunk.len() < MAX_CHUNK_BYTES {
            if !read_line(self.stream.as_mut(), &mut self.buf, &self.path)? {
                self.done = true;
                break;
            }
            self.line += 1;
            let checked = check_line(&self.buf, &self.path, self.line, self.offset);
            self.offset += self.buf.len() as u64;
            match checked {
                Ok(Some(json)) => {
                    let start = self.chunk.len();
                    self.chunk.extend_from_slice(json);
                    self.chunk.push(b'\n');
                    self.spans.push((self.line, start, self.chunk.len()));
                }
                Ok(None) => {}
                Err(e) => self.opts.bad_record(e)?,
            }
        }
        if self.spans.is_empty() {
            if self.records == 0 {
                return Err(Error::EmptyFile { path: self.path.clone(), expected: "JSON object per line" });
            }
            return Ok(None);
        }
        self.records += self.spans.len() as u64;
        let batch = match self.decode_chunk() {
            Ok(batch) => batch,
            Err(_) => self.decode_lines()?,
        };
        let lines = self.spans.iter().map(|s| s.0).collect();
        Ok(Some(RawBatch { batch, path: self.path.clone(), locations: Locations::Lines(lines) }))
    }

    fn decode_chunk(&mut self) -> Result<RecordBatch> {
        let consumed = self.decoder.decode(&self.chunk).map_err(|e| Error::format(&self.path, e))?;
        debug_assert_eq!(consumed, self.chunk.len());
        let batch = self.decoder.flush().map_err(|e| Error::format(&self.path, e))?;
        Ok(batch.unwrap_or_else(|| RecordBatch::new_empty(self.schema.clone())))
    }

    /// The slow path after a batch failed to decode: decode line by line to find (and name, or skip) the
    /// records that do not fit the schema.
    fn decode_lines(&mut self) -> Result<RecordBatch> {
        let mut good = Vec::new();
        let mut kept = Vec::new();
        for &(line, start, end) in &self.spans {
            let mut decoder = Self::decoder(&self.path, &self.schema, 1)?;
            let decoded = decoder.decode(&self.chunk[start..end]).and_then(|_| decoder.flush());
            match decoded {
                Ok(Some(batch)) => {
                    good.push(batch);
                    kept.push((line, start, end));
                }
                Ok(None) => {}
                Err(e) => self.opts.bad_record(Error::Json {
                    path: self.path.clone(),
                    line,
                    message: format!(
                        "the record does not fit the schema inferred from the first {} records: {e}",
                        crate::error::count(self.opts.infer_rows as u64)
                    ),
                })?,
            }
        }
        self.spans = kept;
        self.decoder = Self::decoder(&self.path, &self.schema, self.opts.batch_rows)?;
        arrow::compute::concat_batches(&self.schema, &good).map_err(|e| Error::format(&self.path, e))
    }
}
