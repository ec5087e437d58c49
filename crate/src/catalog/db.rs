//! The SQLite catalog of a workspace: one database file (`catalog.sqlite` at the workspace root). This
//! module owns the connection (one per copy of saekit's code, see `Opened`), the schema and its
//! migrations, write transactions, and how paths are stored. What is in the tables belongs to the
//! modules that own them: [`super::artifacts`] (every artifact's life, tags and lineage),
//! [`super::datasets`], and each stage's own table module (e.g. `tokenize::table`).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rusqlite::types::{Type, Value as SqlValue};
use rusqlite::{Connection, ErrorCode, Row, Transaction, TransactionBehavior};
use serde::Serialize;
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
    // v2: one `artifacts` table for every stage's life (status, progress, parameters, the directory it
    // owns, tags, lineage); the stage tables keep only their typed records, keyed by the artifact's id.
    // v1's status CHECK constraint cannot be altered in place, so `datasets` and `tokenizations` are
    // rebuilt. Only ready datasets keep a record (as in v2, where a record is written at commit); the
    // others keep their name, status, error and where they came from. `migrate` turns foreign keys off around every migration: inside a transaction
    // `PRAGMA foreign_keys = OFF` is ignored, and dropping v1's `datasets` would cascade to its tags and
    // tokenizations. Dataset ids are kept; tokenizations are numbered after the datasets; ids are never
    // reused (AUTOINCREMENT), so an id in a report or a lineage names one artifact forever. v1's
    // `recipes` and `training_runs` tables are dropped: nothing ever wrote them.
    "CREATE TABLE artifacts (
        id             INTEGER PRIMARY KEY AUTOINCREMENT,
        kind           TEXT NOT NULL,
        name           TEXT NOT NULL,
        status         TEXT NOT NULL,
        params         TEXT NOT NULL DEFAULT '{}',
        progress       TEXT,
        path           TEXT,
        error          TEXT,
        saekit_version TEXT NOT NULL,
        created_at     TEXT NOT NULL,
        updated_at     TEXT NOT NULL,
        UNIQUE (kind, name)
    );
    CREATE INDEX artifacts_status ON artifacts(status);
    CREATE TABLE lineage (
        child  INTEGER NOT NULL REFERENCES artifacts(id) ON DELETE CASCADE,
        parent INTEGER NOT NULL REFERENCES artifacts(id),
        PRIMARY KEY (child, parent)
    ) WITHOUT ROWID;
    CREATE INDEX lineage_parent ON lineage(parent);
    CREATE TABLE artifact_tags (
        artifact_id INTEGER NOT NULL REFERENCES artifacts(id) ON DELETE CASCADE,
        tag         TEXT NOT NULL,
        PRIMARY KEY (artifact_id, tag)
    ) WITHOUT ROWID;
    CREATE INDEX artifact_tags_tag ON artifact_tags(tag);

    INSERT INTO artifacts (id, kind, name, status, params, path, error, saekit_version, created_at, updated_at)
        SELECT id, 'dataset', name, status,
               CASE WHEN source = 'local' AND artifact_path IS NULL
                    THEN json_object('origin', 'local', 'mode', 'add', 'source', json(spec))
                    WHEN source = 'local' THEN json_object('origin', 'local', 'mode', 'import')
                    WHEN repo_id IS NOT NULL THEN json_object('origin', source, 'repo', repo_id)
                    ELSE json_object('origin', source) END,
               artifact_path, error,
               COALESCE(json_extract(metadata, '$.saekit_version'), 'unknown'), created_at, updated_at
        FROM datasets;
    INSERT INTO artifacts (id, kind, name, status, params, path, saekit_version, created_at, updated_at)
        SELECT t.id + (SELECT COALESCE(MAX(id), 0) FROM datasets), 'tokenization',
               d.name || '/' || t.tokenizer || '/v1-' || t.id, 'ready',
               json_object('tokenizer', json_object('name', t.tokenizer, 'hash', t.tokenizer_hash),
                           'params', json(t.params)),
               t.artifact_path, t.saekit_version, t.created_at, t.created_at
        FROM tokenizations t JOIN datasets d ON d.id = t.dataset_id;
    INSERT INTO lineage (child, parent)
        SELECT id + (SELECT COALESCE(MAX(id), 0) FROM datasets), dataset_id FROM tokenizations;
    INSERT INTO artifact_tags (artifact_id, tag) SELECT dataset_id, tag FROM dataset_tags;

    CREATE TABLE datasets_v2 (
        id          INTEGER PRIMARY KEY REFERENCES artifacts(id) ON DELETE CASCADE,
        source      TEXT NOT NULL,
        repo_id     TEXT,
        spec        TEXT NOT NULL DEFAULT '{}',
        paths       TEXT NOT NULL DEFAULT '[]',
        metadata    TEXT NOT NULL DEFAULT '{}',
        num_rows    INTEGER,
        num_bytes   INTEGER,
        fingerprint TEXT
    );
    INSERT INTO datasets_v2 (id, source, repo_id, spec, paths, metadata, num_rows, num_bytes)
        SELECT id, source, repo_id, spec, paths, metadata, num_rows, num_bytes FROM datasets
        WHERE status = 'ready';
    CREATE TABLE tokenizations_v2 (
        id             INTEGER PRIMARY KEY REFERENCES artifacts(id) ON DELETE CASCADE,
        tokenizer      TEXT NOT NULL,
        tokenizer_hash TEXT NOT NULL,
        num_documents  INTEGER NOT NULL,
        num_sequences  INTEGER NOT NULL,
        num_tokens     INTEGER NOT NULL,
        statistics     TEXT NOT NULL DEFAULT '{}'
    );
    INSERT INTO tokenizations_v2 (id, tokenizer, tokenizer_hash, num_documents, num_sequences, num_tokens,
                                  statistics)
        SELECT id + (SELECT COALESCE(MAX(id), 0) FROM datasets), tokenizer, tokenizer_hash, num_documents,
               num_sequences, num_tokens, statistics
        FROM tokenizations;

    DROP TABLE training_runs;
    DROP TABLE recipes;
    DROP TABLE tokenizations;
    DROP TABLE dataset_tags;
    DROP TABLE datasets;
    ALTER TABLE datasets_v2 RENAME TO datasets;
    ALTER TABLE tokenizations_v2 RENAME TO tokenizations;
    CREATE INDEX datasets_source ON datasets(source);",
    // v3: models (a row per model identity, no directory: the weights stay where they were loaded from)
    // and activation caches, each a stage's typed record under its artifact's id.
    "CREATE TABLE models (
        id          INTEGER PRIMARY KEY REFERENCES artifacts(id) ON DELETE CASCADE,
        model       TEXT NOT NULL,
        family      TEXT NOT NULL,
        source      TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        parameters  INTEGER NOT NULL
    );
    CREATE TABLE activation_caches (
        id          INTEGER PRIMARY KEY REFERENCES artifacts(id) ON DELETE CASCADE,
        model       TEXT NOT NULL,
        hooks       TEXT NOT NULL,
        dtype       TEXT NOT NULL,
        num_tokens  INTEGER NOT NULL,
        num_bytes   INTEGER NOT NULL,
        statistics  TEXT NOT NULL DEFAULT '{}'
    );",
    // v4: SAE training runs: the typed record (steps, tokens, time, each SAE's final metrics) under the
    // run's artifact id; the SAEs' files and the metrics history are in the run's directory.
    "CREATE TABLE sae_runs (
        id          INTEGER PRIMARY KEY REFERENCES artifacts(id) ON DELETE CASCADE,
        steps       INTEGER NOT NULL,
        tokens      INTEGER NOT NULL,
        seconds     REAL NOT NULL,
        saes        TEXT NOT NULL DEFAULT '[]'
    );",
    // v5: mixes. A mixed dataset's typed record (its recipe and what it realised) under its artifact id
    // (the dataset's own record is in `datasets`); recipes saved by name with every version kept.
    "CREATE TABLE mixes (
        id          INTEGER PRIMARY KEY REFERENCES artifacts(id) ON DELETE CASCADE,
        recipe_hash TEXT NOT NULL,
        recipe      TEXT NOT NULL,
        report      TEXT NOT NULL
    );
    CREATE TABLE mix_recipes (
        id       INTEGER PRIMARY KEY,
        name     TEXT NOT NULL,
        version  INTEGER NOT NULL,
        hash     TEXT NOT NULL,
        body     TEXT NOT NULL,
        saved_at TEXT NOT NULL,
        UNIQUE (name, version)
    );",
    // v6: versions and collections. Every move of a name's pointer to one of its versions (the latest row
    // is where it points), and each incremental export's checkpoint of a collection.
    "CREATE TABLE version_pointers (
        id          INTEGER PRIMARY KEY,
        name        TEXT NOT NULL,
        artifact_id INTEGER NOT NULL REFERENCES artifacts(id) ON DELETE CASCADE,
        version     INTEGER NOT NULL,
        switched_at TEXT NOT NULL
    );
    CREATE INDEX version_pointers_name ON version_pointers (name);
    CREATE TABLE export_checkpoints (
        id            INTEGER PRIMARY KEY,
        collection_id INTEGER NOT NULL REFERENCES artifacts(id) ON DELETE CASCADE,
        path          TEXT NOT NULL,
        records       INTEGER NOT NULL,
        last_id       INTEGER NOT NULL,
        exported_at   TEXT NOT NULL
    );",
    // v7: provenance. Each session (a process: kernel, CLI command) that opened the workspace, with what
    // built it and the machine; each artifact it read, reused or made (kind and name kept, so a report
    // still names what was deleted since); and the content hash of an artifact's files, taken once.
    "CREATE TABLE sessions (
        id           TEXT PRIMARY KEY,
        kind         TEXT NOT NULL,
        started_at   TEXT NOT NULL,
        last_seen_at TEXT NOT NULL,
        facts        TEXT NOT NULL DEFAULT '{}'
    );
    CREATE TABLE session_artifacts (
        session     TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
        artifact_id INTEGER NOT NULL,
        kind        TEXT NOT NULL,
        name        TEXT NOT NULL,
        touch       TEXT NOT NULL,
        at          TEXT NOT NULL,
        PRIMARY KEY (session, artifact_id, touch)
    ) WITHOUT ROWID;
    CREATE TABLE artifact_hashes (
        artifact_id INTEGER PRIMARY KEY REFERENCES artifacts(id) ON DELETE CASCADE,
        sha256      TEXT NOT NULL,
        bytes       INTEGER NOT NULL
    );",
];

/// The catalog schema version this saekit writes and understands.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// The catalog database of one workspace. Cheap to share between threads (`Send + Sync`); every write is
/// one `BEGIN IMMEDIATE` transaction, so several processes may use one catalog at once.
pub struct Catalog {
    path: PathBuf,
    root: PathBuf,
    canonical_root: PathBuf,
    conn: Mutex<Opened>,
}

/// The connections, one per copy of saekit's code that used this catalog.
///
/// In a notebook (evcxr) every cell's compiled code carries its own copy of saekit, bundled SQLite
/// included, so a `Workspace` made in one cell and used in the next (or by a job a cell started) would
/// hand one SQLite's connection to another SQLite's functions (a crash). Each copy opens and uses its own
/// connection; on drop, a copy closes only its own and leaves the others alone (only their own copy
/// could close them safely). Several copies using one workspace at once (a job from an earlier cell
/// while a later cell reads the catalog) each keep theirs, instead of replacing each other's.
struct Opened {
    conns: Vec<(usize, Connection)>,
}

/// Identifies the copy of this code that is running: the address of a static, which each copy has its own.
fn this_copy() -> usize {
    static COPY: u8 = 0;
    std::ptr::addr_of!(COPY) as usize
}

impl Drop for Opened {
    fn drop(&mut self) {
        for (copy, conn) in self.conns.drain(..) {
            if copy == this_copy() {
                drop(conn);
            } else {
                std::mem::forget(conn);
            }
        }
    }
}

/// A locked connection: this copy's.
pub(crate) struct ConnGuard<'a> {
    opened: MutexGuard<'a, Opened>,
    index: usize,
}

impl std::ops::Deref for ConnGuard<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        &self.opened.conns[self.index].1
    }
}

impl std::ops::DerefMut for ConnGuard<'_> {
    fn deref_mut(&mut self) -> &mut Connection {
        &mut self.opened.conns[self.index].1
    }
}

pub(crate) fn open_connection(path: &Path, busy_timeout: Duration) -> Result<Connection> {
    let conn = Connection::open(path).at(path)?;
    conn.busy_timeout(busy_timeout).at(path)?;
    // Switching to WAL takes an exclusive lock; a first open racing another may see SQLITE_BUSY
    // without the busy handler being consulted, so retry for as long as the busy timeout.
    retry_busy(busy_timeout, || {
        conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get::<_, String>(0))
    })
    .at(path)?;
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
pub(crate) trait AtPath<T> {
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
        let conn = open_connection(&path, BUSY_TIMEOUT)?;
        let catalog =
            Catalog { path, root, canonical_root, conn: Mutex::new(Opened { conns: vec![(this_copy(), conn)] }) };
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

    /// This copy's connection, locked.
    pub(crate) fn conn(&self) -> Result<ConnGuard<'_>> {
        // A panic inside a transaction rolls it back as it unwinds, so the connection is still sound.
        let mut opened = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        let copy = this_copy();
        let index = match opened.conns.iter().position(|(c, _)| *c == copy) {
            Some(index) => index,
            None => {
                opened.conns.push((copy, open_connection(&self.path, BUSY_TIMEOUT)?));
                opened.conns.len() - 1
            }
        };
        Ok(ConnGuard { opened, index })
    }

    fn migrate(&self) -> Result<()> {
        let mut conn = self.conn()?;
        let current = self.user_version(&conn)?;
        if current == SCHEMA_VERSION {
            return Ok(());
        }
        // Off for the table rebuilds (ignored inside a transaction, so set here), checked before each
        // commit, and on again whatever happens.
        conn.pragma_update(None, "foreign_keys", "OFF").at(&self.path)?;
        let result = (|| -> Result<()> {
            for target in (current.max(0) + 1)..=SCHEMA_VERSION {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).at(&self.path)?;
                // Another process may have migrated while we waited for the lock.
                let now = self.user_version(&tx)?;
                if now >= target {
                    continue;
                }
                tx.execute_batch(MIGRATIONS[(target - 1) as usize]).at(&self.path)?;
                let broken: Option<String> =
                    tx.query_row("PRAGMA foreign_key_check", [], |r| r.get(0)).optional_row().at(&self.path)?;
                if let Some(table) = broken {
                    return Err(Error::InvalidArgument(format!(
                        "catalog {}: upgrading to schema v{target} left a dangling reference in `{table}`; \
                         nothing was changed",
                        self.path.display()
                    )));
                }
                tx.pragma_update(None, "user_version", target).at(&self.path)?;
                tx.commit().at(&self.path)?;
            }
            Ok(())
        })();
        conn.pragma_update(None, "foreign_keys", "ON").at(&self.path)?;
        result
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

    /// Runs `f` on this copy's connection (for reads; use [`with_write_tx`](Self::with_write_tx) to write).
    pub fn with_conn<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        f(&*self.conn()?)
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
    pub(crate) fn store_path(&self, path: &Path) -> Result<String> {
        let stored = self.relative_to_root(path).unwrap_or_else(|| path.to_path_buf());
        match stored.to_str() {
            Some(text) => Ok(text.to_string()),
            None => Err(Error::InvalidArgument(format!(
                "artifact path {} is not valid UTF-8; the catalog stores paths as text",
                path.display()
            ))),
        }
    }

    pub(crate) fn resolve_path(&self, stored: &str) -> PathBuf {
        let path = Path::new(stored);
        if path.is_absolute() { path.to_path_buf() } else { self.root.join(path) }
    }

    pub(crate) fn not_found(&self, kind: &'static str, name: String) -> Error {
        Error::NotFound { kind, name, catalog: self.path.clone() }
    }

    pub(crate) fn already_exists(&self, kind: &'static str, name: String) -> Error {
        Error::AlreadyExists { kind, name, catalog: self.path.clone() }
    }
}

/// `Option` for a query that may return no row.
pub(crate) trait OptionalRow<T> {
    fn optional_row(self) -> rusqlite::Result<Option<T>>;
}

impl<T> OptionalRow<T> for rusqlite::Result<T> {
    fn optional_row(self) -> rusqlite::Result<Option<T>> {
        use rusqlite::OptionalExtension;
        self.optional()
    }
}

pub(crate) fn json_column(r: &Row, idx: usize) -> rusqlite::Result<Value> {
    let text: String = r.get(idx)?;
    serde_json::from_str(&text).map_err(|e| rusqlite::Error::FromSqlConversionFailure(idx, Type::Text, Box::new(e)))
}

pub(crate) fn opt_count_column(r: &Row, idx: usize) -> rusqlite::Result<Option<u64>> {
    match r.get::<_, Option<i64>>(idx)? {
        None => Ok(None),
        Some(n) => u64::try_from(n).map(Some).map_err(|_| rusqlite::Error::IntegralValueOutOfRange(idx, n)),
    }
}

pub(crate) fn json_text<T: Serialize + ?Sized>(value: &T) -> String {
    // Values, strings and vectors of strings always serialize.
    serde_json::to_string(value).unwrap_or_else(|_| "null".into())
}

/// JSON text for a column that holds an object; `Null` becomes `{}`.
pub(crate) fn json_object_text(value: &Value) -> String {
    if value.is_null() { "{}".into() } else { json_text(value) }
}

pub(crate) fn integer(n: Option<u64>, what: &str) -> Result<SqlValue> {
    match n {
        None => Ok(SqlValue::Null),
        Some(n) => i64::try_from(n)
            .map(SqlValue::Integer)
            .map_err(|_| Error::InvalidArgument(format!("{what} = {n} is too large for the catalog"))),
    }
}

fn retry_busy<T>(timeout: Duration, mut f: impl FnMut() -> rusqlite::Result<T>) -> rusqlite::Result<T> {
    let deadline = Instant::now() + timeout;
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
    let time: chrono::DateTime<chrono::Utc> = time.max(UNIX_EPOCH).into();
    time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[cfg(test)]
pub(crate) fn open_temp() -> (tempfile::TempDir, Catalog) {
    let dir = tempfile::tempdir().expect("tempdir");
    let catalog = Catalog::open(&dir.path().join("catalog.sqlite")).expect("open");
    (dir, catalog)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(catalog: &Catalog) -> i64 {
        catalog.conn().unwrap().pragma_query_value(None, "user_version", |r| r.get(0)).unwrap()
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
        assert_eq!(version(&catalog), SCHEMA_VERSION);
        let mode: String = catalog.conn().unwrap().pragma_query_value(None, "journal_mode", |r| r.get(0)).unwrap();
        assert_eq!(mode, "wal");
        let fk: i64 = catalog.conn().unwrap().pragma_query_value(None, "foreign_keys", |r| r.get(0)).unwrap();
        assert_eq!(fk, 1, "foreign keys are on again after the migrations");
        drop(catalog);
        let again = Catalog::open(&dir.path().join("catalog.sqlite")).unwrap();
        assert_eq!(version(&again), SCHEMA_VERSION);
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
    fn write_tx_rolls_back_on_error() {
        let (_dir, catalog) = open_temp();
        let result: Result<()> = catalog.with_write_tx(|tx| {
            tx.execute("CREATE TABLE scratch (x)", []).at(&catalog.path)?;
            Err(Error::InvalidArgument("no".into()))
        });
        assert!(result.is_err());
        let tables: i64 = catalog
            .conn()
            .unwrap()
            .query_row("SELECT count(*) FROM sqlite_master WHERE name = 'scratch'", [], |r| r.get(0))
            .unwrap();
        assert_eq!(tables, 0);
    }
}
