//! What an activation store will use, said before it starts: memory by part, and disk. A budget it cannot
//! keep is refused ([`crate::Error::OverBudget`]) before any work.
//!
//! Memory is anonymous memory (what `RssAnon` counts): the model's weights (candle copies them out of the
//! file), the forward pass's working set, the activations of one batch, the tokens waiting for the outlier
//! median, then the shuffle buffer and the batches it serves. The token store and the cache's shards are
//! memory-mapped: the page cache holds them, and the kernel gives those pages back under pressure.
//! Filling and serving do not overlap, so the peak is the larger of the two on top of the model.

use serde::Serialize;

use super::fill::CALIBRATION_TOKENS;
use super::store::{Buffer, StoreOptions};
use crate::error::{Error, Result};
use crate::models::ModelInfo;
use crate::units::bytes;

/// A process's own memory besides the parts listed (allocator, threads' stacks, tokenizer, catalog).
pub const RUNTIME_BYTES: u64 = 64 << 20;
/// The most sequences one forward pass takes, whatever the budget allows (on CPU, larger batches run no
/// faster: MiniLM gives the same tokens/s at 16 and 32 sequences of 128, and less at 64).
pub const MAX_SEQUENCES_PER_BATCH: usize = 32;

/// One line of a plan.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlanItem {
    pub part: String,
    pub bytes: u64,
    /// `fill`, `serve` or `always`.
    pub when: &'static str,
}

/// Memory and disk an activation store will use, against its budgets.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ActivationPlan {
    pub memory_budget: u64,
    pub items: Vec<PlanItem>,
    /// `always` plus the larger of `fill` and `serve`.
    pub peak_memory: u64,
    /// Bytes of shards to write (an upper bound: before exclusions); 0 when a cache is reused.
    pub disk: u64,
    pub disk_budget: Option<u64>,
    pub free_disk: Option<u64>,
    /// Sequences per forward pass, the most the budget allows (up to [`MAX_SEQUENCES_PER_BATCH`]).
    pub sequences_per_batch: usize,
    /// Tokens the fill runs through the model (at most).
    pub tokens: u64,
    /// The cache that will be reused, if one matches.
    pub reuses: Option<String>,
}

/// Anonymous bytes one token costs in a forward pass of `info` over sequences of `seq` tokens: the
/// residual stream, attention's projections, the MLP's hidden layer twice (before and after the GELU) and
/// the attention scores and softmax (f32), alive together at a block's peak. Measured on MiniLM (384 wide,
/// 1,536 MLP, 12 heads, 128 tokens): about 18 KiB a token; this says 30 KiB, for the allocator's slack.
pub fn forward_bytes_per_token(info: &ModelInfo, seq: usize) -> u64 {
    let item = if info.dtype.contains("16") { 2 } else { 4 };
    let d = info.width as u64;
    let mlp = info.mlp_width as u64;
    let scores = (info.heads * seq) as u64;
    item * (4 * d + 2 * mlp) + 2 * scores * 4
}

/// The model's weights in memory.
pub fn weight_bytes(info: &ModelInfo) -> u64 {
    let item = if info.dtype.contains("16") { 2 } else { 4 };
    info.parameters * item
}

impl ActivationPlan {
    /// The plan for caching `tokens` tokens (none when `reuses`) of sequences up to `seq` tokens, from `info`
    /// at `hooks` hooks of `width` values in all, stored with `item` bytes a value in shards of
    /// `shard_tokens` rows, then serving with `store`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        info: &ModelInfo,
        seq: usize,
        width: usize,
        item: usize,
        (tokens, shard_tokens, hooks): (u64, u64, usize),
        reuses: Option<String>,
        store: &StoreOptions,
        memory_budget: u64,
        disk_budget: Option<u64>,
        free_disk: Option<u64>,
    ) -> ActivationPlan {
        let width64 = width as u64;
        let fill = reuses.is_none();
        let always = vec![
            PlanItem {
                part: format!("model weights ({} parameters, {})", crate::units::count(info.parameters), info.dtype),
                bytes: weight_bytes(info),
                when: "always",
            },
            PlanItem {
                part: "process runtime (allocator, threads, tokenizer, catalog)".into(),
                bytes: RUNTIME_BYTES,
                when: "always",
            },
        ];
        let serve = vec![
            PlanItem {
                part: format!(
                    "shuffle buffer ({} tokens × {width} values, f32)",
                    crate::units::count(store.buffer_rows() as u64)
                ),
                bytes: Buffer::bytes(store, width),
                when: "serve",
            },
            PlanItem {
                part: format!(
                    "two batches of {} tokens (served and being built)",
                    crate::units::count(store.batch_tokens as u64)
                ),
                bytes: 2 * store.batch_tokens as u64 * width64 * 4,
                when: "serve",
            },
        ];
        let base: u64 = always.iter().map(|i| i.bytes).sum();
        let serve_bytes: u64 = serve.iter().map(|i| i.bytes).sum();
        let seq64 = seq.max(1) as u64;
        let fill_items = |s: usize| -> Vec<PlanItem> {
            let s64 = s as u64;
            vec![
                PlanItem {
                    part: format!("forward pass ({s} sequences × {seq} tokens)"),
                    bytes: s64 * seq64 * forward_bytes_per_token(info, seq),
                    when: "fill",
                },
                PlanItem {
                    part: "one batch's activations at the hooks (model dtype, f32, copy)".into(),
                    bytes: s64 * seq64 * width64 * 12,
                    when: "fill",
                },
                PlanItem {
                    part: format!(
                        "first {} tokens, held until the outlier median is known",
                        crate::units::count(CALIBRATION_TOKENS as u64)
                    ),
                    bytes: (CALIBRATION_TOKENS as u64 + s64 * seq64) * width64 * 4 * 3 / 2,
                    when: "fill",
                },
            ]
        };
        let fill_bytes = |s: usize| fill_items(s).iter().map(|i| i.bytes).sum::<u64>();
        let mut s = MAX_SEQUENCES_PER_BATCH;
        if fill {
            while s > 1 && base + fill_bytes(s).max(serve_bytes) > memory_budget {
                s -= 1;
            }
        }
        let mut items = always;
        if fill {
            items.extend(fill_items(s));
        }
        items.extend(serve);
        let peak = base + if fill { fill_bytes(s).max(serve_bytes) } else { serve_bytes };
        // Rows of every hook and of `tokens/`, one 128-byte header per shard file, and the index.
        let headers = tokens.div_ceil(shard_tokens.max(1)) * (hooks as u64 + 1) * 128;
        let disk = if fill { tokens * (width64 * item as u64 + 12) + headers + 4096 } else { 0 };
        ActivationPlan {
            memory_budget,
            items,
            peak_memory: peak,
            disk,
            disk_budget,
            free_disk,
            sequences_per_batch: s,
            tokens: if fill { tokens } else { 0 },
            reuses,
        }
    }

    /// Refuses a plan over its budgets.
    pub fn check(&self) -> Result<()> {
        if self.peak_memory > self.memory_budget {
            return Err(Error::OverBudget {
                what: "the activation store".into(),
                needs: format!("{} of memory", bytes(self.peak_memory)),
                budget: bytes(self.memory_budget),
                plan: self.plain_lines(),
            });
        }
        let disk_limit = match (self.disk_budget, self.free_disk) {
            (Some(b), Some(f)) => Some((b.min(f), if b <= f { "disk" } else { "free disk" })),
            (Some(b), None) => Some((b, "disk")),
            (None, Some(f)) => Some((f, "free disk")),
            (None, None) => None,
        };
        if let Some((limit, what)) = disk_limit.filter(|(limit, _)| self.disk > *limit) {
            return Err(Error::OverBudget {
                what: "the activation cache".into(),
                needs: format!("{} of disk", bytes(self.disk)),
                budget: format!("{} {what}", bytes(limit)),
                plan: self.plain_lines(),
            });
        }
        Ok(())
    }

    pub(crate) fn plain_lines(&self) -> String {
        let mut lines: Vec<String> =
            self.items.iter().map(|i| format!("  {:>10}  {:<6} {}", bytes(i.bytes), i.when, i.part)).collect();
        lines.push(format!("  {:>10}  peak (always + the larger of fill and serve)", bytes(self.peak_memory)));
        lines.push(format!(
            "  {:>10}  disk{}",
            bytes(self.disk),
            self.reuses.as_ref().map_or(String::new(), |r| format!(" (reuses {r})"))
        ));
        lines.join("\n")
    }
}
