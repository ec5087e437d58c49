//! How analyses, manifests and samples look: cards with their tables, share bars, the phases side by
//! side as small multiples, and the first examples of a sample (escaped, truncated).

use super::index::BucketAnalysis;
use super::{Manifest, Sample};
use crate::display::{BarChart, Card, ChartGrid, MimeBundle, Render, Table, truncate};
use crate::error::count;

fn percent(x: f64) -> String {
    format!("{:.1}%", 100.0 * x)
}

impl BucketAnalysis {
    /// Examples, share and mean size per bucket.
    pub fn table(&self) -> Table {
        let mut table = Table::new(
            format!("{} by {}", self.path.file_name().unwrap_or_default().to_string_lossy(), self.by),
            &["bucket", "examples", "share", "mean bytes"],
        );
        for b in &self.buckets {
            table.row(vec![b.name.clone(), count(b.examples), percent(b.share), format!("{:.0}", b.mean_bytes)]);
        }
        table.footer = Some(format!(
            "{} examples · {} unassigned · {} buckets",
            count(self.rows),
            count(self.unassigned),
            self.buckets.len()
        ));
        table
    }

    /// Each bucket's share, as bars.
    pub fn chart(&self) -> BarChart {
        let mut chart = BarChart::new(format!("buckets by {}", self.by), "% of assigned examples");
        for b in &self.buckets {
            chart = chart.bar(b.name.clone(), 100.0 * b.share);
        }
        chart
    }
}

impl Render for BucketAnalysis {
    fn bundle(&self) -> MimeBundle {
        let mut card = Card::new(format!("buckets of {}", self.path.display()))
            .badge(self.by.clone())
            .fact("examples", count(self.rows))
            .fact("buckets", self.buckets.len().to_string())
            .fact("size", crate::units::bytes(self.bytes))
            .fact("sha256", self.sha256[..16.min(self.sha256.len())].to_string());
        if self.unassigned > 0 {
            let lines: Vec<String> = self.unassigned_lines.iter().map(u64::to_string).collect();
            let more = if self.unassigned as usize > lines.len() { ", …" } else { "" };
            card = card.fact("unassigned", format!("{} (lines {}{more})", count(self.unassigned), lines.join(", ")));
        }
        card.section(&self.table().bundle()).section(&self.chart().bundle()).bundle()
    }
}

impl Manifest {
    /// The buckets: description, weight, examples and where they come from.
    pub fn buckets_table(&self) -> Table {
        let mut table = Table::new("buckets", &["bucket", "description", "weight", "examples", "source", "max reps"]);
        for b in &self.buckets {
            let source = match &b.source.select {
                Some(s) => format!("{} where {}", b.source.path, s.describe()),
                None => b.source.path.clone(),
            };
            table.row(vec![
                b.name.clone(),
                b.description.clone(),
                format!("{:.4}", b.weight),
                b.examples.map_or("–".into(), count),
                source,
                b.max_repetitions.map_or("1".into(), |r| format!("{r}")),
            ]);
        }
        table
    }

    /// The phases: one row each, a column per bucket.
    pub fn phases_table(&self) -> Table {
        let mut columns = vec!["phase", "total samples", "description"];
        columns.extend(self.buckets.iter().map(|b| b.name.as_str()));
        let mut table = Table::new("phases", &columns);
        let mut add = |name: &str, total: Option<u64>, description: &str, weights: Vec<f64>| {
            let mut row = vec![name.to_string(), total.map_or("–".into(), count), description.to_string()];
            row.extend(weights.iter().map(|w| if *w == 0.0 { "–".into() } else { percent(*w) }));
            table.row(row);
        };
        add("(buckets' own)", None, "the default phase", self.buckets.iter().map(|b| b.weight).collect());
        for p in &self.phases {
            let w = self.buckets.iter().map(|b| p.weights.get(&b.name).copied().unwrap_or(0.0)).collect();
            add(&p.name, p.total_samples, &p.description, w);
        }
        table
    }

    /// The buckets' own weights and every phase's, side by side: one bar chart per weight set.
    pub fn phases_chart(&self) -> ChartGrid {
        let bars = |title: &str, weights: Vec<f64>| {
            self.buckets
                .iter()
                .zip(weights)
                .fold(BarChart::new(title.to_string(), "% of the sample"), |c, (b, w)| c.bar(b.name.clone(), 100.0 * w))
        };
        let mut grid =
            ChartGrid::new(format!("manifest {}: weights by phase", self.name), (self.phases.len() + 1).min(3));
        grid = grid.chart(&bars("buckets' own", self.buckets.iter().map(|b| b.weight).collect()));
        for p in &self.phases {
            let w = self.buckets.iter().map(|b| p.weights.get(&b.name).copied().unwrap_or(0.0)).collect();
            grid = grid.chart(&bars(&p.name, w));
        }
        grid
    }
}

impl Render for Manifest {
    fn bundle(&self) -> MimeBundle {
        let mut card = Card::new(format!("manifest {}", self.name)).badge(format!(
            "{} buckets · {} phases",
            self.buckets.len(),
            self.phases.len()
        ));
        if !self.description.is_empty() {
            card = card.fact("description", self.description.clone());
        }
        card = card
            .fact("examples", count(self.recorded_examples()))
            .fact("seed", self.seed.to_string())
            .fact("hash", self.hash()[..16].to_string());
        if let Some(base) = &self.base {
            card = card.fact("folder", base.display().to_string());
        }
        card = card.section(&self.buckets_table().bundle()).section(&self.phases_table().bundle());
        if !self.buckets.is_empty() {
            card = card.section(&self.phases_chart().bundle());
        }
        card.bundle()
    }
}

impl Sample {
    /// Per bucket: weight, quota, rows, examples available and repeats.
    pub fn table(&self) -> Table {
        let mut table = Table::new(
            format!("sample of {}", self.manifest),
            &["bucket", "weight", "quota", "rows", "share", "examples", "distinct", "repeats"],
        );
        for b in &self.buckets {
            table.row(vec![
                b.name.clone(),
                format!("{:.4}", b.weight),
                format!("{:.2}", b.quota),
                count(b.rows),
                percent(b.rows as f64 / self.total.max(1) as f64),
                count(b.examples),
                count(b.distinct),
                count(b.rows - b.distinct),
            ]);
        }
        table.footer = Some(format!(
            "{} rows · largest remainder · {} · seed {}",
            count(self.total),
            self.order.as_str(),
            self.seed
        ));
        table
    }

    /// The first examples written.
    pub fn preview_table(&self) -> Table {
        let mut table = Table::new("first examples", &["#", "bucket", "example"]);
        for (i, (bucket, line)) in self.preview.iter().enumerate() {
            table.row(vec![(i + 1).to_string(), bucket.clone(), truncate(line, 200)]);
        }
        table
    }
}

impl Render for Sample {
    fn bundle(&self) -> MimeBundle {
        let mut card = Card::new(format!("sample {}", self.output.display()))
            .badge(self.phase.clone().unwrap_or_else(|| "buckets' own weights".into()))
            .fact("examples", count(self.total))
            .fact("manifest", format!("{} ({})", self.manifest, &self.manifest_hash[..16]))
            .fact("seed", self.seed.to_string())
            .fact("order", self.order.as_str())
            .fact("provenance", Sample::provenance_path(&self.output).display().to_string())
            .fact("time", format!("{:.2} s", self.seconds));
        if let Some(t) = &self.tag_field {
            card = card.fact("bucket field", t.clone());
        }
        card.section(&self.table().bundle()).section(&self.preview_table().bundle()).bundle()
    }
}
