//! Filling a cache: the tokenization's sequences, in order, through the model in batches, the activations of
//! every real token at each hook; special and listed tokens left out, norm outliers dropped, the rest
//! written as shards (see [`super::shards`]). Everything dropped is counted by reason.
//!
//! Outliers are judged against the median norm of the first [`CALIBRATION_TOKENS`] eligible tokens, taken
//! in sequence order, so the verdict depends on the data and the factor, never on the batch size. Those
//! first tokens wait in memory until the median is known.

use std::path::Path;
use std::time::Instant;

use candle_core::DType;
use serde::{Deserialize, Serialize};

use super::CacheParams;
use super::shards::{CacheIndex, INDEX_FORMAT, IndexHook, IndexShard, NpyWriter, TOKENS_DIR, shard_file};
use super::table::CachedHook;
use crate::error::{Error, Result};
use crate::jobs::JobContext;
use crate::models::{Forward, HookPoint, Model, TokenBatch};
use crate::tokenize::Tokenization;
use crate::units::count;

/// How many eligible tokens set the median norm that outliers are judged against.
pub const CALIBRATION_TOKENS: usize = 4096;
/// Bins per decade of the norm histograms; they span 1/100 to 100 times the median.
const BINS_PER_DECADE: usize = 20;
const DECADES: usize = 4;

/// A histogram of activation norms on log-spaced bins (`edges` has one more entry than `counts`; the
/// first and last bins also hold what falls below and above).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NormHistogram {
    pub edges: Vec<f32>,
    pub counts: Vec<u64>,
}

impl NormHistogram {
    fn around(median: f32) -> NormHistogram {
        let n = BINS_PER_DECADE * DECADES;
        let edges =
            (0..=n).map(|k| median * 10f32.powf(k as f32 / BINS_PER_DECADE as f32 - (DECADES / 2) as f32)).collect();
        NormHistogram { edges, counts: vec![0; n] }
    }

    fn add(&mut self, norm: f32) {
        if self.counts.is_empty() {
            return;
        }
        let k = self.edges.partition_point(|&e| e <= norm).saturating_sub(1).min(self.counts.len() - 1);
        self.counts[k] += 1;
    }
}

/// What one hook's activations looked like.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HookStats {
    pub name: String,
    pub width: usize,
    /// Over the calibration tokens.
    pub median_norm: f32,
    /// Over the kept tokens.
    pub mean_norm: f64,
    pub max_norm: f32,
    /// Norms above this were dropped (factor × median), when outliers are dropped.
    pub threshold: Option<f32>,
    /// Tokens whose norm at this hook was above the threshold (a token can be one at several hooks).
    pub outliers: u64,
    /// Every eligible token's norm (kept and outliers).
    pub histogram: NormHistogram,
}

/// What filling a cache counted.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CacheStats {
    pub sequences: u64,
    /// Real tokens run through the model.
    pub tokens_seen: u64,
    pub kept: u64,
    pub dropped_special: u64,
    pub dropped_listed: u64,
    pub dropped_outlier: u64,
    /// Eligible tokens past `max_tokens` in the last batch (run, not kept).
    pub past_cap: u64,
    pub calibration_tokens: u64,
    pub hooks: Vec<HookStats>,
    pub sequences_per_batch: usize,
    pub seconds: f64,
    /// Of `seconds`, the time in the model's forward pass.
    pub forward_seconds: f64,
}

impl CacheStats {
    /// Kept tokens per second of filling.
    pub fn tokens_per_second(&self) -> f64 {
        if self.seconds > 0.0 { self.kept as f64 / self.seconds } else { 0.0 }
    }

    /// Real tokens per second of the forward pass alone.
    pub fn forward_tokens_per_second(&self) -> f64 {
        if self.forward_seconds > 0.0 { self.tokens_seen as f64 / self.forward_seconds } else { 0.0 }
    }
}

/// The eligible tokens of one forward pass, with their activations.
struct Chunk {
    /// Per hook: `[rows, width]` f32, the eligible tokens only (so what waits for calibration is bounded
    /// by the tokens, not by the padded batches they came in).
    data: Vec<Vec<f32>>,
    /// (row in `data`, sequence, position, token, norm per hook).
    rows: Vec<(usize, u32, u32, u32, Vec<f32>)>,
}

/// The shards being written.
struct ShardSet {
    dir: std::path::PathBuf,
    hooks: Vec<IndexHook>,
    dtype: super::CacheDtype,
    shard_tokens: u64,
    writers: Option<(Vec<NpyWriter>, NpyWriter)>,
    shards: Vec<IndexShard>,
}

impl ShardSet {
    fn push(&mut self, data: &[Vec<f32>], flat: usize, token: [u32; 3]) -> Result<()> {
        if self.writers.is_none() {
            let file = shard_file(self.shards.len());
            let writers = self
                .hooks
                .iter()
                .map(|h| NpyWriter::create(&self.dir.join(&h.dir).join(&file), self.dtype.npy_descr(), h.width))
                .collect::<Result<Vec<_>>>()?;
            let tokens = NpyWriter::create(&self.dir.join(TOKENS_DIR).join(&file), "<u4", 3)?;
            self.writers = Some((writers, tokens));
        }
        let (writers, tokens) = self.writers.as_mut().expect("opened above");
        for ((w, h), d) in writers.iter_mut().zip(&self.hooks).zip(data) {
            w.push_f32(&d[flat * h.width..(flat + 1) * h.width], self.dtype)?;
        }
        tokens.push_u32(&token)?;
        if tokens.rows() >= self.shard_tokens {
            self.close()?;
        }
        Ok(())
    }

    fn close(&mut self) -> Result<()> {
        if let Some((writers, tokens)) = self.writers.take() {
            let rows = tokens.finish()?;
            for w in writers {
                w.finish()?;
            }
            self.shards.push(IndexShard { file: shard_file(self.shards.len()), rows });
        }
        Ok(())
    }
}

/// The folder name of a hook's shards.
pub(crate) fn hook_dir(hook: &str) -> String {
    hook.chars().map(|c| if c.is_alphanumeric() || "._-".contains(c) { c } else { '_' }).collect()
}

/// Fills `dir` with the cache's shards and index; returns the index, the hooks and what was counted.
pub(crate) fn fill(
    dir: &Path,
    tokenization: &Tokenization,
    model: &Model,
    hooks: &[HookPoint],
    params: &CacheParams,
    sequences_per_batch: usize,
    ctx: &JobContext,
) -> Result<(CacheIndex, Vec<CachedHook>, CacheStats)> {
    let started = Instant::now();
    let store = tokenization.store()?;
    let info = model.info();
    let names: Vec<String> = hooks.iter().map(HookPoint::to_string).collect();
    let widths: Vec<usize> = hooks.iter().map(|&h| info.hook_width(h)).collect();
    let index_hooks: Vec<IndexHook> =
        names.iter().zip(&widths).map(|(n, &w)| IndexHook { name: n.clone(), width: w, dir: hook_dir(n) }).collect();
    for h in index_hooks.iter().map(|h| h.dir.as_str()).chain([TOKENS_DIR]) {
        let d = dir.join(h);
        std::fs::create_dir_all(&d).map_err(|e| Error::io(&d, e))?;
    }
    let mut excluded = vec![false; info.vocab_size.max(tokenization.tokenizer()?.vocab_size())];
    let mut listed = vec![false; excluded.len()];
    if params.exclude_special_tokens {
        for id in tokenization.tokenizer()?.info().special {
            if let Some(e) = excluded.get_mut(id as usize) {
                *e = true;
            }
        }
    }
    for &id in &params.exclude_tokens {
        if let Some(e) = listed.get_mut(id as usize) {
            *e = true;
        }
    }

    let mut shards = ShardSet {
        dir: dir.to_path_buf(),
        hooks: index_hooks.clone(),
        dtype: params.dtype,
        shard_tokens: params.shard_tokens.max(1) as u64,
        writers: None,
        shards: Vec::new(),
    };
    let mut stats = CacheStats {
        sequences_per_batch,
        hooks: names
            .iter()
            .zip(&widths)
            .map(|(n, &w)| HookStats { name: n.clone(), width: w, ..Default::default() })
            .collect(),
        ..Default::default()
    };
    let cap = params.max_tokens.unwrap_or(u64::MAX);
    let capped = params.max_tokens.is_some_and(|m| m < store.num_tokens());
    ctx.phase("caching", "tokens", Some(if capped { cap } else { store.num_tokens() }));

    let forward = Forward::new().hooks(names.iter());
    let mut pending: Vec<Chunk> = Vec::new();
    let mut pending_rows = 0usize;
    let mut thresholds: Option<Vec<f32>> = None;
    let mut norm_sums = vec![0f64; hooks.len()];
    let mut next = 0usize;
    let mut sequence = Vec::new();
    while next < store.len() && stats.kept < cap {
        ctx.check()?;
        // Near the cap, run only about as many sequences as the tokens still wanted fill (plus one for
        // what exclusions take), not a whole batch whose tokens would be thrown away.
        // (Until the median is known, the calibration tokens are wanted too.)
        let wanted = if thresholds.is_none() {
            cap.max(CALIBRATION_TOKENS as u64).saturating_sub(pending_rows as u64)
        } else {
            cap.saturating_sub(stats.kept)
        };
        let room = store.meta().max_sequence_length.max(1);
        let this_batch = (wanted.div_ceil(room) + 1).min(sequences_per_batch as u64).max(1) as usize;
        let mut batch_seqs: Vec<Vec<u32>> = Vec::with_capacity(this_batch);
        let mut batch_index: Vec<usize> = Vec::with_capacity(this_batch);
        while batch_seqs.len() < this_batch && next < store.len() {
            if store.get_into(next, &mut sequence) && !sequence.is_empty() {
                batch_seqs.push(sequence.clone());
                batch_index.push(next);
            }
            next += 1;
        }
        if batch_seqs.is_empty() {
            continue;
        }
        let batch = TokenBatch::new(&batch_seqs)?;
        let t0 = Instant::now();
        let out = model.run(&batch, &forward)?;
        let data = hooks
            .iter()
            .map(|h| Ok(out.hooks[h].to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?))
            .collect::<Result<Vec<_>>>()?;
        drop(out);
        stats.forward_seconds += t0.elapsed().as_secs_f64();
        stats.sequences += batch_seqs.len() as u64;
        let seq = batch.seq();
        let mut rows = Vec::new();
        for (b, (s, &index)) in batch_seqs.iter().zip(&batch_index).enumerate() {
            for (t, &token) in s.iter().enumerate() {
                stats.tokens_seen += 1;
                if excluded.get(token as usize).copied().unwrap_or(false) {
                    stats.dropped_special += 1;
                    continue;
                }
                if listed.get(token as usize).copied().unwrap_or(false) {
                    stats.dropped_listed += 1;
                    continue;
                }
                let flat = b * seq + t;
                let norms = data
                    .iter()
                    .zip(&widths)
                    .map(|(d, &w)| d[flat * w..(flat + 1) * w].iter().map(|x| x * x).sum::<f32>().sqrt())
                    .collect();
                let sequence = u32::try_from(index).map_err(|_| {
                    Error::InvalidArgument(format!("sequence {index} is past the 2³² a cache can number"))
                })?;
                rows.push((flat, sequence, t as u32, token, norms));
            }
        }
        let data: Vec<Vec<f32>> = data
            .iter()
            .zip(&widths)
            .map(|(d, &w)| {
                let mut compact = Vec::with_capacity(rows.len() * w);
                for r in &rows {
                    compact.extend_from_slice(&d[r.0 * w..(r.0 + 1) * w]);
                }
                compact
            })
            .collect();
        for (i, r) in rows.iter_mut().enumerate() {
            r.0 = i;
        }
        pending_rows += rows.len();
        pending.push(Chunk { data, rows });
        let calibrated = thresholds.is_some();
        if !calibrated && (pending_rows >= CALIBRATION_TOKENS || next >= store.len()) {
            thresholds = Some(calibrate(&pending, &mut stats, params.outlier_factor));
        }
        if thresholds.is_some() {
            for chunk in pending.drain(..) {
                write_chunk(
                    &chunk,
                    thresholds.as_deref().unwrap_or(&[]),
                    &mut shards,
                    &mut stats,
                    &mut norm_sums,
                    cap,
                )?;
            }
            pending_rows = 0;
        }
        ctx.set_done(if capped { stats.kept } else { stats.tokens_seen });
        ctx.set_detail(format!(
            "{} sequences · {} kept · {} dropped",
            count(stats.sequences),
            count(stats.kept),
            count(stats.dropped_special + stats.dropped_listed + stats.dropped_outlier)
        ));
    }
    // Sequences at the end that gave nothing to run leave the calibration tokens waiting: judge them now.
    if thresholds.is_none() && !pending.is_empty() {
        let limits = calibrate(&pending, &mut stats, params.outlier_factor);
        for chunk in pending.drain(..) {
            write_chunk(&chunk, &limits, &mut shards, &mut stats, &mut norm_sums, cap)?;
        }
    }
    shards.close()?;
    if stats.kept == 0 {
        return Err(Error::InvalidArgument(format!(
            "no tokens of {} were left to cache ({} run, {} special, {} listed, {} outliers)",
            tokenization.name(),
            count(stats.tokens_seen),
            count(stats.dropped_special),
            count(stats.dropped_listed),
            count(stats.dropped_outlier)
        )));
    }
    for (h, sum) in stats.hooks.iter_mut().zip(&norm_sums) {
        h.mean_norm = sum / stats.kept as f64;
    }
    stats.seconds = started.elapsed().as_secs_f64();
    let index = CacheIndex {
        format: INDEX_FORMAT.into(),
        version: 1,
        model: info.name.clone(),
        model_fingerprint: info.fingerprint.clone(),
        tokenization: tokenization.name().to_string(),
        dtype: params.dtype,
        stored_as: params.dtype.npy_descr().into(),
        num_tokens: stats.kept,
        hooks: index_hooks,
        tokens_dir: TOKENS_DIR.into(),
        token_columns: vec!["sequence".into(), "position".into(), "token".into()],
        shards: shards.shards,
    };
    index.write(dir)?;
    let cached = names.into_iter().zip(widths).map(|(name, width)| CachedHook { name, width }).collect();
    Ok((index, cached, stats))
}

/// The median norm per hook over the first calibration tokens; returns the outlier thresholds.
fn calibrate(pending: &[Chunk], stats: &mut CacheStats, factor: Option<f32>) -> Vec<f32> {
    let hooks = stats.hooks.len();
    let mut medians = Vec::with_capacity(hooks);
    let first: Vec<&Vec<f32>> =
        pending.iter().flat_map(|c| c.rows.iter().map(|r| &r.4)).take(CALIBRATION_TOKENS).collect();
    stats.calibration_tokens = first.len() as u64;
    for h in 0..hooks {
        let mut norms: Vec<f32> = first.iter().map(|n| n[h]).filter(|n| n.is_finite()).collect();
        norms.sort_by(f32::total_cmp);
        let median = match norms.len() {
            0 => 0.0,
            n if n % 2 == 1 => norms[n / 2],
            n => (norms[n / 2 - 1] + norms[n / 2]) / 2.0,
        };
        medians.push(median);
        let stat = &mut stats.hooks[h];
        stat.median_norm = median;
        // A hook whose typical token is all zeros has no scale to judge outliers by: none are dropped there.
        stat.threshold = factor.filter(|_| median > 0.0).map(|f| f * median);
        stat.histogram = NormHistogram::around(if median > 0.0 { median } else { 1.0 });
    }
    stats.hooks.iter().map(|h| h.threshold.unwrap_or(f32::INFINITY)).collect()
}

fn write_chunk(
    chunk: &Chunk,
    thresholds: &[f32],
    shards: &mut ShardSet,
    stats: &mut CacheStats,
    norm_sums: &mut [f64],
    cap: u64,
) -> Result<()> {
    for (flat, sequence, position, token, norms) in &chunk.rows {
        let mut outlier = false;
        for (h, (&n, &limit)) in norms.iter().zip(thresholds).enumerate() {
            stats.hooks[h].histogram.add(n);
            // A non-finite norm (an overflow upstream) is always an outlier: it would poison training.
            if n > limit || !n.is_finite() {
                stats.hooks[h].outliers += 1;
                outlier = true;
            }
        }
        if outlier {
            stats.dropped_outlier += 1;
            continue;
        }
        if stats.kept >= cap {
            stats.past_cap += 1;
            continue;
        }
        for (h, &n) in norms.iter().enumerate() {
            norm_sums[h] += n as f64;
            stats.hooks[h].max_norm = stats.hooks[h].max_norm.max(n);
        }
        shards.push(&chunk.data, *flat, [*sequence, *position, *token])?;
        stats.kept += 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(norms: &[[f32; 2]]) -> Chunk {
        // Width 1 per hook: the value is the norm itself.
        let data = vec![norms.iter().map(|n| n[0]).collect(), norms.iter().map(|n| n[1]).collect()];
        let rows = norms.iter().enumerate().map(|(i, n)| (i, 0, i as u32, 7, n.to_vec())).collect();
        Chunk { data, rows }
    }

    #[test]
    fn outliers_nan_and_an_all_zero_hook_are_judged_as_documented() {
        let dir = tempfile::tempdir().unwrap();
        let hooks = vec![
            IndexHook { name: "a".into(), width: 1, dir: "a".into() },
            IndexHook { name: "b".into(), width: 1, dir: "b".into() },
        ];
        for d in ["a", "b", TOKENS_DIR] {
            std::fs::create_dir_all(dir.path().join(d)).unwrap();
        }
        let mut shards = ShardSet {
            dir: dir.path().into(),
            hooks,
            dtype: super::super::CacheDtype::F32,
            shard_tokens: 100,
            writers: None,
            shards: vec![],
        };
        let mut stats = CacheStats {
            hooks: vec![
                HookStats { name: "a".into(), ..Default::default() },
                HookStats { name: "b".into(), ..Default::default() },
            ],
            ..Default::default()
        };
        // Hook b is zero for most tokens: no scale, so it drops nothing; hook a drops 25 (> 10 × 2) and NaN.
        let c = chunk(&[[2.0, 0.0], [2.0, 0.0], [1.0, 0.0], [25.0, 0.0], [f32::NAN, 0.0], [3.0, 5.0]]);
        let limits = calibrate(&[c], &mut stats, Some(10.0));
        assert_eq!(stats.hooks[0].median_norm, 2.0, "NaN is left out of the median");
        assert_eq!(limits[0], 20.0);
        assert_eq!(stats.hooks[1].threshold, None);
        let c = chunk(&[[2.0, 0.0], [2.0, 0.0], [1.0, 0.0], [25.0, 0.0], [f32::NAN, 0.0], [3.0, 5.0]]);
        let mut sums = vec![0.0; 2];
        write_chunk(&c, &limits, &mut shards, &mut stats, &mut sums, 3).unwrap();
        assert_eq!((stats.kept, stats.dropped_outlier, stats.past_cap), (3, 2, 1));
        assert_eq!(stats.hooks[0].outliers, 2);
        assert_eq!(stats.hooks[1].outliers, 0);
    }
}
