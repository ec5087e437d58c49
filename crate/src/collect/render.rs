//! How collections, versions, diffs and exports look (every record's text escaped and cut short).

use super::version::{IncrementalExport, Version, VersionDiff};
use super::{Collector, SamplingReport};
use crate::display::{Card, MimeBundle, Render, Table, truncate};
use crate::error::count;

impl SamplingReport {
    pub fn table(&self) -> Table {
        let mut t = Table::new("sampling", &["", "records", "share of seen"]);
        let share = |n: u64| format!("{:.1}%", 100.0 * n as f64 / self.seen.max(1) as f64);
        t.row(vec!["seen".into(), count(self.seen), share(self.seen)]);
        t.row(vec!["kept".into(), count(self.kept), share(self.kept)]);
        for (reason, n) in &self.dropped {
            t.row(vec![format!("dropped: {reason}"), count(*n), share(*n)]);
        }
        t
    }
}

impl Render for SamplingReport {
    fn bundle(&self) -> MimeBundle {
        self.table().bundle()
    }
}

impl Render for Collector {
    fn bundle(&self) -> MimeBundle {
        let records = self.len().unwrap_or(0);
        let mut card = Card::new(format!("collection {}", self.name))
            .badge(format!("{} records", count(records)))
            .fact("database", self.path().display().to_string())
            .fact("sampling", serde_json::to_string(self.sampling()).unwrap_or_default());
        if let Ok(report) = self.sampling_report() {
            card = card.section(&report.table().bundle());
        }
        if let Ok(recent) = self.records_after(records.saturating_sub(5)) {
            let mut t = Table::new("latest records", &["id", "type", "category", "quality", "input", "output"]);
            for i in 0..recent.len() {
                t.row(vec![
                    recent.text(i, "id"),
                    recent.text(i, "type"),
                    recent.text(i, "category"),
                    recent.text(i, "quality"),
                    truncate(&recent.text(i, "input"), 80),
                    truncate(&recent.text(i, "output"), 80),
                ]);
            }
            card = card.section(&t.bundle());
        }
        card.bundle()
    }
}

impl Render for Version {
    fn bundle(&self) -> MimeBundle {
        let of = match &self.of {
            super::version::VersionOf::Collection(c) => format!("collection {c}"),
            super::version::VersionOf::Dataset(d) => format!("dataset {d}"),
        };
        let mut card = Card::new(format!("{} v{}", self.name, self.number))
            .badge(if self.current { "current" } else { "version" })
            .fact("records", count(self.records))
            .fact("of", of)
            .fact("parent", self.parent.map_or("–".into(), |p| format!("v{p}")))
            .fact("dataset", format!("{} (#{})", self.dataset.name(), self.dataset.id()))
            .fact("made", self.created_at.clone());
        if !self.description.is_empty() {
            card = card.fact("description", self.description.clone());
        }
        if !self.steps.is_empty() {
            card = card.section(&crate::curate::render::steps_table(&self.steps).bundle());
        }
        card.bundle()
    }
}

/// The versions of a name as a table.
pub fn versions_table(versions: &[Version]) -> Table {
    let mut t = Table::new("versions", &["version", "current", "records", "parent", "description", "made"]);
    for v in versions {
        t.row(vec![
            format!("v{}", v.number),
            if v.current { "◀".into() } else { String::new() },
            count(v.records),
            v.parent.map_or("–".into(), |p| format!("v{p}")),
            v.description.clone(),
            v.created_at.clone(),
        ]);
    }
    t
}

impl Render for VersionDiff {
    fn bundle(&self) -> MimeBundle {
        let (a, b) = (&self.from_statistics, &self.to_statistics);
        let mut stats = Table::new("statistics", &["measure", &format!("v{}", self.from), &format!("v{}", self.to)]);
        stats.row(vec!["examples".into(), count(a.examples), count(b.examples)]);
        stats.row(vec![
            "mean input chars".into(),
            format!("{:.1}", a.input_chars.mean),
            format!("{:.1}", b.input_chars.mean),
        ]);
        stats.row(vec![
            "mean output chars".into(),
            format!("{:.1}", a.output_chars.mean),
            format!("{:.1}", b.output_chars.mean),
        ]);
        stats.row(vec!["mean quality".into(), format!("{:.3}", a.mean_quality), format!("{:.3}", b.mean_quality)]);
        stats.row(vec!["exact duplicates".into(), count(a.exact_duplicates), count(b.exact_duplicates)]);
        stats.row(vec!["vocabulary".into(), count(a.vocabulary), count(b.vocabulary)]);
        let mut changes = Table::new("changes", &["", "input", "output"]);
        for (sign, rows) in [("+", &self.added), ("−", &self.removed)] {
            for r in rows.iter().take(10) {
                let text = |k: &str| match r.get(k) {
                    Some(serde_json::Value::String(s)) => truncate(s, 80),
                    Some(v) => truncate(&v.to_string(), 80),
                    None => String::new(),
                };
                changes.row(vec![sign.into(), text("input"), text("output")]);
            }
        }
        Card::new(format!("{}: v{} → v{}", self.name, self.from, self.to))
            .badge(format!("+{} −{}", self.added.len(), self.removed.len()))
            .fact("added", count(self.added.len() as u64))
            .fact("removed", count(self.removed.len() as u64))
            .fact("unchanged", count(self.unchanged))
            .section(&stats.bundle())
            .section(&changes.bundle())
            .bundle()
    }
}

impl Render for IncrementalExport {
    fn bundle(&self) -> MimeBundle {
        let mut card = Card::new(format!("incremental export {}", self.path.display()))
            .badge(format!("+{}", count(self.appended)))
            .fact("appended", count(self.appended))
            .fact("records in the file", count(self.total))
            .fact("last id", self.last_id.to_string());
        if self.repaired_bytes > 0 {
            card = card.fact("repaired", format!("a torn last line of {} bytes cut", self.repaired_bytes));
        }
        card.bundle()
    }
}
