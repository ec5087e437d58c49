//! Evaluating SAEs on held-out tokens: how well they reconstruct (MSE, explained variance, L0 over every
//! held-out token, the tokens the cache would leave out left out here too), and what the model loses when
//! the SAE's reconstruction replaces the activations at its hook. For causal models that is the
//! next-token cross-entropy (CE loss recovered, against zero ablation) and the KL divergence of the next
//! token's distribution from the clean one; for encoders without an LM head (BERT, MiniLM), the same
//! recovered fraction on the pooled sentence embedding, measured as 1 − cos(clean, spliced).
//!
//! Formulas (SAELens' names where it has them):
//! - MSE = Σ‖x − x̂‖² / N (summed over d_in, averaged over tokens);
//! - explained variance = 1 − Σ‖x − x̂‖² / Σ‖x − mean(x)‖², the mean over all held-out tokens;
//! - L0 = mean number of nonzero latents per token;
//! - recovered = (L_ablated − L_sae) / (L_ablated − L_clean), L the CE (or the embedding loss);
//! - KL = mean over real positions of Σ_v p_clean(v) (log p_clean(v) − log p_sae(v)).

use std::sync::Arc;

use candle_core::{D, DType, Tensor};
use serde::Serialize;

use super::Sae;
use crate::display::{MimeBundle, Render, Table};
use crate::error::{Error, Result};
use crate::models::{Forward, Model, TokenBatch};

/// `(L_ablated − L_sae) / (L_ablated − L_clean)`: 1 when the SAE loses nothing, 0 when it is no better
/// than zeroing the hook; `None` when zeroing the hook costs nothing (nothing to recover).
pub fn recovered(clean: f64, with_sae: f64, ablated: f64) -> Option<f64> {
    let gap = ablated - clean;
    (gap.abs() > 1e-12).then(|| (ablated - with_sae) / gap)
}

/// Mean over the rows of `[n, vocab]` logits of KL(softmax(clean) ‖ softmax(other)), in nats.
pub fn kl_divergence(clean: &Tensor, other: &Tensor) -> Result<f64> {
    let (n, _) = clean.dims2()?;
    if n == 0 {
        return Ok(0.0);
    }
    let log_p = candle_nn::ops::log_softmax(&clean.to_dtype(DType::F64)?, D::Minus1)?;
    let log_q = candle_nn::ops::log_softmax(&other.to_dtype(DType::F64)?, D::Minus1)?;
    let kl = (log_p.exp()? * (&log_p - &log_q)?)?.sum(D::Minus1)?;
    Ok(kl.sum_all()?.to_scalar::<f64>()? / n as f64)
}

/// What the model loses at one SAE's hook.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Downstream {
    /// `next-token CE` (nats) or `embedding 1 − cos`.
    pub measure: &'static str,
    pub clean: f64,
    pub with_sae: f64,
    pub ablated: f64,
    pub recovered: Option<f64>,
    /// Causal models: KL of the next-token distribution from the clean one.
    pub kl_with_sae: Option<f64>,
    pub kl_ablated: Option<f64>,
}

/// One SAE on held-out tokens.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SaeEvaluation {
    pub name: String,
    pub hook: String,
    /// Held-out tokens the reconstruction metrics are over.
    pub tokens: u64,
    pub mse: f64,
    pub explained_variance: f64,
    pub l0: f64,
    pub downstream: Downstream,
}

/// Several SAEs evaluated on the same held-out sequences.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Evaluation {
    pub model: String,
    pub sequences: usize,
    pub saes: Vec<SaeEvaluation>,
}

/// An SAE to evaluate at a hook, with its name.
#[derive(Debug, Clone)]
pub struct Evaluated {
    pub name: String,
    pub hook: String,
    pub sae: Arc<Sae>,
}

/// Running sums of one SAE's reconstruction over tokens.
#[derive(Default)]
struct Sums {
    tokens: u64,
    squared_error: f64,
    sum: Vec<f64>,
    sum_squares: f64,
    nonzero: f64,
    clean: f64,
    with_sae: f64,
    ablated: f64,
    weight: f64,
    kl_sae: f64,
    kl_ablated: f64,
}

/// `[b, s, d]` → the SAE's reconstruction, same shape.
fn splice(sae: &Sae, a: &Tensor) -> Result<Tensor> {
    let (b, s, d) = a.dims3()?;
    let x = a.reshape((b * s, d))?.to_dtype(DType::F32)?;
    let (_, x_hat) = sae.forward(&x)?;
    Ok(x_hat.reshape((b, s, d))?.to_dtype(a.dtype())?)
}

/// Rows of `[b, s, …]` at the real positions of `batch` whose token is not in `skip`: their flat indices.
fn kept_rows(batch: &TokenBatch, skip: &[u32], causal_targets: bool) -> Vec<u32> {
    let (s, ids) = (batch.seq(), batch.ids());
    let mut rows = Vec::new();
    for (i, &len) in batch.lengths().iter().enumerate() {
        // For next-token distributions, a position needs a next token.
        let end = if causal_targets { len.saturating_sub(1) } else { len };
        for t in 0..end {
            if !skip.contains(&ids[i * s + t]) {
                rows.push((i * s + t) as u32);
            }
        }
    }
    rows
}

fn rows_of(x: &Tensor, rows: &[u32]) -> Result<Tensor> {
    let (b, s, d) = x.dims3()?;
    let index = Tensor::from_vec(rows.to_vec(), rows.len(), x.device())?;
    Ok(x.reshape((b * s, d))?.index_select(&index, 0)?)
}

/// Evaluates `saes` on `sequences` (token ids; held out from their training), `batch_sequences` at a
/// time; tokens whose id is in `skip` (the special tokens a cache leaves out) are not counted in the
/// reconstruction metrics. One clean pass per batch serves every SAE; each SAE adds a spliced and an
/// ablated pass.
pub fn evaluate(
    model: &Model,
    saes: &[Evaluated],
    sequences: &[Vec<u32>],
    batch_sequences: usize,
    skip: &[u32],
) -> Result<Evaluation> {
    if sequences.is_empty() {
        return Err(Error::InvalidArgument("no held-out sequences to evaluate on".into()));
    }
    let causal = model.info().family.is_causal();
    let hooks: Vec<String> = saes.iter().map(|s| s.hook.clone()).collect();
    for e in saes {
        let point = model.hook(&e.hook)?;
        let width = model.info().hook_width(point);
        if width != e.sae.config.d_in {
            return Err(Error::InvalidArgument(format!(
                "SAE `{}` takes d_in {}, but {} is {width} wide",
                e.name, e.sae.config.d_in, e.hook
            )));
        }
    }
    let ends = |f: Forward| if causal { f.logits().loss() } else { f.embedding() };
    let mut sums: Vec<Sums> = saes.iter().map(|_| Sums::default()).collect();
    for chunk in sequences.chunks(batch_sequences.max(1)) {
        let batch = TokenBatch::new(chunk)?;
        let clean = model.run(&batch, &ends(Forward::new().hooks(&hooks)))?;
        let token_rows = kept_rows(&batch, skip, false);
        let target_rows = kept_rows(&batch, &[], true);
        let clean_logits = match &clean.logits {
            Some(l) => Some(rows_of(l, &target_rows)?),
            None => None,
        };
        let predicted = target_rows.len() as f64;
        for (e, sum) in saes.iter().zip(sums.iter_mut()) {
            let x = rows_of(clean.get(&e.hook)?, &token_rows)?.to_dtype(DType::F32)?;
            let (z, x_hat) = e.sae.forward(&x)?;
            let n = x.dim(0)? as u64;
            sum.tokens += n;
            sum.squared_error += (&x_hat - &x)?.sqr()?.sum_all()?.to_dtype(DType::F64)?.to_scalar::<f64>()?;
            let x64 = x.to_dtype(DType::F64)?;
            let col = x64.sum(0)?.to_vec1::<f64>()?;
            if sum.sum.is_empty() {
                sum.sum = vec![0.0; col.len()];
            }
            sum.sum.iter_mut().zip(&col).for_each(|(a, b)| *a += b);
            sum.sum_squares += x64.sqr()?.sum_all()?.to_scalar::<f64>()?;
            sum.nonzero += z.ne(0f32)?.to_dtype(DType::F64)?.sum_all()?.to_scalar::<f64>()?;

            let sae = e.sae.clone();
            let spliced =
                model.run(&batch, &ends(Forward::new().replace(&e.hook, move |a: &Tensor| splice(&sae, a))))?;
            let ablated =
                model.run(&batch, &ends(Forward::new().replace(&e.hook, |a: &Tensor| Ok(a.zeros_like()?))))?;
            if causal {
                let loss = |o: &crate::models::ModelOutput| o.loss.map(f64::from).unwrap_or(0.0);
                sum.clean += loss(&clean) * predicted;
                sum.with_sae += loss(&spliced) * predicted;
                sum.ablated += loss(&ablated) * predicted;
                sum.weight += predicted;
                if let (Some(c), Some(s), Some(a)) = (&clean_logits, &spliced.logits, &ablated.logits) {
                    sum.kl_sae += kl_divergence(c, &rows_of(s, &target_rows)?)? * predicted;
                    sum.kl_ablated += kl_divergence(c, &rows_of(a, &target_rows)?)? * predicted;
                }
            } else {
                let (Some(c), Some(s), Some(a)) = (&clean.embedding, &spliced.embedding, &ablated.embedding) else {
                    return Err(Error::InvalidArgument(format!("{} gave no sentence embedding", model.name())));
                };
                let b = c.dim(0)? as f64;
                sum.with_sae += embedding_loss(c, s)? * b;
                sum.ablated += embedding_loss(c, a)? * b;
                sum.weight += b;
            }
        }
    }
    let saes = saes
        .iter()
        .zip(sums)
        .map(|(e, s)| {
            let n = s.tokens.max(1) as f64;
            let mean_sq: f64 = s.sum.iter().map(|v| v * v).sum::<f64>() / n;
            let total = s.sum_squares - mean_sq;
            let w = s.weight.max(1e-12);
            let (clean, with_sae, ablated) = (s.clean / w, s.with_sae / w, s.ablated / w);
            SaeEvaluation {
                name: e.name.clone(),
                hook: e.hook.clone(),
                tokens: s.tokens,
                mse: s.squared_error / n,
                explained_variance: if total > 0.0 { 1.0 - s.squared_error / total } else { 0.0 },
                l0: s.nonzero / n,
                downstream: Downstream {
                    measure: if causal { "next-token CE" } else { "embedding 1 − cos" },
                    clean,
                    with_sae,
                    ablated,
                    recovered: recovered(clean, with_sae, ablated),
                    kl_with_sae: causal.then(|| s.kl_sae / w),
                    kl_ablated: causal.then(|| s.kl_ablated / w),
                },
            }
        })
        .collect();
    Ok(Evaluation { model: model.name().to_string(), sequences: sequences.len(), saes })
}

/// Mean over rows of 1 − cos(clean, other) for `[b, width]` embeddings.
pub fn embedding_loss(clean: &Tensor, other: &Tensor) -> Result<f64> {
    let (c, o) = (clean.to_dtype(DType::F64)?, other.to_dtype(DType::F64)?);
    let dot = (&c * &o)?.sum(1)?;
    let norms = (c.sqr()?.sum(1)?.sqrt()? * o.sqr()?.sum(1)?.sqrt()?)?;
    let cos = (dot / norms.clamp(1e-12, f64::INFINITY)?)?;
    let b = cos.dim(0)? as f64;
    Ok((b - cos.sum_all()?.to_scalar::<f64>()?) / b.max(1.0))
}

impl Render for Evaluation {
    fn bundle(&self) -> MimeBundle {
        let measure = self.saes.first().map(|s| s.downstream.measure).unwrap_or("downstream");
        let mut table = Table::new(
            format!("Held-out evaluation on {} sequences through {}", self.sequences, self.model),
            &[
                "SAE",
                "hook",
                "tokens",
                "MSE",
                "explained variance",
                "L0",
                &format!("{measure}: clean / SAE / zero"),
                "recovered",
                "KL (SAE / zero)",
            ],
        );
        for s in &self.saes {
            let d = &s.downstream;
            table.row(vec![
                s.name.clone(),
                s.hook.clone(),
                crate::units::count(s.tokens),
                format!("{:.4}", s.mse),
                format!("{:.4}", s.explained_variance),
                format!("{:.2}", s.l0),
                format!("{:.4} / {:.4} / {:.4}", d.clean, d.with_sae, d.ablated),
                d.recovered.map_or("–".into(), |r| format!("{:.1}%", r * 100.0)),
                match (d.kl_with_sae, d.kl_ablated) {
                    (Some(a), Some(b)) => format!("{a:.4} / {b:.4}"),
                    _ => "–".into(),
                },
            ]);
        }
        table.bundle()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn recovered_is_the_fraction_of_the_ablation_gap_closed() {
        assert_eq!(recovered(2.0, 2.0, 6.0), Some(1.0));
        assert_eq!(recovered(2.0, 6.0, 6.0), Some(0.0));
        assert_eq!(recovered(2.0, 3.0, 6.0), Some(0.75));
        assert_eq!(recovered(2.0, 7.0, 6.0), Some(-0.25), "worse than ablation is negative");
        assert_eq!(recovered(2.0, 3.0, 2.0), None, "no gap: nothing to recover");
    }

    #[test]
    fn kl_and_the_embedding_loss_on_inputs_worked_by_hand() {
        // Rows: equal logits (KL 0); [ln 1, ln 3] vs equal: p = (1/4, 3/4), q = (1/2, 1/2).
        let clean = Tensor::from_vec(vec![0.0f32, 0.0, 0.0, 3f32.ln()], (2, 2), &Device::Cpu).unwrap();
        let other = Tensor::from_vec(vec![5.0f32, 5.0, 1.0, 1.0], (2, 2), &Device::Cpu).unwrap();
        let want = (0.25f64 * (0.25f64 / 0.5).ln() + 0.75 * (0.75f64 / 0.5).ln()) / 2.0;
        assert!((kl_divergence(&clean, &other).unwrap() - want).abs() < 1e-6);
        assert!(kl_divergence(&clean, &clean).unwrap().abs() < 1e-12);
        // cos of [1, 0] and [1, 1] is 1/√2; of [0, 2] and [0, 1] is 1.
        let a = Tensor::from_vec(vec![1.0f32, 0.0, 0.0, 2.0], (2, 2), &Device::Cpu).unwrap();
        let b = Tensor::from_vec(vec![1.0f32, 1.0, 0.0, 1.0], (2, 2), &Device::Cpu).unwrap();
        let want = ((1.0 - 0.5f64.sqrt()) + 0.0) / 2.0;
        assert!((embedding_loss(&a, &b).unwrap() - want).abs() < 1e-9);
    }
}
