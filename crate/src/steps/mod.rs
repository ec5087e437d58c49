//! Preprocessing steps: small named filters and deduplicators with one interface ([`Step`]), run over a
//! stream of documents batch by batch in a [`Chain`] that counts what each step saw and dropped, and
//! hands every drop (with its reason) to whoever keeps them browsable. Mixes run them per source and over
//! the whole mix; curation runs them while converting.
//!
//! Steps, as data ([`StepSpec`], serde, in recipes): `length` (characters and words), `regex` (drop what
//! matches, or keep only what does), `exact_dedup` (a 128-bit hash of the normalised text: lower case,
//! whitespace runs as one space, trimmed) and `near_dedup` (MinHash over word n-grams with LSH banding;
//! see [`minhash`]). Memory: the filters hold nothing; exact dedup holds 16 bytes per distinct document
//! kept (about 40 with the hash set's overhead); near dedup one 8-byte key per band per document kept
//! (about 14 × 24 bytes at the defaults).

pub mod minhash;
pub(crate) mod text;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use minhash::{MinHash, NearDedup};
pub use text::{hash128, normalise, words};

use crate::error::{Error, Result};

/// One document as steps see it: its text and where it is from.
#[derive(Debug, Clone, Copy)]
pub struct Doc<'a> {
    pub text: &'a str,
    /// The source's name (in a mix: the recipe's source name).
    pub source: &'a str,
    /// Its row in the source, from 0.
    pub row: u64,
}

/// What a step decided about a document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Keep,
    /// Dropped: the kind of reason (`too short`, `duplicate`: what counts are kept by) and the details
    /// (`12 words < 20`, `duplicate of code row 3`).
    Drop(&'static str, String),
}

/// A preprocessing step. Steps see documents in stream order and may remember them (deduplicators do).
pub trait Step: Send {
    /// Its name in counts and reasons (`length`, `regex`, `exact_dedup`, `near_dedup`).
    fn name(&self) -> &str;
    /// Decides about one document.
    fn check(&mut self, doc: &Doc) -> Verdict;
    /// Decides about a batch, in order; a document sees every earlier one kept. Steps with costly pure
    /// work (MinHash signatures) do it in parallel here.
    fn check_batch(&mut self, docs: &[Doc]) -> Vec<Verdict> {
        docs.iter().map(|d| self.check(d)).collect()
    }
}

/// A step, as recipes write it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "step", rename_all = "snake_case", deny_unknown_fields)]
pub enum StepSpec {
    /// Drops documents outside length bounds (characters and whitespace-separated words; bounds inclusive).
    Length {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        min_chars: Option<usize>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_chars: Option<usize>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        min_words: Option<usize>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_words: Option<usize>,
    },
    /// Drops documents the pattern matches (`keep_matching`: keeps only those). Rust `regex` syntax.
    Regex {
        pattern: String,
        #[serde(default)]
        keep_matching: bool,
    },
    /// Drops a document whose normalised text was seen before.
    ExactDedup,
    /// Drops a document that shares an LSH band with an earlier one: MinHash over word `ngram`s, `bands`
    /// bands of `rows` hashes each (datatrove's defaults: 5-grams, 14 × 8).
    NearDedup {
        #[serde(default = "minhash::default_ngram")]
        ngram: usize,
        #[serde(default = "minhash::default_bands")]
        bands: usize,
        #[serde(default = "minhash::default_rows")]
        rows: usize,
        #[serde(default = "minhash::default_seed")]
        seed: u64,
    },
}

impl StepSpec {
    /// A length filter on words.
    pub fn words(min: Option<usize>, max: Option<usize>) -> StepSpec {
        StepSpec::Length { min_chars: None, max_chars: None, min_words: min, max_words: max }
    }

    /// A length filter on characters.
    pub fn chars(min: Option<usize>, max: Option<usize>) -> StepSpec {
        StepSpec::Length { min_chars: min, max_chars: max, min_words: None, max_words: None }
    }

    /// Drops documents matching `pattern`.
    pub fn drop_matching(pattern: &str) -> StepSpec {
        StepSpec::Regex { pattern: pattern.into(), keep_matching: false }
    }

    /// Keeps only documents matching `pattern`.
    pub fn keep_matching(pattern: &str) -> StepSpec {
        StepSpec::Regex { pattern: pattern.into(), keep_matching: true }
    }

    /// Near dedup at datatrove's defaults.
    pub fn near_dedup() -> StepSpec {
        StepSpec::NearDedup {
            ngram: minhash::default_ngram(),
            bands: minhash::default_bands(),
            rows: minhash::default_rows(),
            seed: minhash::default_seed(),
        }
    }

    /// The step's name in counts.
    pub fn name(&self) -> &'static str {
        match self {
            StepSpec::Length { .. } => "length",
            StepSpec::Regex { .. } => "regex",
            StepSpec::ExactDedup => "exact_dedup",
            StepSpec::NearDedup { .. } => "near_dedup",
        }
    }

    /// A one-line description (`near_dedup 5-grams, 14 × 8, threshold ≈ 0.72`).
    pub fn describe(&self) -> String {
        match self {
            StepSpec::Length { min_chars, max_chars, min_words, max_words } => {
                let bound = |what: &str, lo: &Option<usize>, hi: &Option<usize>| match (lo, hi) {
                    (None, None) => None,
                    (Some(l), None) => Some(format!("≥ {l} {what}")),
                    (None, Some(h)) => Some(format!("≤ {h} {what}")),
                    (Some(l), Some(h)) => Some(format!("{l}–{h} {what}")),
                };
                let parts: Vec<String> = [bound("chars", min_chars, max_chars), bound("words", min_words, max_words)]
                    .into_iter()
                    .flatten()
                    .collect();
                format!("length {}", parts.join(", "))
            }
            StepSpec::Regex { pattern, keep_matching } => {
                format!("regex {} /{pattern}/", if *keep_matching { "keep" } else { "drop" })
            }
            StepSpec::ExactDedup => "exact_dedup (normalised text)".into(),
            StepSpec::NearDedup { ngram, bands, rows, .. } => format!(
                "near_dedup {ngram}-grams, {bands} × {rows}, threshold ≈ {:.2}",
                MinHash::new(*ngram, *bands, *rows, 0).threshold()
            ),
        }
    }

    /// Checks the step's parameters.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::InvalidArgument(format!("step `{}`: {m}", self.name())));
        match self {
            StepSpec::Length { min_chars, max_chars, min_words, max_words } => {
                if min_chars.zip(*max_chars).is_some_and(|(l, h)| l > h)
                    || min_words.zip(*max_words).is_some_and(|(l, h)| l > h)
                {
                    return bad("a minimum is above its maximum".into());
                }
                Ok(())
            }
            StepSpec::Regex { pattern, .. } => {
                regex::Regex::new(pattern).map(|_| ()).or_else(|e| bad(format!("pattern /{pattern}/: {e}")))
            }
            StepSpec::ExactDedup => Ok(()),
            StepSpec::NearDedup { ngram, bands, rows, .. } => {
                if *ngram == 0 || *bands == 0 || *rows == 0 || bands * rows > 4096 {
                    return bad(format!(
                        "ngram, bands and rows must be ≥ 1 and bands × rows ≤ 4096 (got {ngram}, {bands}, {rows})"
                    ));
                }
                Ok(())
            }
        }
    }

    /// The step, ready to run.
    pub fn build(&self) -> Result<Box<dyn Step>> {
        self.validate()?;
        Ok(match self {
            StepSpec::Length { min_chars, max_chars, min_words, max_words } => Box::new(LengthFilter {
                min_chars: *min_chars,
                max_chars: *max_chars,
                min_words: *min_words,
                max_words: *max_words,
            }),
            StepSpec::Regex { pattern, keep_matching } => Box::new(RegexFilter {
                regex: regex::Regex::new(pattern).map_err(|e| Error::InvalidArgument(e.to_string()))?,
                keep_matching: *keep_matching,
            }),
            StepSpec::ExactDedup => Box::new(ExactDedup::default()),
            StepSpec::NearDedup { ngram, bands, rows, seed } => {
                Box::new(NearDedup::new(MinHash::new(*ngram, *bands, *rows, *seed)))
            }
        })
    }
}

/// Drops documents outside character and word bounds.
#[derive(Debug, Clone)]
pub struct LengthFilter {
    pub min_chars: Option<usize>,
    pub max_chars: Option<usize>,
    pub min_words: Option<usize>,
    pub max_words: Option<usize>,
}

impl Step for LengthFilter {
    fn name(&self) -> &str {
        "length"
    }

    fn check(&mut self, doc: &Doc) -> Verdict {
        if self.min_chars.is_some() || self.max_chars.is_some() {
            let chars = doc.text.chars().count();
            if let Some(min) = self.min_chars.filter(|m| chars < *m) {
                return Verdict::Drop("too short", format!("{chars} chars < {min}"));
            }
            if let Some(max) = self.max_chars.filter(|m| chars > *m) {
                return Verdict::Drop("too long", format!("{chars} chars > {max}"));
            }
        }
        if self.min_words.is_some() || self.max_words.is_some() {
            let words = doc.text.split_whitespace().count();
            if let Some(min) = self.min_words.filter(|m| words < *m) {
                return Verdict::Drop("too short", format!("{words} words < {min}"));
            }
            if let Some(max) = self.max_words.filter(|m| words > *m) {
                return Verdict::Drop("too long", format!("{words} words > {max}"));
            }
        }
        Verdict::Keep
    }
}

/// Drops documents a pattern matches, or keeps only those.
#[derive(Debug, Clone)]
pub struct RegexFilter {
    pub regex: regex::Regex,
    pub keep_matching: bool,
}

impl Step for RegexFilter {
    fn name(&self) -> &str {
        "regex"
    }

    fn check(&mut self, doc: &Doc) -> Verdict {
        match (self.regex.find(doc.text), self.keep_matching) {
            (Some(m), false) => Verdict::Drop(
                "matches",
                format!("matches /{}/ at {:?}", self.regex.as_str(), crate::display::truncate(m.as_str(), 40)),
            ),
            (None, true) => Verdict::Drop("does not match", format!("does not match /{}/", self.regex.as_str())),
            _ => Verdict::Keep,
        }
    }
}

/// Drops documents whose normalised text was seen before, naming the first one.
#[derive(Debug, Default)]
pub struct ExactDedup {
    seen: std::collections::HashMap<u128, (String, u64)>,
}

impl Step for ExactDedup {
    fn name(&self) -> &str {
        "exact_dedup"
    }

    fn check(&mut self, doc: &Doc) -> Verdict {
        let key = hash128(normalise(doc.text).as_bytes());
        match self.seen.get(&key) {
            Some((source, row)) => Verdict::Drop("duplicate", format!("duplicate of {source} row {row}")),
            None => {
                self.seen.insert(key, (doc.source.to_string(), doc.row));
                Verdict::Keep
            }
        }
    }
}

/// What a step of a chain saw and dropped, and why.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepCount {
    pub step: String,
    pub seen: u64,
    pub dropped: u64,
    /// Drops per kind of reason (`too short`, `duplicate`, …).
    #[serde(default)]
    pub reasons: std::collections::BTreeMap<String, u64>,
}

/// A document a chain dropped: which step, why, and the document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dropped {
    pub step: String,
    pub reason: String,
    pub source: String,
    pub row: u64,
    pub text: String,
}

/// Steps run in order over batches of documents, counting what each saw and dropped.
pub struct Chain {
    steps: Vec<Box<dyn Step>>,
    counts: Vec<StepCount>,
}

impl Chain {
    pub fn new(specs: &[StepSpec]) -> Result<Chain> {
        let steps = specs.iter().map(StepSpec::build).collect::<Result<Vec<_>>>()?;
        let counts = steps.iter().map(|s| StepCount { step: s.name().to_string(), ..Default::default() }).collect();
        Ok(Chain { steps, counts })
    }

    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// Runs every step over `docs` (those an earlier step dropped skip the later ones); returns which
    /// documents are kept, and hands each drop to `dropped`.
    pub fn run(&mut self, docs: &[Doc], mut dropped: impl FnMut(Dropped)) -> Vec<bool> {
        let mut kept = vec![true; docs.len()];
        for (step, count) in self.steps.iter_mut().zip(&mut self.counts) {
            let alive: Vec<usize> = (0..docs.len()).filter(|&i| kept[i]).collect();
            if alive.is_empty() {
                break;
            }
            let batch: Vec<Doc> = alive.iter().map(|&i| docs[i]).collect();
            count.seen += batch.len() as u64;
            for (verdict, &i) in step.check_batch(&batch).into_iter().zip(&alive) {
                if let Verdict::Drop(kind, reason) = verdict {
                    kept[i] = false;
                    count.dropped += 1;
                    *count.reasons.entry(kind.to_string()).or_default() += 1;
                    let doc = &docs[i];
                    dropped(Dropped {
                        step: count.step.clone(),
                        reason,
                        source: doc.source.to_string(),
                        row: doc.row,
                        text: doc.text.to_string(),
                    });
                }
            }
        }
        kept
    }

    /// What each step saw and dropped so far.
    pub fn counts(&self) -> &[StepCount] {
        &self.counts
    }

    /// Starts counting again (the steps keep what they remember).
    pub fn reset_counts(&mut self) {
        self.counts.iter_mut().for_each(|c| {
            c.seen = 0;
            c.dropped = 0;
            c.reasons.clear();
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reasons(r: &[(&str, u64)]) -> std::collections::BTreeMap<String, u64> {
        r.iter().map(|(k, n)| (k.to_string(), *n)).collect()
    }

    fn doc(text: &str, row: u64) -> Doc<'_> {
        Doc { text, source: "s", row }
    }

    #[test]
    fn a_chain_counts_what_each_step_saw_and_dropped_and_why() {
        let mut chain = Chain::new(&[
            StepSpec::words(Some(2), Some(4)),
            StepSpec::drop_matching("(?i)lorem"),
            StepSpec::ExactDedup,
        ])
        .unwrap();
        let texts = ["one", "two words", "Lorem ipsum", "TWO   words ", "a b c d e", "three more words"];
        let docs: Vec<Doc> = texts.iter().enumerate().map(|(i, t)| doc(t, i as u64)).collect();
        let mut drops = Vec::new();
        let kept = chain.run(&docs, |d| drops.push((d.step, d.row, d.reason)));
        assert_eq!(kept, [false, true, false, false, false, true]);
        assert_eq!(
            chain.counts(),
            [
                StepCount {
                    step: "length".into(),
                    seen: 6,
                    dropped: 2,
                    reasons: reasons(&[("too long", 1), ("too short", 1)])
                },
                StepCount { step: "regex".into(), seen: 4, dropped: 1, reasons: reasons(&[("matches", 1)]) },
                StepCount { step: "exact_dedup".into(), seen: 3, dropped: 1, reasons: reasons(&[("duplicate", 1)]) },
            ]
        );
        assert_eq!(drops[0], ("length".into(), 0, "1 words < 2".into()));
        assert_eq!(drops[1], ("length".into(), 4, "5 words > 4".into()));
        assert_eq!(drops[3], ("exact_dedup".into(), 3, "duplicate of s row 1".into()));
    }

    #[test]
    fn bad_step_parameters_are_refused_with_the_reason() {
        let e = StepSpec::drop_matching("(unclosed").build().err().unwrap().to_string();
        assert!(e.contains("regex") && e.contains("(unclosed"), "{e}");
        let e = StepSpec::chars(Some(10), Some(5)).validate().unwrap_err().to_string();
        assert!(e.contains("minimum is above"), "{e}");
        let e = StepSpec::NearDedup { ngram: 5, bands: 0, rows: 8, seed: 1 }.validate().unwrap_err().to_string();
        assert!(e.contains("bands"), "{e}");
    }
}
