//! The `tokenizations` table: a tokenization's typed record (tokenizer, counts, statistics) under the id
//! of its `artifacts` row, whose parent (lineage) is the dataset it was made from and whose parameters
//! are the [`TokenizationParams`] it was asked for.

use std::path::PathBuf;

use rusqlite::{Connection, Row, Transaction, params};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{TokenizeParams, TokenizerInfo};
use crate::catalog::{ARTIFACT_COLUMN_COUNT, ARTIFACT_COLUMNS, ArtifactStatus, Catalog, NewArtifact, StageRecord};
use crate::error::{Error, Result};

/// The artifact kind of tokenizations.
pub const TOKENIZATION_KIND: &str = "tokenization";

/// What a tokenization was asked for: the artifact's parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenizationParams {
    pub tokenizer: TokenizerRef,
    pub params: TokenizeParams,
}

/// A tokenizer as the parameters name it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenizerRef {
    pub name: String,
    pub hash: String,
}

impl From<&TokenizerInfo> for TokenizerRef {
    fn from(info: &TokenizerInfo) -> TokenizerRef {
        TokenizerRef { name: info.name.clone(), hash: info.hash.clone() }
    }
}

/// A tokenization's record, as the stage commits it.
#[derive(Debug, Clone)]
pub struct TokenizationRecord {
    pub tokenizer: String,
    pub tokenizer_hash: String,
    pub num_documents: u64,
    pub num_sequences: u64,
    pub num_tokens: u64,
    pub statistics: Value,
}

impl StageRecord for TokenizationRecord {
    fn write_in(&self, catalog: &Catalog, tx: &Transaction, id: i64) -> Result<()> {
        let count = |n: u64, what: &str| {
            i64::try_from(n).map_err(|_| Error::InvalidArgument(format!("{what} = {n} is too large for the catalog")))
        };
        tx.execute(
            "INSERT OR REPLACE INTO tokenizations (id, tokenizer, tokenizer_hash, num_documents, num_sequences,
                                                   num_tokens, statistics)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                id,
                self.tokenizer,
                self.tokenizer_hash,
                count(self.num_documents, "num_documents")?,
                count(self.num_sequences, "num_sequences")?,
                count(self.num_tokens, "num_tokens")?,
                serde_json::to_string(&self.statistics).unwrap_or_else(|_| "{}".into()),
            ],
        )
        .map_err(|source| Error::Catalog { path: catalog.path().to_path_buf(), source })?;
        Ok(())
    }
}

/// One tokenization of a dataset, as recorded in the catalog.
#[derive(Debug, Clone, Serialize)]
pub struct TokenizationRow {
    /// The artifact id.
    pub id: i64,
    /// Unique among tokenizations: `<dataset>/<tokenizer>/<key of tokenizer and parameters>`.
    pub name: String,
    /// The dataset tokenized.
    pub dataset_id: i64,
    /// The tokenizer's name.
    pub tokenizer: String,
    /// sha256 of the tokenizer's definition.
    pub tokenizer_hash: String,
    /// The tokenization parameters.
    pub params: TokenizeParams,
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

/// A tokenization to add to the catalog directly (tests and tools; stages go through the lifecycle).
#[derive(Debug, Clone, Default)]
pub struct NewTokenization {
    /// The dataset tokenized.
    pub dataset_id: i64,
    /// The name; empty: `<dataset>/<tokenizer>/<n>`.
    pub name: String,
    pub tokenizer: String,
    pub tokenizer_hash: String,
    /// The tokenization parameters; `Null` means the defaults.
    pub params: Value,
    pub num_documents: u64,
    pub num_sequences: u64,
    pub num_tokens: u64,
    /// The artifact directory holding the tokens.
    pub artifact_path: PathBuf,
    /// `Null` is stored as `{}`.
    pub statistics: Value,
}

fn select() -> String {
    format!(
        "SELECT {ARTIFACT_COLUMNS}, (SELECT l.parent FROM lineage l WHERE l.child = a.id LIMIT 1), t.tokenizer, \
         t.tokenizer_hash, t.num_documents, t.num_sequences, t.num_tokens, t.statistics \
         FROM artifacts a JOIN tokenizations t ON t.id = a.id WHERE a.kind = '{TOKENIZATION_KIND}'"
    )
}

fn not_found(catalog: &Catalog, what: String) -> Error {
    Error::NotFound { kind: TOKENIZATION_KIND, name: what, catalog: catalog.path().to_path_buf() }
}

fn at<T>(catalog: &Catalog, result: rusqlite::Result<T>) -> Result<T> {
    result.map_err(|source| Error::Catalog { path: catalog.path().to_path_buf(), source })
}

/// Records a tokenization of an existing dataset directly, with its lineage.
pub fn insert_tokenization_in(catalog: &Catalog, tx: &Transaction, new: &NewTokenization) -> Result<TokenizationRow> {
    let dataset = catalog.dataset_in(tx, &new.dataset_id.to_string())?;
    let mut name = new.name.clone();
    if name.is_empty() {
        let mut n = 1;
        loop {
            name = format!("{}/{}/{n}", dataset.name, new.tokenizer);
            if catalog.artifact_id_in(tx, TOKENIZATION_KIND, &name)?.is_none() {
                break;
            }
            n += 1;
        }
    }
    let params: TokenizeParams = if new.params.is_null() {
        TokenizeParams::default()
    } else {
        serde_json::from_value(new.params.clone()).unwrap_or_default()
    };
    let asked = TokenizationParams {
        tokenizer: TokenizerRef { name: new.tokenizer.clone(), hash: new.tokenizer_hash.clone() },
        params,
    };
    let artifact = catalog.insert_artifact_in(
        tx,
        &NewArtifact {
            kind: TOKENIZATION_KIND,
            name,
            status: ArtifactStatus::Ready,
            params: serde_json::to_value(&asked).unwrap_or_default(),
            path: Some(new.artifact_path.clone()),
            parents: vec![dataset.id],
        },
    )?;
    let record = TokenizationRecord {
        tokenizer: new.tokenizer.clone(),
        tokenizer_hash: new.tokenizer_hash.clone(),
        num_documents: new.num_documents,
        num_sequences: new.num_sequences,
        num_tokens: new.num_tokens,
        statistics: if new.statistics.is_null() { serde_json::json!({}) } else { new.statistics.clone() },
    };
    record.write_in(catalog, tx, artifact.id)?;
    tokenization_in(catalog, tx, artifact.id)
}

/// Tokenization `id` (ready ones only: a tokenization has a record once committed).
pub fn tokenization_in(catalog: &Catalog, conn: &Connection, id: i64) -> Result<TokenizationRow> {
    let sql = format!("{} AND a.id = ?1", select());
    match conn.query_row(&sql, [id], |r| from_row(catalog, r)) {
        Ok(row) => Ok(row),
        Err(rusqlite::Error::QueryReturnedNoRows) => Err(not_found(catalog, id.to_string())),
        Err(e) => at(catalog, Err(e)),
    }
}

/// The tokenization named `name`, or with that id.
pub fn tokenization_by_name_in(catalog: &Catalog, conn: &Connection, name_or_id: &str) -> Result<TokenizationRow> {
    let sql = format!("{} AND a.name = ?1", select());
    match conn.query_row(&sql, [name_or_id], |r| from_row(catalog, r)) {
        Ok(row) => Ok(row),
        Err(rusqlite::Error::QueryReturnedNoRows) => match name_or_id.parse::<i64>() {
            Ok(id) if name_or_id.bytes().all(|b| b.is_ascii_digit()) => tokenization_in(catalog, conn, id),
            _ => Err(not_found(catalog, name_or_id.to_string())),
        },
        Err(e) => at(catalog, Err(e)),
    }
}

/// The ready tokenizations of dataset `dataset_id`, newest first.
pub fn tokenizations_of(catalog: &Catalog, conn: &Connection, dataset_id: i64) -> Result<Vec<TokenizationRow>> {
    let sql = format!("{} AND a.id IN (SELECT child FROM lineage WHERE parent = ?1) ORDER BY a.id DESC", select());
    let mut stmt = at(catalog, conn.prepare(&sql))?;
    let rows = at(catalog, stmt.query_map([dataset_id], |r| from_row(catalog, r)))?;
    at(catalog, rows.collect::<rusqlite::Result<Vec<_>>>())
}

fn from_row(catalog: &Catalog, r: &Row) -> rusqlite::Result<TokenizationRow> {
    let artifact = catalog.artifact_from_row(r)?;
    let c = ARTIFACT_COLUMN_COUNT;
    let count = |idx: usize| -> rusqlite::Result<u64> {
        let n: i64 = r.get(idx)?;
        u64::try_from(n).map_err(|_| rusqlite::Error::IntegralValueOutOfRange(idx, n))
    };
    let asked: Option<TokenizationParams> = serde_json::from_value(artifact.params.clone()).ok();
    let statistics: String = r.get(c + 6)?;
    Ok(TokenizationRow {
        id: artifact.id,
        name: artifact.name,
        dataset_id: r.get::<_, Option<i64>>(c)?.unwrap_or_default(),
        tokenizer: r.get(c + 1)?,
        tokenizer_hash: r.get(c + 2)?,
        params: asked.map(|a| a.params).unwrap_or_default(),
        num_documents: count(c + 3)?,
        num_sequences: count(c + 4)?,
        num_tokens: count(c + 5)?,
        artifact_path: artifact.path.unwrap_or_default(),
        statistics: serde_json::from_str(&statistics).unwrap_or_default(),
        saekit_version: artifact.saekit_version,
        created_at: artifact.created_at,
    })
}
