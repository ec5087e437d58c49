//! How validations, splits and exports look: a card with a pass/fail badge, the checks table, the
//! distributions as charts, the worst examples and the findings (every dataset string escaped and
//! truncated); and a self-contained HTML report of it.

use std::path::Path;

use super::validate::ValidationReport;
use super::{ExportReport, Records, Splits};
use crate::display::{BarChart, Card, ChartGrid, Histogram, MimeBundle, Render, Table, truncate};
use crate::error::{Result, count};

fn percent(x: f64) -> String {
    format!("{:.1}%", 100.0 * x)
}

impl ValidationReport {
    /// One row per check: status, value, threshold, summary.
    pub fn checks_table(&self) -> Table {
        let mut table = Table::new("checks", &["check", "status", "value", "threshold", "summary"]);
        for c in &self.checks {
            let status = if c.skipped {
                "skipped"
            } else if c.passed {
                "pass"
            } else {
                "FAIL"
            };
            let value = if c.value.fract() == 0.0 && c.value >= 1.0 {
                count(c.value as u64)
            } else {
                format!("{:.3}", c.value)
            };
            table.row(vec![c.name.clone(), status.into(), value, c.threshold.clone(), c.summary.clone()]);
        }
        table
    }

    /// What the checks found, up to `limit` per check, with each example's input when the records are
    /// given (escaped, cut short).
    pub fn findings_table(&self, limit: usize, records: Option<&Records>) -> Table {
        let mut table = Table::new("findings", &["check", "where", "what", "input"]);
        for c in &self.checks {
            for f in c.findings.iter().take(limit) {
                let input = records
                    .filter(|r| f.index < r.len())
                    .map(|r| truncate(&r.text(f.index, &self.spec.input), 100))
                    .unwrap_or_default();
                table.row(vec![c.name.clone(), f.location.clone(), truncate(&f.detail, 160), input]);
            }
            if c.findings.len() > limit {
                table.row(vec![
                    c.name.clone(),
                    "…".into(),
                    format!("{} more", c.findings.len() - limit),
                    String::new(),
                ]);
            }
        }
        table
    }

    /// The lowest-scoring examples with their input, escaped and cut short.
    pub fn worst_table(&self, records: Option<&Records>) -> Table {
        let mut table = Table::new("lowest quality", &["where", "quality", "why", "input"]);
        for (i, location, score, why) in &self.worst {
            let input = records.map(|r| truncate(&r.text(*i, &self.spec.input), 120)).unwrap_or_default();
            table.row(vec![location.clone(), format!("{score:.2}"), why.clone(), input]);
        }
        table
    }

    /// Lengths, quality and tasks as small multiples.
    pub fn charts(&self) -> ChartGrid {
        let s = &self.statistics;
        let mut grid = ChartGrid::new("distributions", 2)
            .chart(&Histogram::new("input length", "characters", s.input_chars.bins.clone()))
            .chart(&Histogram::new("quality score", "score", s.quality.clone()));
        if self.spec.output.is_some() {
            grid = grid.chart(&Histogram::new("output length", "characters", s.output_chars.bins.clone()));
        }
        if !s.tasks.is_empty() {
            let total: u64 = s.tasks.iter().map(|t| t.1).sum();
            grid = grid.chart(&s.tasks.iter().fold(BarChart::new("tasks", "% of examples"), |c, (t, n)| {
                c.bar(t.clone(), 100.0 * *n as f64 / total as f64)
            }));
        }
        grid
    }

    /// Statistics in a table.
    pub fn statistics_table(&self) -> Table {
        let s = &self.statistics;
        let mut t = Table::new("statistics", &["measure", "value"]);
        let l = |x: &super::validate::Lengths| {
            format!("min {} · p50 {} · mean {:.0} · p95 {} · max {}", x.min, x.p50, x.mean, x.p95, x.max)
        };
        t.row(vec!["examples".into(), count(s.examples)]);
        t.row(vec!["input characters".into(), l(&s.input_chars)]);
        if self.spec.output.is_some() {
            t.row(vec!["output characters".into(), l(&s.output_chars)]);
        }
        t.row(vec!["mean quality".into(), format!("{:.3}", s.mean_quality)]);
        t.row(vec!["exact duplicates".into(), count(s.exact_duplicates)]);
        t.row(vec!["near duplicates".into(), count(s.near_duplicates)]);
        t.row(vec!["vocabulary".into(), format!("{} words", count(s.vocabulary))]);
        let join =
            |v: &[(String, u64)]| v.iter().map(|(k, n)| format!("{k} {}", count(*n))).collect::<Vec<_>>().join(", ");
        if !s.tasks.is_empty() {
            t.row(vec!["tasks".into(), join(&s.tasks)]);
        }
        if !s.splits.is_empty() {
            t.row(vec!["splits".into(), join(&s.splits)]);
        }
        if !s.language_pairs.is_empty() {
            t.row(vec!["language pairs".into(), join(&s.language_pairs)]);
        }
        t
    }

    fn card(&self, records: Option<&Records>) -> Card {
        let failed: Vec<&str> = self.checks.iter().filter(|c| !c.passed).map(|c| c.name.as_str()).collect();
        let mut card = Card::new(format!("validation of {}", self.path))
            .badge(if failed.is_empty() { "PASS".to_string() } else { format!("FAIL: {}", failed.join(", ")) })
            .fact("examples", count(self.statistics.examples))
            .fact(
                "checks",
                format!("{} of {} passed", self.checks.iter().filter(|c| c.passed).count(), self.checks.len()),
            )
            .fact(
                "thresholds",
                format!(
                    "min_quality {} · max_low_quality {} · max_duplicates {} · min_task_balance {}",
                    self.spec.thresholds.min_quality,
                    percent(self.spec.thresholds.max_low_quality),
                    percent(self.spec.thresholds.max_duplicates),
                    percent(self.spec.thresholds.min_task_balance)
                ),
            );
        if !self.sha256.is_empty() {
            card = card.fact("sha256", self.sha256[..16.min(self.sha256.len())].to_string());
        }
        card = card
            .fact("saekit", self.saekit_version.clone())
            .section(&self.checks_table().bundle())
            .section(&self.statistics_table().bundle())
            .section(&self.charts().bundle());
        if !self.worst.is_empty() {
            card = card.section(&self.worst_table(records).bundle());
        }
        if self.checks.iter().any(|c| !c.findings.is_empty()) {
            card = card.section(&self.findings_table(20, records).bundle());
        }
        card
    }

    /// The card with the records' inputs beside the worst examples.
    pub fn with_records(&self, records: &Records) -> MimeBundle {
        self.card(Some(records)).bundle()
    }

    /// A self-contained HTML page of the report (no scripts, no network; charts as SVG).
    pub fn write_html(&self, records: Option<&Records>, path: impl AsRef<Path>) -> Result<()> {
        let mut page = crate::report::Report::new(format!("validation of {}", self.path));
        page.provenance("file", self.path.clone())
            .provenance("sha256", self.sha256.clone())
            .provenance("saekit", self.saekit_version.clone())
            .provenance("made", self.created_at.clone());
        let card = self.card(records);
        page.section("validation", &card);
        page.write_html(path.as_ref())
    }

    /// Writes the report as JSON.
    pub fn write_json(&self, path: impl AsRef<Path>) -> Result<()> {
        crate::files::write_atomically(path.as_ref(), (self.to_json() + "\n").as_bytes())
    }
}

impl Render for ValidationReport {
    fn bundle(&self) -> MimeBundle {
        self.card(None).bundle()
    }
}

impl Render for Splits {
    fn bundle(&self) -> MimeBundle {
        let counts = self.counts();
        let total: u64 = counts.iter().sum();
        let mut table = Table::new("splits", &["split", "ratio", "target", "examples", "share"]);
        let sum: f64 = self.spec.ratios.iter().map(|r| r.1).sum();
        for (j, name) in self.names.iter().enumerate() {
            table.row(vec![
                name.clone(),
                format!("{}", self.spec.ratios[j].1 / sum),
                count(self.targets[j]),
                count(counts[j]),
                percent(counts[j] as f64 / total.max(1) as f64),
            ]);
        }
        let mut card = Card::new("splits")
            .badge(format!("seed {}", self.spec.seed))
            .fact("examples", count(total))
            .fact("grouped by", format!("identical `{}`", self.spec.group_by))
            .section(&table.bundle());
        if let Some(f) = &self.spec.stratify {
            let mut cols = vec!["stratum"];
            cols.extend(self.names.iter().map(String::as_str));
            let mut strata = Table::new(format!("stratified by {f}"), &cols);
            for (name, c) in &self.strata {
                let mut row = vec![name.clone()];
                row.extend(c.iter().map(|n| count(*n)));
                strata.row(row);
            }
            card = card.fact("stratified by", f.clone()).section(&strata.bundle());
        }
        card.bundle()
    }
}

impl Render for ExportReport {
    fn bundle(&self) -> MimeBundle {
        let mut table = Table::new("files", &["file", "rows", "bytes", "sha256"]);
        for f in &self.files {
            table.row(vec![
                f.path.display().to_string(),
                count(f.rows),
                crate::units::bytes(f.bytes),
                f.sha256[..16].to_string(),
            ]);
        }
        let mut card = Card::new(format!("export ({:?})", self.format)).fact("rows", count(self.rows));
        if let Some(m) = &self.manifest {
            card = card.fact("shard manifest", m.display().to_string());
        }
        card.section(&table.bundle()).bundle()
    }
}

impl Render for Records {
    fn bundle(&self) -> MimeBundle {
        let cols = {
            let mut cols: Vec<String> = Vec::new();
            for r in self.rows.iter().take(50) {
                for k in r.keys() {
                    if !cols.contains(k) {
                        cols.push(k.clone());
                    }
                }
            }
            cols
        };
        let mut header = vec!["where"];
        header.extend(cols.iter().map(String::as_str));
        let mut table = Table::new("first records", &header);
        for i in 0..self.len().min(5) {
            let mut row = vec![self.location(i)];
            row.extend(cols.iter().map(|c| truncate(&self.text(i, c), 80)));
            table.row(row);
        }
        Card::new(format!("records of {}", self.path.display()))
            .badge(self.format.clone())
            .fact("records", count(self.len() as u64))
            .fact("fields", cols.join(", "))
            .section(&table.bundle())
            .bundle()
    }
}

/// What each step of a chain did.
pub fn steps_table(steps: &[super::StepReport]) -> Table {
    let mut table = Table::new("preprocessing", &["step", "what", "seen", "changed", "dropped", "first drops"]);
    for s in steps {
        let first: Vec<String> = s.examples.iter().take(3).map(|(at, why)| format!("{at}: {why}")).collect();
        table.row(vec![
            s.step.clone(),
            s.description.clone(),
            count(s.seen),
            count(s.changed),
            count(s.dropped),
            truncate(&first.join("; "), 200),
        ]);
    }
    table
}

impl Render for super::Curated {
    fn bundle(&self) -> MimeBundle {
        let row = self.dataset.row();
        let input_records = self.steps.first().map_or(self.records.len() as u64, |s| s.seen);
        let mut card = Card::new(format!("curated dataset {}", row.name))
            .badge("curate")
            .fact("input", self.records.path.display().to_string())
            .fact("records", format!("{} in, {} out", count(input_records), count(self.records.len() as u64)))
            .fact("artifact", format!("#{}", row.id));
        if !self.records.sha256.is_empty() {
            card = card.fact("input sha256", self.records.sha256[..16].to_string());
        }
        if !self.steps.is_empty() {
            card = card.section(&steps_table(&self.steps).bundle());
        }
        if let Some(s) = &self.splits {
            card = card.section(&s.bundle());
        }
        card.bundle()
    }
}
