//! The `mixes` table (a mixed dataset's recipe and report, under its artifact id; the dataset's own
//! record is in `datasets`) and the `mix_recipes` table (recipes saved by name, every version kept).

use rusqlite::{OptionalExtension, Transaction, params};
use serde::Serialize;

use super::MixReport;
use super::recipe::MixRecipe;
use crate::catalog::{Catalog, DatasetRecord, StageRecord, Workspace, now_rfc3339};
use crate::error::{Error, Result};

/// A mixed dataset's records, as the mix commits them.
#[derive(Debug, Clone)]
pub struct MixRecord {
    pub dataset: DatasetRecord,
    pub recipe: MixRecipe,
    pub report: MixReport,
}

fn sql(catalog: &Catalog) -> impl Fn(rusqlite::Error) -> Error + '_ {
    move |source| Error::Catalog { path: catalog.path().to_path_buf(), source }
}

impl StageRecord for MixRecord {
    fn write_in(&self, catalog: &Catalog, tx: &Transaction, id: i64) -> Result<()> {
        self.dataset.write_in(catalog, tx, id)?;
        tx.execute(
            "INSERT OR REPLACE INTO mixes (id, recipe_hash, recipe, report) VALUES (?1, ?2, ?3, ?4)",
            params![
                id,
                self.recipe.hash(),
                serde_json::to_string(&self.recipe).unwrap_or_default(),
                serde_json::to_string(&self.report).unwrap_or_default()
            ],
        )
        .map_err(sql(catalog))?;
        Ok(())
    }
}

/// The report of mixed dataset `id`, if it is one.
pub(super) fn mix_report(catalog: &Catalog, id: i64) -> Result<Option<(MixRecipe, MixReport)>> {
    let row: Option<(String, String)> = catalog.with_conn(|conn| {
        conn.query_row("SELECT recipe, report FROM mixes WHERE id = ?1", [id], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()
            .map_err(sql(catalog))
    })?;
    let Some((recipe, report)) = row else { return Ok(None) };
    let bad = |e: serde_json::Error| Error::InvalidArgument(format!("mix #{id} in the catalog: {e}"));
    Ok(Some((serde_json::from_str(&recipe).map_err(bad)?, serde_json::from_str(&report).map_err(bad)?)))
}

/// One saved version of a recipe.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecipeVersion {
    pub name: String,
    /// From 1, one more each time the recipe is saved changed.
    pub version: i64,
    pub hash: String,
    pub saved_at: String,
    pub recipe: MixRecipe,
}

impl Workspace {
    /// Saves a recipe under its name: a new version when it differs from the latest, else the latest.
    pub fn save_recipe(&self, recipe: &MixRecipe) -> Result<RecipeVersion> {
        recipe.validate()?;
        let catalog = self.catalog();
        let hash = recipe.hash();
        let body = recipe.to_json();
        catalog.with_write_tx(|tx| {
            let latest: Option<(i64, String, String)> = tx
                .query_row(
                    "SELECT version, hash, saved_at FROM mix_recipes WHERE name = ?1 ORDER BY version DESC LIMIT 1",
                    [&recipe.name],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()
                .map_err(sql(catalog))?;
            if let Some((version, h, saved_at)) = &latest
                && h == &hash
            {
                return Ok(RecipeVersion {
                    name: recipe.name.clone(),
                    version: *version,
                    hash,
                    saved_at: saved_at.clone(),
                    recipe: recipe.clone(),
                });
            }
            let version = latest.map_or(1, |l| l.0 + 1);
            let saved_at = now_rfc3339();
            tx.execute(
                "INSERT INTO mix_recipes (name, version, hash, body, saved_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![recipe.name, version, hash, body, saved_at],
            )
            .map_err(sql(catalog))?;
            Ok(RecipeVersion { name: recipe.name.clone(), version, hash, saved_at, recipe: recipe.clone() })
        })
    }

    /// Every saved version of recipe `name`, oldest first.
    pub fn recipe_history(&self, name: &str) -> Result<RecipeHistory> {
        let catalog = self.catalog();
        let rows: Vec<(i64, String, String, String)> = catalog.with_conn(|conn| {
            let mut stmt = conn
                .prepare("SELECT version, hash, saved_at, body FROM mix_recipes WHERE name = ?1 ORDER BY version")
                .map_err(sql(catalog))?;
            let rows = stmt
                .query_map([name], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
                .map_err(sql(catalog))?
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(sql(catalog))?;
            Ok(rows)
        })?;
        let versions = rows
            .into_iter()
            .map(|(version, hash, saved_at, body)| {
                Ok(RecipeVersion {
                    name: name.to_string(),
                    version,
                    hash,
                    saved_at,
                    recipe: MixRecipe::from_json(&body)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(RecipeHistory { name: name.to_string(), versions })
    }

    /// The latest saved version of recipe `name` (or version `n` of it with `name@n`).
    pub fn recipe(&self, name: &str) -> Result<MixRecipe> {
        let (name, version) = match name.rsplit_once('@') {
            Some((n, v)) => (n, v.parse::<i64>().ok()),
            None => (name, None),
        };
        let history = self.recipe_history(name)?;
        let found = match version {
            Some(v) => history.versions.iter().find(|r| r.version == v),
            None => history.versions.last(),
        };
        found.map(|r| r.recipe.clone()).ok_or_else(|| Error::NotFound {
            kind: "mix recipe",
            name: name.to_string(),
            catalog: self.catalog().path().to_path_buf(),
        })
    }
}

/// A recipe's saved versions, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecipeHistory {
    pub name: String,
    pub versions: Vec<RecipeVersion>,
}
