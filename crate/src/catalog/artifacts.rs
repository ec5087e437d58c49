//! The `artifacts` table: one row for everything a workspace holds (a dataset, a tokenization; later a
//! mix, an activation cache, an SAE), whatever stage made it. A row carries the artifact's life (status,
//! progress while it is being made, the error if it failed), the parameters it was asked for, the
//! directory it owns, its tags and its parents (lineage). Each stage keeps its typed record in a table of
//! its own under the same id; [`super::lifecycle`] is the one place that writes these rows.

use std::collections::{BTreeSet, HashSet};
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, Value as SqlValue, ValueRef};
use rusqlite::{Connection, Row, Transaction, params};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::db::{AtPath, Catalog, OptionalRow, json_column, json_object_text, json_text, now_rfc3339};
use crate::error::{Error, Result};

/// Where an artifact is in its life. The working statuses (`adding` … `tokenizing`) say which stage is
/// making it; a new stage adds its own here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ArtifactStatus {
    /// Claimed, its work not started (also v1's status for an attempt in progress).
    #[default]
    Pending,
    /// Files registered by reference are being read for their schema and statistics.
    Adding,
    /// Data is being copied into the workspace.
    Importing,
    /// Files are being fetched from the Hub.
    Downloading,
    /// Documents are being tokenized.
    Tokenizing,
    /// A model's activations are being computed and written.
    Caching,
    /// Sparse autoencoders are being trained.
    Training,
    /// Sources are being mixed into a dataset.
    Mixing,
    /// Complete and usable.
    Ready,
    /// The work failed; the row's `error` says why.
    Failed,
    /// The process making it died (killed, crashed): a working status whose owner no longer holds the
    /// artifact's claim. Decided when the row is read, never stored; the next attempt takes it over.
    Interrupted,
}

const ALL_STATUSES: [ArtifactStatus; 11] = [
    ArtifactStatus::Pending,
    ArtifactStatus::Adding,
    ArtifactStatus::Importing,
    ArtifactStatus::Downloading,
    ArtifactStatus::Tokenizing,
    ArtifactStatus::Caching,
    ArtifactStatus::Training,
    ArtifactStatus::Mixing,
    ArtifactStatus::Ready,
    ArtifactStatus::Failed,
    ArtifactStatus::Interrupted,
];

impl ArtifactStatus {
    /// The name stored in the catalog.
    pub fn as_str(self) -> &'static str {
        match self {
            ArtifactStatus::Pending => "pending",
            ArtifactStatus::Adding => "adding",
            ArtifactStatus::Importing => "importing",
            ArtifactStatus::Downloading => "downloading",
            ArtifactStatus::Tokenizing => "tokenizing",
            ArtifactStatus::Caching => "caching",
            ArtifactStatus::Training => "training",
            ArtifactStatus::Mixing => "mixing",
            ArtifactStatus::Ready => "ready",
            ArtifactStatus::Failed => "failed",
            ArtifactStatus::Interrupted => "interrupted",
        }
    }

    /// True while some process is (or was, if it died) making the artifact.
    pub fn is_working(self) -> bool {
        !matches!(self, ArtifactStatus::Ready | ArtifactStatus::Failed | ArtifactStatus::Interrupted)
    }
}

impl fmt::Display for ArtifactStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ArtifactStatus {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        ALL_STATUSES.into_iter().find(|status| status.as_str() == s).ok_or_else(|| {
            let names: Vec<&str> = ALL_STATUSES.iter().map(|s| s.as_str()).collect();
            Error::InvalidArgument(format!("unknown status `{s}`; expected one of {}", names.join(", ")))
        })
    }
}

impl ToSql for ArtifactStatus {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.as_str()))
    }
}

impl FromSql for ArtifactStatus {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        value.as_str()?.parse().map_err(FromSqlError::other)
    }
}

/// The progress of an artifact being made, as another process reads it from the catalog.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StoredProgress {
    /// What the work is doing ("reading", "tokenizing").
    pub phase: String,
    /// What `done` counts ("bytes", "rows").
    pub unit: String,
    pub done: u64,
    pub total: Option<u64>,
    /// Other counts ("1,024 documents · 310,554 tokens").
    pub detail: String,
    /// Seconds since the work started.
    pub elapsed_secs: f64,
    /// When this was written (RFC 3339 UTC).
    pub at: String,
}

impl StoredProgress {
    /// `42% of 12.0 MiB read` style summary.
    pub fn summary(&self) -> String {
        let amount = |n: u64| {
            if self.unit == "bytes" {
                crate::display::bytes(n)
            } else {
                format!("{} {}", crate::error::count(n), self.unit)
            }
        };
        let mut text = match self.total.filter(|&t| t > 0) {
            Some(total) => format!(
                "{}: {:.0}% ({} of {})",
                self.phase,
                100.0 * self.done as f64 / total as f64,
                amount(self.done),
                amount(total)
            ),
            None => format!("{}: {}", self.phase, amount(self.done)),
        };
        if !self.detail.is_empty() {
            text.push_str(&format!(" · {}", self.detail));
        }
        text
    }
}

/// One artifact's row.
#[derive(Debug, Clone, Serialize)]
pub struct ArtifactRow {
    pub id: i64,
    /// The stage's kind: `dataset`, `tokenization`.
    pub kind: String,
    /// Unique among artifacts of its kind.
    pub name: String,
    pub status: ArtifactStatus,
    /// What was asked for (the stage's parameters, serialized from its typed struct).
    pub params: Value,
    /// While it is being made: the last progress its owner wrote.
    pub progress: Option<StoredProgress>,
    /// The directory it owns (removed with it), if any.
    pub path: Option<PathBuf>,
    pub error: Option<String>,
    pub saekit_version: String,
    pub created_at: String,
    pub updated_at: String,
}

/// An artifact row to insert.
#[derive(Debug, Clone, Default)]
pub struct NewArtifact {
    pub kind: &'static str,
    pub name: String,
    pub status: ArtifactStatus,
    pub params: Value,
    pub path: Option<PathBuf>,
    pub parents: Vec<i64>,
}

/// Changes to an artifact row: every `Some` field is written.
#[derive(Debug, Clone, Default)]
pub struct ArtifactUpdate {
    pub status: Option<ArtifactStatus>,
    pub params: Option<Value>,
    pub path: Option<PathBuf>,
    /// `Some(None)` clears it.
    pub progress: Option<Option<StoredProgress>>,
    /// `Some(None)` clears it.
    pub error: Option<Option<String>>,
}

/// An artifact as lineage names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ArtifactRef {
    pub id: i64,
    pub kind: String,
    pub name: String,
    pub status: ArtifactStatus,
}

impl fmt::Display for ArtifactRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} `{}`", self.kind, self.name)
    }
}

pub(crate) const ARTIFACT_COLUMNS: &str = "a.id, a.kind, a.name, a.status, a.params, a.progress, a.path, a.error, a.saekit_version, a.created_at, \
     a.updated_at";
/// How many columns [`ARTIFACT_COLUMNS`] selects; a stage's own columns follow from this index.
pub(crate) const ARTIFACT_COLUMN_COUNT: usize = 11;

impl Catalog {
    /// Inserts an artifact row and its lineage; a (kind, name) already taken is [`Error::AlreadyExists`].
    pub fn insert_artifact_in(&self, tx: &Transaction, new: &NewArtifact) -> Result<ArtifactRow> {
        if new.name.is_empty() {
            return Err(Error::InvalidArgument(format!("a {} needs a non-empty name", new.kind)));
        }
        if self.artifact_id_in(tx, new.kind, &new.name)?.is_some() {
            return Err(self.already_exists(new.kind, new.name.clone()));
        }
        let now = now_rfc3339();
        let path = new.path.as_deref().map(|p| self.store_path(p)).transpose()?;
        tx.execute(
            "INSERT INTO artifacts (kind, name, status, params, path, saekit_version, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)",
            params![new.kind, new.name, new.status, json_object_text(&new.params), path, crate::VERSION, now],
        )
        .at(self.path())?;
        let id = tx.last_insert_rowid();
        self.set_parents_in(tx, id, &new.parents)?;
        self.artifact_in(tx, id)
    }

    /// Applies `update` to artifact `id` and bumps its `updated_at`.
    pub fn update_artifact_in(&self, tx: &Transaction, id: i64, update: &ArtifactUpdate) -> Result<ArtifactRow> {
        let mut sets = vec!["updated_at = ?"];
        let mut values = vec![SqlValue::Text(now_rfc3339())];
        if let Some(status) = update.status {
            sets.push("status = ?");
            values.push(SqlValue::Text(status.as_str().into()));
        }
        if let Some(params) = &update.params {
            sets.push("params = ?");
            values.push(SqlValue::Text(json_object_text(params)));
        }
        if let Some(path) = &update.path {
            sets.push("path = ?");
            values.push(SqlValue::Text(self.store_path(path)?));
        }
        if let Some(progress) = &update.progress {
            sets.push("progress = ?");
            values.push(progress.as_ref().map_or(SqlValue::Null, |p| SqlValue::Text(json_text(p))));
        }
        if let Some(error) = &update.error {
            sets.push("error = ?");
            values.push(error.clone().map_or(SqlValue::Null, SqlValue::Text));
        }
        values.push(SqlValue::Integer(id));
        let sql = format!("UPDATE artifacts SET {} WHERE id = ?", sets.join(", "));
        let changed = tx.execute(&sql, rusqlite::params_from_iter(values)).at(self.path())?;
        if changed == 0 {
            return Err(self.not_found("artifact", id.to_string()));
        }
        self.artifact_in(tx, id)
    }

    /// Replaces the parents of artifact `id`.
    pub fn set_parents_in(&self, tx: &Transaction, id: i64, parents: &[i64]) -> Result<()> {
        tx.execute("DELETE FROM lineage WHERE child = ?1", [id]).at(self.path())?;
        let mut insert =
            tx.prepare_cached("INSERT OR IGNORE INTO lineage (child, parent) VALUES (?1, ?2)").at(self.path())?;
        for parent in parents {
            if self.artifact_in(tx, *parent).is_err() {
                return Err(self.not_found("artifact", parent.to_string()));
            }
            insert.execute(params![id, parent]).at(self.path())?;
        }
        Ok(())
    }

    /// The id of the artifact of `kind` named `name`, if there is one.
    pub fn artifact_id_in(&self, conn: &Connection, kind: &str, name: &str) -> Result<Option<i64>> {
        conn.query_row("SELECT id FROM artifacts WHERE kind = ?1 AND name = ?2", params![kind, name], |r| r.get(0))
            .optional_row()
            .at(self.path())
    }

    /// Artifact `id`, with its status as read now (see [`ArtifactStatus::Interrupted`]).
    /// The id of the artifact of `kind` named `name_or_id`, or `name_or_id` read as an id when no artifact
    /// has that name; [`Error::NotFound`] otherwise. (An id read this way is checked by the caller's query.)
    pub fn artifact_id_named(&self, kind: &'static str, name_or_id: &str) -> Result<i64> {
        match (self.artifact_id_in(&*self.conn()?, kind, name_or_id)?, name_or_id.parse::<i64>()) {
            (Some(id), _) | (None, Ok(id)) => Ok(id),
            (None, Err(_)) => Err(self.not_found(kind, name_or_id.to_string())),
        }
    }

    pub fn artifact(&self, id: i64) -> Result<ArtifactRow> {
        self.artifact_in(&*self.conn()?, id)
    }

    /// [`artifact`](Self::artifact) on a given connection or transaction.
    pub fn artifact_in(&self, conn: &Connection, id: i64) -> Result<ArtifactRow> {
        let sql = format!("SELECT {ARTIFACT_COLUMNS} FROM artifacts a WHERE a.id = ?1");
        let read = || conn.query_row(&sql, [id], |r| self.artifact_from_row(r)).optional_row().at(self.path());
        let mut row = read()?;
        // A snapshot taken just before the owner committed and let go of its claim reads as interrupted;
        // a second read (a new snapshot) tells that from a dead owner.
        if row.as_ref().is_some_and(|r| r.status == ArtifactStatus::Interrupted) {
            row = read()?;
        }
        row.ok_or_else(|| self.not_found("artifact", id.to_string()))
    }

    /// A stage's typed record of artifact `id`: `select` is the stage's `SELECT {ARTIFACT_COLUMNS}, … FROM
    /// artifacts a JOIN <its table> … WHERE a.kind = …` and `from_row` reads one of its rows. Only committed
    /// artifacts have a record, so anything else is [`Error::NotFound`].
    pub(crate) fn stage_row_in<T>(
        &self,
        conn: &Connection,
        kind: &'static str,
        select: &str,
        id: i64,
        from_row: impl Fn(&Row) -> rusqlite::Result<T>,
    ) -> Result<T> {
        let sql = format!("{select} AND a.id = ?1");
        conn.query_row(&sql, [id], |r| from_row(r))
            .optional_row()
            .at(self.path())?
            .ok_or_else(|| self.not_found(kind, id.to_string()))
    }

    /// Every record `select` (as for [`stage_row_in`](Self::stage_row_in)) finds, newest first.
    pub(crate) fn stage_rows_in<T>(
        &self,
        conn: &Connection,
        select: &str,
        from_row: impl Fn(&Row) -> rusqlite::Result<T>,
    ) -> Result<Vec<T>> {
        let sql = format!("{select} ORDER BY a.id DESC");
        let mut stmt = conn.prepare(&sql).at(self.path())?;
        let rows = stmt.query_map([], |r| from_row(r)).at(self.path())?;
        rows.collect::<rusqlite::Result<Vec<_>>>().at(self.path())
    }

    /// Reads the [`ARTIFACT_COLUMNS`] of a row; a working status whose owner is gone reads as interrupted.
    pub(crate) fn artifact_from_row(&self, r: &Row) -> rusqlite::Result<ArtifactRow> {
        let kind: String = r.get(1)?;
        let name: String = r.get(2)?;
        let status = self.status_now(&kind, &name, r.get(3)?);
        let progress = match r.get::<_, Option<String>>(5)? {
            Some(text) => serde_json::from_str(&text).ok(),
            None => None,
        };
        Ok(ArtifactRow {
            id: r.get(0)?,
            kind,
            name,
            status,
            params: json_column(r, 4)?,
            progress,
            path: r.get::<_, Option<String>>(6)?.map(|p| self.resolve_path(&p)),
            error: r.get(7)?,
            saekit_version: r.get(8)?,
            created_at: r.get(9)?,
            updated_at: r.get(10)?,
        })
    }

    /// A stored status as it stands now: a working one whose owner no longer holds the claim is
    /// [`ArtifactStatus::Interrupted`].
    fn status_now(&self, kind: &str, name: &str, stored: ArtifactStatus) -> ArtifactStatus {
        if stored.is_working() && !super::lifecycle::claim_is_held(self.root(), kind, name) {
            ArtifactStatus::Interrupted
        } else {
            stored
        }
    }

    /// The direct parents of artifact `id`.
    pub fn parents_in(&self, conn: &Connection, id: i64) -> Result<Vec<ArtifactRef>> {
        self.refs_in(conn, "SELECT a.id, a.kind, a.name, a.status FROM lineage l JOIN artifacts a ON a.id = l.parent WHERE l.child = ?1 ORDER BY a.id", id)
    }

    /// The direct children of artifact `id` (what was made from it).
    pub fn children_in(&self, conn: &Connection, id: i64) -> Result<Vec<ArtifactRef>> {
        self.refs_in(conn, "SELECT a.id, a.kind, a.name, a.status FROM lineage l JOIN artifacts a ON a.id = l.child WHERE l.parent = ?1 ORDER BY a.id", id)
    }

    fn refs_in(&self, conn: &Connection, sql: &str, id: i64) -> Result<Vec<ArtifactRef>> {
        let mut stmt = conn.prepare_cached(sql).at(self.path())?;
        let rows = stmt
            .query_map([id], |r| {
                let (kind, name): (String, String) = (r.get(1)?, r.get(2)?);
                let status = self.status_now(&kind, &name, r.get(3)?);
                Ok(ArtifactRef { id: r.get(0)?, kind, name, status })
            })
            .at(self.path())?
            .collect::<rusqlite::Result<Vec<_>>>()
            .at(self.path())?;
        Ok(rows)
    }

    /// Every artifact made from `id`, directly or not, each once and after everything made from it (the
    /// order to delete them in).
    pub fn descendants_in(&self, conn: &Connection, id: i64) -> Result<Vec<ArtifactRef>> {
        let mut order = Vec::new();
        let mut seen = HashSet::new();
        fn visit(
            catalog: &Catalog,
            conn: &Connection,
            id: i64,
            seen: &mut HashSet<i64>,
            order: &mut Vec<ArtifactRef>,
        ) -> Result<()> {
            for child in catalog.children_in(conn, id)? {
                if seen.insert(child.id) {
                    visit(catalog, conn, child.id, seen, order)?;
                    order.push(child);
                }
            }
            Ok(())
        }
        visit(self, conn, id, &mut seen, &mut order)?;
        Ok(order)
    }

    /// Deletes artifact `id` (its stage row and tags go with it) and returns the directories it and
    /// its descendants owned; the caller removes those. Something made from it is
    /// [`Error::InUse`] unless `cascade`, which deletes those first.
    pub fn delete_artifact_in(&self, tx: &Transaction, id: i64, cascade: bool) -> Result<Vec<PathBuf>> {
        let row = self.artifact_in(tx, id)?;
        let descendants = self.descendants_in(tx, id)?;
        if !descendants.is_empty() && !cascade {
            return Err(Error::InUse {
                what: format!("{} `{}`", row.kind, row.name),
                dependents: descendants.iter().map(|d| d.to_string()).collect(),
            });
        }
        let mut owned = Vec::new();
        for victim in descendants.iter().map(|d| d.id).chain([id]) {
            if let Some(path) = self.artifact_in(tx, victim)?.path {
                owned.push(path);
            }
            tx.execute("DELETE FROM artifacts WHERE id = ?1", [victim]).at(self.path())?;
        }
        Ok(owned)
    }

    /// Replaces the tags of artifact `id` (duplicates are dropped) and bumps its `updated_at`.
    pub fn set_tags(&self, id: i64, tags: &[String]) -> Result<()> {
        self.with_write_tx(|tx| self.set_tags_in(tx, id, tags))
    }

    /// [`set_tags`](Self::set_tags) inside a transaction from [`with_write_tx`](Self::with_write_tx).
    pub fn set_tags_in(&self, tx: &Transaction, id: i64, tags: &[String]) -> Result<()> {
        let changed = tx
            .execute("UPDATE artifacts SET updated_at = ?1 WHERE id = ?2", params![now_rfc3339(), id])
            .at(self.path())?;
        if changed == 0 {
            return Err(self.not_found("artifact", id.to_string()));
        }
        self.replace_tags_in(tx, id, tags)
    }

    /// Replaces the tags of artifact `id` without touching the row (for a row being inserted).
    pub(crate) fn replace_tags_in(&self, tx: &Transaction, id: i64, tags: &[String]) -> Result<()> {
        tx.execute("DELETE FROM artifact_tags WHERE artifact_id = ?1", [id]).at(self.path())?;
        let tags: BTreeSet<&str> = tags.iter().map(String::as_str).collect();
        if tags.contains("") {
            return Err(Error::InvalidArgument("tags must not be empty".into()));
        }
        let mut insert =
            tx.prepare_cached("INSERT INTO artifact_tags (artifact_id, tag) VALUES (?1, ?2)").at(self.path())?;
        for tag in tags {
            insert.execute(params![id, tag]).at(self.path())?;
        }
        Ok(())
    }

    /// The tags of artifact `id`, sorted.
    pub fn tags_in(&self, conn: &Connection, id: i64) -> Result<Vec<String>> {
        let mut stmt =
            conn.prepare_cached("SELECT tag FROM artifact_tags WHERE artifact_id = ?1 ORDER BY tag").at(self.path())?;
        stmt.query_map([id], |r| r.get(0)).at(self.path())?.collect::<rusqlite::Result<Vec<String>>>().at(self.path())
    }

    /// Every artifact directory any row owns (absolute).
    pub fn referenced_artifacts(&self) -> Result<HashSet<PathBuf>> {
        self.referenced_artifacts_in(&*self.conn()?)
    }

    /// [`referenced_artifacts`](Self::referenced_artifacts) on a given connection or transaction.
    pub fn referenced_artifacts_in(&self, conn: &Connection) -> Result<HashSet<PathBuf>> {
        let mut stmt = conn.prepare("SELECT path FROM artifacts WHERE path IS NOT NULL").at(self.path())?;
        let paths = stmt
            .query_map([], |r| r.get::<_, String>(0))
            .at(self.path())?
            .collect::<rusqlite::Result<Vec<_>>>()
            .at(self.path())?;
        Ok(paths.iter().map(|p| self.resolve_path(p)).collect())
    }
}

/// Writes an artifact's progress on a connection of its own (see the lifecycle's progress writer).
pub(crate) fn write_progress(conn: &Connection, id: i64, progress: &StoredProgress) -> rusqlite::Result<usize> {
    conn.execute(
        "UPDATE artifacts SET progress = ?1 WHERE id = ?2 AND status NOT IN ('ready', 'failed')",
        params![json_text(progress), id],
    )
}

/// `path`'s last two components.
#[cfg(test)]
fn short_path(path: &std::path::Path) -> String {
    let parts: Vec<_> = path.components().rev().take(2).collect();
    parts.iter().rev().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::db::open_temp;

    fn insert(catalog: &Catalog, kind: &'static str, name: &str, parents: &[i64], status: ArtifactStatus) -> i64 {
        catalog
            .with_write_tx(|tx| {
                catalog.insert_artifact_in(
                    tx,
                    &NewArtifact {
                        kind,
                        name: name.into(),
                        status,
                        parents: parents.to_vec(),
                        path: Some(catalog.root().join("artifacts").join(kind).join(name)),
                        ..Default::default()
                    },
                )
            })
            .unwrap()
            .id
    }

    #[test]
    fn status_round_trips() {
        for s in ALL_STATUSES {
            assert_eq!(s.as_str().parse::<ArtifactStatus>().unwrap(), s);
            assert_eq!(s.to_string(), s.as_str());
            assert_eq!(serde_json::to_value(s).unwrap(), serde_json::json!(s.as_str()));
        }
        let err = "done".parse::<ArtifactStatus>().unwrap_err().to_string();
        assert!(err.contains("expected one of pending, adding"), "{err}");
    }

    #[test]
    fn a_working_row_with_no_live_owner_reads_as_interrupted() {
        let (_dir, catalog) = open_temp();
        let id = insert(&catalog, "dataset", "d", &[], ArtifactStatus::Importing);
        assert_eq!(catalog.artifact(id).unwrap().status, ArtifactStatus::Interrupted);
        let stored: String =
            catalog.conn().unwrap().query_row("SELECT status FROM artifacts", [], |r| r.get(0)).unwrap();
        assert_eq!(stored, "importing", "interrupted is decided at read time, not written");
        let claim = super::super::lifecycle::NameLock::acquire(catalog.root(), "dataset", "d").unwrap();
        assert_eq!(catalog.artifact(id).unwrap().status, ArtifactStatus::Importing);
        drop(claim);
        assert_eq!(catalog.artifact(id).unwrap().status, ArtifactStatus::Interrupted);
    }

    #[test]
    fn lineage_and_deletion_with_and_without_cascade() {
        let (_dir, catalog) = open_temp();
        let d = insert(&catalog, "dataset", "d", &[], ArtifactStatus::Ready);
        let other = insert(&catalog, "dataset", "other", &[], ArtifactStatus::Ready);
        let t = insert(&catalog, "tokenization", "d-t", &[d], ArtifactStatus::Ready);
        let mix = insert(&catalog, "mix", "m", &[t, other], ArtifactStatus::Ready);
        let conn = catalog.conn().unwrap();
        let names = |refs: Vec<ArtifactRef>| refs.into_iter().map(|r| r.name).collect::<Vec<_>>();
        assert_eq!(names(catalog.parents_in(&conn, mix).unwrap()), ["other", "d-t"]);
        assert_eq!(names(catalog.children_in(&conn, d).unwrap()), ["d-t"]);
        assert_eq!(names(catalog.descendants_in(&conn, d).unwrap()), ["m", "d-t"]);
        drop(conn);

        let err = catalog.with_write_tx(|tx| catalog.delete_artifact_in(tx, d, false)).unwrap_err();
        let message = err.to_string();
        assert!(matches!(err, Error::InUse { .. }), "{err:?}");
        assert!(
            message.contains("dataset `d`") && message.contains("tokenization `d-t`") && message.contains("mix `m`"),
            "{message}"
        );
        assert!(catalog.artifact(d).is_ok() && catalog.artifact(t).is_ok());

        let removed = catalog.with_write_tx(|tx| catalog.delete_artifact_in(tx, d, true)).unwrap();
        let removed: Vec<String> = removed.iter().map(|p| short_path(p)).collect();
        assert_eq!(removed, ["mix/m", "tokenization/d-t", "dataset/d"]);
        for gone in [d, t, mix] {
            assert!(matches!(catalog.artifact(gone), Err(Error::NotFound { .. })));
        }
        assert!(catalog.artifact(other).is_ok());
        let links: i64 = catalog.conn().unwrap().query_row("SELECT count(*) FROM lineage", [], |r| r.get(0)).unwrap();
        assert_eq!(links, 0);
    }

    #[test]
    fn names_are_unique_per_kind_and_tags_are_sorted() {
        let (_dir, catalog) = open_temp();
        let d = insert(&catalog, "dataset", "x", &[], ArtifactStatus::Ready);
        insert(&catalog, "tokenization", "x", &[], ArtifactStatus::Ready);
        let again = catalog.with_write_tx(|tx| {
            catalog.insert_artifact_in(tx, &NewArtifact { kind: "dataset", name: "x".into(), ..Default::default() })
        });
        assert!(matches!(again, Err(Error::AlreadyExists { kind: "dataset", .. })));
        catalog.set_tags(d, &["b".into(), "a".into(), "b".into()]).unwrap();
        assert_eq!(catalog.tags_in(&catalog.conn().unwrap(), d).unwrap(), ["a", "b"]);
        assert!(matches!(catalog.set_tags(999, &[]), Err(Error::NotFound { .. })));
    }
}
