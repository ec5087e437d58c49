//! Reading a source's files as raw record batches: the batch iterator over each file's reader, the read
//! policy (how many rows to infer from, what to do with bad records), and the counters and report a
//! reader shares with whoever watches it.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use serde::Serialize;

use super::{Format, OnError, csv, jsonl, parquet, text_files};
use crate::error::{Error, Result, count};

/// Counts shared between a reader and whoever watches it.
#[derive(Debug, Default)]
pub struct Counters {
    /// On-disk (compressed) bytes consumed.
    pub bytes: Arc<AtomicU64>,
    records: AtomicU64,
    skipped: AtomicU64,
    errors: Mutex<Vec<String>>,
}

impl Counters {
    /// Records (or files) skipped so far.
    pub fn skipped(&self) -> u64 {
        self.skipped.load(Ordering::Relaxed)
    }
}

/// How many skipped-record messages a report keeps.
const KEPT_ERRORS: usize = 20;

/// Reading options handed to each file reader.
#[derive(Debug, Clone)]
pub struct ReadOptions {
    pub batch_rows: usize,
    pub infer_rows: usize,
    pub on_error: OnError,
    pub counters: Arc<Counters>,
}

impl ReadOptions {
    /// Applies the error policy to a bad record: fail with it, or count it and go on.
    pub fn bad_record(&self, error: Error) -> Result<()> {
        match self.on_error {
            OnError::Fail => Err(error),
            OnError::Skip => {
                self.counters.skipped.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut errors) = self.counters.errors.lock()
                    && errors.len() < KEPT_ERRORS
                {
                    errors.push(error.to_string());
                }
                Ok(())
            }
        }
    }
}

/// What a read has done so far.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ReadReport {
    pub files: usize,
    /// Rows read from the files.
    pub records: u64,
    /// Records (or whole files) skipped under [`OnError::Skip`].
    pub skipped: u64,
    /// The first skipped records' errors.
    pub errors: Vec<String>,
    /// On-disk bytes consumed, and the total of the source's files.
    pub bytes_read: u64,
    pub bytes_total: u64,
}

/// Where the rows of a batch came from, for error messages.
#[derive(Debug, Clone)]
pub enum Locations {
    /// The line of each row (JSONL, CSV).
    Lines(Vec<u64>),
    /// The index in the file of the batch's first row (Parquet).
    Rows(u64),
    /// The file of each row (text files).
    Files(Vec<PathBuf>),
}

impl Locations {
    /// A human description of row `i` of the batch ("line 12,345", "row 7").
    pub fn describe(&self, i: usize) -> String {
        match self {
            Locations::Lines(lines) => format!("line {}", count(lines[i])),
            Locations::Rows(first) => format!("row {}", count(first + i as u64 + 1)),
            Locations::Files(files) => format!("file {}", files[i].display()),
        }
    }
}

/// A batch of rows as read from one file, with where they came from.
#[derive(Debug, Clone)]
pub struct RawBatch {
    pub batch: RecordBatch,
    pub path: PathBuf,
    pub locations: Locations,
}

pub(super) enum FileReader {
    Jsonl(jsonl::JsonlReader),
    Csv(csv::CsvFileReader),
    Parquet(parquet::ParquetReader),
    Text(text_files::TextFilesReader),
}

impl FileReader {
    fn next_batch(&mut self) -> Result<Option<RawBatch>> {
        match self {
            FileReader::Jsonl(r) => r.next_batch(),
            FileReader::Csv(r) => r.next_batch(),
            FileReader::Parquet(r) => r.next_batch(),
            FileReader::Text(r) => r.next_batch(),
        }
    }
}

/// The raw rows of a source, batch by batch, file after file. Stops after the first error.
pub struct Batches {
    pub(super) schema: SchemaRef,
    pub(super) files: Vec<PathBuf>,
    pub(super) format: Format,
    pub(super) opts: ReadOptions,
    pub(super) bytes_total: u64,
    pub(super) next_file: usize,
    pub(super) current: Option<FileReader>,
    pub(super) failed: bool,
}

impl Batches {
    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// What has been read so far.
    pub fn report(&self) -> ReadReport {
        let c = &self.opts.counters;
        ReadReport {
            files: self.files.len(),
            records: c.records.load(Ordering::Relaxed),
            skipped: c.skipped.load(Ordering::Relaxed),
            errors: c.errors.lock().map(|e| e.clone()).unwrap_or_default(),
            bytes_read: c.bytes.load(Ordering::Relaxed),
            bytes_total: self.bytes_total,
        }
    }

    /// The counters this read updates, for watching progress from another thread.
    pub fn counters(&self) -> Arc<Counters> {
        self.opts.counters.clone()
    }

    pub(crate) fn options(&self) -> &ReadOptions {
        &self.opts
    }

    fn open_next(&mut self) -> Result<bool> {
        if self.format == Format::Text {
            if self.next_file > 0 {
                return Ok(false);
            }
            self.next_file = self.files.len();
            self.current =
                Some(FileReader::Text(text_files::TextFilesReader::new(self.files.clone(), self.opts.clone())));
            return Ok(true);
        }
        while let Some(path) = self.files.get(self.next_file) {
            self.next_file += 1;
            let (schema, opts) = (self.schema.clone(), self.opts.clone());
            let opened = match self.format {
                Format::Jsonl => jsonl::JsonlReader::open(path, schema, opts).map(FileReader::Jsonl),
                Format::Csv => csv::CsvFileReader::open(path, schema, opts).map(FileReader::Csv),
                _ => parquet::ParquetReader::open(path, schema, opts).map(FileReader::Parquet),
            };
            match opened {
                Ok(reader) => {
                    self.current = Some(reader);
                    return Ok(true);
                }
                Err(e) => self.opts.bad_record(e)?,
            }
        }
        Ok(false)
    }

    fn next_raw(&mut self) -> Result<Option<RawBatch>> {
        loop {
            if self.current.is_none() && !self.open_next()? {
                return Ok(None);
            }
            let Some(reader) = self.current.as_mut() else { return Ok(None) };
            match reader.next_batch() {
                Ok(Some(raw)) => return Ok(Some(raw)),
                Ok(None) => self.current = None,
                // Bad records were already skipped (or failed) by the reader: what comes out is the file's
                // (empty, corrupt, truncated), so under Skip the rest of the file is skipped.
                Err(e) => {
                    self.current = None;
                    self.opts.bad_record(e)?;
                }
            }
        }
    }
}

impl Iterator for Batches {
    type Item = Result<RawBatch>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        match self.next_raw() {
            Ok(Some(raw)) => {
                self.opts.counters.records.fetch_add(raw.batch.num_rows() as u64, Ordering::Relaxed);
                Some(Ok(raw))
            }
            Ok(None) => None,
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}
