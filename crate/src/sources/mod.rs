//! Data sources: local JSONL (plain, `.gz`, `.zst`), CSV, Parquet and folders of `.txt`/`.md` files, read
//! as a stream of Arrow record batches in bounded memory. A [`Source`] is several files (paths, folders or
//! globs) of one format, with a mapping that says where each document's text comes from; everything else
//! is kept as metadata.

mod csv;
mod documents;
mod jsonl;
mod open;
mod parquet;
mod render;
mod schema;
mod text_files;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use serde::{Deserialize, Serialize};

pub use documents::Documents;
pub use open::Compression;
pub use render::Sample;
pub use schema::{ColumnView, SchemaView};

use crate::error::{Error, Result, count};

/// The file formats saekit reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// One JSON object per line.
    Jsonl,
    /// Comma-separated values with a header line.
    Csv,
    /// Apache Parquet.
    Parquet,
    /// One document per `.txt`/`.md` file.
    Text,
}

impl Format {
    /// Guesses the format from a file name, looking through a `.gz`/`.zst` suffix.
    pub fn from_path(path: &Path) -> Option<Format> {
        let name = path.file_name()?.to_str()?.to_ascii_lowercase();
        let name = [".gz", ".gzip", ".zst", ".zstd"].iter().find_map(|s| name.strip_suffix(s)).unwrap_or(&name);
        let ext = name.rsplit_once('.')?.1;
        Some(match ext {
            "jsonl" | "ndjson" | "json" => Format::Jsonl,
            "csv" => Format::Csv,
            "parquet" | "pq" => Format::Parquet,
            e if text_files::TEXT_EXTENSIONS.contains(&e) => Format::Text,
            _ => return None,
        })
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            Format::Jsonl => "jsonl",
            Format::Csv => "csv",
            Format::Parquet => "parquet",
            Format::Text => "text",
        }
    }
}

/// What to do with a record that cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnError {
    /// Stop at the first bad record with an error that says where it is (the default).
    #[default]
    Fail,
    /// Skip bad records (and unreadable files), counting them in the [`ReadReport`].
    Skip,
}

/// Where each document's text comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TextField {
    /// One column holds the text.
    Column(String),
    /// A template joins fields: `"{instruction}\n\n{output}"`; `{{` and `}}` are literal braces.
    Template(String),
}

impl Default for TextField {
    fn default() -> Self {
        TextField::Column("text".into())
    }
}

/// Everything needed to open a source again: what the catalog stores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceSpec {
    /// Files, folders or glob patterns (absolute).
    pub paths: Vec<String>,
    /// The format; `None` guesses it from the file names.
    #[serde(default)]
    pub format: Option<Format>,
    #[serde(default)]
    pub text: TextField,
    #[serde(default)]
    pub on_error: OnError,
    /// Records per file sampled to infer JSONL and CSV column types.
    #[serde(default = "default_infer_rows")]
    pub infer_rows: usize,
    /// Rows per record batch.
    #[serde(default = "default_batch_rows")]
    pub batch_rows: usize,
}

fn default_infer_rows() -> usize {
    1000
}

fn default_batch_rows() -> usize {
    4096
}

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

/// Finds the files of a source and settles its format.
fn resolve(patterns: &[String], format: Option<Format>) -> Result<(Vec<PathBuf>, Format)> {
    if patterns.is_empty() {
        return Err(Error::Source("a source needs at least one path".into()));
    }
    let mut files = Vec::new();
    for pattern in patterns {
        let path = Path::new(pattern);
        if pattern.contains(['*', '?', '[']) && !path.exists() {
            let matches =
                glob::glob(pattern).map_err(|e| Error::Source(format!("bad glob pattern `{pattern}`: {e}")))?;
            let mut found: Vec<PathBuf> = matches.filter_map(|m| m.ok()).filter(|p| p.is_file()).collect();
            if found.is_empty() {
                return Err(Error::Source(format!("`{pattern}` matched no files")));
            }
            found.sort();
            files.extend(found);
        } else if path.is_dir() {
            let mut found = Vec::new();
            walk(path, &mut found)?;
            found.retain(|f| format.is_some() || Format::from_path(f).is_some());
            if found.is_empty() {
                return Err(Error::Source(format!(
                    "folder {} holds no .jsonl, .csv, .parquet, .txt or .md files",
                    path.display()
                )));
            }
            files.extend(found);
        } else if path.is_file() {
            files.push(path.to_path_buf());
        } else {
            return Err(Error::io(path, std::io::Error::from(std::io::ErrorKind::NotFound)));
        }
    }
    let format = match format {
        Some(f) => f,
        None => {
            let mut formats: Vec<Format> = Vec::new();
            for f in &files {
                let fmt = Format::from_path(f).ok_or_else(|| {
                    Error::Source(format!(
                        "cannot tell the format of {} from its name; say it with .with_format(...)",
                        f.display()
                    ))
                })?;
                if !formats.contains(&fmt) {
                    formats.push(fmt);
                }
            }
            if formats.len() > 1 {
                let names: Vec<_> = formats.iter().map(|f| f.as_str()).collect();
                return Err(Error::Source(format!(
                    "a source holds files of one format, these are {}; make one source per format",
                    names.join(" and ")
                )));
            }
            formats[0]
        }
    };
    Ok((files, format))
}

/// All files under `dir`, recursively, sorted, skipping hidden ones.
fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok())
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .map(|e| e.path())
        .collect();
    entries.sort();
    for entry in entries {
        if entry.is_dir() {
            walk(&entry, out)?;
        } else {
            out.push(entry);
        }
    }
    Ok(())
}

enum FileReader {
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
    schema: SchemaRef,
    files: Vec<PathBuf>,
    format: Format,
    opts: ReadOptions,
    bytes_total: u64,
    next_file: usize,
    current: Option<FileReader>,
    failed: bool,
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
