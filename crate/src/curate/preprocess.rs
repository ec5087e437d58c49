//! The preprocessing chain curation applies while converting: small named steps over each record in
//! order, each counting what it saw, changed and dropped.
//!
//! - `clean`: on chosen fields, Unicode normalisation (NFC or NFKC), whitespace (runs of spaces and tabs
//!   as one, lines trimmed at the end, three or more newlines as two, the whole trimmed), lower case,
//!   markup stripped (tags removed, the common entities decoded).
//! - `require`: drops records missing a required field or with the wrong type.
//! - `filter`: any of the shared steps ([`StepSpec`]: length, regex, exact and near dedup) over the
//!   record's text (its input and output).
//! - `quality`: drops records whose quality score ([`super::validate`]'s rules) is below a threshold.
//! - `enrich`: adds `metadata.input_chars`, `output_chars`, `input_words`, `output_words` and, if asked,
//!   `processed_at`.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use unicode_normalization_alignments::UnicodeNormalization;

use super::Records;
use super::validate::{FieldRule, QualityRule, ValidateSpec};
use crate::error::Result;
use crate::steps::{Doc, Step, StepSpec, Verdict};

/// Unicode normal forms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Normalization {
    Nfc,
    Nfkc,
}

/// One step of the chain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "step", rename_all = "snake_case", deny_unknown_fields)]
pub enum CurateStep {
    Clean {
        /// The fields cleaned (default `input` and `output`).
        #[serde(default = "default_fields")]
        fields: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        unicode: Option<Normalization>,
        #[serde(default)]
        whitespace: bool,
        #[serde(default)]
        lowercase: bool,
        #[serde(default)]
        strip_markup: bool,
    },
    /// Drops records missing a required field or with the wrong type.
    Require { fields: Vec<FieldRule> },
    /// A shared filter or deduplicator over the record's input and output.
    Filter { filter: StepSpec },
    /// Drops records scoring below `min_quality` under the default quality rules (or `rules`).
    Quality {
        min_quality: f64,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        rules: Vec<QualityRule>,
    },
    Enrich {
        #[serde(default)]
        processed_at: bool,
    },
}

fn default_fields() -> Vec<String> {
    vec!["input".into(), "output".into()]
}

impl CurateStep {
    /// Every cleaning on the input and output: NFKC, whitespace, markup (not lower case).
    pub fn clean() -> CurateStep {
        CurateStep::Clean {
            fields: default_fields(),
            unicode: Some(Normalization::Nfkc),
            whitespace: true,
            lowercase: false,
            strip_markup: true,
        }
    }

    /// Drops records whose `input` and `output` are not non-empty strings.
    pub fn require_input_output() -> CurateStep {
        CurateStep::Require { fields: ValidateSpec::default().required }
    }

    pub fn filter(spec: StepSpec) -> CurateStep {
        CurateStep::Filter { filter: spec }
    }

    pub fn quality(min_quality: f64) -> CurateStep {
        CurateStep::Quality { min_quality, rules: Vec::new() }
    }

    pub fn enrich(processed_at: bool) -> CurateStep {
        CurateStep::Enrich { processed_at }
    }

    pub fn name(&self) -> String {
        match self {
            CurateStep::Clean { .. } => "clean".into(),
            CurateStep::Require { .. } => "require".into(),
            CurateStep::Filter { filter } => filter.name().into(),
            CurateStep::Quality { .. } => "quality".into(),
            CurateStep::Enrich { .. } => "enrich".into(),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            CurateStep::Clean { fields, unicode, whitespace, lowercase, strip_markup } => {
                let mut what = Vec::new();
                if let Some(u) = unicode {
                    what.push(format!("{u:?}").to_uppercase());
                }
                for (on, name) in [(*whitespace, "whitespace"), (*lowercase, "lowercase"), (*strip_markup, "markup")] {
                    if on {
                        what.push(name.to_string());
                    }
                }
                format!("clean {} of {}", what.join(", "), fields.join(", "))
            }
            CurateStep::Require { fields } => {
                format!("require {}", fields.iter().map(|f| f.field.as_str()).collect::<Vec<_>>().join(", "))
            }
            CurateStep::Filter { filter } => filter.describe(),
            CurateStep::Quality { min_quality, .. } => format!("quality ≥ {min_quality}"),
            CurateStep::Enrich { processed_at } => {
                format!("enrich metadata with lengths{}", if *processed_at { " and processed_at" } else { "" })
            }
        }
    }
}

/// What one step did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StepReport {
    pub step: String,
    pub description: String,
    pub seen: u64,
    pub changed: u64,
    pub dropped: u64,
    /// (location, why) of the first drops.
    pub examples: Vec<(String, String)>,
}

/// Whitespace: runs of spaces/tabs as one space, lines trimmed at the end, 3+ newlines as 2, trimmed.
pub fn clean_whitespace(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut newlines = 0;
    for line in text.split('\n') {
        let mut squeezed = String::with_capacity(line.len());
        let mut space = false;
        for c in line.trim_end().chars() {
            if c == ' ' || c == '\t' || c == '\r' || c == '\u{a0}' {
                space = true;
            } else {
                if space && !squeezed.is_empty() {
                    squeezed.push(' ');
                }
                space = false;
                squeezed.push(c);
            }
        }
        if squeezed.is_empty() {
            newlines += 1;
            continue;
        }
        if !out.is_empty() {
            out.push_str(if newlines >= 1 { "\n\n" } else { "\n" });
        }
        newlines = 0;
        out.push_str(&squeezed);
    }
    out
}

/// Markup removed: tags (`<b>`, `</p>`, `<br/>`, comments) dropped, `&amp; &lt; &gt; &quot; &#39; &nbsp;`
/// and numeric entities decoded.
pub fn strip_markup(text: &str) -> String {
    let tags = regex::Regex::new(r"(?s)<!--.*?-->|</?[A-Za-z][^<>]*>").expect("a valid regex");
    let no_tags = tags.replace_all(text, "");
    let entities =
        regex::Regex::new(r"&(#x[0-9A-Fa-f]+|#[0-9]+|amp|lt|gt|quot|apos|nbsp|#39);").expect("a valid regex");
    entities
        .replace_all(&no_tags, |c: &regex::Captures| {
            let e = &c[1];
            match e {
                "amp" => "&".to_string(),
                "lt" => "<".to_string(),
                "gt" => ">".to_string(),
                "quot" => "\"".to_string(),
                "apos" | "#39" => "'".to_string(),
                "nbsp" => " ".to_string(),
                _ => {
                    let n = if let Some(h) = e.strip_prefix("#x") {
                        u32::from_str_radix(h, 16).ok()
                    } else {
                        e[1..].parse().ok()
                    };
                    n.and_then(char::from_u32).map(String::from).unwrap_or_else(|| c[0].to_string())
                }
            }
        })
        .into_owned()
}

fn clean_text(text: &str, unicode: Option<Normalization>, whitespace: bool, lowercase: bool, markup: bool) -> String {
    let mut t = text.to_string();
    if markup {
        t = strip_markup(&t);
    }
    match unicode {
        Some(Normalization::Nfc) => t = t.nfc().map(|(c, _)| c).collect(),
        Some(Normalization::Nfkc) => t = t.nfkc().map(|(c, _)| c).collect(),
        None => {}
    }
    if lowercase {
        t = t.to_lowercase();
    }
    if whitespace {
        t = clean_whitespace(&t);
    }
    t
}

const SHOWN: usize = 10;

/// The chain over a stream of record batches: filters keep their memory (dedup) from batch to batch,
/// and the counts add up.
pub struct Chain {
    steps: Vec<CurateStep>,
    built: Vec<Option<Box<dyn Step>>>,
    reports: Vec<StepReport>,
    input: String,
    output: String,
    now: String,
}

impl Chain {
    pub fn new(steps: &[CurateStep], input: &str, output: &str) -> Result<Chain> {
        let mut built = Vec::new();
        for step in steps {
            built.push(match step {
                CurateStep::Filter { filter } => {
                    filter.validate()?;
                    Some(filter.build()?)
                }
                _ => None,
            });
        }
        Ok(Chain {
            reports: steps
                .iter()
                .map(|s| StepReport { step: s.name(), description: s.describe(), ..Default::default() })
                .collect(),
            steps: steps.to_vec(),
            built,
            input: input.into(),
            output: output.into(),
            now: crate::catalog::now_rfc3339(),
        })
    }

    /// What each step did so far.
    pub fn reports(&self) -> &[StepReport] {
        &self.reports
    }

    /// Runs the chain over the next batch; returns what it kept.
    pub fn process(&mut self, mut current: Records) -> Result<Records> {
        let (input, output) = (self.input.clone(), self.output.clone());
        let (input, output) = (input.as_str(), output.as_str());
        for (k, step) in self.steps.iter().enumerate() {
            let report = &mut self.reports[k];
            report.seen += current.len() as u64;
            let mut keep = vec![true; current.len()];
            match step {
                CurateStep::Clean { fields, unicode, whitespace, lowercase, strip_markup } => {
                    for row in &mut current.rows {
                        let mut changed = false;
                        for f in fields {
                            if let Some(Value::String(s)) = row.get(f) {
                                let c = clean_text(s, *unicode, *whitespace, *lowercase, *strip_markup);
                                if &c != s {
                                    row.insert(f.clone(), Value::String(c));
                                    changed = true;
                                }
                            }
                        }
                        report.changed += changed as u64;
                    }
                }
                CurateStep::Require { fields } => {
                    for (i, keep) in keep.iter_mut().enumerate() {
                        if let Some(p) = fields.iter().find_map(|f| f.problem(&current, i)) {
                            *keep = false;
                            if report.examples.len() < SHOWN {
                                report.examples.push((current.location(i), p));
                            }
                        }
                    }
                }
                CurateStep::Filter { .. } => {
                    let built = self.built[k].as_mut().expect("filters are built");
                    let texts: Vec<String> = (0..current.len()).map(|i| joined(&current, i, input, output)).collect();
                    let docs: Vec<Doc> = texts
                        .iter()
                        .enumerate()
                        .map(|(i, t)| Doc { text: t, source: "line", row: current.lines[i] })
                        .collect();
                    for (i, v) in built.check_batch(&docs).into_iter().enumerate() {
                        if let Verdict::Drop(_, why) = v {
                            keep[i] = false;
                            if report.examples.len() < SHOWN {
                                report.examples.push((current.location(i), why.replace("line row", "line")));
                            }
                        }
                    }
                }
                CurateStep::Quality { min_quality, rules } => {
                    let rules = if rules.is_empty() { ValidateSpec::default().quality } else { rules.clone() };
                    for (i, keep) in keep.iter_mut().enumerate() {
                        let t = joined(&current, i, input, output);
                        let (mut score, mut why) = (1.0f64, String::new());
                        for r in &rules {
                            let (s, w) = r.score(&t);
                            if s < score {
                                score = s;
                                why = w.unwrap_or_default();
                            }
                        }
                        if score < *min_quality {
                            *keep = false;
                            if report.examples.len() < SHOWN {
                                report.examples.push((current.location(i), format!("quality {score:.2}: {why}")));
                            }
                        }
                    }
                }
                CurateStep::Enrich { processed_at } => {
                    for i in 0..current.len() {
                        let (a, b) = (current.text(i, input), current.text(i, output));
                        let row = &mut current.rows[i];
                        let meta = row.entry("metadata").or_insert_with(|| Value::Object(Map::new()));
                        if !meta.is_object() {
                            *meta = Value::Object(Map::new());
                        }
                        let m = meta.as_object_mut().expect("an object");
                        m.insert("input_chars".into(), a.chars().count().into());
                        m.insert("output_chars".into(), b.chars().count().into());
                        m.insert("input_words".into(), a.split_whitespace().count().into());
                        m.insert("output_words".into(), b.split_whitespace().count().into());
                        if *processed_at {
                            m.insert("processed_at".into(), Value::String(self.now.clone()));
                        }
                    }
                    report.changed += current.len() as u64;
                }
            }
            let dropped = keep.iter().filter(|k| !**k).count();
            report.dropped += dropped as u64;
            if dropped > 0 {
                let kept: Vec<usize> = (0..current.len()).filter(|&i| keep[i]).collect();
                current = current.subset(&kept);
            }
        }
        Ok(current)
    }
}

/// Runs `steps` over `records` in order; returns the records kept (changed as the steps say) and what
/// each step did. `input`/`output` name the fields filters and quality read.
pub fn preprocess(
    records: &Records,
    steps: &[CurateStep],
    input: &str,
    output: &str,
) -> Result<(Records, Vec<StepReport>)> {
    let mut chain = Chain::new(steps, input, output)?;
    let kept = chain.process(records.clone())?;
    Ok((kept, chain.reports().to_vec()))
}

fn joined(records: &Records, i: usize, input: &str, output: &str) -> String {
    let mut t = records.text(i, input);
    let o = records.text(i, output);
    if !o.is_empty() {
        t.push('\n');
        t.push_str(&o);
    }
    t
}

impl Records {
    /// Runs the preprocessing chain (see [`preprocess`]) over `input` and `output`.
    pub fn preprocess(&self, steps: &[CurateStep]) -> Result<(Records, Vec<StepReport>)> {
        preprocess(self, steps, "input", "output")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleaning_normalises_whitespace_markup_and_unicode() {
        assert_eq!(clean_whitespace("  a \t b  \r\n\n\n\nc   \n d"), "a b\n\nc\nd");
        assert_eq!(strip_markup("<p>x &amp; <b>y</b></p><!-- c --> &lt;3 &#233;&#x41;"), "x & y <3 éA");
        assert_eq!(clean_text("ﬁ Ａ", Some(Normalization::Nfkc), false, false, false), "fi A");
        assert_eq!(clean_text("e\u{301}", Some(Normalization::Nfc), false, false, false), "é");
        assert_eq!(clean_text(" <i>Hello</i>   World ", None, true, true, true), "hello world");
    }
}
