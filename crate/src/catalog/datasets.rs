//! The `datasets` table: a dataset's typed record (where its data is, how to read it, its size, schema and
//! statistics, and the fingerprint of its files) under the id of its `artifacts` row, and the reads that
//! join the two. Written by the lifecycle when a dataset is committed ([`DatasetRecord`]), or directly
//! through [`Catalog::insert_dataset_in`] for tests and tools.

use std::path::PathBuf;

use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, Row, Transaction, params};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::artifacts::{
    ARTIFACT_COLUMN_COUNT, ARTIFACT_COLUMNS, ArtifactStatus, ArtifactUpdate, NewArtifact, StoredProgress,
};
use super::db::{AtPath, Catalog, OptionalRow, integer, json_object_text, json_text, opt_count_column};
use super::lifecycle::StageRecord;
use crate::error::{Error, Result};

/// The artifact kind of datasets.
pub const DATASET_KIND: &str = "dataset";

/// Where a dataset is in its life (the status every artifact has).
pub type DatasetStatus = ArtifactStatus;

/// A dataset as recorded in the catalog: its artifact row joined with its record. A dataset still being
/// made has no record yet: its `source` is empty and its counts unknown.
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
    /// Schema, statistics and provenance (JSON).
    pub metadata: Value,
    /// Number of rows, once known.
    pub num_rows: Option<u64>,
    /// Size in bytes, once known.
    pub num_bytes: Option<u64>,
    /// Why the dataset failed, when it did.
    pub error: Option<String>,
    /// While it is being made: its progress, as its owner last wrote it.
    pub progress: Option<StoredProgress>,
    /// What was asked for when it was made.
    pub params: Value,
    /// Sizes, modification times and a content hash of its files when it was registered.
    pub fingerprint: Option<Fingerprint>,
    /// RFC 3339 UTC time of creation.
    pub created_at: String,
    /// RFC 3339 UTC time of the last change.
    pub updated_at: String,
}

/// What a dataset's files were when it was registered, to tell whether they changed since.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    /// (path, size, modification time in ns since the epoch) per file.
    pub files: Vec<(String, u64, i128)>,
    /// sha256 over every file's bytes, in order.
    pub sha256: String,
}

/// A dataset's record, as a stage commits it.
#[derive(Debug, Clone, Default)]
pub struct DatasetRecord {
    pub source: String,
    pub repo_id: Option<String>,
    pub spec: Value,
    pub paths: Vec<String>,
    pub metadata: Value,
    pub num_rows: Option<u64>,
    pub num_bytes: Option<u64>,
    pub fingerprint: Option<Fingerprint>,
}

impl StageRecord for DatasetRecord {
    fn write_in(&self, catalog: &Catalog, tx: &Transaction, id: i64) -> Result<()> {
        tx.execute(
            "INSERT OR REPLACE INTO datasets (id, source, repo_id, spec, paths, metadata, num_rows, num_bytes,
                                              fingerprint)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![
                id,
                self.source,
                self.repo_id,
                json_object_text(&self.spec),
                json_text(&self.paths),
                json_object_text(&self.metadata),
                integer(self.num_rows, "num_rows")?,
                integer(self.num_bytes, "num_bytes")?,
                self.fingerprint.as_ref().map(json_text),
            ],
        )
        .at(catalog.path())?;
        Ok(())
    }
}

/// A dataset to add to the catalog directly (its artifact row and record at once).
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
    pub status: Option<DatasetStatus>,
    pub spec: Option<Value>,
    pub paths: Option<Vec<String>>,
    pub artifact_path: Option<PathBuf>,
    /// New metadata (replaces the old, no merge).
    pub metadata: Option<Value>,
    pub num_rows: Option<u64>,
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
    /// Exact status (as read now: a dead owner's dataset matches `interrupted`).
    pub status: Option<DatasetStatus>,
    /// Datasets carrying this tag.
    pub tag: Option<String>,
}

/// A dataset's source: its record's, or while it has none (being made, or failed) what its parameters say.
const SOURCE: &str = "COALESCE(d.source, json_extract(a.params, '$.origin'), '')";

/// `reread_interrupted`: a row read as working whose claim is free may be a snapshot taken just before
/// its owner committed and let go of the claim; a second read (a new snapshot) tells the two apart.
fn dataset_select() -> String {
    format!(
        "SELECT {ARTIFACT_COLUMNS}, {SOURCE}, COALESCE(d.repo_id, json_extract(a.params, '$.repo')), COALESCE(d.spec, '{{}}'), \
         COALESCE(d.paths, '[]'), COALESCE(d.metadata, '{{}}'), d.num_rows, d.num_bytes, d.fingerprint \
         FROM artifacts a LEFT JOIN datasets d ON d.id = a.id WHERE a.kind = '{DATASET_KIND}'"
    )
}

impl Catalog {
    /// Adds a dataset (its artifact row, record and tags). A name already taken gives
    /// [`Error::AlreadyExists`].
    pub fn insert_dataset(&self, new: &NewDataset) -> Result<DatasetRow> {
        self.with_write_tx(|tx| self.insert_dataset_in(tx, new))
    }

    /// [`insert_dataset`](Self::insert_dataset) inside a transaction from [`with_write_tx`](Self::with_write_tx).
    pub fn insert_dataset_in(&self, tx: &Transaction, new: &NewDataset) -> Result<DatasetRow> {
        let artifact = self.insert_artifact_in(
            tx,
            &NewArtifact { kind: DATASET_KIND, name: new.name.clone(), status: new.status, ..Default::default() },
        )?;
        let record = DatasetRecord {
            source: new.source.clone(),
            repo_id: new.repo_id.clone(),
            spec: new.spec.clone(),
            paths: new.paths.clone(),
            metadata: new.metadata.clone(),
            num_rows: new.num_rows,
            num_bytes: new.num_bytes,
            fingerprint: None,
        };
        record.write_in(self, tx, artifact.id)?;
        self.replace_tags_in(tx, artifact.id, &new.tags)?;
        self.dataset_by_id(tx, artifact.id)
    }

    /// Applies `update` to dataset `id` and bumps its `updated_at`.
    pub fn update_dataset(&self, id: i64, update: &DatasetUpdate) -> Result<DatasetRow> {
        self.with_write_tx(|tx| self.update_dataset_in(tx, id, update))
    }

    /// [`update_dataset`](Self::update_dataset) inside a transaction from [`with_write_tx`](Self::with_write_tx).
    pub fn update_dataset_in(&self, tx: &Transaction, id: i64, update: &DatasetUpdate) -> Result<DatasetRow> {
        self.dataset_by_id(tx, id)?;
        let artifact = ArtifactUpdate {
            status: update.status,
            path: update.artifact_path.clone(),
            error: update.error.clone(),
            ..Default::default()
        };
        self.update_artifact_in(tx, id, &artifact)?;
        tx.execute("INSERT OR IGNORE INTO datasets (id, source) VALUES (?1, '')", [id]).at(self.path())?;
        let mut sets = Vec::new();
        let mut values = Vec::new();
        if let Some(spec) = &update.spec {
            sets.push("spec = ?");
            values.push(SqlValue::Text(json_object_text(spec)));
        }
        if let Some(paths) = &update.paths {
            sets.push("paths = ?");
            values.push(SqlValue::Text(json_text(paths)));
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
        if !sets.is_empty() {
            values.push(SqlValue::Integer(id));
            let sql = format!("UPDATE datasets SET {} WHERE id = ?", sets.join(", "));
            tx.execute(&sql, rusqlite::params_from_iter(values)).at(self.path())?;
        }
        self.dataset_by_id(tx, id)
    }

    /// The dataset named `name_or_id`, or, if no dataset has that name and it is a number, the dataset
    /// with that id. [`Error::NotFound`] otherwise.
    pub fn dataset(&self, name_or_id: &str) -> Result<DatasetRow> {
        self.dataset_in(&*self.conn()?, name_or_id)
    }

    /// [`dataset`](Self::dataset) on a given connection or transaction (e.g. inside
    /// [`with_write_tx`](Self::with_write_tx)).
    pub fn dataset_in(&self, conn: &Connection, name_or_id: &str) -> Result<DatasetRow> {
        let sql = format!("{} AND a.name = ?1", dataset_select());
        let read = || conn.query_row(&sql, [name_or_id], |r| self.dataset_from_row(r)).optional_row().at(self.path());
        let mut row = read()?;
        if row.as_ref().is_some_and(|r| r.status == DatasetStatus::Interrupted) {
            row = read()?; // see `reread_interrupted`
        }
        match row {
            Some(row) => self.with_tags(conn, row),
            None => match name_or_id.parse::<i64>() {
                Ok(id) if name_or_id.bytes().all(|b| b.is_ascii_digit()) => self.dataset_by_id(conn, id),
                _ => Err(self.not_found(DATASET_KIND, name_or_id.to_string())),
            },
        }
    }

    pub(crate) fn dataset_by_id(&self, conn: &Connection, id: i64) -> Result<DatasetRow> {
        let sql = format!("{} AND a.id = ?1", dataset_select());
        let read = || conn.query_row(&sql, [id], |r| self.dataset_from_row(r)).optional_row().at(self.path());
        let mut row = read()?;
        if row.as_ref().is_some_and(|r| r.status == DatasetStatus::Interrupted) {
            row = read()?; // see `reread_interrupted`
        }
        match row {
            Some(row) => self.with_tags(conn, row),
            None => Err(self.not_found(DATASET_KIND, id.to_string())),
        }
    }

    /// The datasets matching `filter`, ordered by id.
    pub fn list_datasets(&self, filter: &DatasetFilter) -> Result<Vec<DatasetRow>> {
        let mut wheres = Vec::new();
        let mut values = Vec::new();
        if let Some(part) = &filter.name_contains {
            wheres.push("instr(lower(a.name), lower(?)) > 0".to_string());
            values.push(SqlValue::Text(part.clone()));
        }
        if let Some(source) = &filter.source {
            wheres.push(format!("{SOURCE} = ?"));
            values.push(SqlValue::Text(source.clone()));
        }
        if let Some(tag) = &filter.tag {
            wheres.push("EXISTS (SELECT 1 FROM artifact_tags t WHERE t.artifact_id = a.id AND t.tag = ?)".to_string());
            values.push(SqlValue::Text(tag.clone()));
        }
        let extra: String = wheres.iter().map(|w| format!(" AND {w}")).collect();
        let sql = format!("{}{extra} ORDER BY a.id", dataset_select());
        let conn = self.conn()?;
        let mut stmt = conn.prepare(&sql).at(self.path())?;
        let rows = stmt
            .query_map(rusqlite::params_from_iter(values), |r| self.dataset_from_row(r))
            .at(self.path())?
            .collect::<rusqlite::Result<Vec<_>>>()
            .at(self.path())?;
        // Status is filtered after reading: `interrupted` is decided then.
        let rows = rows
            .into_iter()
            .map(
                |row| {
                    if row.status == DatasetStatus::Interrupted { self.dataset_by_id(&conn, row.id) } else { Ok(row) }
                },
            )
            .collect::<Result<Vec<_>>>()?;
        rows.into_iter()
            .filter(|row| filter.status.is_none_or(|s| s == row.status))
            .map(|row| self.with_tags(&conn, row))
            .collect()
    }

    /// Deletes a dataset (refusing, with [`Error::InUse`], one that something was made from, unless
    /// `cascade`) in one transaction, and returns every artifact directory that went with it; the
    /// caller removes those (see `remove_artifact`).
    pub fn delete_dataset(&self, name_or_id: &str, cascade: bool) -> Result<Vec<PathBuf>> {
        self.with_write_tx(|tx| self.delete_dataset_in(tx, name_or_id, cascade))
    }

    /// [`delete_dataset`](Self::delete_dataset) inside a transaction from [`with_write_tx`](Self::with_write_tx).
    pub fn delete_dataset_in(&self, tx: &Transaction, name_or_id: &str, cascade: bool) -> Result<Vec<PathBuf>> {
        let row = self.dataset_in(tx, name_or_id)?;
        self.delete_artifact_in(tx, row.id, cascade)
    }

    fn dataset_from_row(&self, r: &Row) -> rusqlite::Result<DatasetRow> {
        let artifact = self.artifact_from_row(r)?;
        let c = ARTIFACT_COLUMN_COUNT;
        let paths_text: String = r.get(c + 3)?;
        let paths: Vec<String> = serde_json::from_str(&paths_text)
            .map_err(|e| rusqlite::Error::FromSqlConversionFailure(c + 3, rusqlite::types::Type::Text, Box::new(e)))?;
        // Data files inside the workspace are stored relative to it, like artifact paths.
        let paths = paths.iter().map(|p| self.resolve_path(p).to_string_lossy().into_owned()).collect();
        let fingerprint = r.get::<_, Option<String>>(c + 7)?.and_then(|text| serde_json::from_str(&text).ok());
        Ok(DatasetRow {
            id: artifact.id,
            name: artifact.name,
            source: r.get(c)?,
            repo_id: r.get(c + 1)?,
            spec: super::db::json_column(r, c + 2)?,
            paths,
            artifact_path: artifact.path,
            status: artifact.status,
            tags: Vec::new(),
            metadata: super::db::json_column(r, c + 4)?,
            num_rows: opt_count_column(r, c + 5)?,
            num_bytes: opt_count_column(r, c + 6)?,
            error: artifact.error,
            progress: artifact.progress,
            params: artifact.params,
            fingerprint,
            created_at: artifact.created_at,
            updated_at: artifact.updated_at,
        })
    }

    fn with_tags(&self, conn: &Connection, mut row: DatasetRow) -> Result<DatasetRow> {
        row.tags = self.tags_in(conn, row.id)?;
        Ok(row)
    }
}

/// `Err` naming the dataset when it is not ready.
pub(crate) fn require_ready(row: &DatasetRow) -> Result<()> {
    if row.status == DatasetStatus::Ready {
        return Ok(());
    }
    Err(Error::InvalidArgument(format!(
        "dataset `{}` is {}, not ready; {}",
        row.name,
        row.status,
        if row.status.is_working() { "wait for it to finish" } else { "add or import it again first" }
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::db::open_temp;
    use serde_json::json;

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
    fn insert_and_get_by_name_and_id() {
        let (_dir, catalog) = open_temp();
        let row = catalog
            .insert_dataset(&NewDataset {
                repo_id: Some("org/wiki".into()),
                num_rows: Some(10),
                metadata: json!({"lang": "en"}),
                status: DatasetStatus::Ready,
                ..new_dataset("wiki", "hub", &["b", "a", "b"])
            })
            .unwrap();
        assert_eq!(row.name, "wiki");
        assert_eq!(row.status, DatasetStatus::Ready);
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
        // A pending dataset nobody is making reads as interrupted.
        assert_eq!(digits.status, DatasetStatus::Interrupted);
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
        assert_eq!(
            names(DatasetFilter { status: Some(DatasetStatus::Interrupted), ..Default::default() }),
            ["WikiText", "code"]
        );
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
        let stored: String = catalog.conn().unwrap().query_row("SELECT path FROM artifacts", [], |r| r.get(0)).unwrap();
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
        assert!(matches!(catalog.update_dataset(999, &DatasetUpdate::default()), Err(Error::NotFound { .. })));
    }
}
