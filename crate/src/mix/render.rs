//! How recipes, mixes and recipe histories look: cards with their tables, the realised-vs-target bars and
//! the near-dedup S-curve (static SVG beside plain text, every dataset-derived string escaped).

use super::recipe::{MixRecipe, SourceRef};
use super::table::{RecipeHistory, RecipeVersion};
use super::{Mix, MixReport};
use crate::display::{BarChart, Card, MimeBundle, Render, Table};
use crate::error::count;
use crate::steps::{MinHash, StepSpec};

fn percent(x: f64) -> String {
    format!("{:.1}%", 100.0 * x)
}

fn describe_from(from: &SourceRef) -> String {
    match from {
        SourceRef::Dataset { name } => format!("dataset {name}"),
        SourceRef::Files { paths, .. } => {
            let first = paths.first().map(String::as_str).unwrap_or("");
            let more = if paths.len() > 1 { format!(" (+{} more)", paths.len() - 1) } else { String::new() };
            format!("files {first}{more}")
        }
        SourceRef::Hub { repo, config, split, revision, .. } => {
            format!("hub {repo} {}/{split}@{revision}", config.as_deref().unwrap_or("default"))
        }
    }
}

impl MixRecipe {
    /// The sources, their weights, caps and steps, as a table.
    pub fn sources_table(&self) -> Table {
        let mut table = Table::new(
            "sources",
            &["source", "from", "weight", "share", "rows cap", "tokens cap", "max reps", "max fraction", "steps"],
        );
        let sum: f64 = self.sources.iter().map(|s| s.weight).sum();
        for s in &self.sources {
            let opt = |v: Option<u64>| v.map_or("–".into(), count);
            table.row(vec![
                s.name.clone(),
                describe_from(&s.from),
                format!("{}", s.weight),
                if sum > 0.0 { percent(s.weight / sum) } else { "–".into() },
                opt(s.caps.rows),
                opt(s.caps.tokens),
                s.caps.max_repetitions.map_or("1".into(), |r| format!("{r}")),
                s.caps.max_fraction.map_or("1".into(), |f| format!("{f}")),
                s.preprocess.iter().map(StepSpec::describe).collect::<Vec<_>>().join("; "),
            ]);
        }
        table
    }

    fn near_dedup(&self) -> Option<MinHash> {
        self.preprocess.iter().chain(self.sources.iter().flat_map(|s| &s.preprocess)).find_map(|s| match s {
            StepSpec::NearDedup { ngram, bands, rows, seed } => Some(MinHash::new(*ngram, *bands, *rows, *seed)),
            _ => None,
        })
    }
}

impl Render for MixRecipe {
    fn bundle(&self) -> MimeBundle {
        let mut card = Card::new(format!("mix recipe {}", self.name)).badge(self.strategy.as_str());
        if !self.description.is_empty() {
            card = card.fact("description", self.description.clone());
        }
        card = card
            .fact("sources", self.sources.len().to_string())
            .fact(
                "stop",
                match self.strategy {
                    super::Strategy::Curriculum { .. } => "after its phases".into(),
                    _ => self.stop_rule().describe(),
                },
            )
            .fact("seed", self.seed.to_string())
            .fact("recipe hash", self.hash()[..16].to_string());
        if !self.preprocess.is_empty() {
            card =
                card.fact("mix steps", self.preprocess.iter().map(StepSpec::describe).collect::<Vec<_>>().join("; "));
        }
        if let Some(t) = &self.tokenizer {
            card = card.fact("tokenizer", t.clone());
        }
        if let Some(p) = &self.tokenize {
            let packing = if p.packing.is_some() { "packed" } else { "windows" };
            card = card.fact("tokenize", format!("{packing} of {} tokens", p.max_length));
        }
        card = card.section(&self.sources_table().bundle());
        if let super::Strategy::Curriculum { phases } = &self.strategy {
            let mut table = Table::new("curriculum", &["phase", "rows", "weights"]);
            for p in phases {
                let w: Vec<String> = p.weights.iter().map(|(s, w)| format!("{s} {w}")).collect();
                table.row(vec![p.name.clone(), count(p.rows), w.join(", ")]);
            }
            card = card.section(&table.bundle());
        }
        if let Some(m) = self.near_dedup() {
            card = card.section(&m.s_curve().bundle());
        }
        card.bundle()
    }
}

impl MixReport {
    /// Realised against target, per source: rows, shares, tokens, repetitions, drops.
    pub fn table(&self) -> Table {
        let mut table = Table::new(
            format!("mix {}: realised vs target", self.recipe),
            &[
                "source",
                "target rows",
                "rows",
                "target share",
                "share",
                "tokens",
                "epoch",
                "repetitions",
                "dropped",
                "note",
            ],
        );
        let total = self.total_rows.max(1) as f64;
        let target_total: f64 = self.sources.iter().map(|s| s.target_rows).sum::<f64>().max(1.0);
        for s in &self.sources {
            let note = s
                .left_out
                .clone()
                .or_else(|| s.capped_by.as_ref().map(|c| format!("epoch capped by {c}")))
                .unwrap_or_default();
            table.row(vec![
                s.name.clone(),
                format!("{:.1}", s.target_rows),
                count(s.rows),
                percent(s.target_rows / target_total),
                percent(s.rows as f64 / total),
                s.tokens.map_or("–".into(), count),
                count(s.epoch),
                format!("{:.2}", s.repetitions),
                count(s.dropped()),
                note,
            ]);
        }
        table.footer = Some(format!(
            "{} rows · {} · stop {} · seed {} · recipe {} v{}",
            count(self.total_rows),
            self.strategy,
            self.stop,
            self.seed,
            &self.recipe_hash[..12.min(self.recipe_hash.len())],
            self.recipe_version
        ));
        table
    }

    /// Target and realised share per source, as bars.
    pub fn chart(&self) -> BarChart {
        let total = self.total_rows.max(1) as f64;
        let target_total: f64 = self.sources.iter().map(|s| s.target_rows).sum::<f64>().max(1.0);
        let mut chart = BarChart::new(format!("mix {}: share of rows", self.recipe), "% of rows");
        for s in &self.sources {
            chart = chart
                .bar(format!("{} target", s.name), 100.0 * s.target_rows / target_total)
                .bar(format!("{} realised", s.name), 100.0 * s.rows as f64 / total);
        }
        chart
    }

    /// What each step saw and dropped, per source.
    pub fn steps_table(&self) -> Table {
        let mut table = Table::new("preprocessing", &["source", "step", "of", "seen", "dropped", "why"]);
        for s in &self.sources {
            for (of, steps) in [("source", &s.steps), ("mix", &s.mix_steps)] {
                for c in steps {
                    let why: Vec<String> = c.reasons.iter().map(|(k, n)| format!("{k} {}", count(*n))).collect();
                    table.row(vec![
                        s.name.clone(),
                        c.step.clone(),
                        of.into(),
                        count(c.seen),
                        count(c.dropped),
                        why.join(", "),
                    ]);
                }
            }
        }
        table
    }
}

impl Render for MixReport {
    fn bundle(&self) -> MimeBundle {
        self.table().bundle()
    }
}

impl Render for Mix {
    fn bundle(&self) -> MimeBundle {
        let r = &self.report;
        let rate = if r.seconds > 0.0 { r.total_rows as f64 / r.seconds } else { 0.0 };
        let mut card = Card::new(format!("mix {}", self.name()))
            .badge(r.strategy.clone())
            .fact("rows", count(r.total_rows))
            .fact("sources", r.sources.len().to_string())
            .fact("stop", r.stop.clone())
            .fact("seed", r.seed.to_string())
            .fact(
                "recipe",
                format!("{} v{} ({})", r.recipe, r.recipe_version, &r.recipe_hash[..16.min(r.recipe_hash.len())]),
            )
            .fact("dropped", count(r.dropped_rows))
            .fact("time", format!("{:.2} s ({} rows/s)", r.seconds, count(rate as u64)))
            .fact("saekit", r.saekit_version.clone());
        if let Some(t) = &self.tokenization {
            card = card.fact("tokenization", t.row().name.clone());
        }
        for s in &r.sources {
            card = card.fact(&format!("source {}", s.name), format!("{} · {}", s.dataset, s.revision));
        }
        card = card.section(&r.table().bundle()).section(&r.chart().bundle());
        if r.sources.iter().any(|s| !s.steps.is_empty() || !s.mix_steps.is_empty()) {
            card = card.section(&r.steps_table().bundle());
        }
        card.bundle()
    }
}

impl Render for RecipeHistory {
    fn bundle(&self) -> MimeBundle {
        let mut table = Table::new(format!("recipe {}: versions", self.name), &["version", "saved", "hash", "changed"]);
        let mut previous: Option<serde_json::Value> = None;
        for v in &self.versions {
            let now = serde_json::to_value(&v.recipe).unwrap_or_default();
            let changed = match (&previous, now.as_object()) {
                (None, _) => "first version".to_string(),
                (Some(before), Some(fields)) => {
                    let mut keys: Vec<&str> = fields
                        .iter()
                        .filter(|(k, val)| before.get(k.as_str()) != Some(val))
                        .map(|(k, _)| k.as_str())
                        .collect();
                    if let Some(b) = before.as_object() {
                        keys.extend(b.keys().filter(|k| !fields.contains_key(k.as_str())).map(String::as_str));
                    }
                    keys.join(", ")
                }
                _ => String::new(),
            };
            table.row(vec![v.version.to_string(), v.saved_at.clone(), v.hash[..12].to_string(), changed]);
            previous = Some(now);
        }
        table.bundle()
    }
}

impl Render for RecipeVersion {
    fn bundle(&self) -> MimeBundle {
        Card::new(format!("mix recipe {} v{}", self.name, self.version))
            .fact("saved", self.saved_at.clone())
            .fact("hash", self.hash[..16.min(self.hash.len())].to_string())
            .fact("sources", self.recipe.sources.len().to_string())
            .fact("strategy", self.recipe.strategy.as_str())
            .bundle()
    }
}
