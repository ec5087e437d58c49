//! Plain-text documents: each `.txt` or `.md` file is one document, with its path kept as metadata.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use arrow::array::{ArrayRef, RecordBatch, StringBuilder, UInt64Builder};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use super::{Locations, RawBatch, ReadOptions};
use crate::error::{Error, Result};
use crate::sources::open::check_utf8;

/// The extensions read as one document per file.
pub const TEXT_EXTENSIONS: &[&str] = &["txt", "md", "markdown"];

/// The schema of a folder of text files: the text, the file's path, its size in bytes.
pub fn schema() -> Schema {
    Schema::new(vec![
        Field::new("text", DataType::Utf8, false),
        Field::new("path", DataType::Utf8, false),
        Field::new("bytes", DataType::UInt64, false),
    ])
}

/// Reads a list of text files as documents, `batch_rows` files at a time.
pub struct TextFilesReader {
    files: Vec<PathBuf>,
    next: usize,
    schema: SchemaRef,
    opts: ReadOptions,
}

impl TextFilesReader {
    pub fn new(files: Vec<PathBuf>, opts: ReadOptions) -> Self {
        TextFilesReader { files, next: 0, schema: Arc::new(schema()), opts }
    }

    pub fn next_batch(&mut self) -> Result<Option<RawBatch>> {
        let mut text = StringBuilder::new();
        let mut paths = StringBuilder::new();
        let mut sizes = UInt64Builder::new();
        let mut kept = Vec::new();
        while kept.len() < self.opts.batch_rows && self.next < self.files.len() {
            let path = &self.files[self.next];
            self.next += 1;
            match read_document(path) {
                Ok(doc) => {
                    self.opts.counters.bytes.fetch_add(doc.len() as u64, Ordering::Relaxed);
                    sizes.append_value(doc.len() as u64);
                    text.append_value(doc);
                    paths.append_value(path.to_string_lossy());
                    kept.push(path.clone());
                }
                Err(e) => self.opts.bad_record(e)?,
            }
        }
        if kept.is_empty() {
            return Ok(None);
        }
        let columns: Vec<ArrayRef> = vec![Arc::new(text.finish()), Arc::new(paths.finish()), Arc::new(sizes.finish())];
        let batch = RecordBatch::try_new(self.schema.clone(), columns).map_err(|e| Error::format(&kept[0], e))?;
        Ok(Some(RawBatch { batch, path: kept[0].clone(), locations: Locations::Files(kept) }))
    }
}

fn read_document(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    if bytes.is_empty() {
        return Err(Error::EmptyFile { path: path.to_path_buf(), expected: "character of text" });
    }
    check_utf8(&bytes, path, || "the file".into(), 0)?;
    Ok(String::from_utf8(bytes).unwrap_or_default())
}
