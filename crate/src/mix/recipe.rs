//! What a mix is, as data: a [`MixRecipe`] (sources with caps and weights, a strategy, a stop rule, the
//! preprocessing steps, an optional tokenization), serde types with a published JSON schema
//! ([`MixRecipe::json_schema`]), read from JSON with errors that say where and what was expected.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::sources::{Format, OnError, TextField};
use crate::steps::StepSpec;
use crate::tokenize::TokenizeParams;

/// A training mix: an ordered list of sources, how to draw from them, when to stop, what to drop on the
/// way, and optionally how to tokenize the result. Plain data: saved in the catalog with its history,
/// exported and imported as JSON, hashed into the provenance of everything it makes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MixRecipe {
    /// The recipe's name; the mixed dataset is called this unless the run names it otherwise.
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// The sources, in order (sequential mixing takes them in this order; ties go to the earlier one).
    pub sources: Vec<MixSource>,
    /// How the next example's source is chosen.
    #[serde(default)]
    pub strategy: Strategy,
    /// When the mix ends; `first_exhausted` (as in HF `interleave_datasets`) when left out. A
    /// curriculum ends after its phases and takes no stop rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<StopRule>,
    /// The seed of weighted random draws (and of nothing else: every other strategy is deterministic).
    #[serde(default)]
    pub seed: u64,
    /// Steps run over every source after its own, in source order: a duplicate across sources is
    /// dropped from the later source.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub preprocess: Vec<StepSpec>,
    /// The tokenizer that counts tokens for token caps and the realised table, and tokenizes the mix
    /// when `tokenize` is set: `gpt2` (built in), a `tokenizer.json` path, or a Hub model repo id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokenizer: Option<String>,
    /// Tokenize the mixed dataset in the same job, with these parameters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokenize: Option<TokenizeParams>,
    /// Rows per Parquet shard of the mixed dataset.
    #[serde(default = "default_rows_per_shard")]
    pub rows_per_shard: usize,
}

fn default_rows_per_shard() -> usize {
    100_000
}

/// One source of a mix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MixSource {
    /// Unique in the recipe; the `source` column of the mixed dataset.
    pub name: String,
    /// Where its documents come from.
    pub from: SourceRef,
    /// Its share of the mix under weighted strategies (weights are normalised; 0 leaves it out).
    #[serde(default = "one")]
    pub weight: f64,
    #[serde(default, skip_serializing_if = "Caps::is_none")]
    pub caps: Caps,
    /// Steps run over this source's documents before the recipe's own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub preprocess: Vec<StepSpec>,
}

fn one() -> f64 {
    1.0
}

/// Where a source's documents come from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum SourceRef {
    /// A dataset in the workspace's catalog, by name.
    Dataset { name: String },
    /// Local JSONL/CSV/Parquet/text files (paths, folders or globs), registered by reference as dataset
    /// `mix/<recipe>/<source>` so the mix's lineage reaches them.
    Files {
        paths: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        format: Option<Format>,
        /// Where the text comes from: `{"column": "body"}` or `{"template": "{q}\n\n{a}"}`.
        #[serde(default)]
        text: TextField,
        #[serde(default)]
        on_error: OnError,
    },
    /// A Hub dataset by repository id, downloaded (or found in the cache) and registered as dataset
    /// `hub/<repo>/<config>/<split>/<revision>`. A gated one uses the token from `HF_TOKEN` or the token
    /// file; the token is never part of the recipe.
    Hub {
        repo: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        config: Option<String>,
        #[serde(default = "default_split")]
        split: String,
        #[serde(default = "default_revision")]
        revision: String,
        #[serde(default)]
        text: TextField,
    },
}

fn default_split() -> String {
    "train".into()
}

fn default_revision() -> String {
    "main".into()
}

/// How much of a source a mix may use. Rows and tokens caps take a prefix of the rows that pass the
/// source's own steps; `max_fraction` caps the same prefix at a share of the dataset's rows. The mix's
/// steps then drop from that prefix (duplicates of earlier sources); what remains is the source's *epoch*.
/// `max_repetitions` bounds how many times the mix may draw each row of the epoch.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Caps {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<u64>,
    /// Counted with the recipe's `tokenizer` (required when set); the epoch ends before the row that
    /// would cross it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<u64>,
    /// Draws of the epoch's rows, in epochs (1 when left out: no row twice; 2.5: two and a half passes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_repetitions: Option<f64>,
    /// The share of the source (0–1] that the epoch may take.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_fraction: Option<f64>,
}

impl Caps {
    fn is_none(&self) -> bool {
        self == &Caps::default()
    }
}

/// How the next example's source is chosen.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Strategy {
    /// All of the first source's epoch, then the second's, and so on; never repeats.
    Sequential,
    /// One from each source in turn.
    RoundRobin,
    /// Each example's source drawn at random in proportion to the weights, from the recipe's seed.
    #[default]
    Weighted,
    /// Always the source furthest behind its share (ties to the earlier source): every prefix of the mix
    /// is within one example of its target for every source, and the counts are exact.
    Deterministic,
    /// Phases, each a weight per source and a length in rows, mixed deterministically in turn; a source's
    /// position carries over from phase to phase.
    Curriculum { phases: Vec<Phase> },
}

impl Strategy {
    pub fn as_str(&self) -> &'static str {
        match self {
            Strategy::Sequential => "sequential",
            Strategy::RoundRobin => "round_robin",
            Strategy::Weighted => "weighted",
            Strategy::Deterministic => "deterministic",
            Strategy::Curriculum { .. } => "curriculum",
        }
    }
}

/// One phase of a curriculum.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Phase {
    pub name: String,
    /// Weight per source name; a source left out has weight 0 in this phase.
    pub weights: BTreeMap<String, f64>,
    /// Rows in this phase, exactly.
    pub rows: u64,
}

/// When a mix ends (the names are HF `interleave_datasets`' stopping strategies).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum StopRule {
    /// As soon as an example is to be drawn from a source whose epoch is used up.
    FirstExhausted,
    /// Once every source has used its epoch at least once; a source used up before then starts its epoch
    /// again (oversampling, within its `max_repetitions`).
    AllExhausted,
    /// Once every source has used its epoch; a used-up source is skipped, never repeated.
    AllExhaustedWithoutReplacement,
    /// After exactly this many rows; used-up sources start again within their `max_repetitions`.
    Total(u64),
}

impl StopRule {
    pub fn describe(&self) -> String {
        match self {
            StopRule::FirstExhausted => "first_exhausted".into(),
            StopRule::AllExhausted => "all_exhausted".into(),
            StopRule::AllExhaustedWithoutReplacement => "all_exhausted_without_replacement".into(),
            StopRule::Total(n) => format!("total {}", crate::error::count(*n)),
        }
    }
}

impl MixRecipe {
    /// A recipe over `sources` with the default strategy (weighted, seed 0) and stop rule.
    pub fn new(name: &str, sources: Vec<MixSource>) -> MixRecipe {
        MixRecipe {
            name: name.into(),
            description: String::new(),
            sources,
            strategy: Strategy::default(),
            stop: None,
            seed: 0,
            preprocess: Vec::new(),
            tokenizer: None,
            tokenize: None,
            rows_per_shard: default_rows_per_shard(),
        }
    }

    pub fn strategy(mut self, strategy: Strategy) -> MixRecipe {
        self.strategy = strategy;
        self
    }

    pub fn stop(mut self, stop: StopRule) -> MixRecipe {
        self.stop = Some(stop);
        self
    }

    pub fn seed(mut self, seed: u64) -> MixRecipe {
        self.seed = seed;
        self
    }

    pub fn describe(mut self, description: &str) -> MixRecipe {
        self.description = description.into();
        self
    }

    /// Adds a step run over every source (after each source's own).
    pub fn step(mut self, step: StepSpec) -> MixRecipe {
        self.preprocess.push(step);
        self
    }

    pub fn tokenizer(mut self, tokenizer: &str) -> MixRecipe {
        self.tokenizer = Some(tokenizer.into());
        self
    }

    /// Tokenizes the mix in the same job (with the recipe's tokenizer).
    pub fn tokenize(mut self, params: TokenizeParams) -> MixRecipe {
        self.tokenize = Some(params);
        self
    }

    pub fn rows_per_shard(mut self, rows: usize) -> MixRecipe {
        self.rows_per_shard = rows;
        self
    }

    /// The stop rule in force.
    pub fn stop_rule(&self) -> StopRule {
        self.stop.unwrap_or(StopRule::FirstExhausted)
    }

    /// The recipe as pretty JSON (what `export` writes and `from_json` reads).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Reads a recipe from JSON, checking it; errors say the line, column and what was expected.
    pub fn from_json(json: &str) -> Result<MixRecipe> {
        let recipe: MixRecipe = serde_json::from_str(json)
            .map_err(|e| Error::InvalidArgument(format!("mix recipe, line {} column {}: {e}", e.line(), e.column())))?;
        recipe.validate()?;
        Ok(recipe)
    }

    /// Reads a recipe from a JSON file; errors name the file.
    pub fn from_file(path: impl AsRef<std::path::Path>) -> Result<MixRecipe> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        MixRecipe::from_json(&text).map_err(|e| match e {
            Error::InvalidArgument(m) => Error::InvalidArgument(format!("{}: {m}", path.display())),
            other => other,
        })
    }

    /// Writes the recipe as JSON to `path` (atomically).
    pub fn export(&self, path: impl AsRef<std::path::Path>) -> Result<()> {
        crate::files::write_atomically(path.as_ref(), self.to_json().as_bytes())
    }

    /// The published JSON schema of recipes.
    pub fn json_schema() -> serde_json::Value {
        serde_json::to_value(schemars::schema_for!(MixRecipe)).unwrap_or_default()
    }

    /// sha256 of the recipe's compact JSON: its identity in provenance.
    pub fn hash(&self) -> String {
        let json = serde_json::to_string(self).unwrap_or_default();
        Sha256::digest(json.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Checks what can be checked without reading any data: names, weights, caps, phases, steps.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::InvalidArgument(format!("mix recipe `{}`: {m}", self.name)));
        crate::catalog::check_name(&self.name)?;
        if self.sources.is_empty() {
            return bad("it has no sources".into());
        }
        if self.rows_per_shard == 0 {
            return bad("rows_per_shard must be at least 1".into());
        }
        let mut names = std::collections::HashSet::new();
        for s in &self.sources {
            if s.name.is_empty() || !names.insert(s.name.as_str()) {
                return bad(format!("source names must be non-empty and unique; `{}` is not", s.name));
            }
            if !(s.weight.is_finite() && s.weight >= 0.0) {
                return bad(format!("source `{}`: weight {} must be a finite number ≥ 0", s.name, s.weight));
            }
            if let Some(r) = s.caps.max_repetitions
                && !(r.is_finite() && r >= 1.0)
            {
                return bad(format!("source `{}`: max_repetitions {r} must be ≥ 1 (1: no row twice)", s.name));
            }
            if let Some(f) = s.caps.max_fraction
                && !(f > 0.0 && f <= 1.0)
            {
                return bad(format!("source `{}`: max_fraction {f} must be in (0, 1]", s.name));
            }
            if s.caps.tokens.is_some() && self.tokenizer.is_none() {
                return bad(format!("source `{}` has a token cap: name the `tokenizer` that counts tokens", s.name));
            }
            for step in &s.preprocess {
                step.validate().or_else(|e| bad(format!("source `{}`: {e}", s.name)))?;
            }
        }
        for step in &self.preprocess {
            step.validate().or_else(|e| bad(e.to_string()))?;
        }
        if self.tokenize.is_some() && self.tokenizer.is_none() {
            return bad("`tokenize` is set: name the `tokenizer` too".into());
        }
        let weighted = matches!(self.strategy, Strategy::Weighted | Strategy::Deterministic);
        if weighted && self.sources.iter().all(|s| s.weight == 0.0) {
            return bad("every source has weight 0".into());
        }
        if let Strategy::Curriculum { phases } = &self.strategy {
            if self.stop.is_some() {
                return bad("a curriculum ends after its phases: leave `stop` out".into());
            }
            if phases.is_empty() {
                return bad("the curriculum has no phases".into());
            }
            for phase in phases {
                for (source, w) in &phase.weights {
                    if !names.contains(source.as_str()) {
                        let known: Vec<&str> = self.sources.iter().map(|s| s.name.as_str()).collect();
                        return bad(format!(
                            "phase `{}` weighs source `{source}`, which the recipe does not have (its sources: {})",
                            phase.name,
                            known.join(", ")
                        ));
                    }
                    if !(w.is_finite() && *w >= 0.0) {
                        return bad(format!("phase `{}`: weight {w} of `{source}` must be ≥ 0", phase.name));
                    }
                }
                if phase.rows > 0 && phase.weights.values().all(|w| *w == 0.0) {
                    return bad(format!(
                        "phase `{}` has {} rows but no source with weight > 0",
                        phase.name, phase.rows
                    ));
                }
            }
        }
        Ok(())
    }
}

impl MixSource {
    /// A source from a catalog dataset.
    pub fn dataset(name: &str, dataset: &str) -> MixSource {
        MixSource::from_ref(name, SourceRef::Dataset { name: dataset.into() })
    }

    /// A source from local files (paths, folders or globs), text from the `text` column.
    pub fn files<S: AsRef<str>>(name: &str, paths: impl IntoIterator<Item = S>) -> MixSource {
        let cwd = std::env::current_dir().unwrap_or_default();
        let paths = paths.into_iter().map(|p| cwd.join(p.as_ref()).to_string_lossy().into_owned()).collect();
        MixSource::from_ref(
            name,
            SourceRef::Files { paths, format: None, text: TextField::default(), on_error: OnError::default() },
        )
    }

    /// A source from a Hub dataset (`split` train, revision main, the default config).
    pub fn hub(name: &str, repo: &str) -> MixSource {
        MixSource::from_ref(
            name,
            SourceRef::Hub {
                repo: repo.into(),
                config: None,
                split: default_split(),
                revision: default_revision(),
                text: TextField::default(),
            },
        )
    }

    pub fn from_ref(name: &str, from: SourceRef) -> MixSource {
        MixSource { name: name.into(), from, weight: 1.0, caps: Caps::default(), preprocess: Vec::new() }
    }

    pub fn weight(mut self, weight: f64) -> MixSource {
        self.weight = weight;
        self
    }

    pub fn max_rows(mut self, rows: u64) -> MixSource {
        self.caps.rows = Some(rows);
        self
    }

    pub fn max_tokens(mut self, tokens: u64) -> MixSource {
        self.caps.tokens = Some(tokens);
        self
    }

    pub fn max_repetitions(mut self, times: f64) -> MixSource {
        self.caps.max_repetitions = Some(times);
        self
    }

    pub fn max_fraction(mut self, fraction: f64) -> MixSource {
        self.caps.max_fraction = Some(fraction);
        self
    }

    /// Takes the text from column `column` (files and Hub sources).
    pub fn text_column(mut self, column: &str) -> MixSource {
        self.set_text(TextField::Column(column.into()));
        self
    }

    /// Builds the text from a template over the columns (files and Hub sources).
    pub fn text_template(mut self, template: &str) -> MixSource {
        self.set_text(TextField::Template(template.into()));
        self
    }

    fn set_text(&mut self, field: TextField) {
        match &mut self.from {
            SourceRef::Files { text, .. } | SourceRef::Hub { text, .. } => *text = field,
            SourceRef::Dataset { .. } => {}
        }
    }

    pub fn step(mut self, step: StepSpec) -> MixSource {
        self.preprocess.push(step);
        self
    }
}

impl Phase {
    pub fn new<S: AsRef<str>>(name: &str, rows: u64, weights: impl IntoIterator<Item = (S, f64)>) -> Phase {
        Phase {
            name: name.into(),
            rows,
            weights: weights.into_iter().map(|(s, w)| (s.as_ref().to_string(), w)).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_published_schema_is_the_one_the_types_make() {
        let published: serde_json::Value =
            serde_json::from_str(include_str!("../../schema/mix-recipe.schema.json")).unwrap();
        assert_eq!(
            published,
            MixRecipe::json_schema(),
            "crate/schema/mix-recipe.schema.json is out of date: regenerate it with `saekit mix schema`"
        );
    }

    #[test]
    fn a_recipe_written_by_hand_reads_with_its_defaults_and_round_trips() {
        let json = r#"{
            "name": "hand",
            "sources": [
                {"name": "web", "from": {"kind": "dataset", "name": "web"}},
                {"name": "qa", "from": {"kind": "files", "paths": ["/data/qa.jsonl"], "text": {"template": "{q} {a}"}},
                 "weight": 0.25, "caps": {"rows": 100, "max_repetitions": 2.5},
                 "preprocess": [{"step": "length", "min_words": 3}, {"step": "near_dedup", "bands": 20, "rows": 5}]},
                {"name": "hub", "from": {"kind": "hub", "repo": "acme/x", "config": "en"}}
            ],
            "strategy": {"kind": "curriculum", "phases": [{"name": "p1", "weights": {"web": 1, "qa": 1}, "rows": 10}]},
            "preprocess": [{"step": "exact_dedup"}]
        }"#;
        let r = MixRecipe::from_json(json).unwrap();
        assert_eq!(r.sources[0].weight, 1.0);
        assert_eq!(r.sources[1].caps.max_repetitions, Some(2.5));
        assert_eq!(
            r.sources[1].preprocess[1],
            crate::steps::StepSpec::NearDedup { ngram: 5, bands: 20, rows: 5, seed: 1 }
        );
        assert!(
            matches!(&r.sources[2].from, SourceRef::Hub { split, revision, .. } if split == "train" && revision == "main")
        );
        assert_eq!(r.rows_per_shard, 100_000);
        assert_eq!(MixRecipe::from_json(&r.to_json()).unwrap(), r);
        assert_eq!(r.hash(), MixRecipe::from_json(&r.to_json()).unwrap().hash());
        assert_ne!(r.hash(), r.clone().seed(1).hash());
        let mut bad = r.clone();
        bad.stop = Some(StopRule::AllExhausted);
        let e = bad.validate().unwrap_err().to_string();
        assert!(e.contains("a curriculum ends after its phases"), "{e}");
        let e =
            MixRecipe::from_json(&json.replace("\"max_repetitions\": 2.5", "\"max_repetitions\": 0.5")).unwrap_err();
        assert!(e.to_string().contains("source `qa`: max_repetitions 0.5 must be ≥ 1"), "{e}");
    }
}
