//! Data sources: local JSONL (plain, `.gz`, `.zst`), CSV, Parquet and folders of `.txt`/`.md` files, read
//! as a stream of Arrow record batches in bounded memory. A [`Source`] is several files (paths, folders or
//! globs) of one format, with a mapping that says where each document's text comes from; everything else
//! is kept as metadata.
//!
//! Rooms: `spec` (what a source is, as data: formats, text mapping, error policy), `resolve` (paths,
//! folders and globs to files), `read` (the batch iterator, read options, counters and report), one
//! module per format (`jsonl`, `csv`, `parquet`, `text_files`, `open` for compression), `documents`
//! (batches to documents with their text), `schema` and `render` (views); this file holds the builder.
//! A source made of sources (a mix) plugs in beside `read`.

mod csv;
mod documents;
mod jsonl;
pub(crate) mod lines;
pub(crate) mod open;
mod parquet;
mod read;
mod render;
mod resolve;
mod schema;
mod spec;
mod text_files;

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;

pub use documents::Documents;
pub use open::Compression;
pub use read::{Batches, Counters, Locations, RawBatch, ReadOptions, ReadReport};
pub use render::Sample;
pub use schema::{ColumnView, SchemaView};
pub use spec::{Format, OnError, SourceSpec, TextField};

use resolve::resolve;
use spec::{default_batch_rows, default_infer_rows};

use crate::error::{Error, Result};

/// Several files of one format, read as Arrow record batches.
#[derive(Debug, Clone)]
pub struct Source {
    spec: SourceSpec,
    format: Format,
    files: Vec<PathBuf>,
    schema: OnceLock<SchemaRef>,
}

impl Source {
    /// Opens a file, a folder (all readable files in it, recursively) or a glob pattern.
    pub fn open(path: impl AsRef<Path>) -> Result<Source> {
        Source::open_many([path])
    }

    /// Opens files, folders or globs as `format`, whatever their names say.
    pub fn open_as<P: AsRef<Path>>(paths: impl IntoIterator<Item = P>, format: Format) -> Result<Source> {
        let mut spec = Source::spec_for(paths)?;
        spec.format = Some(format);
        Source::from_spec(spec)
    }

    fn spec_for<P: AsRef<Path>>(paths: impl IntoIterator<Item = P>) -> Result<SourceSpec> {
        let cwd = std::env::current_dir().map_err(|e| Error::io(".", e))?;
        Ok(SourceSpec {
            paths: paths.into_iter().map(|p| cwd.join(p.as_ref()).to_string_lossy().into_owned()).collect(),
            format: None,
            text: TextField::default(),
            on_error: OnError::default(),
            infer_rows: default_infer_rows(),
            batch_rows: default_batch_rows(),
        })
    }

    /// Opens several files, folders or globs as one source.
    pub fn open_many<P: AsRef<Path>>(paths: impl IntoIterator<Item = P>) -> Result<Source> {
        Source::from_spec(Source::spec_for(paths)?)
    }

    /// Opens a source from a stored spec (finding its files again).
    pub fn from_spec(spec: SourceSpec) -> Result<Source> {
        if spec.batch_rows == 0 || spec.infer_rows == 0 {
            return Err(Error::InvalidArgument("batch_rows and infer_rows must be at least 1".into()));
        }
        let (files, format) = resolve(&spec.paths, spec.format)?;
        Ok(Source { spec, format, files, schema: OnceLock::new() })
    }

    fn respec(&self, change: impl FnOnce(&mut SourceSpec)) -> Source {
        let mut spec = self.spec.clone();
        change(&mut spec);
        let schema = if spec.format == self.spec.format { self.schema.clone() } else { OnceLock::new() };
        Source { spec, format: self.format, files: self.files.clone(), schema }
    }

    /// Reads every file as `format`, whatever its name says.
    pub fn with_format(&self, format: Format) -> Result<Source> {
        let mut spec = self.spec.clone();
        spec.format = Some(format);
        Source::from_spec(spec)
    }

    /// Takes the text from column `name`.
    pub fn text_column(&self, name: impl Into<String>) -> Source {
        let name = name.into();
        self.respec(|s| s.text = TextField::Column(name))
    }

    /// Builds the text from a template over the columns, e.g. `"{instruction}\n\n{output}"`.
    pub fn text_template(&self, template: impl Into<String>) -> Source {
        let template = template.into();
        self.respec(|s| s.text = TextField::Template(template))
    }

    /// Sets the bad-record policy.
    pub fn on_error(&self, policy: OnError) -> Source {
        self.respec(|s| s.on_error = policy)
    }

    /// Skips bad records, counting them, instead of failing on the first.
    pub fn skip_bad_records(&self) -> Source {
        self.on_error(OnError::Skip)
    }

    /// Rows per record batch.
    pub fn batch_rows(&self, rows: usize) -> Source {
        self.respec(|s| s.batch_rows = rows.max(1))
    }

    /// Records per file sampled to infer JSONL/CSV column types.
    pub fn infer_rows(&self, rows: usize) -> Source {
        let rows = rows.max(1);
        let mut source = self.respec(|s| s.infer_rows = rows);
        source.schema = OnceLock::new();
        source
    }

    pub fn spec(&self) -> &SourceSpec {
        &self.spec
    }

    pub fn format(&self) -> Format {
        self.format
    }

    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    /// The on-disk size of all the files.
    pub fn total_bytes(&self) -> u64 {
        self.files.iter().filter_map(|f| std::fs::metadata(f).ok()).map(|m| m.len()).sum()
    }

    fn options(&self, counters: Arc<Counters>) -> ReadOptions {
        ReadOptions {
            batch_rows: self.spec.batch_rows,
            infer_rows: self.spec.infer_rows,
            on_error: self.spec.on_error,
            counters,
        }
    }

    /// The Arrow schema of the raw rows: every file's columns, merged.
    pub fn arrow_schema(&self) -> Result<SchemaRef> {
        if let Some(schema) = self.schema.get() {
            return Ok(schema.clone());
        }
        let opts = self.options(Arc::default());
        let mut schemas = Vec::new();
        if self.format == Format::Text {
            schemas.push((self.files[0].clone(), text_files::schema()));
        } else {
            for file in &self.files {
                let inferred = match self.format {
                    Format::Jsonl => jsonl::infer(file, &opts),
                    Format::Csv => csv::infer(file, &opts),
                    _ => parquet::infer(file),
                };
                match inferred {
                    Ok(schema) => schemas.push((file.clone(), schema)),
                    Err(e) => opts.bad_record(e)?,
                }
            }
        }
        if schemas.is_empty() {
            return Err(Error::Source(format!("no readable file among the {} of this source", self.files.len())));
        }
        let mut merged = schema::merge_schemas(&schemas)?;
        if self.format == Format::Csv {
            merged = csv::empty_columns_as_text(merged);
        }
        let schema = Arc::new(merged);
        Ok(self.schema.get_or_init(|| schema).clone())
    }

    /// The schema with null counts over the first rows (up to `infer_rows`).
    pub fn schema(&self) -> Result<SchemaView> {
        let schema = self.arrow_schema()?;
        let mut sample = Vec::new();
        let mut rows = 0;
        for raw in self.batches_with(Arc::default())? {
            let raw = raw?;
            let take = raw.batch.num_rows().min(self.spec.infer_rows - rows);
            rows += take;
            sample.push(raw.batch.slice(0, take));
            if rows >= self.spec.infer_rows {
                break;
            }
        }
        let text_columns = match &self.spec.text {
            TextField::Column(c) => vec![c.clone()],
            TextField::Template(t) => documents::template_fields(t)?,
        };
        Ok(SchemaView::new(&schema, &sample, &text_columns, self.files.len(), self.format.as_str().into()))
    }

    /// The raw rows of every file, as read (columns merged across files).
    pub fn batches(&self) -> Result<Batches> {
        self.batches_with(Arc::default())
    }

    fn batches_with(&self, counters: Arc<Counters>) -> Result<Batches> {
        Ok(Batches {
            schema: self.arrow_schema()?,
            files: self.files.clone(),
            format: self.format,
            opts: self.options(counters),
            bytes_total: self.total_bytes(),
            next_file: 0,
            current: None,
            failed: false,
        })
    }

    /// The documents: a `text` column (from the text column or template) followed by the metadata
    /// columns.
    pub fn documents(&self) -> Result<Documents> {
        Documents::new(self.batches()?, &self.spec.text)
    }

    /// The first `n` documents, for looking at.
    pub fn sample(&self, n: usize) -> Result<Sample> {
        self.page(0, n)
    }

    /// Page `page` (from 0) of the documents, `per_page` to a page: reads up to the page, no further.
    pub fn page(&self, page: usize, per_page: usize) -> Result<Sample> {
        let per_page = per_page.max(1);
        let first = page * per_page;
        let mut docs = self.batch_rows(per_page.clamp(1, 4096)).documents()?;
        let schema = docs.schema();
        let (mut seen, mut batches) = (0usize, Vec::new());
        while seen < first + per_page {
            let Some(batch) = docs.next().transpose()? else { break };
            let (start, end) = (seen, seen + batch.num_rows());
            seen = end;
            if end > first {
                let from = first.saturating_sub(start);
                let to = (first + per_page).min(end) - start;
                batches.push(batch.slice(from, to - from));
            }
        }
        let batch = arrow::compute::concat_batches(&schema, &batches).map_err(|e| Error::format(&self.files[0], e))?;
        Ok(Sample { batch, first_row: first as u64, total_rows: None })
    }

    /// The first `n` documents, as one batch.
    pub fn head(&self, n: usize) -> Result<RecordBatch> {
        Ok(self.page(0, n)?.batch)
    }
}
