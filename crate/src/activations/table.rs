//! The `activation_caches` table: a cache's typed record (model, hooks, dtype, counts, statistics) under the
//! id of its `artifacts` row, whose parents (lineage) are the tokenization and the model it was made from
//! and whose parameters are the [`super::CacheParams`] it was asked for.

use std::path::PathBuf;

use rusqlite::{Connection, Row, Transaction, params};
use serde::Serialize;

use super::fill::CacheStats;
use super::shards::CacheDtype;
use crate::catalog::{ARTIFACT_COLUMN_COUNT, ARTIFACT_COLUMNS, Catalog, StageRecord};
use crate::error::{Error, Result};

/// The artifact kind of activation caches.
pub const ACTIVATIONS_KIND: &str = "activations";

/// A hook of a cache and its width.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct CachedHook {
    pub name: String,
    pub width: usize,
}

/// A cache's record, as the stage commits it.
#[derive(Debug, Clone)]
pub struct ActivationCacheRecord {
    pub model: String,
    pub hooks: Vec<CachedHook>,
    pub dtype: CacheDtype,
    pub num_tokens: u64,
    pub num_bytes: u64,
    pub statistics: CacheStats,
}

impl StageRecord for ActivationCacheRecord {
    fn write_in(&self, catalog: &Catalog, tx: &Transaction, id: i64) -> Result<()> {
        tx.execute(
            "INSERT OR REPLACE INTO activation_caches (id, model, hooks, dtype, num_tokens, num_bytes, statistics)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                id,
                self.model,
                serde_json::to_string(&self.hooks).unwrap_or_else(|_| "[]".into()),
                self.dtype.as_str(),
                self.num_tokens as i64,
                self.num_bytes as i64,
                serde_json::to_string(&self.statistics).unwrap_or_else(|_| "{}".into()),
            ],
        )
        .map_err(|source| Error::Catalog { path: catalog.path().to_path_buf(), source })?;
        Ok(())
    }
}

/// An activation cache as recorded in the catalog.
#[derive(Debug, Clone, Serialize)]
pub struct ActivationCacheRow {
    pub id: i64,
    /// `<tokenization>/<model>/<key>`.
    pub name: String,
    pub model: String,
    pub hooks: Vec<CachedHook>,
    pub dtype: CacheDtype,
    pub num_tokens: u64,
    pub num_bytes: u64,
    pub statistics: CacheStats,
    /// The parameters it was asked for (JSON).
    pub params: serde_json::Value,
    pub path: PathBuf,
    pub saekit_version: String,
    pub created_at: String,
}

fn select() -> String {
    format!(
        "SELECT {ARTIFACT_COLUMNS}, c.model, c.hooks, c.dtype, c.num_tokens, c.num_bytes, c.statistics \
         FROM artifacts a JOIN activation_caches c ON c.id = a.id WHERE a.kind = '{ACTIVATIONS_KIND}'"
    )
}

fn from_row(catalog: &Catalog, r: &Row) -> rusqlite::Result<ActivationCacheRow> {
    let a = catalog.artifact_from_row(r)?;
    let c = ARTIFACT_COLUMN_COUNT;
    let hooks: String = r.get(c + 1)?;
    let dtype: String = r.get(c + 2)?;
    let statistics: String = r.get(c + 5)?;
    Ok(ActivationCacheRow {
        id: a.id,
        name: a.name,
        model: r.get(c)?,
        hooks: serde_json::from_str(&hooks).unwrap_or_default(),
        dtype: dtype.parse().unwrap_or_default(),
        num_tokens: r.get::<_, i64>(c + 3)?.max(0) as u64,
        num_bytes: r.get::<_, i64>(c + 4)?.max(0) as u64,
        statistics: serde_json::from_str(&statistics).unwrap_or_default(),
        params: a.params,
        path: a.path.unwrap_or_default(),
        saekit_version: a.saekit_version,
        created_at: a.created_at,
    })
}

/// Cache `id` (ready ones only: a cache has a record once committed).
pub fn activation_cache_in(catalog: &Catalog, conn: &Connection, id: i64) -> Result<ActivationCacheRow> {
    catalog.stage_row_in(conn, ACTIVATIONS_KIND, &select(), id, |r| from_row(catalog, r))
}

/// Every ready cache, newest first.
pub fn activation_caches_in(catalog: &Catalog, conn: &Connection) -> Result<Vec<ActivationCacheRow>> {
    catalog.stage_rows_in(conn, &select(), |r| from_row(catalog, r))
}
