//! The crate's one error type. Every variant that comes from bad input names the file, the line or row,
//! and what was expected, so a researcher can go straight to the offending record.

use std::path::{Path, PathBuf};

/// Result with saekit's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in saekit.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A piece of work would use more memory or disk than it was given; `plan` lists what it needs.
    #[error("{what} needs {needs}, more than the {budget} budget:\n{plan}")]
    OverBudget { what: String, needs: String, budget: String, plan: String },
    /// An I/O error while touching `path`.
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },

    /// A line of a JSONL file that is not a JSON object.
    #[error("{}: line {}: malformed JSON: {message}", path.display(), count(*line))]
    Json { path: PathBuf, line: u64, message: String },

    /// A CSV record whose field count differs from the header's.
    #[error("{}: line {}: CSV record {} has {found} fields, expected {expected} (as in the header)",
        path.display(), count(*line), count(*record))]
    CsvFieldCount { path: PathBuf, line: u64, record: u64, expected: u64, found: u64 },

    /// Any other malformed CSV input.
    #[error("{}: line {}: malformed CSV: {message}", path.display(), count(*line))]
    Csv { path: PathBuf, line: u64, message: String },

    /// A value that does not fit the column type inferred (or declared) for it.
    #[error("{}: {location}: column `{column}`: expected {expected}, found {found}", path.display())]
    BadValue { path: PathBuf, location: String, column: String, expected: String, found: String },

    /// A well-formed record that does not fit the source's schema.
    #[error("{}: line {}: the record does not fit the schema {basis}: {message}", path.display(), count(*line))]
    SchemaMismatch { path: PathBuf, line: u64, basis: String, message: String },

    /// Bytes that are not UTF-8 where text is required.
    #[error("{}: {location}: invalid UTF-8 at byte offset {} (byte 0x{byte:02x}); text must be UTF-8",
        path.display(), count(*offset))]
    InvalidUtf8 { path: PathBuf, location: String, offset: u64, byte: u8 },

    /// The column chosen for the text (or named in a template) does not exist.
    #[error("{}: no column `{column}`; the columns are: {}", path.display(), available.join(", "))]
    MissingColumn { path: PathBuf, column: String, available: Vec<String> },

    /// A row whose text is null or not a string.
    #[error("{}: {location}: column `{column}`: expected text (a string), found {found}", path.display())]
    NotText { path: PathBuf, location: String, column: String, found: String },

    /// A file that holds no records at all.
    #[error("{}: the file is empty (expected at least one {expected})", path.display())]
    EmptyFile { path: PathBuf, expected: &'static str },

    /// A file that is not Parquet, or a Parquet file cut short.
    #[error("{}: not a readable Parquet file: {reason}", path.display())]
    NotParquet { path: PathBuf, reason: String },

    /// Errors from the Parquet or Arrow libraries, with the file they concern.
    #[error("{}: {message}", path.display())]
    Format { path: PathBuf, message: String },

    /// Two files of one source disagree about a column's type.
    #[error("column `{column}` is {first_type} in {} but {second_type} in {}", first.display(), second.display())]
    SchemaConflict { column: String, first: PathBuf, first_type: String, second: PathBuf, second_type: String },

    /// A path or glob that matched nothing, or a format saekit cannot guess.
    #[error("{0}")]
    Source(String),

    /// An argument that makes no sense (the message says which and why).
    #[error("{0}")]
    InvalidArgument(String),

    /// A catalog entry that does not exist.
    #[error("no {kind} `{name}` in the catalog at {}", catalog.display())]
    NotFound { kind: &'static str, name: String, catalog: PathBuf },

    /// A catalog entry that already exists.
    #[error("a {kind} named `{name}` already exists in the catalog at {}", catalog.display())]
    AlreadyExists { kind: &'static str, name: String, catalog: PathBuf },

    /// An entry another process (or notebook kernel) is writing right now.
    #[error("{what} is being written by another process (or notebook kernel); wait for it to finish")]
    Busy { what: String },

    /// An artifact that others were made from, asked to be deleted alone.
    #[error("{what} is used by {}; delete those first, or delete with cascade (`Workspace::delete_dataset_cascade`, \
        `Workspace::delete_artifact(&x, true)`, `saekit delete --cascade`)", dependents.join(", "))]
    InUse { what: String, dependents: Vec<String> },

    /// The catalog database itself.
    #[error("catalog {}: {source}", path.display())]
    Catalog { path: PathBuf, source: rusqlite::Error },

    /// A catalog written by a newer saekit.
    #[error("catalog {} has schema version {found}, newer than this saekit understands ({supported}); upgrade saekit",
        path.display())]
    CatalogTooNew { path: PathBuf, found: i64, supported: i64 },

    /// A background job whose work panicked.
    #[error("job `{job}` panicked: {message}")]
    JobPanicked { job: String, message: String },

    /// Tokens made with one tokenizer, used with another.
    #[error("the tokens in {} were made with tokenizer {made_with}, not {given}; tokenize again or use that tokenizer",
        store.display())]
    TokenizerMismatch { store: PathBuf, made_with: String, given: String },

    /// Work stopped because it was cancelled.
    #[error("cancelled")]
    Cancelled,

    /// Waiting for a job was interrupted (the kernel's interrupt of the waiting cell); the job goes on.
    #[error("waiting for job `{job}` was interrupted; the job goes on (job.cancel() stops it, job.wait() waits again)")]
    Interrupted { job: String },

    /// Tokenizer loading or encoding.
    #[error("tokenizer {name}: {message}")]
    Tokenizer { name: String, message: String },

    /// A Hub repository (or revision) that does not exist, or is private and needs a token.
    #[error("{kind} repository `{repo}` was not found at {endpoint}{}", if *token_given { "" } else {
        " (if it is private, give a token: set HF_TOKEN or write it to ~/.cache/huggingface/token)" })]
    RepoNotFound { kind: &'static str, repo: String, endpoint: String, token_given: bool },

    /// A gated or private Hub repository that refused us: no token, or one without access.
    #[error("{kind} repository `{repo}` is gated or private and {}. {TOKEN_HELP}", if *token_given {
        "the token given has no access to it: accept its conditions on the repository's page, or use another token"
    } else { "needs a Hugging Face token" })]
    NeedsToken { kind: &'static str, repo: String, token_given: bool },

    /// A config of a Hub dataset that does not exist.
    #[error("dataset `{repo}` has no config `{config}`; its configs are: {}", available.join(", "))]
    NoSuchConfig { repo: String, config: String, available: Vec<String> },

    /// A split of a Hub dataset's config that does not exist.
    #[error("config `{config}` of dataset `{repo}` has no split `{split}`; its splits are: {}", available.join(", "))]
    NoSuchSplit { repo: String, config: String, split: String, available: Vec<String> },

    /// The Hub (or the network on the way) failed, after retries where retrying made sense.
    #[error("{url}: {message}")]
    Network { url: String, message: String },

    /// Not enough free disk space for a download, found before downloading (or when the disk filled).
    #[error("not enough disk space in {}: the download needs {} more but {} is free; free some space or point \
        HF_HUB_CACHE (or HF_HOME) at a bigger disk", path.display(), crate::display::bytes(*needed),
        crate::display::bytes(*free))]
    DiskFull { path: PathBuf, needed: u64, free: u64 },

    /// A downloaded file that does not match the checksum or size the Hub gave for it.
    #[error(
        "{file}: the downloaded file does not match the Hub's {what}: expected {expected}, got {actual}; \
        the partial download was removed, download again"
    )]
    Checksum { file: String, what: &'static str, expected: String, actual: String },

    /// A language model that cannot be loaded or run as asked (the message says what to do).
    #[error("model {model}: {message}")]
    Model { model: String, message: String },

    /// A hook name the model does not have.
    #[error("model {model} has no hook `{hook}`; its hooks are: {available}")]
    UnknownHook { model: String, hook: String, available: String },

    /// Tensor math that failed: a shape or dtype the model code did not expect.
    #[error("tensor: {0}")]
    Tensor(String),

    /// Offline mode (`HF_HUB_OFFLINE=1`) and something that is not in the cache.
    #[error("offline (HF_HUB_OFFLINE=1): {what} is not in the Hub cache at {}; unset HF_HUB_OFFLINE to download it",
        cache.display())]
    Offline { what: String, cache: PathBuf },
}

impl Error {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        Error::Io { path: path.as_ref().to_path_buf(), source }
    }

    /// Wraps an Arrow or Parquet library error with the file it concerns.
    pub fn format(path: impl AsRef<Path>, err: impl std::fmt::Display) -> Self {
        Error::Format { path: path.as_ref().to_path_buf(), message: err.to_string() }
    }
}

impl From<candle_core::Error> for Error {
    fn from(e: candle_core::Error) -> Self {
        Error::Tensor(e.to_string())
    }
}

/// How to give saekit a Hugging Face token, for errors about gated and private repositories.
pub const TOKEN_HELP: &str = "Give a token (from https://huggingface.co/settings/tokens) in the HF_TOKEN environment \
    variable, or in the token file ($HF_TOKEN_PATH, else $HF_HOME/token, else ~/.cache/huggingface/token, as \
    `huggingface-cli login` writes it), or with `Hub::with_token`";

pub use crate::units::count;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_error_names_file_and_line() {
        let e = Error::Json { path: "a/b.jsonl".into(), line: 12345, message: "EOF".into() };
        assert_eq!(e.to_string(), "a/b.jsonl: line 12,345: malformed JSON: EOF");
    }
}
