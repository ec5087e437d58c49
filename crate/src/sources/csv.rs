//! CSV with a header line: quoted fields, embedded newlines, optional gzip/zstd compression. Column types
//! are inferred from a sample (integer, float, boolean, else text); every error names the line.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use arrow::array::RecordBatch;
use arrow::array::{ArrayBuilder, ArrayRef, BooleanBuilder, Float64Builder, Int64Builder, StringBuilder};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use super::{Locations, RawBatch, ReadOptions};
use crate::error::{Error, Result, count};
use crate::sources::open::{check_utf8, open_text_stream};

type CsvReader = csv::Reader<Box<dyn std::io::BufRead + Send>>;

fn open(path: &Path, counter: Arc<AtomicU64>) -> Result<(CsvReader, Vec<String>)> {
    let stream = open_text_stream(path, counter)?;
    let mut reader = csv::ReaderBuilder::new().has_headers(true).flexible(true).from_reader(stream);
    let header = reader.byte_headers().map_err(|e| csv_error(path, e))?.clone();
    if header.is_empty() || (header.len() == 1 && header[0].is_empty()) {
        return Err(Error::EmptyFile { path: path.to_path_buf(), expected: "header line" });
    }
    let names = header
        .iter()
        .map(|name| check_utf8(name, path, || "line 1 (the header)".into(), 0).map(|s| s.trim().to_string()))
        .collect::<Result<Vec<_>>>()?;
    Ok((reader, names))
}

fn csv_error(path: &Path, e: csv::Error) -> Error {
    let line = e.position().map(|p| p.line()).unwrap_or(0);
    match e.into_kind() {
        csv::ErrorKind::Io(io) => Error::io(path, io),
        other => Error::Csv { path: path.to_path_buf(), line, message: format!("{other:?}") },
    }
}

/// Reads the next record into `record`, checking its field count and UTF-8. Returns Ok(false) at the end.
fn read_record(reader: &mut CsvReader, record: &mut csv::ByteRecord, expected: usize, path: &Path) -> Result<bool> {
    if !reader.read_byte_record(record).map_err(|e| csv_error(path, e))? {
        return Ok(false);
    }
    let pos = record.position().cloned().unwrap_or_else(csv::Position::new);
    if record.len() != expected {
        return Err(Error::CsvFieldCount {
            path: path.to_path_buf(),
            line: pos.line(),
            record: pos.record(),
            expected: expected as u64,
            found: record.len() as u64,
        });
    }
    let mut offset = pos.byte();
    for field in record.iter() {
        check_utf8(field, path, || format!("line {}", count(pos.line())), offset)?;
        offset += field.len() as u64 + 1;
    }
    Ok(true)
}

fn infer_type(values: &[&str]) -> DataType {
    let present = || values.iter().filter(|v| !v.is_empty());
    if present().next().is_none() {
        DataType::Null
    } else if present().all(|v| v.parse::<i64>().is_ok()) {
        DataType::Int64
    } else if present().all(|v| v.parse::<f64>().is_ok()) {
        DataType::Float64
    } else if present().all(|v| parse_bool(v).is_some()) {
        DataType::Boolean
    } else {
        DataType::Utf8
    }
}

fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "true" | "True" | "TRUE" => Some(true),
        "false" | "False" | "FALSE" => Some(false),
        _ => None,
    }
}

/// Gives the columns that were empty in every file's sample ([`DataType::Null`]) the type text.
pub fn empty_columns_as_text(schema: Schema) -> Schema {
    let fields = schema.fields().iter().map(|f| match f.data_type() {
        DataType::Null => f.as_ref().clone().with_data_type(DataType::Utf8),
        _ => f.as_ref().clone(),
    });
    Schema::new(fields.collect::<Vec<_>>())
}

/// Infers the schema of `path` from its header and the first records. A column empty in every sampled record
/// is [`DataType::Null`], to take its type from the other files (see [`empty_columns_as_text`]).
pub fn infer(path: &Path, opts: &ReadOptions) -> Result<Schema> {
    let (mut reader, names) = open(path, Arc::new(AtomicU64::new(0)))?;
    let mut record = csv::ByteRecord::new();
    let mut sample: Vec<csv::ByteRecord> = Vec::new();
    while sample.len() < opts.infer_rows {
        match read_record(&mut reader, &mut record, names.len(), path) {
            Ok(true) => sample.push(record.clone()),
            Ok(false) => break,
            Err(e) => opts.bad_record(e)?,
        }
    }
    if sample.is_empty() {
        return Err(Error::EmptyFile { path: path.to_path_buf(), expected: "record after the header" });
    }
    let fields = names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let values: Vec<&str> = sample.iter().map(|r| std::str::from_utf8(&r[i]).unwrap_or("")).collect();
            Field::new(name, infer_type(&values), true)
        })
        .collect::<Vec<_>>();
    Ok(Schema::new(fields))
}

/// Streams the records of one CSV file as Arrow batches.
pub struct CsvFileReader {
    path: PathBuf,
    reader: CsvReader,
    /// For each file column: its index in `schema`.
    targets: Vec<usize>,
    /// For each schema column: its index in the file, if the file has it.
    sources: Vec<Option<usize>>,
    width: usize,
    schema: SchemaRef,
    opts: ReadOptions,
    record: csv::ByteRecord,
    records: u64,
}

impl CsvFileReader {
    pub fn open(path: &Path, schema: SchemaRef, opts: ReadOptions) -> Result<Self> {
        let (reader, names) = open(path, opts.counters.bytes.clone())?;
        let targets =
            names.iter().map(|n| schema.index_of(n).map_err(|e| Error::format(path, e))).collect::<Result<Vec<_>>>()?;
        let sources = (0..schema.fields().len()).map(|t| targets.iter().position(|&x| x == t)).collect();
        Ok(CsvFileReader {
            sources,
            path: path.to_path_buf(),
            reader,
            width: names.len(),
            targets,
            schema,
            opts,
            record: csv::ByteRecord::new(),
            records: 0,
        })
    }

    pub fn next_batch(&mut self) -> Result<Option<RawBatch>> {
        let mut builders: Vec<Box<dyn ArrayBuilder>> =
            self.schema.fields().iter().map(|f| arrow::array::make_builder(f.data_type(), 1024)).collect();
        let mut lines = Vec::new();
        while lines.len() < self.opts.batch_rows {
            match read_record(&mut self.reader, &mut self.record, self.width, &self.path) {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => {
                    self.opts.bad_record(e)?;
                    continue;
                }
            }
            let line = self.record.position().map(|p| p.line()).unwrap_or(0);
            match self.check_values(line) {
                Ok(()) => {}
                Err(e) => {
                    self.opts.bad_record(e)?;
                    continue;
                }
            }
            for (target, builder) in builders.iter_mut().enumerate() {
                let value = self.sources[target].map(|i| &self.record[i]);
                append(builder.as_mut(), value.map(|v| std::str::from_utf8(v).unwrap_or("")));
            }
            lines.push(line);
        }
        if lines.is_empty() {
            if self.records == 0 {
                return Err(Error::EmptyFile { path: self.path.clone(), expected: "record after the header" });
            }
            return Ok(None);
        }
        self.records += lines.len() as u64;
        let columns: Vec<ArrayRef> = builders.iter_mut().map(|b| b.finish()).collect();
        let batch = RecordBatch::try_new(self.schema.clone(), columns).map_err(|e| Error::format(&self.path, e))?;
        Ok(Some(RawBatch { batch, path: self.path.clone(), locations: Locations::Lines(lines) }))
    }

    /// Checks every value of the current record parses as its column's type.
    fn check_values(&self, line: u64) -> Result<()> {
        for (i, &target) in self.targets.iter().enumerate() {
            let field = self.schema.field(target);
            let value = std::str::from_utf8(&self.record[i]).unwrap_or("");
            if value.is_empty() {
                continue;
            }
            let ok = match field.data_type() {
                DataType::Int64 => value.parse::<i64>().is_ok(),
                DataType::Float64 => value.parse::<f64>().is_ok(),
                DataType::Boolean => parse_bool(value).is_some(),
                _ => true,
            };
            if !ok {
                let expected = match field.data_type() {
                    DataType::Int64 => "an integer",
                    DataType::Float64 => "a number",
                    _ => "true or false",
                };
                return Err(Error::BadValue {
                    path: self.path.clone(),
                    location: format!("line {}", count(line)),
                    column: field.name().clone(),
                    expected: format!(
                        "{expected} (the type inferred from the first {} records)",
                        count(self.opts.infer_rows as u64)
                    ),
                    found: format!("{value:?}"),
                });
            }
        }
        Ok(())
    }
}

/// Appends a checked value (None: the file has no such column) to a builder of the column's type.
fn append(builder: &mut dyn ArrayBuilder, value: Option<&str>) {
    let any = builder.as_any_mut();
    if let Some(b) = any.downcast_mut::<StringBuilder>() {
        b.append_option(value);
    } else if let Some(b) = any.downcast_mut::<Int64Builder>() {
        b.append_option(value.filter(|v| !v.is_empty()).and_then(|v| v.parse().ok()));
    } else if let Some(b) = any.downcast_mut::<Float64Builder>() {
        b.append_option(value.filter(|v| !v.is_empty()).and_then(|v| v.parse().ok()));
    } else if let Some(b) = any.downcast_mut::<BooleanBuilder>() {
        b.append_option(value.and_then(parse_bool));
    }
}
