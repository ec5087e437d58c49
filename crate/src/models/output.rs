//! What goes into a forward pass and what comes out: [`TokenBatch`] (right-padded token ids with each
//! sequence's length) and [`ModelOutput`] (recorded hooks, logits, next-token loss, sentence embedding),
//! with the loss and pooling every family shares, and the cards they render as.

use std::collections::BTreeMap;
use std::path::Path;

use candle_core::{D, DType, Device, Tensor};

use super::hooks::HookPoint;
use super::{Model, ModelInfo, model_error};
use crate::display::{Card, MimeBundle, Render, Table};
use crate::error::{Error, Result};
use crate::units::count;

/// Token ids of several sequences, right-padded (with id 0) to the longest; positions start at 0 in each.
/// Padded positions never influence real ones (causal attention looks back; BERT masks padded keys).
#[derive(Debug, Clone, PartialEq)]
pub struct TokenBatch {
    ids: Vec<u32>,
    batch: usize,
    seq: usize,
    lengths: Vec<usize>,
}

impl TokenBatch {
    /// A batch of `sequences`, which may differ in length (none may be empty).
    pub fn new<S: AsRef<[u32]>>(sequences: &[S]) -> Result<TokenBatch> {
        if sequences.is_empty() {
            return Err(Error::InvalidArgument("a batch needs at least one sequence".into()));
        }
        let seq = sequences.iter().map(|s| s.as_ref().len()).max().unwrap_or(0);
        if let Some(i) = sequences.iter().position(|s| s.as_ref().is_empty()) {
            return Err(Error::InvalidArgument(format!("sequence {i} of the batch is empty")));
        }
        let mut ids = Vec::with_capacity(sequences.len() * seq);
        for s in sequences {
            ids.extend_from_slice(s.as_ref());
            ids.resize(ids.len() + seq - s.as_ref().len(), 0);
        }
        let lengths = sequences.iter().map(|s| s.as_ref().len()).collect();
        Ok(TokenBatch { ids, batch: sequences.len(), seq, lengths })
    }

    /// `batch` sequences of `seq` tokens each, row after row.
    pub fn rectangular(ids: Vec<u32>, batch: usize, seq: usize) -> Result<TokenBatch> {
        if ids.len() != batch * seq || seq == 0 {
            return Err(Error::InvalidArgument(format!(
                "{} ids do not make {batch} sequences of {seq} tokens",
                ids.len()
            )));
        }
        Ok(TokenBatch { ids, batch, seq, lengths: vec![seq; batch] })
    }

    pub fn batch(&self) -> usize {
        self.batch
    }

    pub fn seq(&self) -> usize {
        self.seq
    }

    pub fn lengths(&self) -> &[usize] {
        &self.lengths
    }

    /// The ids, row after row, padding included.
    pub fn ids(&self) -> &[u32] {
        &self.ids
    }

    /// Number of real (not padding) tokens.
    pub fn num_tokens(&self) -> usize {
        self.lengths.iter().sum()
    }

    /// The ids as a `[batch, seq]` u32 tensor.
    pub fn ids_tensor(&self, device: &Device) -> Result<Tensor> {
        Ok(Tensor::from_slice(&self.ids, (self.batch, self.seq), device)?)
    }

    /// `[batch, seq]` with 1 on real tokens and 0 on padding, in `dtype`.
    pub fn mask(&self, dtype: DType, device: &Device) -> Result<Tensor> {
        let mut values = vec![0f32; self.batch * self.seq];
        for (b, &len) in self.lengths.iter().enumerate() {
            values[b * self.seq..b * self.seq + len].fill(1.0);
        }
        Ok(Tensor::from_vec(values, (self.batch, self.seq), device)?.to_dtype(dtype)?)
    }
}

/// What a forward pass returned.
#[derive(Debug, Clone)]
pub struct ModelOutput {
    pub model: String,
    /// Recorded activations, `[batch, seq, width]`, by hook point.
    pub hooks: BTreeMap<HookPoint, Tensor>,
    /// `[batch, seq, vocab]`, when asked for.
    pub logits: Option<Tensor>,
    /// Mean next-token cross-entropy over every real position that has a next token (nats).
    pub loss: Option<f32>,
    /// `[batch, seq − 1]`: the cross-entropy of predicting token t+1 at position t (0 where there is none).
    pub token_losses: Option<Tensor>,
    /// `[batch, width]`: the pooled sentence embedding (BERT), when asked for.
    pub embedding: Option<Tensor>,
    pub lengths: Vec<usize>,
    ids: Vec<u32>,
    seq: usize,
}

impl ModelOutput {
    pub(crate) fn new(model: &str, batch: &TokenBatch, hooks: BTreeMap<HookPoint, Tensor>) -> ModelOutput {
        ModelOutput {
            model: model.to_string(),
            hooks,
            logits: None,
            loss: None,
            token_losses: None,
            embedding: None,
            lengths: batch.lengths().to_vec(),
            ids: batch.ids().to_vec(),
            seq: batch.seq(),
        }
    }

    /// The activations recorded at `hook` (by name), `[batch, seq, width]`.
    pub fn get(&self, hook: &str) -> Result<&Tensor> {
        let point: HookPoint = hook.parse()?;
        self.hooks.get(&point).ok_or_else(|| {
            let recorded: Vec<String> = self.hooks.keys().map(HookPoint::to_string).collect();
            Error::InvalidArgument(format!(
                "hook `{hook}` was not recorded in this pass; recorded: {}",
                if recorded.is_empty() { "none".to_string() } else { recorded.join(", ") }
            ))
        })
    }

    /// The activations at `hook` of the real tokens only, `[tokens, width]` (padding dropped), in f32.
    pub fn tokens(&self, hook: &str) -> Result<Tensor> {
        let x = self.get(hook)?;
        let (b, s, d) = x.dims3()?;
        let rows: Vec<u32> = (0..b).flat_map(|i| (0..self.lengths[i]).map(move |t| (i * s + t) as u32)).collect();
        let index = Tensor::from_vec(rows, self.lengths.iter().sum::<usize>(), x.device())?;
        Ok(x.reshape((b * s, d))?.index_select(&index, 0)?.to_dtype(DType::F32)?)
    }

    /// Writes everything returned to a safetensors file (f32; hooks under their names, plus `ids`,
    /// `lengths`, and `logits`, `loss`, `token_losses`, `embedding` when present).
    pub fn save(&self, path: &Path) -> Result<()> {
        let device = Device::Cpu;
        let mut tensors: Vec<(String, Tensor)> = Vec::new();
        for (point, t) in &self.hooks {
            tensors.push((point.to_string(), t.to_dtype(DType::F32)?));
        }
        let ids: Vec<i64> = self.ids.iter().map(|&i| i as i64).collect();
        tensors.push(("ids".into(), Tensor::from_vec(ids, (self.lengths.len(), self.seq), &device)?));
        let lengths: Vec<i64> = self.lengths.iter().map(|&l| l as i64).collect();
        tensors.push(("lengths".into(), Tensor::from_vec(lengths, self.lengths.len(), &device)?));
        if let Some(l) = &self.logits {
            tensors.push(("logits".into(), l.to_dtype(DType::F32)?));
        }
        if let Some(l) = self.loss {
            tensors.push(("loss".into(), Tensor::new(l, &device)?));
        }
        if let Some(l) = &self.token_losses {
            tensors.push(("token_losses".into(), l.clone()));
        }
        if let Some(e) = &self.embedding {
            tensors.push(("embedding".into(), e.to_dtype(DType::F32)?));
        }
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let tmp = path.with_file_name(format!(".{name}.tmp"));
        let map: std::collections::HashMap<String, Tensor> = tensors.into_iter().collect();
        candle_core::safetensors::save(&map, &tmp).map_err(|e| Error::format(path, e))?;
        std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
    }
}

/// Mean next-token cross-entropy of `logits` `[b, s, V]` against the batch's own ids, and the per-position
/// losses `[b, s − 1]` (0 past each sequence's end).
pub(crate) fn next_token_loss(model: &str, logits: &Tensor, batch: &TokenBatch) -> Result<(f32, Tensor)> {
    let (b, s, _) = logits.dims3()?;
    if s < 2 {
        return Err(model_error(model, "the next-token loss needs a sequence of at least 2 tokens"));
    }
    let device = logits.device();
    let log_probs = candle_nn::ops::log_softmax(&logits.narrow(1, 0, s - 1)?.to_dtype(DType::F32)?, D::Minus1)?;
    let targets = batch.ids_tensor(device)?.narrow(1, 1, s - 1)?.contiguous()?.unsqueeze(2)?;
    let nll = log_probs.gather(&targets, 2)?.squeeze(2)?.neg()?;
    let mut valid = vec![0f32; b * (s - 1)];
    for (i, &len) in batch.lengths().iter().enumerate() {
        valid[i * (s - 1)..i * (s - 1) + len.saturating_sub(1)].fill(1.0);
    }
    let count: f32 = valid.iter().sum();
    let valid = Tensor::from_vec(valid, (b, s - 1), device)?;
    let per_token = (nll * valid)?;
    let total = per_token.sum_all()?.to_scalar::<f32>()?;
    if count == 0.0 {
        return Err(model_error(model, "the next-token loss needs a sequence of at least 2 tokens"));
    }
    Ok((total / count, per_token))
}

/// The mean of `hidden` `[b, s, d]` over each sequence's real tokens, L2-normalised if asked.
pub(crate) fn mean_pool(hidden: &Tensor, batch: &TokenBatch, normalize: bool) -> Result<Tensor> {
    let hidden = hidden.to_dtype(DType::F32)?;
    let mask = batch.mask(DType::F32, hidden.device())?.unsqueeze(2)?;
    let lengths: Vec<f32> = batch.lengths().iter().map(|&l| l as f32).collect();
    let lengths = Tensor::from_vec(lengths, (batch.batch(), 1), hidden.device())?;
    let mean = hidden.broadcast_mul(&mask)?.sum(1)?.broadcast_div(&lengths)?;
    if !normalize {
        return Ok(mean);
    }
    let norm = mean.sqr()?.sum_keepdim(1)?.sqrt()?.maximum(1e-12)?;
    Ok(mean.broadcast_div(&norm)?)
}

impl Render for ModelInfo {
    fn bundle(&self) -> MimeBundle {
        let heads = if self.kv_heads == self.heads {
            format!("{} × {}", self.heads, self.head_width)
        } else {
            format!("{} × {} ({} key/value heads)", self.heads, self.head_width, self.kv_heads)
        };
        let mut card = Card::new(format!("Model {}", self.name))
            .badge(self.family.as_str())
            .fact("family", self.family.as_str())
            .fact("architecture", self.architecture.clone())
            .fact("layers", self.layers.to_string())
            .fact("width", self.width.to_string())
            .fact("heads", heads)
            .fact("MLP width", self.mlp_width.to_string())
            .fact("vocabulary", count(self.vocab_size as u64))
            .fact("positions", count(self.max_positions as u64))
            .fact("parameters", format!("{} ({})", count(self.parameters), short_count(self.parameters)))
            .fact("dtype", self.dtype.clone());
        if let Some(pooling) = &self.sentence_embedding {
            card = card.fact("sentence embedding", pooling.clone());
        }
        if !self.notes.is_empty() {
            card = card.fact("notes", self.notes.join("; "));
        }
        card.fact("hooks", self.hooks_summary()).fact("from", self.source.clone()).bundle()
    }
}

impl Render for TokenBatch {
    fn bundle(&self) -> MimeBundle {
        let mut table = Table::new(
            format!("{} sequences, {} tokens (padded to {})", self.batch, count(self.num_tokens() as u64), self.seq),
            &["sequence", "tokens", "first ids"],
        );
        for (b, &len) in self.lengths.iter().enumerate().take(20) {
            let ids = &self.ids[b * self.seq..b * self.seq + len];
            let head: Vec<String> = ids.iter().take(12).map(u32::to_string).collect();
            let more = if len > 12 { ", …" } else { "" };
            table.row(vec![b.to_string(), len.to_string(), format!("{}{more}", head.join(", "))]);
        }
        table.bundle()
    }
}

impl Render for Model {
    fn bundle(&self) -> MimeBundle {
        self.info.bundle()
    }
}

fn short_count(n: u64) -> String {
    match n {
        n if n >= 1_000_000_000 => format!("{:.1} B", n as f64 / 1e9),
        n if n >= 1_000_000 => format!("{:.1} M", n as f64 / 1e6),
        n if n >= 1_000 => format!("{:.1} k", n as f64 / 1e3),
        n => n.to_string(),
    }
}

impl Render for ModelOutput {
    fn bundle(&self) -> MimeBundle {
        let mut table = Table::new(
            format!(
                "{}: {} sequences, {} tokens",
                self.model,
                self.lengths.len(),
                count(self.lengths.iter().sum::<usize>() as u64)
            ),
            &["hook", "shape", "mean ‖x‖ per token", "mean", "std"],
        );
        for (point, t) in &self.hooks {
            let stats = self.tokens(&point.to_string()).and_then(|x| summary(&x));
            let (norm, mean, std) = stats.unwrap_or((f32::NAN, f32::NAN, f32::NAN));
            table.row(vec![
                point.to_string(),
                format!("{:?}", t.dims()),
                format!("{norm:.4}"),
                format!("{mean:.4}"),
                format!("{std:.4}"),
            ]);
        }
        let mut card = Card::new(format!("Forward pass of {}", self.model)).section(&table.bundle());
        if let Some(loss) = self.loss {
            card = card.fact("next-token loss", format!("{loss:.4} nats"));
        }
        if let Some(l) = &self.logits {
            card = card.fact("logits", format!("{:?}", l.dims()));
        }
        if let Some(e) = &self.embedding {
            card = card.fact("sentence embedding", format!("{:?}", e.dims()));
        }
        card.bundle()
    }
}

/// Mean L2 norm per row, mean and standard deviation of `[tokens, width]`.
fn summary(x: &Tensor) -> Result<(f32, f32, f32)> {
    let norm = x.sqr()?.sum(1)?.sqrt()?.mean_all()?.to_scalar::<f32>()?;
    let mean = x.mean_all()?.to_scalar::<f32>()?;
    let var = x.broadcast_sub(&x.mean_all()?)?.sqr()?.mean_all()?.to_scalar::<f32>()?;
    Ok((norm, mean, var.sqrt()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ragged_sequences_are_right_padded_with_their_lengths() {
        let batch = TokenBatch::new(&[vec![5u32, 6, 7], vec![8]]).unwrap();
        assert_eq!((batch.batch(), batch.seq()), (2, 3));
        assert_eq!(batch.ids(), &[5, 6, 7, 8, 0, 0]);
        assert_eq!(batch.lengths(), &[3, 1]);
        assert_eq!(batch.num_tokens(), 4);
        assert!(TokenBatch::new(&[vec![1u32], vec![]]).is_err());
        assert!(TokenBatch::rectangular(vec![1, 2, 3], 2, 2).is_err());
        let shown = batch.bundle();
        assert!(shown.plain().contains("2 sequences, 4 tokens (padded to 3)"), "{}", shown.plain());
        assert!(shown.plain().contains("5, 6, 7") && shown.get("text/html").is_some());
    }
}
