//! Parquet files: any row-group layout, nested columns passed through as Arrow types. Row groups are read
//! one at a time so memory stays bounded and errors can say where they happened.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use arrow::datatypes::{Schema, SchemaRef};
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder,
};

use super::schema::conform;
use super::{Locations, RawBatch, ReadOptions};
use crate::error::{Error, Result, count};

/// Checks the `PAR1` magic at both ends, so a truncated or non-Parquet file gets a plain answer.
fn check_magic(path: &Path, file: &mut File) -> Result<()> {
    let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    let not_parquet = |reason: String| Error::NotParquet { path: path.to_path_buf(), reason };
    if len == 0 {
        return Err(Error::EmptyFile { path: path.to_path_buf(), expected: "row" });
    }
    if len < 12 {
        return Err(not_parquet(format!("only {len} bytes long; a Parquet file has at least 12")));
    }
    let mut head = [0u8; 4];
    let mut tail = [0u8; 4];
    let io = |e| Error::io(path, e);
    file.read_exact(&mut head).map_err(io)?;
    file.seek(SeekFrom::End(-4)).map_err(io)?;
    file.read_exact(&mut tail).map_err(io)?;
    file.seek(SeekFrom::Start(0)).map_err(io)?;
    if &head != b"PAR1" {
        return Err(not_parquet("it does not start with the `PAR1` magic bytes".into()));
    }
    if &tail != b"PAR1" {
        return Err(not_parquet(
            "it does not end with the `PAR1` magic bytes: truncated, or still being written".into(),
        ));
    }
    Ok(())
}

fn load_metadata(path: &Path) -> Result<ArrowReaderMetadata> {
    let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
    check_magic(path, &mut file)?;
    ArrowReaderMetadata::load(&file, ArrowReaderOptions::default())
        .map_err(|e| Error::NotParquet { path: path.to_path_buf(), reason: e.to_string() })
}

/// The Arrow schema stored in a Parquet file's footer.
pub fn infer(path: &Path) -> Result<Schema> {
    Ok(load_metadata(path)?.schema().as_ref().clone())
}

/// Streams one Parquet file, row group by row group.
pub struct ParquetReader {
    path: PathBuf,
    schema: SchemaRef,
    opts: ReadOptions,
    metadata: ArrowReaderMetadata,
    row_groups: Vec<(usize, u64)>,
    next_group: usize,
    current: Option<(ParquetRecordBatchReader, usize)>,
    row: u64,
}

impl ParquetReader {
    pub fn open(path: &Path, schema: SchemaRef, opts: ReadOptions) -> Result<Self> {
        let metadata = load_metadata(path)?;
        let meta = metadata.metadata().clone();
        let row_groups = meta.row_groups().iter().map(|g| g.compressed_size().max(0) as u64).enumerate().collect();
        if meta.file_metadata().num_rows() == 0 {
            return Err(Error::EmptyFile { path: path.to_path_buf(), expected: "row" });
        }
        let path = path.to_path_buf();
        Ok(ParquetReader { path, schema, opts, metadata, row_groups, next_group: 0, current: None, row: 0 })
    }

    pub fn next_batch(&mut self) -> Result<Option<RawBatch>> {
        loop {
            if self.current.is_none() {
                let Some(&(group, size)) = self.row_groups.get(self.next_group) else {
                    return Ok(None);
                };
                self.next_group += 1;
                let file = File::open(&self.path).map_err(|e| Error::io(&self.path, e))?;
                let reader = ParquetRecordBatchReaderBuilder::new_with_metadata(file, self.metadata.clone())
                    .with_row_groups(vec![group])
                    .with_batch_size(self.opts.batch_rows)
                    .build()
                    .map_err(|e| Error::format(&self.path, e))?;
                self.opts.counters.bytes.fetch_add(size, Ordering::Relaxed);
                self.current = Some((reader, group));
            }
            let Some((reader, group)) = self.current.as_mut() else { continue };
            match reader.next() {
                None => self.current = None,
                Some(Err(e)) => {
                    return Err(Error::Format {
                        path: self.path.clone(),
                        message: format!("row group {group} (after row {}): {e}", count(self.row)),
                    });
                }
                Some(Ok(batch)) => {
                    let first_row = self.row;
                    self.row += batch.num_rows() as u64;
                    let batch = conform(batch, &self.schema, &self.path)?;
                    return Ok(Some(RawBatch {
                        batch,
                        path: self.path.clone(),
                        locations: Locations::Rows(first_row),
                    }));
                }
            }
        }
    }
}
