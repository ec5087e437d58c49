//! Validation: whether a set of examples is fit to train on, as named checks with thresholds, each
//! passing or failing with the rows that made it fail.
//!
//! - `schema`: required fields present, non-empty where asked, of their type; per-task extra fields.
//! - `quality`: each example's score in [0, 1] is its weakest rule's (a configurable rule set: length
//!   bounds, repeated word n-grams, the share of letters, control or replacement characters); examples
//!   below `min_quality` are low; the check fails when more than `max_low_quality` of them are.
//! - `duplicates`: exact (the normalised input and output, hashed) and near (MinHash with LSH over the
//!   same text); fails above `max_duplicates` of the examples.
//! - `balance`: each task's share against `min_task_balance` (skipped without a task field).
//! - `readiness`: at least `min_examples`; with a split field, every split at least `min_per_split`
//!   and no input in two splits (leakage).
//!
//! Statistics come with it: lengths, tasks, quality, language pairs, duplicates, vocabulary.

use std::collections::{BTreeMap, HashMap, HashSet};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Records;
use crate::error::Result;
use crate::sources::lines::at;
use crate::steps::{MinHash, hash128, normalise, words};

/// The JSON type a field must have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FieldKind {
    String,
    Number,
    Bool,
    Object,
    Array,
    Any,
}

impl FieldKind {
    fn accepts(&self, v: &Value) -> bool {
        matches!(
            (self, v),
            (FieldKind::Any, _)
                | (FieldKind::String, Value::String(_))
                | (FieldKind::Number, Value::Number(_))
                | (FieldKind::Bool, Value::Bool(_))
                | (FieldKind::Object, Value::Object(_))
                | (FieldKind::Array, Value::Array(_))
        )
    }

    fn as_str(&self) -> &'static str {
        match self {
            FieldKind::String => "a string",
            FieldKind::Number => "a number",
            FieldKind::Bool => "a boolean",
            FieldKind::Object => "an object",
            FieldKind::Array => "an array",
            FieldKind::Any => "anything",
        }
    }
}

/// A field every example (or every example of a task) must have.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FieldRule {
    /// A dotted path.
    pub field: String,
    pub kind: FieldKind,
    /// Empty strings, arrays and objects count as missing.
    #[serde(default)]
    pub non_empty: bool,
}

impl FieldRule {
    /// What is wrong with record `i` under this rule, if anything.
    pub fn problem(&self, records: &Records, i: usize) -> Option<String> {
        match field(records, i, &self.field) {
            None | Some(Value::Null) => Some(format!("`{}` is missing", self.field)),
            Some(v) if !self.kind.accepts(v) => {
                Some(format!("`{}` is {}, expected {}", self.field, crate::sources::lines::kind(v), self.kind.as_str()))
            }
            Some(v) if self.non_empty && empty(v) => Some(format!("`{}` is empty", self.field)),
            _ => None,
        }
    }

    pub fn new(field: impl Into<String>, kind: FieldKind) -> FieldRule {
        FieldRule { field: field.into(), kind, non_empty: false }
    }

    pub fn non_empty(mut self) -> FieldRule {
        self.non_empty = true;
        self
    }
}

/// A rule of the quality score; each gives an example a score in [0, 1] and the score is the lowest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "rule", rename_all = "snake_case", deny_unknown_fields)]
pub enum QualityRule {
    /// Characters of the input and output together within bounds (else 0).
    Length { min_chars: usize, max_chars: usize },
    /// The share of repeated word n-grams (lower case): at most `max_fraction` scores 1, more scores
    /// 1 − the share.
    Repetition { ngram: usize, max_fraction: f64 },
    /// Letters among non-space characters: at least `min` scores 1, fewer scores share / min.
    Letters { min: f64 },
    /// Control characters (other than tab and newlines) or U+FFFD (a decoding accident) score 0.
    ControlChars,
}

impl QualityRule {
    pub fn name(&self) -> &'static str {
        match self {
            QualityRule::Length { .. } => "length",
            QualityRule::Repetition { .. } => "repetition",
            QualityRule::Letters { .. } => "letters",
            QualityRule::ControlChars => "control_chars",
        }
    }

    /// The rule's score of `text`, and why when below 1.
    pub fn score(&self, text: &str) -> (f64, Option<String>) {
        match self {
            QualityRule::Length { min_chars, max_chars } => {
                let n = text.chars().count();
                if n < *min_chars {
                    (0.0, Some(format!("{n} characters < {min_chars}")))
                } else if n > *max_chars {
                    (0.0, Some(format!("{n} characters > {max_chars}")))
                } else {
                    (1.0, None)
                }
            }
            QualityRule::Repetition { ngram, max_fraction } => {
                let w: Vec<String> = words(text).collect();
                let n = (*ngram).max(1);
                if w.len() < n + 4 {
                    return (1.0, None);
                }
                let grams: Vec<&[String]> = w.windows(n).collect();
                let distinct: HashSet<&[String]> = grams.iter().copied().collect();
                let repeated = 1.0 - distinct.len() as f64 / grams.len() as f64;
                if repeated <= *max_fraction {
                    (1.0, None)
                } else {
                    (1.0 - repeated, Some(format!("{:.0}% of word {n}-grams repeated", 100.0 * repeated)))
                }
            }
            QualityRule::Letters { min } => {
                let (mut letters, mut total) = (0usize, 0usize);
                for c in text.chars().filter(|c| !c.is_whitespace()) {
                    total += 1;
                    letters += c.is_alphabetic() as usize;
                }
                if total == 0 {
                    return (1.0, None);
                }
                let share = letters as f64 / total as f64;
                if share >= *min {
                    (1.0, None)
                } else {
                    (share / min, Some(format!("{:.0}% letters < {:.0}%", 100.0 * share, 100.0 * min)))
                }
            }
            QualityRule::ControlChars => {
                let bad = text
                    .chars()
                    .filter(|&c| c == '\u{fffd}' || (c.is_control() && !matches!(c, '\t' | '\n' | '\r')))
                    .count();
                if bad == 0 { (1.0, None) } else { (0.0, Some(format!("{bad} control or replacement characters"))) }
            }
        }
    }
}

/// Pass/fail thresholds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Thresholds {
    /// An example scoring below this is low quality.
    pub min_quality: f64,
    /// The share of low-quality examples allowed.
    pub max_low_quality: f64,
    /// The share of duplicates (exact and near) allowed.
    pub max_duplicates: f64,
    /// The smallest share a task may have.
    pub min_task_balance: f64,
    pub min_examples: usize,
    pub min_per_split: usize,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            min_quality: 0.5,
            max_low_quality: 0.0,
            max_duplicates: 0.0,
            min_task_balance: 0.05,
            min_examples: 1,
            min_per_split: 1,
        }
    }
}

/// What to validate and how strictly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ValidateSpec {
    pub input: String,
    pub output: Option<String>,
    pub task: Option<String>,
    /// The field naming each example's split (`train`, `validation`, `test`), for readiness.
    pub split: Option<String>,
    /// (source language, target language) fields, for the language-pair statistics.
    pub languages: Option<(String, String)>,
    pub required: Vec<FieldRule>,
    /// Extra required fields per task value.
    pub per_task: BTreeMap<String, Vec<FieldRule>>,
    pub quality: Vec<QualityRule>,
    /// Also look for near duplicates (MinHash, datatrove's 5-grams, 14 × 8).
    pub near_duplicates: bool,
    pub thresholds: Thresholds,
}

impl Default for ValidateSpec {
    fn default() -> Self {
        ValidateSpec {
            input: "input".into(),
            output: Some("output".into()),
            task: Some("task".into()),
            split: None,
            languages: Some(("source_lang".into(), "target_lang".into())),
            required: vec![
                FieldRule::new("input", FieldKind::String).non_empty(),
                FieldRule::new("output", FieldKind::String).non_empty(),
            ],
            per_task: BTreeMap::new(),
            quality: vec![
                QualityRule::Length { min_chars: 8, max_chars: 100_000 },
                QualityRule::Repetition { ngram: 3, max_fraction: 0.3 },
                QualityRule::Letters { min: 0.5 },
                QualityRule::ControlChars,
            ],
            near_duplicates: true,
            thresholds: Thresholds::default(),
        }
    }
}

/// One problem: which example, where it is in the file, and what.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    pub index: usize,
    pub location: String,
    pub detail: String,
}

/// A named check's outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Check {
    pub name: String,
    pub passed: bool,
    /// Not applicable here (no task field, say); counts as passed.
    pub skipped: bool,
    /// What was measured (a count or a share).
    pub value: f64,
    /// What it was held to, in words.
    pub threshold: String,
    pub summary: String,
    pub findings: Vec<Finding>,
}

/// Five numbers of a length distribution.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Lengths {
    pub min: u64,
    pub p50: u64,
    pub mean: f64,
    pub p95: u64,
    pub max: u64,
    /// (decade label, count).
    pub bins: Vec<(String, u64)>,
}

impl Lengths {
    fn of(mut v: Vec<u64>) -> Lengths {
        if v.is_empty() {
            return Lengths::default();
        }
        v.sort_unstable();
        let pick = |p: f64| v[((p * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
        let labels = ["0", "1–9", "10–99", "100–999", "1k–9.9k", "10k–99k", "100k+"];
        let mut bins: Vec<(String, u64)> = labels.iter().map(|l| (l.to_string(), 0)).collect();
        for &x in &v {
            let b = if x == 0 { 0 } else { ((x as f64).log10().floor() as usize + 1).min(6) };
            bins[b].1 += 1;
        }
        Lengths {
            min: v[0],
            p50: pick(0.5),
            mean: v.iter().sum::<u64>() as f64 / v.len() as f64,
            p95: pick(0.95),
            max: v[v.len() - 1],
            bins,
        }
    }
}

/// Statistics of the examples.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Statistics {
    pub examples: u64,
    /// Characters of the input, and of the output.
    pub input_chars: Lengths,
    pub output_chars: Lengths,
    pub tasks: Vec<(String, u64)>,
    /// Quality in tenths: (label, count).
    pub quality: Vec<(String, u64)>,
    pub mean_quality: f64,
    pub language_pairs: Vec<(String, u64)>,
    pub splits: Vec<(String, u64)>,
    pub exact_duplicates: u64,
    pub near_duplicates: u64,
    /// Distinct lower-case words in inputs and outputs.
    pub vocabulary: u64,
}

/// A validation: every check and the statistics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValidationReport {
    pub path: String,
    pub sha256: String,
    pub spec: ValidateSpec,
    pub checks: Vec<Check>,
    pub statistics: Statistics,
    /// Each example's quality score, in record order.
    pub scores: Vec<f64>,
    /// (index, the lowest rule's reason) of the lowest-scoring examples, worst first.
    pub worst: Vec<(usize, String, f64, String)>,
    pub saekit_version: String,
    pub created_at: String,
}

impl ValidationReport {
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.passed)
    }

    pub fn check(&self, name: &str) -> Option<&Check> {
        self.checks.iter().find(|c| c.name == name)
    }

    /// The report as one JSON document.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report serialises")
    }
}

const WORST: usize = 10;

fn text_of(records: &Records, i: usize, spec: &ValidateSpec) -> String {
    let mut t = records.text(i, &spec.input);
    if let Some(o) = &spec.output {
        let out = records.text(i, o);
        if !out.is_empty() {
            t.push('\n');
            t.push_str(&out);
        }
    }
    t
}

fn field<'a>(records: &'a Records, i: usize, path: &str) -> Option<&'a Value> {
    let keys: Vec<&str> = path.split('.').collect();
    let (first, rest) = keys.split_first()?;
    let v = records.rows[i].get(*first)?;
    at(v, rest)
}

fn empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.trim().is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

fn share(n: usize, of: usize) -> f64 {
    if of == 0 { 0.0 } else { n as f64 / of as f64 }
}

fn percent(x: f64) -> String {
    format!("{:.1}%", 100.0 * x)
}

/// Validates `records` against `spec`.
pub fn validate(records: &Records, spec: &ValidateSpec) -> Result<ValidationReport> {
    let n = records.len();
    let th = &spec.thresholds;
    let loc = |i: usize| records.location(i);
    let mut checks = Vec::new();

    // Schema.
    let mut findings = Vec::new();
    let mut bad_rows = HashSet::new();
    for i in 0..n {
        let task = spec.task.as_ref().and_then(|t| field(records, i, t)).and_then(Value::as_str);
        let extra = task.and_then(|t| spec.per_task.get(t)).into_iter().flatten();
        for rule in spec.required.iter().chain(extra) {
            if let Some(p) = rule.problem(records, i) {
                let why = match task {
                    Some(t) if !spec.required.contains(rule) => format!("{p} (required for task `{t}`)"),
                    _ => p,
                };
                findings.push(Finding { index: i, location: loc(i), detail: why });
                bad_rows.insert(i);
            }
        }
    }
    checks.push(Check {
        name: "schema".into(),
        passed: findings.is_empty(),
        skipped: false,
        value: bad_rows.len() as f64,
        threshold: "no example missing a required field or with the wrong type".into(),
        summary: format!("{} of {n} examples have schema problems ({} in all)", bad_rows.len(), findings.len()),
        findings,
    });

    // Quality.
    let texts: Vec<String> = (0..n).map(|i| text_of(records, i, spec)).collect();
    let scored: Vec<(f64, String, String)> = texts
        .par_iter()
        .map(|t| {
            let mut best = (1.0f64, String::new(), String::new());
            for rule in &spec.quality {
                let (s, why) = rule.score(t);
                if s < best.0 {
                    best = (s, rule.name().to_string(), why.unwrap_or_default());
                }
            }
            best
        })
        .collect();
    let scores: Vec<f64> = scored.iter().map(|s| s.0).collect();
    let mut low: Vec<usize> = (0..n).filter(|&i| scores[i] < th.min_quality).collect();
    low.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]).then(a.cmp(&b)));
    let low_share = share(low.len(), n);
    checks.push(Check {
        name: "quality".into(),
        passed: low_share <= th.max_low_quality,
        skipped: false,
        value: low_share,
        threshold: format!("≤ {} of examples below quality {}", percent(th.max_low_quality), th.min_quality),
        summary: format!("{} of {n} examples score below {} ({})", low.len(), th.min_quality, percent(low_share)),
        findings: low
            .iter()
            .map(|&i| Finding {
                index: i,
                location: loc(i),
                detail: format!("quality {:.2}: {} ({})", scores[i], scored[i].2, scored[i].1),
            })
            .collect(),
    });
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]).then(a.cmp(&b)));
    let worst = order
        .iter()
        .take(WORST)
        .filter(|&&i| scores[i] < 1.0)
        .map(|&i| (i, loc(i), scores[i], scored[i].2.clone()))
        .collect();

    // Duplicates: exact first, then near among the rest.
    let mut findings = Vec::new();
    let mut seen: HashMap<u128, usize> = HashMap::new();
    let mut exact = vec![false; n];
    for i in 0..n {
        let key = hash128(normalise(&texts[i]).as_bytes());
        match seen.get(&key) {
            Some(&first) => {
                exact[i] = true;
                findings.push(Finding { index: i, location: loc(i), detail: format!("duplicate of {}", loc(first)) });
            }
            None => {
                seen.insert(key, i);
            }
        }
    }
    let exact_count = exact.iter().filter(|e| **e).count();
    let mut near_count = 0;
    if spec.near_duplicates {
        let minhash = MinHash::datatrove();
        let keys: Vec<Vec<u64>> = texts.par_iter().map(|t| minhash.band_keys(&minhash.signature(t))).collect();
        let mut bands: Vec<HashMap<u64, usize>> = vec![HashMap::new(); 14];
        for i in (0..n).filter(|&i| !exact[i]) {
            if keys[i].is_empty() {
                continue;
            }
            if bands.len() < keys[i].len() {
                bands.resize(keys[i].len(), HashMap::new());
            }
            if let Some(first) = keys[i].iter().enumerate().find_map(|(b, k)| bands[b].get(k).copied()) {
                near_count += 1;
                findings.push(Finding {
                    index: i,
                    location: loc(i),
                    detail: format!("near-duplicate of {}", loc(first)),
                });
                continue;
            }
            for (b, k) in keys[i].iter().enumerate() {
                bands[b].insert(*k, i);
            }
        }
    }
    findings.sort_by_key(|f| f.index);
    let dup_share = share(exact_count + near_count, n);
    checks.push(Check {
        name: "duplicates".into(),
        passed: dup_share <= th.max_duplicates,
        skipped: false,
        value: dup_share,
        threshold: format!("≤ {} of examples", percent(th.max_duplicates)),
        summary: format!(
            "{exact_count} exact and {near_count} near duplicates of {n} examples ({})",
            percent(dup_share)
        ),
        findings,
    });

    // Balance.
    let count_by = |path: &Option<String>| -> Vec<(String, u64)> {
        let Some(path) = path else { return Vec::new() };
        let mut c: BTreeMap<String, u64> = BTreeMap::new();
        for i in 0..n {
            if let Some(v) = field(records, i, path).and_then(crate::sources::lines::scalar) {
                *c.entry(v.into_owned()).or_default() += 1;
            }
        }
        let mut v: Vec<(String, u64)> = c.into_iter().collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        v
    };
    let tasks = count_by(&spec.task);
    if tasks.is_empty() {
        checks.push(Check {
            name: "balance".into(),
            passed: true,
            skipped: true,
            value: 0.0,
            threshold: format!("every task ≥ {}", percent(th.min_task_balance)),
            summary: "no task field: skipped".into(),
            findings: Vec::new(),
        });
    } else {
        let with_task: u64 = tasks.iter().map(|t| t.1).sum();
        let under: Vec<&(String, u64)> =
            tasks.iter().filter(|t| (t.1 as f64 / with_task as f64) < th.min_task_balance).collect();
        let smallest = tasks.iter().map(|t| t.1 as f64 / with_task as f64).fold(1.0, f64::min);
        checks.push(Check {
            name: "balance".into(),
            passed: under.is_empty(),
            skipped: false,
            value: smallest,
            threshold: format!("every task ≥ {}", percent(th.min_task_balance)),
            summary: format!(
                "{} tasks; the smallest has {}{}",
                tasks.len(),
                percent(smallest),
                if under.is_empty() {
                    String::new()
                } else {
                    format!(
                        "; under the minimum: {}",
                        under
                            .iter()
                            .map(|(t, c)| format!("{t} ({c}, {})", percent(*c as f64 / with_task as f64)))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                }
            ),
            findings: Vec::new(),
        });
    }

    // Readiness.
    let splits = count_by(&spec.split);
    let mut findings = Vec::new();
    let mut problems = Vec::new();
    if n < th.min_examples {
        problems.push(format!("{n} examples < {}", th.min_examples));
    }
    if let Some(split_field) = &spec.split {
        for (s, c) in &splits {
            if (*c as usize) < th.min_per_split {
                problems.push(format!("split `{s}` has {c} < {}", th.min_per_split));
            }
        }
        let mut first_split: HashMap<u128, (usize, String)> = HashMap::new();
        for i in 0..n {
            let Some(split) = field(records, i, split_field).and_then(crate::sources::lines::scalar) else { continue };
            let key = hash128(normalise(&records.text(i, &spec.input)).as_bytes());
            match first_split.get(&key) {
                Some((j, s)) if *s != split => findings.push(Finding {
                    index: i,
                    location: loc(i),
                    detail: format!("input also in split `{s}` at {} (this one is in `{split}`)", loc(*j)),
                }),
                Some(_) => {}
                None => {
                    first_split.insert(key, (i, split.into_owned()));
                }
            }
        }
        if !findings.is_empty() {
            problems.push(format!("{} inputs leak between splits", findings.len()));
        }
    }
    checks.push(Check {
        name: "readiness".into(),
        passed: problems.is_empty(),
        skipped: false,
        value: n as f64,
        threshold: match &spec.split {
            Some(_) => format!("≥ {} examples, ≥ {} per split, no leakage", th.min_examples, th.min_per_split),
            None => format!("≥ {} examples", th.min_examples),
        },
        summary: if problems.is_empty() {
            format!(
                "{n} examples{}",
                if splits.is_empty() { String::new() } else { format!(" in {} splits", splits.len()) }
            )
        } else {
            problems.join("; ")
        },
        findings,
    });

    // Statistics.
    let input_chars = Lengths::of((0..n).map(|i| records.text(i, &spec.input).chars().count() as u64).collect());
    let output_chars = match &spec.output {
        Some(o) => Lengths::of((0..n).map(|i| records.text(i, o).chars().count() as u64).collect()),
        None => Lengths::default(),
    };
    let mut quality: Vec<(String, u64)> =
        (0..10).map(|b| (format!("{:.1}–{:.1}", b as f64 / 10.0, (b + 1) as f64 / 10.0), 0)).collect();
    for s in &scores {
        quality[((s * 10.0) as usize).min(9)].1 += 1;
    }
    let mut language_pairs: BTreeMap<String, u64> = BTreeMap::new();
    if let Some((a, b)) = &spec.languages {
        for i in 0..n {
            if let (Some(x), Some(y)) = (
                field(records, i, a).and_then(crate::sources::lines::scalar),
                field(records, i, b).and_then(crate::sources::lines::scalar),
            ) {
                *language_pairs.entry(format!("{x}→{y}")).or_default() += 1;
            }
        }
    }
    let vocabulary: HashSet<String> = texts.iter().flat_map(|t| words(t).collect::<Vec<_>>()).collect();
    let statistics = Statistics {
        examples: n as u64,
        input_chars,
        output_chars,
        tasks,
        quality,
        mean_quality: if n == 0 { 0.0 } else { scores.iter().sum::<f64>() / n as f64 },
        language_pairs: language_pairs.into_iter().collect(),
        splits,
        exact_duplicates: exact_count as u64,
        near_duplicates: near_count as u64,
        vocabulary: vocabulary.len() as u64,
    };
    Ok(ValidationReport {
        path: records.path.display().to_string(),
        sha256: records.sha256.clone(),
        spec: spec.clone(),
        checks,
        statistics,
        scores,
        worst,
        saekit_version: env!("CARGO_PKG_VERSION").to_string(),
        created_at: crate::catalog::now_rfc3339(),
    })
}

impl Records {
    /// Validates these records (see [`validate`]).
    pub fn validate(&self, spec: &ValidateSpec) -> Result<ValidationReport> {
        validate(self, spec)
    }
}
