//! Training mixes: a [`MixRecipe`] over many sources (catalog datasets, local files, Hub datasets), each
//! capped and preprocessed, drawn sequentially, round-robin, by weights (seeded or deterministic) or in
//! curriculum phases until an explicit stop rule, into a new dataset (Parquet shards) with lineage to
//! every source, a realised-vs-target report and its provenance, and optionally its tokenization.
//!
//! The counts are decided before any row is written ([`plan`]), so a mix that cannot be met is an error
//! that names the source and the numbers, and the realised rows are exactly the planned ones. Rooms:
//! `recipe` (the serde types and their schema), `plan` (the schedule), `run` (the job), `table` (the
//! catalog's `mixes` and `mix_recipes`), `render` (cards and charts), and `manifest` (bucket manifests and
//! their phases, sampled to exactly N examples by the same plan code).

pub mod manifest;
mod plan;
mod recipe;
mod render;
mod run;
mod table;

use serde::{Deserialize, Serialize};

pub use manifest::Manifest;
pub use plan::{MixPlan, apportion};
pub use recipe::{Caps, MixRecipe, MixSource, Phase, SourceRef, StopRule, Strategy};
pub use run::MixRun;
pub use table::{MixRecord, RecipeHistory, RecipeVersion};

use crate::catalog::{Dataset, Workspace};
use crate::display::Table;
use crate::error::{Error, Result};
use crate::jobs::Job;
use crate::steps::StepCount;
use crate::tokenize::Tokenization;

/// What a mix realised for one source, beside what it aimed at.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceReport {
    pub name: String,
    /// The catalog dataset it was read from.
    pub dataset: String,
    pub dataset_id: i64,
    /// A Hub commit, the sha256 of its files, or the recipe hash of a mix.
    pub revision: String,
    pub weight: f64,
    pub rows_in_dataset: u64,
    /// Rows the preprocessing pass read (0 when the source needed none).
    pub rows_read: u64,
    /// Rows of one pass after preprocessing and caps.
    pub epoch: u64,
    /// Tokens of the epoch's rows, when a token cap made them counted.
    pub epoch_tokens: Option<u64>,
    /// What ended the epoch early: `rows`, `tokens` or `max_fraction`.
    pub capped_by: Option<String>,
    pub max_draws: u64,
    pub target_rows: f64,
    pub rows: u64,
    /// Tokens of its rows in the mix, with the recipe's tokenizer.
    pub tokens: Option<u64>,
    /// Rows drawn per epoch row (above 1: oversampled).
    pub repetitions: f64,
    /// Its own steps: seen and dropped.
    pub steps: Vec<StepCount>,
    /// The recipe's steps over its documents.
    pub mix_steps: Vec<StepCount>,
    /// Why it contributed nothing, if it was left out (`weight 0`, `empty after preprocessing`).
    pub left_out: Option<String>,
}

impl SourceReport {
    /// Rows its steps and the recipe's dropped.
    pub fn dropped(&self) -> u64 {
        self.steps.iter().chain(&self.mix_steps).map(|s| s.dropped).sum()
    }
}

/// What a mix realised: per source, rows, tokens and repetitions beside their targets; the drops; the
/// provenance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MixReport {
    pub recipe: String,
    pub recipe_hash: String,
    pub recipe_version: i64,
    pub strategy: String,
    pub stop: String,
    pub seed: u64,
    pub total_rows: u64,
    /// Rows per curriculum phase per source.
    pub phases: Vec<(String, Vec<u64>)>,
    pub sources: Vec<SourceReport>,
    /// Documents dropped by preprocessing, in all (browsable with [`Mix::dropped`]).
    pub dropped_rows: u64,
    pub seconds: f64,
    pub saekit_version: String,
}

/// A mixed dataset: the dataset, its recipe and report, and its tokenization when the recipe asked.
#[derive(Debug, Clone)]
pub struct Mix {
    pub dataset: Dataset,
    pub recipe: MixRecipe,
    pub report: MixReport,
    pub tokenization: Option<Tokenization>,
}

impl Mix {
    fn from_dataset(dataset: Dataset, tokenization: Option<Tokenization>) -> Result<Mix> {
        let (recipe, report) = table::mix_report(dataset.workspace().catalog(), dataset.id())?.ok_or_else(|| {
            Error::InvalidArgument(format!("dataset `{}` is not a mix (it has no recipe)", dataset.name()))
        })?;
        Ok(Mix { dataset, recipe, report, tokenization })
    }

    pub fn name(&self) -> &str {
        self.dataset.name()
    }

    /// Documents the preprocessing dropped, `limit` at most, optionally of one step (`exact_dedup`, …):
    /// source, row, step, reason and text.
    pub fn dropped(&self, step: Option<&str>, limit: usize) -> Result<Table> {
        use arrow::array::AsArray;
        let path = self.dataset.row().artifact_path.as_ref().map(|p| p.join("dropped.parquet"));
        let mut table = Table::new(
            format!("dropped by {} in mix `{}`", step.unwrap_or("preprocessing"), self.name()),
            &["source", "row", "step", "reason", "text"],
        );
        let Some(path) = path.filter(|p| p.exists()) else {
            table.footer = Some("nothing was dropped".into());
            return Ok(table);
        };
        let file = std::fs::File::open(&path).map_err(|e| Error::io(&path, e))?;
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
            .and_then(|b| b.build())
            .map_err(|e| Error::format(&path, e))?;
        let mut matching = 0u64;
        for batch in reader {
            let batch = batch.map_err(|e| Error::format(&path, e))?;
            let col = |i: usize| batch.column(i).as_string::<i32>().clone();
            let (source, steps, reason, text) = (col(0), col(2), col(3), col(4));
            let rows = batch.column(1).as_primitive::<arrow::datatypes::UInt64Type>().clone();
            for i in 0..batch.num_rows() {
                if step.is_some_and(|s| s != steps.value(i)) {
                    continue;
                }
                matching += 1;
                if table.rows.len() < limit {
                    table.row(vec![
                        source.value(i).into(),
                        crate::error::count(rows.value(i)),
                        steps.value(i).into(),
                        reason.value(i).into(),
                        crate::display::truncate(text.value(i), 200),
                    ]);
                }
            }
        }
        table.footer = Some(format!("{} of {} dropped rows", table.rows.len(), crate::error::count(matching)));
        Ok(table)
    }
}

impl Workspace {
    /// Runs a recipe into dataset `recipe.name` (see [`MixRun`]); the recipe is saved (a new version when
    /// it changed) first.
    pub fn mix(&self, recipe: &MixRecipe) -> Result<Mix> {
        self.make(MixRun::new(recipe))
    }

    /// [`Workspace::mix`] as a background job: progress per source while preprocessing, then rows mixed
    /// with each source's count; a cancelled or killed mix leaves no dataset.
    pub fn mix_job(&self, recipe: &MixRecipe) -> Job<Mix> {
        self.make_job(MixRun::new(recipe))
    }

    /// A mixed dataset by name, with its recipe and report.
    pub fn mix_named(&self, name: &str) -> Result<Mix> {
        let dataset = self.dataset(name)?;
        let tokenization = self.latest_tokenization(name).ok();
        Mix::from_dataset(dataset, tokenization)
    }
}
