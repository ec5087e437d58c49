//! How caches, stores, plans and norm histograms look in a notebook (and as text).

use super::fill::HookStats;
use super::{ActivationCache, ActivationPlan, ActivationStore};
use crate::display::{Card, ChartGrid, Histogram, MimeBundle, Render, Table};
use crate::units::{bytes, count};

/// The activation-norm histogram of each hook of a cache (log-spaced bins around the median; the first
/// and last bins hold everything below and above).
#[derive(Debug, Clone)]
pub struct NormHistograms {
    pub cache: String,
    pub hooks: Vec<HookStats>,
}

fn norm_label(x: f32) -> String {
    if x >= 100.0 {
        format!("{x:.0}")
    } else if x >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

fn hook_histogram(h: &HookStats) -> Histogram {
    let bins: Vec<(String, u64)> =
        h.histogram.counts.iter().enumerate().map(|(k, &c)| (norm_label(h.histogram.edges[k]), c)).collect();
    // Leave out the empty tails, keeping the bins that hold tokens and the threshold's bin.
    let first = bins.iter().position(|b| b.1 > 0).unwrap_or(0);
    let last = bins.iter().rposition(|b| b.1 > 0).unwrap_or(bins.len().saturating_sub(1));
    let title = match h.threshold {
        Some(t) => format!("{}: ‖x‖, median {}, dropped above {}", h.name, norm_label(h.median_norm), norm_label(t)),
        None => format!("{}: ‖x‖, median {}", h.name, norm_label(h.median_norm)),
    };
    Histogram::new(title, "L2 norm (bin start)", bins[first..=last.max(first)].to_vec()).log_count(true)
}

impl Render for NormHistograms {
    fn bundle(&self) -> MimeBundle {
        match self.hooks.as_slice() {
            [] => MimeBundle::new(format!("{}: no hooks", self.cache)),
            [one] => hook_histogram(one).bundle(),
            many => {
                let mut grid = ChartGrid::new(format!("activation norms of {}", self.cache), 2);
                for h in many {
                    grid = grid.chart(&hook_histogram(h));
                }
                grid.bundle()
            }
        }
    }
}

fn hooks_text(cache: &ActivationCache) -> String {
    cache.hooks().iter().map(|h| format!("{} ({})", h.name, h.width)).collect::<Vec<_>>().join(", ")
}

fn dropped_text(s: &super::CacheStats) -> String {
    format!(
        "{} special · {} listed · {} outliers",
        count(s.dropped_special),
        count(s.dropped_listed),
        count(s.dropped_outlier)
    )
}

impl Render for ActivationCache {
    fn bundle(&self) -> MimeBundle {
        let r = &self.row;
        let s = &r.statistics;
        let card = Card::new(format!("Activation cache {}", r.name))
            .badge("ready")
            .fact("id", r.id.to_string())
            .fact("model", r.model.clone())
            .fact("hooks", hooks_text(self))
            .fact("dtype", r.dtype.as_str())
            .fact(
                "tokens",
                format!("{} of {} run ({} sequences)", count(r.num_tokens), count(s.tokens_seen), count(s.sequences)),
            )
            .fact("dropped", dropped_text(s))
            .fact(
                "fill",
                format!(
                    "{:.0} tokens/s ({:.0} tokens/s in the forward pass, {} sequences a batch)",
                    s.tokens_per_second(),
                    s.forward_tokens_per_second(),
                    s.sequences_per_batch
                ),
            )
            .fact("size", bytes(r.num_bytes))
            .fact("path", r.path.display().to_string())
            .fact("saekit", r.saekit_version.clone())
            .fact("created", r.created_at.clone());
        card.section(&self.norm_histograms().bundle()).bundle()
    }
}

impl Render for ActivationStore {
    fn bundle(&self) -> MimeBundle {
        let o = self.options();
        let c = &self.cache;
        let s = c.stats();
        let width: usize = c.hooks().iter().map(|h| h.width).sum();
        let total = c.num_tokens() * o.epochs as u64;
        let mut card = Card::new(format!("Activation store over {}", c.name()))
            .badge(
                if self.left_over() > 0
                    || (self.served_tokens() > 0 && self.served_tokens() + o.batch_tokens as u64 > total)
                {
                    "done"
                } else {
                    "serving"
                },
            )
            .fact("hooks", hooks_text(c))
            .fact("batches", format!("{} tokens × {width} values, f32", count(o.batch_tokens as u64)))
            .fact(
                "buffer",
                format!(
                    "{} tokens ({}), serves half and keeps half",
                    count(o.buffer_rows() as u64),
                    bytes(super::store::Buffer::bytes(o, width))
                ),
            )
            .fact("seed", format!("{} · {} epoch{}", o.seed, o.epochs, if o.epochs == 1 { "" } else { "s" }))
            .fact(
                "served",
                format!(
                    "{} of {} tokens ({} batches)",
                    count(self.served_tokens()),
                    count(total),
                    count(self.served_batches())
                ),
            )
            .fact("dropped", format!("{} (while caching) · {} left over", dropped_text(s), count(self.left_over())))
            .fact("cache", format!("{} ({})", c.path().display(), bytes(c.row().num_bytes)));
        if let Some(plan) = self.plan() {
            card = card
                .fact("memory", format!("{} peak of a {} budget", bytes(plan.peak_memory), bytes(plan.memory_budget)));
        }
        card.bundle()
    }
}

impl Render for ActivationPlan {
    fn bundle(&self) -> MimeBundle {
        let mut table = Table::new(
            format!(
                "activation store plan: {} peak memory of {} · {} disk{}",
                bytes(self.peak_memory),
                bytes(self.memory_budget),
                bytes(self.disk),
                self.reuses.as_ref().map_or(String::new(), |r| format!(" (reuses {r})"))
            ),
            &["part", "when", "bytes"],
        );
        for item in &self.items {
            table.row(vec![item.part.clone(), item.when.to_string(), bytes(item.bytes)]);
        }
        table.row(vec!["peak: always + the larger of fill and serve".into(), String::new(), bytes(self.peak_memory)]);
        let verdict = match self.check() {
            Ok(()) => format!(
                "within budget · {} sequences a forward pass · {} tokens to run",
                self.sequences_per_batch,
                count(self.tokens)
            ),
            Err(e) => format!("refused: {}", e.to_string().lines().next().unwrap_or_default()),
        };
        table.row(vec![verdict, String::new(), String::new()]);
        table.bundle()
    }
}

impl Render for super::ActivationBatch {
    fn bundle(&self) -> MimeBundle {
        let mut table = Table::new(
            format!("activation batch: {} tokens", count(self.len() as u64)),
            &["hook", "shape", "mean ‖x‖", "max ‖x‖"],
        );
        for (hook, t) in &self.hooks {
            let norms = t
                .sqr()
                .and_then(|s| s.sum(1))
                .and_then(|s| s.sqrt())
                .and_then(|n| n.to_vec1::<f32>())
                .unwrap_or_default();
            let mean = norms.iter().map(|&n| n as f64).sum::<f64>() / norms.len().max(1) as f64;
            let max = norms.iter().copied().fold(0f32, f32::max);
            table.row(vec![hook.clone(), format!("{:?}", t.dims()), format!("{mean:.3}"), format!("{max:.3}")]);
        }
        table.bundle()
    }
}
