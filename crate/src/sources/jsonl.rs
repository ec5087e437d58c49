//! JSON Lines: one JSON object per line, optionally gzip/zstd compressed. Lines are checked one by one
//! (so errors name the line) and then decoded into Arrow in batches.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use arrow::array::{AsArray, Int64Array, RecordBatch};
use arrow::datatypes::{DataType, Schema, SchemaRef};
use arrow::error::ArrowError;
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
    let trimmed = text.trim_start_matches('\u{feff}').trim();
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

/// The top-level keys of a JSON object in the order they appear (`serde_json::Value` sorts them).
struct Keys(Vec<String>);

impl<'de> serde::Deserialize<'de> for Keys {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> std::result::Result<Keys, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Keys;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> std::result::Result<Keys, A::Error> {
                let mut keys = Vec::new();
                while let Some(key) = map.next_key::<String>()? {
                    map.next_value::<serde::de::IgnoredAny>()?;
                    keys.push(key);
                }
                Ok(Keys(keys))
            }
        }
        deserializer.deserialize_map(Visitor)
    }
}

/// Infers a schema from the first `rows` records of `path`, columns in order of first appearance.
pub fn infer(path: &Path, opts: &ReadOptions) -> Result<Schema> {
    let mut stream = open_text_stream(path, Arc::new(AtomicU64::new(0)))?;
    let (mut buf, mut line, mut offset) = (Vec::new(), 0u64, 0u64);
    let mut values = Vec::new();
    let (mut order, mut seen) = (Vec::new(), std::collections::HashSet::new());
    while values.len() < opts.infer_rows && read_line(stream.as_mut(), &mut buf, path)? {
        line += 1;
        let checked = check_line(&buf, path, line, offset);
        offset += buf.len() as u64;
        match checked {
            Ok(Some(json)) => {
                let json_error =
                    |e: serde_json::Error| Error::Json { path: path.to_path_buf(), line, message: e.to_string() };
                values.push(serde_json::from_slice::<serde_json::Value>(json).map_err(json_error)?);
                let Keys(keys) = serde_json::from_slice(json).map_err(json_error)?;
                order.extend(keys.into_iter().filter(|k| seen.insert(k.clone())));
            }
            Ok(None) => {}
            Err(e) => opts.bad_record(e)?,
        }
    }
    if values.is_empty() {
        return Err(Error::EmptyFile { path: path.to_path_buf(), expected: "JSON object per line" });
    }
    let inferred = infer_json_schema_from_iterator(values.iter().map(Ok)).map_err(|e| Error::format(path, e))?;
    let fields: Vec<_> = order.iter().filter_map(|k| inferred.field_with_name(k).ok().cloned()).collect();
    if fields.len() != inferred.fields().len() {
        return Ok(inferred);
    }
    Ok(Schema::new(fields))
}

/// The schema the JSON decoder reads into: Int64 columns are read as their text and then parsed by
/// [`parse_ints`], because arrow-json would silently truncate a float such as 2.5 into an Int64 column.
fn decode_schema(schema: &SchemaRef) -> SchemaRef {
    let text = |f: &Arc<arrow::datatypes::Field>| f.as_ref().clone().with_data_type(DataType::Utf8);
    let fields: Vec<_> = schema
        .fields()
        .iter()
        .map(|f| if f.data_type() == &DataType::Int64 { text(f) } else { f.as_ref().clone() })
        .collect();
    Arc::new(Schema::new(fields))
}

/// Turns the Int64 columns read as text back into integers; a value that is not a whole number is an error.
fn parse_ints(batch: RecordBatch, schema: &SchemaRef) -> std::result::Result<RecordBatch, ArrowError> {
    if batch.schema().fields() == schema.fields() {
        return Ok(batch);
    }
    let mut columns = batch.columns().to_vec();
    for (i, field) in schema.fields().iter().enumerate().filter(|(_, f)| f.data_type() == &DataType::Int64) {
        let parse = |v: &str| {
            let whole = |f: f64| (f.fract() == 0.0 && f.abs() < 9.2e18).then_some(f as i64);
            v.parse::<i64>().ok().or_else(|| v.parse::<f64>().ok().and_then(whole)).ok_or_else(|| {
                ArrowError::JsonError(format!("column `{}`: expected an integer, found {v}", field.name()))
            })
        };
        let ints: Int64Array = columns[i]
            .as_string::<i32>()
            .iter()
            .map(|v| v.map(parse).transpose())
            .collect::<std::result::Result<_, _>>()?;
        columns[i] = Arc::new(ints);
    }
    RecordBatch::try_new(schema.clone(), columns)
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
        ReaderBuilder::new(decode_schema(schema))
            .with_batch_size(rows + 1)
            .with_strict_mode(true)
            .with_coerce_primitive(true)
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
        match self.decoder.flush().map_err(|e| Error::format(&self.path, e))? {
            Some(batch) => parse_ints(batch, &self.schema).map_err(|e| Error::format(&self.path, e)),
            None => Ok(RecordBatch::new_empty(self.schema.clone())),
        }
    }

    /// The slow path after a batch failed to decode: decode line by line to find (and name, or skip) the
    /// records that do not fit the schema.
    fn decode_lines(&mut self) -> Result<RecordBatch> {
        let mut good = Vec::new();
        let mut kept = Vec::new();
        for &(line, start, end) in &self.spans {
            let mut decoder = Self::decoder(&self.path, &self.schema, 1)?;
            let decoded = decoder
                .decode(&self.chunk[start..end])
                .and_then(|_| decoder.flush())
                .and_then(|batch| batch.map(|b| parse_ints(b, &self.schema)).transpose());
            match decoded {
                Ok(Some(batch)) => {
                    good.push(batch);
                    kept.push((line, start, end));
                }
                Ok(None) => {}
                Err(e) => self.opts.bad_record(Error::SchemaMismatch {
                    path: self.path.clone(),
                    line,
                    basis: format!(
                        "inferred from the first {} records of each file",
                        crate::error::count(self.opts.infer_rows as u64)
                    ),
                    message: e.to_string().trim_start_matches("Json error: ").to_string(),
                })?,
            }
        }
        self.spans = kept;
        self.decoder = Self::decoder(&self.path, &self.schema, self.opts.batch_rows)?;
        arrow::compute::concat_batches(&self.schema, &good).map_err(|e| Error::format(&self.path, e))
    }
}
