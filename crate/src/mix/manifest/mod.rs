//! Bucket manifests: one JSON file naming the *buckets* a team grows its instruction-tuning data by (each
//! a set of JSONL examples with a weight and a description) and the *phases* it trains in (each a weight
//! set over the buckets, and optionally a size). From a manifest, [`Manifest::create_sample`] writes
//! exactly N examples: the phase's weights rounded by largest remainder ([`apportion`]), each bucket's
//! examples drawn without replacement from the seed (whole extra passes only when its `max_repetitions`
//! allows), interleaved so every prefix keeps the phase's shares, and every example written byte for
//! byte as it was (every extra field kept).
//!
//! Where a bucket's examples are: a JSONL file (plain, `.gz`, `.zst`; its path relative to the
//! manifest's folder), all of its rows or those whose field (a dotted path such as `meta.task`) equals a
//! value or matches a regex. Several buckets over one file split it: each row belongs to the first bucket
//! of that file (in manifest order) that takes it, so rules behave as they did in [`Manifest::analyze`].
//!
//! Weights: the buckets' own weights (the default phase) and every phase's weights sum to one (±1e-6);
//! a manifest that says otherwise, or a phase naming a bucket the manifest lacks, is an error naming the
//! file and the numbers. [`Phase::normalized`] (`saekit manifest phase --normalize`) scales a weight set
//! to one before it is stored; [`Manifest::add_bucket`] with weight W gives the new bucket W of the
//! default phase and scales the others by 1 − W.
//!
//! Rooms: this file (the types, loading, checks, editing), `index` (reading buckets' files), `sample`
//! (exactly N examples), `render` (cards and charts).

mod index;
mod render;
mod sample;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use index::{BucketAnalysis, BucketCount, By};
pub use sample::{Order, Sample, SampleSpec, SampledBucket};

use crate::error::{Error, Result, count};

/// How far a weight set's sum may be from one.
pub const WEIGHT_TOLERANCE: f64 = 1e-6;

/// Which rows of a file a bucket takes: `field` (a dotted path) equal to `equals`, or matching the regex
/// `matches`; neither takes every row no earlier bucket of the file took.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Select {
    pub field: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub equals: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matches: Option<String>,
}

impl Select {
    pub fn equals(field: impl Into<String>, value: impl Into<String>) -> Select {
        Select { field: field.into(), equals: Some(value.into()), matches: None }
    }

    pub fn matches(field: impl Into<String>, regex: impl Into<String>) -> Select {
        Select { field: field.into(), equals: None, matches: Some(regex.into()) }
    }

    pub fn describe(&self) -> String {
        match (&self.equals, &self.matches) {
            (Some(v), _) => format!("{} = {v:?}", self.field),
            (_, Some(r)) => format!("{} ~ /{r}/", self.field),
            _ => format!("{} present", self.field),
        }
    }
}

/// Where a bucket's examples are.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BucketSource {
    /// A JSONL file, relative to the manifest's folder (or absolute).
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "where")]
    pub select: Option<Select>,
}

/// A named set of examples with its weight in the default phase.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Bucket {
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    pub weight: f64,
    pub source: BucketSource,
    /// Examples counted when the bucket was analysed or added (the files are read again to sample).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub examples: Option<u64>,
    /// How many times each example may be used in one sample (default 1: never repeated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_repetitions: Option<f64>,
}

impl Bucket {
    /// A bucket of every row of `path`.
    pub fn new(name: impl Into<String>, path: impl AsRef<Path>) -> Bucket {
        Bucket {
            name: name.into(),
            source: BucketSource { path: path.as_ref().to_string_lossy().into_owned(), select: None },
            ..Default::default()
        }
    }

    pub fn weight(mut self, weight: f64) -> Bucket {
        self.weight = weight;
        self
    }

    pub fn description(mut self, description: impl Into<String>) -> Bucket {
        self.description = description.into();
        self
    }

    /// Only the rows `select` takes.
    pub fn select(mut self, select: Select) -> Bucket {
        self.source.select = Some(select);
        self
    }

    pub fn max_repetitions(mut self, max: f64) -> Bucket {
        self.max_repetitions = Some(max);
        self
    }
}

/// A named training phase: a weight set over the buckets (those it leaves out get 0) and optionally its
/// size.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Phase {
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    pub weights: BTreeMap<String, f64>,
    /// The sample size this phase is meant for (`create-sample` without `--total-samples`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_samples: Option<u64>,
}

impl Phase {
    pub fn new(name: impl Into<String>) -> Phase {
        Phase { name: name.into(), ..Default::default() }
    }

    pub fn weight(mut self, bucket: impl Into<String>, weight: f64) -> Phase {
        self.weights.insert(bucket.into(), weight);
        self
    }

    pub fn description(mut self, description: impl Into<String>) -> Phase {
        self.description = description.into();
        self
    }

    pub fn total_samples(mut self, total: u64) -> Phase {
        self.total_samples = Some(total);
        self
    }

    /// The same weights scaled to sum to one (the documented normalisation; an all-zero set stays so).
    pub fn normalized(mut self) -> Phase {
        let sum: f64 = self.weights.values().sum();
        if sum > 0.0 && sum.is_finite() {
            self.weights.values_mut().for_each(|w| *w /= sum);
        }
        self
    }
}

/// A bucket manifest: buckets, phases and the default seed, kept as one JSON file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    #[serde(default)]
    pub seed: u64,
    #[serde(default)]
    pub buckets: Vec<Bucket>,
    #[serde(default)]
    pub phases: Vec<Phase>,
    /// The folder relative bucket paths start from (the manifest file's, once loaded or saved).
    #[serde(skip)]
    #[schemars(skip)]
    pub base: Option<PathBuf>,
}

fn sum_of(weights: impl Iterator<Item = f64>) -> f64 {
    weights.sum()
}

impl Manifest {
    pub fn new(name: impl Into<String>) -> Manifest {
        Manifest { name: name.into(), ..Default::default() }
    }

    /// Reads and checks a manifest file. JSON errors name the line and column; a manifest that parses
    /// but does not hold together (weights, unknown buckets, duplicate names) names the file and why.
    pub fn load(path: impl AsRef<Path>) -> Result<Manifest> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let mut manifest: Manifest = serde_json::from_str(&text).map_err(|e| Error::Json {
            path: path.to_path_buf(),
            line: e.line() as u64,
            message: format!("column {}: {e}", e.column()),
        })?;
        manifest.base = Some(folder_of(path));
        manifest.check().map_err(|e| match e {
            Error::InvalidArgument(message) => Error::Format { path: path.to_path_buf(), message },
            other => other,
        })?;
        Ok(manifest)
    }

    /// Checks, then writes the manifest as pretty JSON through a temporary file. Relative bucket paths
    /// are rewritten to start from `path`'s folder (absolute when the file is not under it).
    pub fn save(&mut self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        self.check()?;
        let new_base = folder_of(path);
        for b in &mut self.buckets {
            let full = resolve(self.base.as_deref(), &b.source.path);
            b.source.path = relative_to(&full, &new_base);
        }
        self.base = Some(new_base);
        let mut json = serde_json::to_string_pretty(self).expect("a manifest serialises");
        json.push('\n');
        crate::files::write_atomically(path, json.as_bytes())
    }

    /// The JSON schema manifests follow.
    pub fn schema() -> serde_json::Value {
        serde_json::to_value(schemars::schema_for!(Manifest)).expect("a schema serialises")
    }

    /// Where a bucket's file is.
    pub fn path_of(&self, bucket: &Bucket) -> PathBuf {
        resolve(self.base.as_deref(), &bucket.source.path)
    }

    pub fn bucket(&self, name: &str) -> Option<&Bucket> {
        self.buckets.iter().find(|b| b.name == name)
    }

    pub fn phase(&self, name: &str) -> Result<&Phase> {
        self.phases.iter().find(|p| p.name == name).ok_or_else(|| {
            let known: Vec<&str> = self.phases.iter().map(|p| p.name.as_str()).collect();
            Error::InvalidArgument(format!(
                "manifest `{}` has no phase `{name}` (phases: {})",
                self.name,
                if known.is_empty() { "none".to_string() } else { known.join(", ") }
            ))
        })
    }

    /// The weights of `phase` (the buckets' own when `None`), in bucket order.
    pub fn weights(&self, phase: Option<&str>) -> Result<Vec<f64>> {
        match phase {
            None => Ok(self.buckets.iter().map(|b| b.weight).collect()),
            Some(name) => {
                let p = self.phase(name)?;
                Ok(self.buckets.iter().map(|b| p.weights.get(&b.name).copied().unwrap_or(0.0)).collect())
            }
        }
    }

    /// Whether the manifest holds together: names, weights, phases, selections. Errors say what to fix.
    pub fn check(&self) -> Result<()> {
        let bad = |m: String| Err(Error::InvalidArgument(format!("manifest `{}`: {m}", self.name)));
        if self.name.trim().is_empty() {
            return bad("it has no name".into());
        }
        let mut names = std::collections::HashSet::new();
        for b in &self.buckets {
            if b.name.trim().is_empty() {
                return bad("a bucket has an empty name".into());
            }
            if !names.insert(b.name.as_str()) {
                return bad(format!("bucket `{}` appears twice", b.name));
            }
            if !b.weight.is_finite() || b.weight < 0.0 {
                return bad(format!("bucket `{}` has weight {}; weights are numbers ≥ 0", b.name, b.weight));
            }
            if let Some(r) = b.max_repetitions
                && !(r.is_finite() && r > 0.0)
            {
                return bad(format!("bucket `{}` has max_repetitions {r}; it must be a number > 0", b.name));
            }
            if b.source.path.trim().is_empty() {
                return bad(format!("bucket `{}` has no source path", b.name));
            }
            if let Some(s) = &b.source.select {
                if s.field.trim().is_empty() {
                    return bad(format!("bucket `{}` selects on an empty field name", b.name));
                }
                if s.equals.is_some() && s.matches.is_some() {
                    return bad(format!("bucket `{}` gives both `equals` and `matches`; give one", b.name));
                }
                if let Some(r) = &s.matches
                    && let Err(e) = regex::Regex::new(r)
                {
                    return bad(format!("bucket `{}`: its regex {r:?} does not compile: {e}", b.name));
                }
            }
        }
        if !self.buckets.is_empty() {
            let sum = sum_of(self.buckets.iter().map(|b| b.weight));
            if (sum - 1.0).abs() > WEIGHT_TOLERANCE {
                let parts: Vec<String> = self.buckets.iter().map(|b| format!("{} {}", b.name, b.weight)).collect();
                return bad(format!(
                    "the buckets' weights sum to {sum}, not 1 ({}); fix them so they sum to one",
                    parts.join(" + ")
                ));
            }
        }
        let mut phase_names = std::collections::HashSet::new();
        for p in &self.phases {
            if p.name.trim().is_empty() {
                return bad("a phase has an empty name".into());
            }
            if !phase_names.insert(p.name.as_str()) {
                return bad(format!("phase `{}` appears twice", p.name));
            }
            for (bucket, w) in &p.weights {
                if !names.contains(bucket.as_str()) {
                    let known: Vec<&str> = self.buckets.iter().map(|b| b.name.as_str()).collect();
                    return bad(format!(
                        "phase `{}` gives weight {w} to bucket `{bucket}`, which the manifest does not have \
                         (buckets: {})",
                        p.name,
                        if known.is_empty() { "none".to_string() } else { known.join(", ") }
                    ));
                }
                if !w.is_finite() || *w < 0.0 {
                    return bad(format!(
                        "phase `{}` gives bucket `{bucket}` weight {w}; weights are numbers ≥ 0",
                        p.name
                    ));
                }
            }
            let sum = sum_of(p.weights.values().copied());
            if (sum - 1.0).abs() > WEIGHT_TOLERANCE {
                let parts: Vec<String> = p.weights.iter().map(|(b, w)| format!("{b} {w}")).collect();
                return bad(format!(
                    "phase `{}`'s weights sum to {sum}, not 1 ({}); fix them, or store them with \
                     `saekit manifest phase {} --normalize` (Phase::normalized) to scale them to one",
                    p.name,
                    if parts.is_empty() { "none".to_string() } else { parts.join(" + ") },
                    p.name
                ));
            }
            if p.total_samples == Some(0) {
                return bad(format!("phase `{}` has total_samples 0", p.name));
            }
        }
        Ok(())
    }

    /// A manifest whose buckets are those `analysis` found, weighted by their share of the file.
    pub fn from_analysis(name: impl Into<String>, analysis: &BucketAnalysis) -> Manifest {
        let mut manifest = Manifest::new(name);
        let assigned: u64 = analysis.buckets.iter().map(|b| b.examples).sum();
        let path = analysis.path.to_string_lossy().into_owned();
        let n = analysis.buckets.len();
        let mut left: f64 = 1.0;
        for (i, b) in analysis.buckets.iter().enumerate() {
            // The last bucket takes what is left, so the weights sum to one exactly.
            let weight = if i + 1 == n { left.max(0.0) } else { b.examples as f64 / assigned.max(1) as f64 };
            left -= weight;
            manifest.buckets.push(Bucket {
                name: b.name.clone(),
                description: String::new(),
                weight,
                source: BucketSource { path: path.clone(), select: b.select.clone() },
                examples: Some(b.examples),
                max_repetitions: None,
            });
        }
        manifest
    }

    /// Adds `bucket` with its weight W in the default phase (every other bucket's weight is scaled by
    /// 1 − W; the first bucket of a manifest gets weight 1), after reading its file: the examples are
    /// counted and every line checked. Phases are unchanged (they give the new bucket weight 0 until one
    /// is set).
    pub fn add_bucket(&mut self, mut bucket: Bucket) -> Result<BucketCount> {
        if self.bucket(&bucket.name).is_some() {
            return Err(Error::InvalidArgument(format!(
                "manifest `{}` already has a bucket `{}`; remove it first or choose another name",
                self.name, bucket.name
            )));
        }
        let w = bucket.weight;
        if !(0.0..=1.0).contains(&w) {
            return Err(Error::InvalidArgument(format!(
                "bucket `{}`: weight {w} is not between 0 and 1 (it is the new bucket's share of the default phase)",
                bucket.name
            )));
        }
        // Relative paths given from here are taken from the current folder, as a shell user means them.
        let full = std::path::absolute(&bucket.source.path).map_err(|e| Error::io(&bucket.source.path, e))?;
        if !full.exists() {
            return Err(Error::io(&full, std::io::Error::new(std::io::ErrorKind::NotFound, "no such file")));
        }
        bucket.source.path = match &self.base {
            Some(base) => relative_to(&full, base),
            None => full.to_string_lossy().into_owned(),
        };
        let before = self.buckets.clone();
        if self.buckets.is_empty() {
            bucket.weight = 1.0;
        } else {
            for b in &mut self.buckets {
                b.weight *= 1.0 - w;
            }
        }
        let name = bucket.name.clone();
        self.buckets.push(bucket);
        match self.check().and_then(|()| self.recount(&name)) {
            Ok(counts) => Ok(counts.into_iter().find(|c| c.name == name).expect("the bucket just added is counted")),
            Err(e) => {
                self.buckets = before;
                Err(e)
            }
        }
    }

    /// Removes a bucket (and its weight from every phase); the other buckets' weights are scaled back to
    /// sum to one.
    pub fn remove_bucket(&mut self, name: &str) -> Result<Bucket> {
        let i = self
            .buckets
            .iter()
            .position(|b| b.name == name)
            .ok_or_else(|| Error::InvalidArgument(format!("manifest `{}` has no bucket `{name}`", self.name)))?;
        let removed = self.buckets.remove(i);
        let sum: f64 = self.buckets.iter().map(|b| b.weight).sum();
        if sum > 0.0 {
            self.buckets.iter_mut().for_each(|b| b.weight /= sum);
        }
        for p in &mut self.phases {
            if p.weights.remove(name).is_some() {
                *p = std::mem::take(p).normalized();
            }
        }
        Ok(removed)
    }

    /// Adds or replaces a phase, after checking it names only this manifest's buckets and sums to one.
    pub fn set_phase(&mut self, phase: Phase) -> Result<()> {
        let old = match self.phases.iter().position(|p| p.name == phase.name) {
            Some(i) => Some((i, std::mem::replace(&mut self.phases[i], phase))),
            None => {
                self.phases.push(phase);
                None
            }
        };
        if let Err(e) = self.check() {
            match old {
                Some((i, p)) => self.phases[i] = p,
                None => {
                    self.phases.pop();
                }
            }
            return Err(e);
        }
        Ok(())
    }

    /// Reads the files of the buckets sharing `bucket`'s file and updates their `examples`.
    fn recount(&mut self, bucket: &str) -> Result<Vec<BucketCount>> {
        let path = self.bucket(bucket).map(|b| self.path_of(b)).expect("the bucket exists");
        let indexed = index::index_file(self, &path)?;
        let counts = indexed.counts(self);
        for c in &counts {
            if let Some(b) = self.buckets.iter_mut().find(|b| b.name == c.name) {
                b.examples = Some(c.examples);
            }
        }
        Ok(counts)
    }

    /// Examples recorded per bucket, in all.
    pub fn recorded_examples(&self) -> u64 {
        self.buckets.iter().filter_map(|b| b.examples).sum()
    }
}

fn folder_of(path: &Path) -> PathBuf {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf())
}

fn resolve(base: Option<&Path>, path: &str) -> PathBuf {
    let p = Path::new(path);
    match base {
        _ if p.is_absolute() => p.to_path_buf(),
        Some(base) => base.join(p),
        None => std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf()),
    }
}

/// `path` relative to `dir` when it lies under it (`a/b.jsonl`), else absolute.
fn relative_to(path: &Path, dir: &Path) -> String {
    let clean = |p: &Path| -> PathBuf {
        let mut out = PathBuf::new();
        for c in p.components() {
            match c {
                std::path::Component::CurDir => {}
                std::path::Component::ParentDir => {
                    out.pop();
                }
                other => out.push(other),
            }
        }
        out
    };
    let (path, dir) = (clean(path), clean(dir));
    match path.strip_prefix(&dir) {
        Ok(rel) => rel.to_string_lossy().into_owned(),
        Err(_) => path.to_string_lossy().into_owned(),
    }
}

/// `n` as a count with its unit, for messages.
pub(crate) fn examples(n: u64) -> String {
    format!("{} example{}", count(n), if n == 1 { "" } else { "s" })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_start_from_the_manifests_folder() {
        assert_eq!(relative_to(Path::new("/a/b/./c.jsonl"), Path::new("/a")), "b/c.jsonl");
        assert_eq!(relative_to(Path::new("/x/c.jsonl"), Path::new("/a")), "/x/c.jsonl");
        assert_eq!(resolve(Some(Path::new("/m")), "d/e.jsonl"), PathBuf::from("/m/d/e.jsonl"));
        assert_eq!(resolve(Some(Path::new("/m")), "/abs.jsonl"), PathBuf::from("/abs.jsonl"));
    }

    #[test]
    fn the_published_schema_is_the_types_schema() {
        let published: serde_json::Value =
            serde_json::from_str(include_str!("../../../schema/manifest.schema.json")).unwrap();
        assert_eq!(
            published,
            Manifest::schema(),
            "crate/schema/manifest.schema.json is out of date: regenerate it with `saekit manifest schema`"
        );
    }

    #[test]
    fn normalisation_scales_a_phase_to_one() {
        let p = Phase::new("p").weight("a", 2.0).weight("b", 6.0).normalized();
        assert_eq!(p.weights["a"], 0.25);
        assert_eq!(p.weights["b"], 0.75);
    }
}
