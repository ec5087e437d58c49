//! The SQLite catalog of a workspace: one database file (`catalog.sqlite` at the workspace root) that
//! records datasets, their tags, tokenizations, recipes and training runs, and which artifact directories
//! each row owns. It owns the schema and its migrations; files on disk are the artifact module's business.

use std::collections::{BTreeSet, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, Type, Value as SqlValue, ValueRef};
use rusqlite::{Connection, ErrorCode, OptionalExtension, Row, Transaction, TransactionBehavior, params};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, Result};

/// How long a connection waits for another process's write lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// The schema, one migration per version: `MIGRATIONS[i]` takes `user_version` from `i` to `i + 1`.
/// Never edit a released migration; append a new one.
const MIGRATIONS: &[&str] = &[
    // v1
    "CREATE TABLE datasets (
        id            INTEGER PRIMARY KEY,
        name          TEXT NOT NULL UNIQUE,
        source        TEXT NOT NULL,
        repo_id       TEXT,
        spec          TEXT NOT NULL DEFAULT '{}',
        paths         TEXT NOT NULL DEFAULT '[]',
        artifact_path TEXT,
        status        TEXT NOT NULL CHECK (status IN ('pending', 'downloading', 'ready', 'failed')),
        metadata      TEXT NOT NULL DEFAULT '{}',
        num_rows      INTEGER,
        num_bytes     INTEGER,
        error         TEXT,
        created_at    TEXT NOT NULL,
        updated_at    TEXT NOT NULL
    );
    CREATE INDEX datasets_source ON datasets(source);
    CREATE INDEX datasets_status ON datasets(status);
    CREATE TABLE dataset_tags (
        dataset_id INTEGER NOT NULL REFERENCES datasets(id) ON DELETE CASCADE,
        tag        TEXT NOT NULL,
        PRIMARY KEY (dataset_id, tag)
    ) WITHOUT ROWID;
    CREATE INDEX dataset_tags_tag ON dataset_tags(tag);
    CREATE TABLE tokenizations (
        id             INTEGER PRIMARY KEY,
        dataset_id     INTEGER NOT NULL REFERENCES datasets(id) ON DELETE CASCADE,
        tokenizer      TEXT NOT NULL,
        tokenizer_hash TEXT NOT NULL,
        params         TEXT NOT NULL DEFAULT '{}',
        num_documents  INTEGER NOT NULL,
        num_sequences  INTEGER NOT NULL,
        num_tokens     INTEGER NOT NULL,
        artifact_path  TEXT NOT NULL,
        statistics     TEXT NOT NULL DEFAULT '{}',
        saekit_version TEXT NOT NULL,
        created_at     TEXT NOT NULL
    );
    CREATE INDEX tokenizations_dataset ON tokenizations(dataset_id);
    CREATE TABLE recipes (
        id         INTEGER PRIMARY KEY,
        name       TEXT NOT NULL UNIQUE,
        body       TEXT NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE TABLE training_runs (
        id              INTEGER PRIMARY KEY,
        name            TEXT NOT NULL,
        tokenization_id INTEGER REFERENCES tokenizations(id) ON DELETE SET NULL,
        config          TEXT NOT NULL DEFAULT '{}',
        status          TEXT NOT NULL,
        artifact_path   TEXT,
        metrics         TEXT NOT NULL DEFAULT '{}',
        created_at      TEXT NOT NULL,
        updated_at      TEXT NOT NULL
    );
    CREATE INDEX training_runs_tokenization ON training_runs(tokenization_id);",
];

/// The catalog schema version this saekit writes and understands.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

const DATASET_COLUMNS: &str = "id, name, source, repo_id, spec, paths, artifact_path, status, metadata, \
     num_rows, num_bytes, error, created_at, updated_at";
const TOKENIZATION_COLUMNS: &str = "id, dataset_id, tokenizer, tokenizer_hash, params, num_documents, \
     num_sequences, num_tokens, artifact_path, statistics, saekit_version, created_at";
const RECIPE_COLUMNS: &str = "id, name, body, created_at, updated_at";

/// Where a dataset is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DatasetStatus {
    /// Registered, nothing fetched yet.
    #[default]
    Pending,
    /// Its files are being fetched.
    Downloading,
    /// Usable.
    Ready,
    /// Fetching or preparing it failed; `DatasetRow::error` says why.
    Failed,
}

impl DatasetStatus {
    /// The name stored in the catalog: `pending`, `downloading`, `ready` or `failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            DatasetStatus::Pending => "pending",
            DatasetStatus::Downloading => "downloading",
            DatasetStatus::Ready => "ready",
            DatasetStatus::Failed => "failed",
        }
    }
}

impl fmt::Display for DatasetStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DatasetStatus {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "pending" => Ok(DatasetStatus::Pending),
            "downloading" => Ok(DatasetStatus::Downloading),
            "ready" => Ok(DatasetStatus::Ready),
            "failed" => Ok(DatasetStatus::Failed),
            other => Err(Error::InvalidArgument(format!(
                "unknown dataset status `{other}`; expected pending, downloading, ready or failed"
            ))),
        }
    }
}

impl ToSql for DatasetStatus {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.as_str()))
    }
}

impl FromSql for DatasetStatus {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        value.as_str()?.parse().map_err(FromSqlError::other)
    }
}

/// A dataset as recorded in the catalog.
#[derive(Debug, Clone, Serialize)]
pub struct DatasetRow {
    /// The row id; stable for the dataset's life.
    pub id: i64,
    /// The unique name.
    pub name: String,
    /// A short description of where it comes from, e.g. `local` or `hub`.
    pub source: String,
    /// The hub repository, for hub datasets.
    pub repo_id: Option<String>,
    /// How to re-open the data (JSON, interpreted by the source layer).
    pub spec: Value,
    /// The data files.
    pub paths: Vec<String>,
    /// The workspace artifact directory this row owns, removed with it.
    pub artifact_path: Option<PathBuf>,
    /// Where the dataset is in its life.
    pub status: DatasetStatus,
    /// Tags, sorted.
    pub tags: Vec<String>,
    /// Free-form JSON metadata.
    pub metadata: Value,
    /// Number of rows, once known.
    pub num_rows: Option<u64>,
    /// Size in bytes, once known.
    pub num_bytes: Option<u64>,
    /// Why the dataset failed, when it did.
    pub error: Option<String>,
    /// RFC 3339 UTC time of creation.
    pub created_at: String,
    /// RFC 3339 UTC time of the last change.
    pub updated_at: String,
}

/// A dataset to add to the catalog.
#[derive(Debug, Clone, Default)]
pub struct NewDataset {
    /// The unique name.
    pub name: String,
    /// A short description of where it comes from, e.g. `local` or `hub`.
    pub source: String,
    /// The hub repository, for hub datasets.
    pub repo_id: Option<String>,
    /// How to re-open the data; `Null` is stored as `{}`.
    pub spec: Value,
    /// The data files.
    pub paths: Vec<String>,
    /// The initial status (default: pending).
    pub status: DatasetStatus,
    /// Initial tags.
    pub tags: Vec<String>,
    /// Free-form JSON metadata; `Null` is stored as `{}`.
    pub metadata: Value,
    /// Number of rows, if known.
    pub num_rows: Option<u64>,
    /// Size in bytes, if known.
    pub num_bytes: Option<u64>,
}

/// Changes to a dataset: every `Some` field is written, `None` fields are left as they are.
#[derive(Debug, Clone, Default)]
pub struct DatasetUpdate {
    /// New status.
    pub status: Option<DatasetStatus>,
    /// New spec.
    pub spec: Option<Value>,
    /// New data files.
    pub paths: Option<Vec<String>>,
    /// New owned artifact directory.
    pub artifact_path: Option<PathBuf>,
    /// New metadata (replaces the old, no merge).
    pub metadata: Option<Value>,
    /// New row count.
    pub num_rows: Option<u64>,
    /// New byte size.
    pub num_bytes: Option<u64>,
    /// `Some(Some(msg))` records an error, `Some(None)` clears it.
    pub error: Option<Option<String>>,
}

/// Which datasets [`Catalog::list_datasets`] returns; every `Some` field must match. The default
/// matches all.
#[derive(Debug, Clone, Default)]
pub struct DatasetFilter {
    /// Case-insensitive (ASCII) substring of the name.
    pub name_contains: Option<String>,
    /// Exact source.
    pub source: Option<String>,
    /// Exact status.
    pub status: Option<DatasetStatus>,
    /// Datasets carrying this tag.
    pub tag: Option<String>,
}

/// One tokenization of a dataset, as recorded in the catalog.
#[derive(Debug, Clone, Serialize)]
pub struct TokenizationRow {
    /// The row id.
    pub id: i64,
    /// The dataset tokenized.
    pub dataset_id: i64,
    /// The tokenizer's name.
    pub tokenizer: String,
    /// A hash of the tokenizer's definition.
    pub tokenizer_hash: String,
    /// The tokenization parameters (JSON).
    pub params: Value,
    /// Documents read.
    pub num_documents: u64,
    /// Sequences written.
    pub num_sequences: u64,
    /// Tokens written.
    pub num_tokens: u64,
    /// The artifact directory holding the tokens, owned by this row.
    pub artifact_path: PathBuf,
    /// Statistics gathered while tokenizing (JSON).
    pub statistics: Value,
    /// The saekit version that made it.
    pub saekit_version: String,
    /// RFC 3339 UTC time of creation.
    pub created_at: String,
}

/// A tokenization to add to the catalog; the running saekit version is recorded with it.
#[derive(Debug, Clone, Default)]
pub struct NewTokenization {
    /// The dataset tokenized.
    pub dataset_id: i64,
    /// The tokenizer's name.
    pub tokenizer: String,
    /// A hash of the tokenizer's definition.
    pub tokenizer_hash: String,
    /// The tokenization parameters; `Null` is stored as `{}`.
    pub params: Value,
    /// Documents read.
    pub num_documents: u64,
    /// Sequences written.
    pub num_sequences: u64,
    /// Tokens written.
    pub num_tokens: u64,
    /// The artifact directory holding the tokens.
    pub artifact_path: PathBuf,
    /// Statistics gathered while tokenizing; `Null` is stored as `{}`.
    pub statistics: Value,
}

/// A named recipe (a JSON body, interpreted elsewhere).
#[derive(Debug, Clone, Serialize)]
pub struct RecipeRow {
    /// The row id.
    pub id: i64,
    /// The unique name.
    pub name: String,
    /// The recipe itself.
    pub body: Value,
    /// RFC 3339 UTC time of creation.
    pub created_at: String,
    /// RFC 3339 UTC time of the last change.
    pub updated_at: String,
}

/// The catalog database of one workspace. Cheap to share between threads (`Send + Sync`); every write is
/// one `BEGIN IMMEDIATE` transaction, so several processes may use one catalog at once.
pub struct Catalog {
    path: PathBuf,
    root: PathBuf,
    canonical_root: PathBuf,
    conn: Mutex<Opened>,
}

/// The connection, and which copy of saekit's code opened it.
///
/// In a notebook (evcxr) every cell's compiled code carries its own copy of saekit, bundled SQLite
/// included, so a `Workspace` made in one cell and used in the next would hand one SQLite's connection
/// to another SQLite's functions (a crash). A copy that finds a connection opened by another opens its
/// own and leaves the old one alone (it is never closed: only its own copy could do that safely).
struct Opened {
    copy: usize,
    conn: Option<Connection>,
}

/// Identifies the copy of this code that is running: the address of a static, which each copy has its own.
fn this_copy() -> usize {
    static COPY: u8 = 0;
    std::ptr::addr_of!(COPY) as usize
}

impl Drop for Opened {
    fn drop(&mut self) {
        if self.copy != this_copy() {
            std::mem::forget(self.conn.take());
        }
    }
}

/// A locked connection.
struct ConnGuard<'a>(MutexGuard<'a, Opened>);

impl std::ops::Deref for ConnGuard<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        self.0.conn.as_ref().expect("catalog connection is open")
    }
}

impl std::ops::DerefMut for ConnGuard<'_> {
    fn deref_mut(&mut self) -> &mut Connection {
        self.0.conn.as_mut().expect("catalog connection is open")
    }
}

fn open_connection(path: &Path) -> Result<Connection> {
    let conn = Connection::open(path).at(path)?;
    conn.busy_timeout(BUSY_TIMEOUT).at(path)?;
    // Switching to WAL takes an exclusive lock; a first open racing another may see SQLITE_BUSY
    // without the busy handler being consulted, so retry for as long as the busy timeout.
    retry_busy(|| conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get::<_, String>(0))).at(path)?;
    conn.pragma_update(None, "synchronous", "NORMAL").at(path)?;
    conn.pragma_update(None, "foreign_keys", "ON").at(path)?;
    Ok(conn)
}

impl fmt::Debug for Catalog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Catalog").field("path", &self.path).finish_non_exhaustive()
    }
}

/// Attaches the catalog path to rusqlite errors.
trait AtPath<T> {
    fn at(self, path: &Path) -> Result<T>;
}

impl<T> AtPath<T> for rusqlite::Result<T> {
    fn at(self, path: &Path) -> Result<T> {
        self.map_err(|source| Error::Catalog { path: path.to_path_buf(), source })
    }
}

impl Catalog {
    /// Opens (creating it and its parent directories if needed) the catalog at `path` and brings its
    /// schema up to date. Fails with [`Error::CatalogTooNew`] if a newer saekit wrote it.
    pub fn open(path: &Path) -> Result<Catalog> {
        let path = std::path::absolute(path).map_err(|e| Error::io(path, e))?;
        let root = match path.parent() {
            Some(parent) => parent.to_path_buf(),
            None => {
                return Err(Error::InvalidArgument(format!("{} is not a file path", path.display())));
            }
        };
        std::fs::create_dir_all(&root).map_err(|e| Error::io(&root, e))?;
        let canonical_root = std::fs::canonicalize(&root).map_err(|e| Error::io(&root, e))?;
        let conn = open_connection(&path)?;
        let catalog =
            Catalog { path, root, canonical_root, conn: Mutex::new(Opened { copy: this_copy(), conn: Some(conn) }) };
        catalog.migrate()?;
        Ok(catalog)
    }

    /// The catalog database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The directory holding the catalog (the workspace root); artifact paths under it are stored
    /// relative to it, so a workspace can be moved.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn conn(&self) -> Result<ConnGuard<'_>> {
        // A panic inside a transaction rolls it back as it unwinds, so the connection is still sound.
        let mut opened = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        if opened.copy != this_copy() {
            let fresh = open_connection(&self.path)?;
            std::mem::forget(opened.conn.replace(fresh));
            opened.copy = this_copy();
        }
        Ok(ConnGuard(opened))
    }

    fn migrate(&self) -> Result<()> {
        let mut conn = self.conn()?;
        let current = self.user_version(&conn)?;
        if current == SCHEMA_VERSION {
            return Ok(());
        }
        for target in (current.max(0) + 1)..=SCHEMA_VERSION {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).at(&self.path)?;
            // Another process may have migrated while we waited for the lock.
            let now = self.user_version(&tx)?;
            if now >= target {
                continue;
            }
            tx.execute_batch(MIGRATIONS[(target - 1) as usize]).at(&self.path)?;
            tx.pragma_update(None, "user_version", target).at(&self.path)?;
            tx.commit().at(&self.path)?;
        }
        Ok(())
    }

    /// Reads `PRAGMA user_version`, failing if it is newer than [`SCHEMA_VERSION`].
    fn user_version(&self, conn: &Connection) -> Result<i64> {
        let found: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0)).at(&self.path)?;
        if found > SCHEMA_VERSION {
            return Err(Error::CatalogTooNew { path: self.path.clone(), found, supported: SCHEMA_VERSION });
        }
        Ok(found)
    }

    /// Runs `f` inside a `BEGIN IMMEDIATE` transaction and commits it if `f` succeeds (rolls back
    /// otherwise). The catalog is locked meanwhile: `f` must use the `*_in` methods with the
    /// transaction it is given, never the catalog's own methods (which would deadlock).
    pub fn with_write_tx<T>(&self, f: impl FnOnce(&Transaction) -> Result<T>) -> Result<T> {
        let mut conn = self.conn()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).at(&self.path)?;
        let value = f(&tx)?;
        tx.commit().at(&self.path)?;
        Ok(value)
    }

    // ----- datasets -----

    /// Adds a dataset (and its tags). A name already taken gives [`Error::AlreadyExists`].
    pub fn insert_dataset(&self, new: &NewDataset) -> Result<DatasetRow> {
        self.with_write_tx(|tx| self.insert_dataset_in(tx, new))
    }

    /// [`insert_dataset`](Self::insert_dataset) inside a transaction from [`with_write_tx`](Self::with_write_tx).
    pub fn insert_dataset_in(&self, tx: &Transaction, new: &NewDataset) -> Result<DatasetRow> {
        if new.name.is_empty() {
            return Err(Error::InvalidArgument("a dataset needs a non-empty name".into()));
        }
        let taken: Option<i64> = tx
            .query_row("SELECT id FROM datasets WHERE name = ?1", [&new.name], |r| r.get(0))
            .optional()
            .at(&self.path)?;
        if taken.is_some() {
            return Err(Error::AlreadyExists { kind: "dataset", name: new.name.clone(), catalog: self.path.clone() });
        }
        let now = now_rfc3339();
        tx.execute(
            "INSERT INTO datasets (name, source, repo_id, spec, paths, status, metadata, num_rows, num_bytes,
                                   created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10)",
            params![
                new.name,
                new.source,
                new.repo_id,
                json_object_text(&new.spec),
                json_text(&new.paths),
                new.status,
                json_object_text(&new.metadata),
                integer(new.num_rows, "num_rows")?,
                integer(new.num_bytes, "num_bytes")?,
                now,
            ],
        )
        .at(&self.path)?;
        let id = tx.last_insert_rowid();
        self.write_tags(tx, id, &new.tags)?;
        self.dataset_by_id(tx, id)
    }

    /// Applies `update` to dataset `id` and bumps its `updated_at`.
    pub fn update_dataset(&self, id: i64, update: &DatasetUpdate) -> Result<DatasetRow> {
        self.with_write_tx(|tx| self.update_dataset_in(tx, id, update))
    }

    /// [`update_dataset`](Self::update_dataset) inside a transaction from [`with_write_tx`](Self::with_write_tx).
    pub fn update_dataset_in(&self, tx: &Transaction, id: i64, update: &DatasetUpdate) -> Result<DatasetRow> {
        let mut sets = vec!["updated_at = ?"];
        let mut values = vec![SqlValue::Text(now_rfc3339())];
        if let Some(status) = update.status {
            sets.push("status = ?");
            values.push(SqlValue::Text(status.as_str().into()));
        }
        if let Some(spec) = &update.spec {
            sets.push("spec = ?");
            values.push(SqlValue::Text(json_object_text(spec)));
        }
        if let Some(paths) = &update.paths {
            sets.push("paths = ?");
            values.push(SqlValue::Text(json_text(paths)));
        }
        if let Some(path) = &update.artifact_path {
            sets.push("artifact_path = ?");
            values.push(SqlValue::Text(self.store_path(path)?));
        }
        if let Some(metadata) = &update.metadata {
            sets.push("metadata = ?");
            values.push(SqlValue::Text(json_object_text(metadata)));
        }
        if let Some(n) = update.num_rows {
            sets.push("num_rows = ?");
            values.push(integer(Some(n), "num_rows")?);
        }
        if let Some(n) = update.num_bytes {
            sets.push("num_bytes = ?");
            values.push(integer(Some(n), "num_bytes")?);
        }
        if let Some(error) = &update.error {
            sets.push("error = ?");
            values.push(error.clone().map_or(SqlValue::Null, SqlValue::Text));
        }
        values.push(SqlValue::Integer(id));
        let sql = format!("UPDATE datasets SET {} WHERE id = ?", sets.join(", "));
        let changed = tx.execute(&sql, rusqlite::params_from_iter(values)).at(&self.path)?;
        if changed == 0 {
            return Err(self.not_found("dataset", id.to_string()));
        }
        self.dataset_by_id(tx, id)
    }

    /// Replaces the tags of dataset `id` (duplicates are dropped) and bumps its `updated_at`.
    pub fn set_tags(&self, id: i64, tags: &[String]) -> Result<()> {
        self.with_write_tx(|tx| self.set_tags_in(tx, id, tags))
    }

    /// [`set_tags`](Self::set_tags) inside a transaction from [`with_write_tx`](Self::with_write_tx).
    pub fn set_tags_in(&self, tx: &Transaction, id: i64, tags: &[String]) -> Result<()> {
        let changed = tx
            .execute("UPDATE datasets SET updated_at = ?1 WHERE id = ?2", params![now_rfc3339(), id])
            .at(&self.path)?;
        if changed == 0 {
            return Err(self.not_found("dataset", id.to_string()));
        }
        tx.execute("DELETE FROM dataset_tags WHERE dataset_id = ?1", [id]).at(&self.path)?;
        self.write_tags(tx, id, tags)
    }

    fn write_tags(&self, tx: &Transaction, id: i64, tags: &[String]) -> Result<()> {
        let tags: BTreeSet<&str> = tags.iter().map(String::as_str).collect();
        if tags.contains("") {
            return Err(Error::InvalidArgument("tags must not be empty".into()));
        }
        let mut insert =
            tx.prepare_cached("INSERT INTO dataset_tags (dataset_id, tag) VALUES (?1, ?2)").at(&self.path)?;
        for tag in tags {
            insert.execute(params![id, tag]).at(&self.path)?;
        }
        Ok(())
    }

    /// The dataset named `name_or_id`, or, if no dataset has that name and it is a number, the dataset
    /// with that id. [`Error::NotFound`] otherwise.
    pub fn dataset(&self, name_or_id: &str) -> Result<DatasetRow> {
        self.dataset_in(&*self.conn()?, name_or_id)
    }

    /// [`dataset`](Self::dataset) on a given connection or transaction (e.g. inside
    /// [`with_write_tx`](Self::with_write_tx)).
    pub fn dataset_in(&self, conn: &Connection, name_or_id: &str) -> Result<DatasetRow> {
        let sql = format!("SELECT {DATASET_COLUMNS} FROM datasets WHERE name = ?1");
        let row = conn.query_row(&sql, [name_or_id], |r| self.dataset_from_row(r)).optional().at(&self.path)?;
        match row {
            Some(row) => self.with_tags(conn, row),
            None => match name_or_id.parse::<i64>() {
                Ok(id) if name_or_id.bytes().all(|b| b.is_ascii_digit()) => self.dataset_by_id(conn, id),
                _ => Err(self.not_found("dataset", name_or_id.to_string())),
            },
        }
    }

    fn dataset_by_id(&self, conn: &Connection, id: i64) -> Result<DatasetRow> {
        let sql = format!("SELECT {DATASET_COLUMNS} FROM datasets WHERE id = ?1");
        match conn.query_row(&sql, [id], |r| self.dataset_from_row(r)).optional().at(&self.path)? {
            Some(row) => self.with_tags(conn, row),
            None => Err(self.not_found("dataset", id.to_string())),
        }
    }

    /// The datasets matching `filter`, ordered by id.
    pub fn list_datasets(&self, filter: &DatasetFilter) -> Result<Vec<DatasetRow>> {
        let mut wheres = Vec::new();
        let mut values = Vec::new();
        if let Some(part) = &filter.name_contains {
            wheres.push("instr(lower(d.name), lower(?)) > 0");
            values.push(SqlValue::Text(part.clone()));
        }
        if let Some(source) = &filter.source {
            wheres.push("d.source = ?");
            values.push(SqlValue::Text(source.clone()));
        }
        if let Some(status) = filter.status {
            wheres.push("d.status = ?");
            values.push(SqlValue::Text(status.as_str().into()));
        }
        if let Some(tag) = &filter.tag {
            wheres.push("EXISTS (SELECT 1 FROM dataset_tags t WHERE t.dataset_id = d.id AND t.tag = ?)");
            values.push(SqlValue::Text(tag.clone()));
        }
        let where_clause = if wheres.is_empty() { String::new() } else { format!("WHERE {}", wheres.join(" AND ")) };
        let sql = format!("SELECT {DATASET_COLUMNS} FROM datasets d {where_clause} ORDER BY d.id");
        let conn = self.conn()?;
        let mut stmt = conn.prepare(&sql).at(&self.path)?;
        let rows = stmt
            .query_map(rusqlite::params_from_iter(values), |r| self.dataset_from_row(r))
            .at(&self.path)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .at(&self.path)?;
        rows.into_iter().map(|row| self.with_tags(&conn, row)).collect()
    }

    /// Deletes a dataset with its tags and tokenizations, in one transaction, and returns every artifact
    /// path they owned; the caller removes those (see `remove_artifact`).
    pub fn delete_dataset(&self, name_or_id: &str) -> Result<Vec<PathBuf>> {
        self.with_write_tx(|tx| self.delete_dataset_in(tx, name_or_id))
    }

    /// [`delete_dataset`](Self::delete_dataset) inside a transaction from [`with_write_tx`](Self::with_write_tx).
    pub fn delete_dataset_in(&self, tx: &Transaction, name_or_id: &str) -> Result<Vec<PathBuf>> {
        let row = self.dataset_in(tx, name_or_id)?;
        let mut owned: Vec<PathBuf> = row.artifact_path.into_iter().collect();
        let mut stmt = tx.prepare("SELECT artifact_path FROM tokenizations WHERE dataset_id = ?1").at(&self.path)?;
        let paths = stmt
            .query_map([row.id], |r| r.get::<_, String>(0))
            .at(&self.path)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .at(&self.path)?;
        owned.extend(paths.iter().map(|p| self.resolve_path(p)));
        tx.execute("DELETE FROM datasets WHERE id = ?1", [row.id]).at(&self.path)?;
        Ok(owned)
    }

    fn dataset_from_row(&self, r: &Row) -> rusqlite::Result<DatasetRow> {
        let paths_text: String = r.get(5)?;
        let paths: Vec<String> = serde_json::from_str(&paths_text)
            .map_err(|e| rusqlite::Error::FromSqlConversionFailure(5, Type::Text, Box::new(e)))?;
        // Data files inside the workspace are stored relative to it, like artifact paths.
        let paths = paths.iter().map(|p| self.resolve_path(p).to_string_lossy().into_owned()).collect();
        Ok(DatasetRow {
            id: r.get(0)?,
            name: r.get(1)?,
            source: r.get(2)?,
            repo_id: r.get(3)?,
            spec: json_column(r, 4)?,
            paths,
            artifact_path: r.get::<_, Option<String>>(6)?.map(|p| self.resolve_path(&p)),
            status: r.get(7)?,
            tags: Vec::new(),
            metadata: json_column(r, 8)?,
            num_rows: opt_count_column(r, 9)?,
            num_bytes: opt_count_column(r, 10)?,
            error: r.get(11)?,
            created_at: r.get(12)?,
            updated_at: r.get(13)?,
        })
    }

    fn with_tags(&self, conn: &Connection, mut row: DatasetRow) -> Result<DatasetRow> {
        let mut stmt =
            conn.prepare_cached("SELECT tag FROM dataset_tags WHERE dataset_id = ?1 ORDER BY tag").at(&self.path)?;
        row.tags = stmt
            .query_map([row.id], |r| r.get(0))
            .at(&self.path)?
            .collect::<rusqlite::Result<Vec<String>>>()
            .at(&self.path)?;
        Ok(row)
    }

    // ----- tokenizations -----

    /// Records a tokenization of an existing dataset ([`Error::NotFound`] if it is gone).
    pub fn insert_tokenization(&self, new: &NewTokenization) -> Result<TokenizationRow> {
        self.with_write_tx(|tx| self.insert_tokenization_in(tx, new))
    }

    /// [`insert_tokenization`](Self::insert_tokenization) inside a transaction from
    /// [`with_write_tx`](Self::with_write_tx).
    pub fn insert_tokenization_in(&self, tx: &Transaction, new: &NewTokenization) -> Result<TokenizationRow> {
        let exists: Option<i64> = tx
            .query_row("SELECT id FROM datasets WHERE id = ?1", [new.dataset_id], |r| r.get(0))
            .optional()
            .at(&self.path)?;
        if exists.is_none() {
            return Err(self.not_found("dataset", new.dataset_id.to_string()));
        }
        tx.execute(
            "INSERT INTO tokenizations (dataset_id, tokenizer, tokenizer_hash, params, num_documents,
                 num_sequences, num_tokens, artifact_path, statistics, saekit_version, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            params![
                new.dataset_id,
                new.tokenizer,
                new.tokenizer_hash,
                json_object_text(&new.params),
                integer(Some(new.num_documents), "num_documents")?,
                integer(Some(new.num_sequences), "num_sequences")?,
                integer(Some(new.num_tokens), "num_tokens")?,
                self.store_path(&new.artifact_path)?,
                json_object_text(&new.statistics),
                env!("CARGO_PKG_VERSION"),
                now_rfc3339(),
            ],
        )
        .at(&self.path)?;
        let id = tx.last_insert_rowid();
        let sql = format!("SELECT {TOKENIZATION_COLUMNS} FROM tokenizations WHERE id = ?1");
        tx.query_row(&sql, [id], |r| self.tokenization_from_row(r)).at(&self.path)
    }

    /// The tokenizations of dataset `dataset_id`, newest first.
    pub fn tokenizations(&self, dataset_id: i64) -> Result<Vec<TokenizationRow>> {
        let sql = format!("SELECT {TOKENIZATION_COLUMNS} FROM tokenizations WHERE dataset_id = ?1 ORDER BY id DESC");
        let conn = self.conn()?;
        let mut stmt = conn.prepare(&sql).at(&self.path)?;
        stmt.query_map([dataset_id], |r| self.tokenization_from_row(r))
            .at(&self.path)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .at(&self.path)
    }

    fn tokenization_from_row(&self, r: &Row) -> rusqlite::Result<TokenizationRow> {
        Ok(TokenizationRow {
            id: r.get(0)?,
            dataset_id: r.get(1)?,
            tokenizer: r.get(2)?,
            tokenizer_hash: r.get(3)?,
            params: json_column(r, 4)?,
            num_documents: count_column(r, 5)?,
            num_sequences: count_column(r, 6)?,
            num_tokens: count_column(r, 7)?,
            artifact_path: self.resolve_path(&r.get::<_, String>(8)?),
            statistics: json_column(r, 9)?,
            saekit_version: r.get(10)?,
            created_at: r.get(11)?,
        })
    }

    // ----- recipes -----

    /// Stores a recipe under a new name ([`Error::AlreadyExists`] if taken).
    pub fn insert_recipe(&self, name: &str, body: &Value) -> Result<RecipeRow> {
        if name.is_empty() {
            return Err(Error::InvalidArgument("a recipe needs a non-empty name".into()));
        }
        self.with_write_tx(|tx| {
            let taken: Option<i64> = tx
                .query_row("SELECT id FROM recipes WHERE name = ?1", [name], |r| r.get(0))
                .optional()
                .at(&self.path)?;
            if taken.is_some() {
                return Err(Error::AlreadyExists {
                    kind: "recipe",
                    name: name.to_string(),
                    catalog: self.path.clone(),
                });
            }
            let now = now_rfc3339();
            tx.execute(
                "INSERT INTO recipes (name, body, created_at, updated_at) VALUES (?1, ?2, ?3, ?3)",
                params![name, json_text(body), now],
            )
            .at(&self.path)?;
            let sql = format!("SELECT {RECIPE_COLUMNS} FROM recipes WHERE id = ?1");
            tx.query_row(&sql, [tx.last_insert_rowid()], recipe_from_row).at(&self.path)
        })
    }

    /// The recipe named `name` ([`Error::NotFound`] if none).
    pub fn recipe(&self, name: &str) -> Result<RecipeRow> {
        let sql = format!("SELECT {RECIPE_COLUMNS} FROM recipes WHERE name = ?1");
        self.conn()?
            .query_row(&sql, [name], recipe_from_row)
            .optional()
            .at(&self.path)?
            .ok_or_else(|| self.not_found("recipe", name.to_string()))
    }

    /// All recipes, ordered by id.
    pub fn list_recipes(&self) -> Result<Vec<RecipeRow>> {
        let sql = format!("SELECT {RECIPE_COLUMNS} FROM recipes ORDER BY id");
        let conn = self.conn()?;
        let mut stmt = conn.prepare(&sql).at(&self.path)?;
        stmt.query_map([], recipe_from_row).at(&self.path)?.collect::<rusqlite::Result<Vec<_>>>().at(&self.path)
    }

    // ----- artifacts -----

    /// Every artifact path any row points to (absolute).
    pub fn referenced_artifacts(&self) -> Result<HashSet<PathBuf>> {
        self.referenced_artifacts_in(&*self.conn()?)
    }

    /// [`referenced_artifacts`](Self::referenced_artifacts) on a given connection or transaction.
    pub fn referenced_artifacts_in(&self, conn: &Connection) -> Result<HashSet<PathBuf>> {
        let mut stmt = conn
            .prepare(
                "SELECT artifact_path FROM datasets WHERE artifact_path IS NOT NULL
                 UNION SELECT artifact_path FROM tokenizations
                 UNION SELECT artifact_path FROM training_runs WHERE artifact_path IS NOT NULL",
            )
            .at(&self.path)?;
        let paths = stmt
            .query_map([], |r| r.get::<_, String>(0))
            .at(&self.path)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .at(&self.path)?;
        Ok(paths.iter().map(|p| self.resolve_path(p)).collect())
    }

    /// `path` relative to the workspace root, if it lies under it (spelled through the root as given
    /// or through its canonical form).
    pub(crate) fn relative_to_root(&self, path: &Path) -> Option<PathBuf> {
        if path.is_relative() {
            return Some(path.to_path_buf());
        }
        if let Ok(rel) = path.strip_prefix(&self.root) {
            return Some(rel.to_path_buf());
        }
        let canonical = std::fs::canonicalize(path).ok()?;
        canonical.strip_prefix(&self.canonical_root).ok().map(Path::to_path_buf)
    }

    /// The text stored for an artifact path: relative to the workspace root when under it. (Dataset `paths`
    /// are written as given; relative ones are read back relative to the root.)
    fn store_path(&self, path: &Path) -> Result<String> {
        let stored = self.relative_to_root(path).unwrap_or_else(|| path.to_path_buf());
        match stored.to_str() {
            Some(text) => Ok(text.to_string()),
            None => Err(Error::InvalidArgument(format!(
                "artifact path {} is not valid UTF-8; the catalog stores paths as text",
                path.display()
            ))),
        }
    }

    fn resolve_path(&self, stored: &str) -> PathBuf {
        let path = Path::new(stored);
        if path.is_absolute() { path.to_path_buf() } else { self.root.join(path) }
    }

    fn not_found(&self, kind: &'static str, name: String) -> Error {
        Error::NotFound { kind, name, catalog: self.path.clone() }
    }
}

fn recipe_from_row(r: &Row) -> rusqlite::Result<RecipeRow> {
    Ok(RecipeRow {
        id: r.get(0)?,
        name: r.get(1)?,
        body: json_column(r, 2)?,
        created_at: r.get(3)?,
        updated_at: r.get(4)?,
    })
}

fn json_column(r: &Row, idx: usize) -> rusqlite::Result<Value> {
    let text: String = r.get(idx)?;
    serde_json::from_str(&text).map_err(|e| rusqlite::Error::FromSqlConversionFailure(idx, Type::Text, Box::new(e)))
}

/// A non-negative integer column.
fn count_column(r: &Row, idx: usize) -> rusqlite::Result<u64> {
    let n: i64 = r.get(idx)?;
    u64::try_from(n).map_err(|_| rusqlite::Error::IntegralValueOutOfRange(idx, n))
}

fn opt_count_column(r: &Row, idx: usize) -> rusqlite::Result<Option<u64>> {
    match r.get::<_, Option<i64>>(idx)? {
        None => Ok(None),
        Some(n) => u64::try_from(n).map(Some).map_err(|_| rusqlite::Error::IntegralValueOutOfRange(idx, n)),
    }
}

fn json_text<T: Serialize + ?Sized>(value: &T) -> String {
    // Values, strings and vectors of strings always serialize.
    serde_json::to_string(value).unwrap_or_else(|_| "null".into())
}

/// JSON text for a column that holds an object; `Null` becomes `{}`.
fn json_object_text(value: &Value) -> String {
    if value.is_null() { "{}".into() } else { json_text(value) }
}

fn integer(n: Option<u64>, what: &str) -> Result<SqlValue> {
    match n {
        None => Ok(SqlValue::Null),
        Some(n) => i64::try_from(n)
            .map(SqlValue::Integer)
            .map_err(|_| Error::InvalidArgument(format!("{what} = {n} is too large for the catalog"))),
    }
}

fn retry_busy<T>(mut f: impl FnMut() -> rusqlite::Result<T>) -> rusqlite::Result<T> {
    let deadline = Instant::now() + BUSY_TIMEOUT;
    loop {
        match f() {
            Err(e) if e.sqlite_error_code() == Some(ErrorCode::DatabaseBusy) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            other => return other,
        }
    }
}

/// The current time as RFC 3339 UTC with milliseconds, e.g. `2024-05-01T12:00:00.000Z`.
pub(crate) fn now_rfc3339() -> String {
    format_rfc3339(SystemTime::now())
}

/// Formats `time` as RFC 3339 UTC with milliseconds; times before 1970 are clamped to the epoch.
pub(crate) fn format_rfc3339(time: SystemTime) -> String {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        since.subsec_millis()
    )
}

/// Proleptic Gregorian (year, month, day) of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn open_temp() -> (tempfile::TempDir, Catalog) {
        let dir = tempfile::tempdir().expect("tempdir");
        let catalog = Catalog::open(&dir.path().join("catalog.sqlite")).expect("open");
        (dir, catalog)
    }

    fn new_dataset(name: &str, source: &str, tags: &[&str]) -> NewDataset {
        NewDataset {
            name: name.into(),
            source: source.into(),
            spec: json!({"format": "jsonl"}),
            paths: vec![format!("/data/{name}.jsonl")],
            tags: tags.iter().map(|t| t.to_string()).collect(),
            ..NewDataset::default()
        }
    }

    #[test]
    fn catalog_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Catalog>();
    }

    #[test]
    fn rfc3339_formatting() {
        assert_eq!(format_rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        assert_eq!(format_rfc3339(t), "2023-11-14T22:13:20.123Z");
        assert_eq!(format_rfc3339(UNIX_EPOCH + Duration::from_secs(951_782_400)), "2000-02-29T00:00:00.000Z");
        assert_eq!(format_rfc3339(UNIX_EPOCH + Duration::from_secs(4_107_542_399)), "2100-02-28T23:59:59.000Z");
    }

    #[test]
    fn fresh_catalog_gets_latest_version_and_reopen_is_a_no_op() {
        let (dir, catalog) = open_temp();
        let version: i64 = catalog.conn().unwrap().pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        let mode: String = catalog.conn().unwrap().pragma_query_value(None, "journal_mode", |r| r.get(0)).unwrap();
        assert_eq!(mode, "wal");
        catalog.insert_dataset(&new_dataset("a", "local", &[])).unwrap();
        drop(catalog);
        let again = Catalog::open(&dir.path().join("catalog.sqlite")).unwrap();
        let version: i64 = again.conn().unwrap().pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        assert_eq!(again.list_datasets(&DatasetFilter::default()).unwrap().len(), 1);
    }

    #[test]
    fn creates_parent_directories() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/catalog.sqlite");
        Catalog::open(&path).unwrap();
        assert!(path.exists());
    }

    #[test]
    fn newer_catalog_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("catalog.sqlite");
        Connection::open(&path).unwrap().pragma_update(None, "user_version", 999).unwrap();
        match Catalog::open(&path) {
            Err(Error::CatalogTooNew { found: 999, supported, .. }) => assert_eq!(supported, SCHEMA_VERSION),
            other => panic!("expected CatalogTooNew, got {other:?}"),
        }
    }

    #[test]
    fn insert_and_get_by_name_and_id() {
        let (_dir, catalog) = open_temp();
        let row = catalog
            .insert_dataset(&NewDataset {
                repo_id: Some("org/wiki".into()),
                num_rows: Some(10),
                metadata: json!({"lang": "en"}),
                ..new_dataset("wiki", "hub", &["b", "a", "b"])
            })
            .unwrap();
        assert_eq!(row.name, "wiki");
        assert_eq!(row.status, DatasetStatus::Pending);
        assert_eq!(row.tags, ["a", "b"]);
        assert_eq!(row.spec, json!({"format": "jsonl"}));
        assert_eq!(row.metadata, json!({"lang": "en"}));
        assert_eq!(row.num_rows, Some(10));
        assert_eq!(row.num_bytes, None);
        assert_eq!(row.repo_id.as_deref(), Some("org/wiki"));
        assert!(row.created_at.ends_with('Z') && row.created_at == row.updated_at);

        let by_name = catalog.dataset("wiki").unwrap();
        let by_id = catalog.dataset(&row.id.to_string()).unwrap();
        assert_eq!(by_name.id, row.id);
        assert_eq!(by_id.name, "wiki");
        // A name made of digits wins over an id.
        let digits = catalog.insert_dataset(&new_dataset(&row.id.to_string(), "local", &[])).unwrap();
        assert_eq!(catalog.dataset(&row.id.to_string()).unwrap().id, digits.id);
        assert!(matches!(catalog.dataset("nope"), Err(Error::NotFound { kind: "dataset", .. })));
        assert!(matches!(catalog.dataset("12345"), Err(Error::NotFound { .. })));
        assert!(matches!(catalog.dataset("+1"), Err(Error::NotFound { .. })));
    }

    #[test]
    fn duplicate_name_is_already_exists() {
        let (_dir, catalog) = open_temp();
        catalog.insert_dataset(&new_dataset("x", "local", &[])).unwrap();
        match catalog.insert_dataset(&new_dataset("x", "hub", &[])) {
            Err(Error::AlreadyExists { kind: "dataset", name, .. }) => assert_eq!(name, "x"),
            other => panic!("expected AlreadyExists, got {other:?}"),
        }
    }

    #[test]
    fn list_filters() {
        let (_dir, catalog) = open_temp();
        catalog.insert_dataset(&new_dataset("WikiText", "hub", &["en", "wiki"])).unwrap();
        catalog.insert_dataset(&new_dataset("code", "local", &["code"])).unwrap();
        let c = catalog.insert_dataset(&new_dataset("wiki-de", "local", &["wiki"])).unwrap();
        catalog
            .update_dataset(c.id, &DatasetUpdate { status: Some(DatasetStatus::Ready), ..Default::default() })
            .unwrap();

        let names = |f: DatasetFilter| -> Vec<String> {
            catalog.list_datasets(&f).unwrap().into_iter().map(|d| d.name).collect()
        };
        assert_eq!(names(DatasetFilter::default()), ["WikiText", "code", "wiki-de"]);
        assert_eq!(
            names(DatasetFilter { name_contains: Some("wiki".into()), ..Default::default() }),
            ["WikiText", "wiki-de"]
        );
        assert_eq!(names(DatasetFilter { source: Some("local".into()), ..Default::default() }), ["code", "wiki-de"]);
        assert_eq!(names(DatasetFilter { status: Some(DatasetStatus::Ready), ..Default::default() }), ["wiki-de"]);
        assert_eq!(names(DatasetFilter { tag: Some("wiki".into()), ..Default::default() }), ["WikiText", "wiki-de"]);
        assert_eq!(
            names(DatasetFilter { tag: Some("wiki".into()), source: Some("hub".into()), ..Default::default() }),
            ["WikiText"]
        );
        assert!(names(DatasetFilter { tag: Some("none".into()), ..Default::default() }).is_empty());
        let listed = catalog.list_datasets(&DatasetFilter::default()).unwrap();
        assert_eq!(listed[0].tags, ["en", "wiki"]);
    }

    #[test]
    fn update_and_tags() {
        let (dir, catalog) = open_temp();
        let row = catalog.insert_dataset(&new_dataset("d", "local", &["old"])).unwrap();
        let artifact = dir.path().join("artifacts/dataset/x1");
        let updated = catalog
            .update_dataset(
                row.id,
                &DatasetUpdate {
                    status: Some(DatasetStatus::Failed),
                    error: Some(Some("network down".into())),
                    num_bytes: Some(42),
                    artifact_path: Some(artifact.clone()),
                    paths: Some(vec!["a".into(), "b".into()]),
                    ..Default::default()
                },
            )
            .unwrap();
        assert_eq!(updated.status, DatasetStatus::Failed);
        assert_eq!(updated.error.as_deref(), Some("network down"));
        assert_eq!(updated.num_bytes, Some(42));
        // Relative data paths are read back relative to the workspace root.
        let root = catalog.root().to_path_buf();
        assert_eq!(updated.paths, [root.join("a").to_string_lossy(), root.join("b").to_string_lossy()]);
        assert_eq!(updated.artifact_path.as_deref(), Some(artifact.as_path()));
        assert!(updated.updated_at >= row.updated_at);
        // Stored relative to the workspace root.
        let stored: String =
            catalog.conn().unwrap().query_row("SELECT artifact_path FROM datasets", [], |r| r.get(0)).unwrap();
        assert_eq!(stored, "artifacts/dataset/x1");

        let cleared = catalog
            .update_dataset(
                row.id,
                &DatasetUpdate { status: Some(DatasetStatus::Ready), error: Some(None), ..Default::default() },
            )
            .unwrap();
        assert_eq!(cleared.error, None);
        assert_eq!(cleared.num_bytes, Some(42));

        catalog.set_tags(row.id, &["z".into(), "y".into()]).unwrap();
        assert_eq!(catalog.dataset("d").unwrap().tags, ["y", "z"]);
        assert!(matches!(catalog.set_tags(999, &[]), Err(Error::NotFound { .. })));
        assert!(matches!(catalog.update_dataset(999, &DatasetUpdate::default()), Err(Error::NotFound { .. })));
    }

    #[test]
    fn status_round_trips() {
        for s in [DatasetStatus::Pending, DatasetStatus::Downloading, DatasetStatus::Ready, DatasetStatus::Failed] {
            assert_eq!(s.as_str().parse::<DatasetStatus>().unwrap(), s);
            assert_eq!(s.to_string(), s.as_str());
            assert_eq!(serde_json::to_value(s).unwrap(), json!(s.as_str()));
        }
        assert!(matches!("done".parse::<DatasetStatus>(), Err(Error::InvalidArgument(_))));
    }

    fn new_tokenization(dataset_id: i64, artifact: PathBuf, tokens: u64) -> NewTokenization {
        NewTokenization {
            dataset_id,
            tokenizer: "gpt2".into(),
            tokenizer_hash: "abc".into(),
            params: json!({"seq_len": 128}),
            num_documents: 1,
            num_sequences: 2,
            num_tokens: tokens,
            artifact_path: artifact,
            ..Default::default()
        }
    }

    #[test]
    fn tokenizations_newest_first_and_delete_cascades() {
        let (dir, catalog) = open_temp();
        let d = catalog.insert_dataset(&new_dataset("d", "local", &["t"])).unwrap();
        let other = catalog.insert_dataset(&new_dataset("other", "local", &[])).unwrap();
        let ds_artifact = dir.path().join("artifacts/dataset/d1");
        catalog
            .update_dataset(d.id, &DatasetUpdate { artifact_path: Some(ds_artifact.clone()), ..Default::default() })
            .unwrap();
        let t1 = dir.path().join("artifacts/tokens/t1");
        let t2 = dir.path().join("artifacts/tokens/t2");
        let outside = PathBuf::from("/elsewhere/tokens");
        catalog.insert_tokenization(&new_tokenization(d.id, t1.clone(), 10)).unwrap();
        let second = catalog.insert_tokenization(&new_tokenization(d.id, t2.clone(), 20)).unwrap();
        assert_eq!(second.saekit_version, env!("CARGO_PKG_VERSION"));
        assert_eq!(second.statistics, json!({}));
        catalog.insert_tokenization(&new_tokenization(other.id, outside.clone(), 30)).unwrap();
        let history = catalog.tokenizations(d.id).unwrap();
        assert_eq!(history.iter().map(|t| t.num_tokens).collect::<Vec<_>>(), [20, 10]);
        assert_eq!(history[0].artifact_path, t2);
        assert!(matches!(
            catalog.insert_tokenization(&new_tokenization(999, t1.clone(), 1)),
            Err(Error::NotFound { .. })
        ));

        let referenced = catalog.referenced_artifacts().unwrap();
        assert_eq!(referenced, HashSet::from([ds_artifact.clone(), t1.clone(), t2.clone(), outside.clone()]));

        let mut removed = catalog.delete_dataset("d").unwrap();
        removed.sort();
        assert_eq!(removed, [ds_artifact, t1, t2]);
        assert!(matches!(catalog.dataset("d"), Err(Error::NotFound { .. })));
        assert!(catalog.tokenizations(d.id).unwrap().is_empty());
        let tags: i64 =
            catalog.conn().unwrap().query_row("SELECT count(*) FROM dataset_tags", [], |r| r.get(0)).unwrap();
        assert_eq!(tags, 0);
        assert_eq!(catalog.referenced_artifacts().unwrap(), HashSet::from([outside]));
        assert!(matches!(catalog.delete_dataset("d"), Err(Error::NotFound { .. })));
        // By id too.
        assert!(catalog.delete_dataset(&other.id.to_string()).unwrap().len() == 1);
    }

    #[test]
    fn recipes() {
        let (_dir, catalog) = open_temp();
        let r = catalog.insert_recipe("mix", &json!({"parts": [1, 2]})).unwrap();
        assert_eq!(r.body, json!({"parts": [1, 2]}));
        assert_eq!(catalog.recipe("mix").unwrap().id, r.id);
        assert!(matches!(catalog.insert_recipe("mix", &json!({})), Err(Error::AlreadyExists { kind: "recipe", .. })));
        assert!(matches!(catalog.recipe("nope"), Err(Error::NotFound { kind: "recipe", .. })));
        catalog.insert_recipe("b", &json!([])).unwrap();
        assert_eq!(catalog.list_recipes().unwrap().iter().map(|r| r.name.as_str()).collect::<Vec<_>>(), ["mix", "b"]);
    }

    #[test]
    fn write_tx_rolls_back_on_error() {
        let (_dir, catalog) = open_temp();
        let result: Result<()> = catalog.with_write_tx(|tx| {
            catalog.insert_dataset_in(tx, &new_dataset("gone", "local", &[]))?;
            Err(Error::InvalidArgument("no".into()))
        });
        assert!(result.is_err());
        assert!(matches!(catalog.dataset("gone"), Err(Error::NotFound { .. })));
    }
}
