//! What a source is, as data: its files, format, where the text comes from and what to do with bad
//! records. Serialized into the catalog, so a dataset can be opened again exactly as it was registered.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::text_files;

/// The file formats saekit reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum OnError {
    /// Stop at the first bad record with an error that says where it is (the default).
    #[default]
    Fail,
    /// Skip bad records (and unreadable files), counting them in the [`ReadReport`].
    Skip,
}

/// Where each document's text comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
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

pub(super) fn default_infer_rows() -> usize {
    1000
}

pub(super) fn default_batch_rows() -> usize {
    4096
}
