//! The `sae_runs` table: a training run's typed record (steps, tokens, time, each SAE's final metrics) under
//! the id of its `artifacts` row, whose parents (lineage) are the activation cache, the tokenization and
//! the model it was trained from, and whose parameters are the run's resolved config.

use std::path::PathBuf;

use rusqlite::{Connection, Row, Transaction, params};
use serde::{Deserialize, Serialize};

use super::train::StepMetrics;
use crate::catalog::{ARTIFACT_COLUMN_COUNT, ARTIFACT_COLUMNS, Catalog, StageRecord};
use crate::error::{Error, Result};

/// The artifact kind of SAE training runs.
pub const SAE_RUN_KIND: &str = "sae_run";

/// One SAE of a run as it ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SaeSummary {
    pub name: String,
    pub hook: String,
    pub architecture: String,
    pub d_in: usize,
    pub d_sae: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub k: Option<usize>,
    /// The input scale folded into the weights (`expected_average_only_in`), 1 when none.
    pub input_scale: f64,
    /// The last step's metrics.
    pub last: StepMetrics,
}

/// A run's record, as the stage commits it.
#[derive(Debug, Clone)]
pub struct SaeRunRecord {
    pub steps: u64,
    pub tokens: u64,
    pub seconds: f64,
    pub saes: Vec<SaeSummary>,
}

impl StageRecord for SaeRunRecord {
    fn write_in(&self, catalog: &Catalog, tx: &Transaction, id: i64) -> Result<()> {
        tx.execute(
            "INSERT OR REPLACE INTO sae_runs (id, steps, tokens, seconds, saes) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                id,
                self.steps as i64,
                self.tokens as i64,
                self.seconds,
                serde_json::to_string(&self.saes).unwrap_or_else(|_| "[]".into())
            ],
        )
        .map_err(|source| Error::Catalog { path: catalog.path().to_path_buf(), source })?;
        Ok(())
    }
}

/// A training run as recorded in the catalog.
#[derive(Debug, Clone, Serialize)]
pub struct SaeRunRow {
    pub id: i64,
    pub name: String,
    pub steps: u64,
    pub tokens: u64,
    pub seconds: f64,
    pub saes: Vec<SaeSummary>,
    /// The parameters it was asked for (JSON): `key` and the resolved `config`.
    pub params: serde_json::Value,
    pub path: PathBuf,
    pub saekit_version: String,
    pub created_at: String,
}

fn select() -> String {
    format!(
        "SELECT {ARTIFACT_COLUMNS}, r.steps, r.tokens, r.seconds, r.saes \
         FROM artifacts a JOIN sae_runs r ON r.id = a.id WHERE a.kind = '{SAE_RUN_KIND}'"
    )
}

fn from_row(catalog: &Catalog, r: &Row) -> rusqlite::Result<SaeRunRow> {
    let a = catalog.artifact_from_row(r)?;
    let c = ARTIFACT_COLUMN_COUNT;
    let saes: String = r.get(c + 3)?;
    Ok(SaeRunRow {
        id: a.id,
        name: a.name,
        steps: r.get::<_, i64>(c)?.max(0) as u64,
        tokens: r.get::<_, i64>(c + 1)?.max(0) as u64,
        seconds: r.get(c + 2)?,
        saes: serde_json::from_str(&saes).unwrap_or_default(),
        params: a.params,
        path: a.path.unwrap_or_default(),
        saekit_version: a.saekit_version,
        created_at: a.created_at,
    })
}

/// Run `id` (ready ones only: a run has a record once committed).
pub fn sae_run_in(catalog: &Catalog, conn: &Connection, id: i64) -> Result<SaeRunRow> {
    catalog.stage_row_in(conn, SAE_RUN_KIND, &select(), id, |r| from_row(catalog, r))
}

/// Every ready run, newest first.
pub fn sae_runs_in(catalog: &Catalog, conn: &Connection) -> Result<Vec<SaeRunRow>> {
    catalog.stage_rows_in(conn, &select(), |r| from_row(catalog, r))
}
