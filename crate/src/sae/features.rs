//! What an SAE's latents respond to, on held-out tokens: for every latent how often it fires, its top
//! activating contexts (decoded, the tokens shaded by activation, every dataset string escaped), the
//! distribution of its activations and, for causal models and SAEs on the residual stream, the tokens its
//! decoder direction promotes and suppresses through the LM head (W_dec · W_U). [`FeatureAtlas::table`] lists the densest and the rarest
//! latents with dead (never fired here) and dense ones flagged; [`FeatureAtlas::feature`] is one latent's
//! view.

use std::sync::Arc;

use candle_core::{DType, Tensor};
use serde::Serialize;

use super::Sae;
use crate::display::{Card, Histogram, MimeBundle, Render, Table, escape};
use crate::error::{Error, Result};
use crate::models::{Forward, Model, TokenBatch};

/// Top contexts kept per latent.
pub const TOP_CONTEXTS: usize = 8;
/// Tokens shown either side of a context's top token.
const WINDOW: usize = 8;
/// A latent firing on more than this fraction of tokens is flagged dense.
pub const DENSE: f64 = 0.1;

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
struct Top {
    value: f32,
    sequence: u32,
    position: u32,
}

/// Every latent of one SAE on held-out sequences.
#[derive(Clone)]
pub struct FeatureAtlas {
    pub sae_name: String,
    pub hook: String,
    /// Tokens the latents were read on.
    pub tokens: u64,
    fired: Vec<u64>,
    max: Vec<f32>,
    /// Each latent's nonzero activations.
    values: Vec<Vec<f32>>,
    top: Vec<Vec<Top>>,
    sequences: Vec<Vec<u32>>,
    sae: Arc<Sae>,
    model: Model,
}

impl std::fmt::Debug for FeatureAtlas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FeatureAtlas({}, {} latents over {} tokens)", self.sae_name, self.fired.len(), self.tokens)
    }
}

impl FeatureAtlas {
    /// Reads `sae`'s latents at `hook` on `sequences` through `model`, `batch_sequences` at a time;
    /// tokens in `skip` are not read.
    pub fn build(
        model: &Model,
        sae_name: &str,
        hook: &str,
        sae: Arc<Sae>,
        sequences: Vec<Vec<u32>>,
        batch_sequences: usize,
        skip: &[u32],
    ) -> Result<FeatureAtlas> {
        let d_sae = sae.config.d_sae;
        let mut atlas = FeatureAtlas {
            sae_name: sae_name.to_string(),
            hook: hook.to_string(),
            tokens: 0,
            fired: vec![0; d_sae],
            max: vec![0.0; d_sae],
            values: vec![Vec::new(); d_sae],
            top: vec![Vec::new(); d_sae],
            sequences: Vec::new(),
            sae,
            model: model.clone(),
        };
        for (c, chunk) in sequences.chunks(batch_sequences.max(1)).enumerate() {
            let batch = TokenBatch::new(chunk)?;
            let out = model.run(&batch, &Forward::new().hook(hook))?;
            let x = out.get(hook)?;
            let (b, s, d) = x.dims3()?;
            let mut rows = Vec::new();
            let mut places = Vec::new();
            for (i, seq) in chunk.iter().enumerate() {
                for (t, id) in seq.iter().enumerate() {
                    if !skip.contains(id) {
                        rows.push((i * s + t) as u32);
                        places.push(((c * batch_sequences.max(1) + i) as u32, t as u32));
                    }
                }
            }
            if rows.is_empty() {
                continue;
            }
            let index = Tensor::from_vec(rows.clone(), rows.len(), x.device())?;
            let x = x.reshape((b * s, d))?.index_select(&index, 0)?.to_dtype(DType::F32)?;
            let z = atlas.sae.encode(&x)?.to_vec2::<f32>()?;
            atlas.tokens += z.len() as u64;
            for (row, &(sequence, position)) in z.iter().zip(&places) {
                for (j, &v) in row.iter().enumerate() {
                    if v > 0.0 {
                        atlas.fired[j] += 1;
                        atlas.values[j].push(v);
                        atlas.max[j] = atlas.max[j].max(v);
                        let top = &mut atlas.top[j];
                        if top.len() < TOP_CONTEXTS || v > top[top.len() - 1].value {
                            let at = top.partition_point(|t| t.value >= v);
                            top.insert(at, Top { value: v, sequence, position });
                            top.truncate(TOP_CONTEXTS);
                        }
                    }
                }
            }
        }
        atlas.sequences = sequences;
        Ok(atlas)
    }

    pub fn d_sae(&self) -> usize {
        self.fired.len()
    }

    /// Fraction of the tokens each latent fired on.
    pub fn density(&self) -> Vec<f64> {
        let n = self.tokens.max(1) as f64;
        self.fired.iter().map(|&f| f as f64 / n).collect()
    }

    /// Latents that never fired on these tokens.
    pub fn dead(&self) -> Vec<usize> {
        (0..self.d_sae()).filter(|&j| self.fired[j] == 0).collect()
    }

    /// The `n` densest and `n` rarest latents that fired (with dead and dense ones counted) as a table.
    pub fn table(&self, n: usize) -> Table {
        let density = self.density();
        let mut order: Vec<usize> = (0..self.d_sae()).filter(|&j| self.fired[j] > 0).collect();
        order.sort_by(|&a, &b| density[b].total_cmp(&density[a]).then(a.cmp(&b)));
        let dense = density.iter().filter(|&&d| d > DENSE).count();
        let mut table = Table::new(
            format!(
                "{}: latents on {} held-out tokens ({} dead, {} dense above {:.0}%)",
                self.sae_name,
                crate::units::count(self.tokens),
                self.dead().len(),
                dense,
                DENSE * 100.0
            ),
            &["", "latent", "density", "max activation", "top token"],
        );
        let mut chosen: Vec<(&str, usize)> = order.iter().take(n).map(|&j| ("densest", j)).collect();
        let rare: Vec<usize> =
            order.iter().rev().take(n).copied().filter(|j| !chosen.iter().any(|c| c.1 == *j)).collect();
        chosen.extend(rare.into_iter().map(|j| ("rarest", j)));
        for (label, j) in chosen {
            let flag = if density[j] > DENSE { format!("{label} · dense") } else { label.to_string() };
            let top = self.top[j].first().map(|t| self.token_text(t.sequence, t.position)).unwrap_or_default();
            table.row(vec![
                flag,
                j.to_string(),
                format!("{:.3}%", density[j] * 100.0),
                format!("{:.3}", self.max[j]),
                format!("{top:?}"),
            ]);
        }
        table
    }

    /// A token as it reads in running text: WordPiece pieces (`##ing`) join the word before them, and
    /// other WordPiece tokens get the space their text leaves out (byte-level BPE tokens carry theirs).
    fn shown_token(&self, id: u32) -> String {
        let text = self.model.tokenizer().token_text(id);
        if self.model.info().family != crate::models::Family::Bert {
            return text;
        }
        match text.strip_prefix("##") {
            Some(piece) => piece.to_string(),
            None => format!(" {text}"),
        }
    }

    fn token_text(&self, sequence: u32, position: u32) -> String {
        let id = self.sequences[sequence as usize][position as usize];
        self.model.tokenizer().token_text(id)
    }

    /// Latent `latent`'s view.
    pub fn feature(&self, latent: usize) -> Result<FeatureView> {
        if latent >= self.d_sae() {
            return Err(Error::InvalidArgument(format!("latent {latent} is past the SAE's {} latents", self.d_sae())));
        }
        let values = &self.values[latent];
        let mut contexts = Vec::new();
        // Two top contexts in one sequence share its forward pass.
        let mut by_sequence: std::collections::HashMap<u32, Vec<f32>> = std::collections::HashMap::new();
        for top in &self.top[latent] {
            let seq = &self.sequences[top.sequence as usize];
            let (p, from) = (top.position as usize, (top.position as usize).saturating_sub(WINDOW));
            let to = (p + WINDOW + 1).min(seq.len());
            // Each shown token's activation for this latent, from one forward pass of its sequence.
            if !by_sequence.contains_key(&top.sequence) {
                by_sequence.insert(top.sequence, self.activations_in(top.sequence as usize, latent)?);
            }
            let acts = &by_sequence[&top.sequence];
            contexts.push(Context {
                tokens: (from..to).map(|t| self.shown_token(seq[t])).collect(),
                activations: (from..to).map(|t| acts.get(t).copied().unwrap_or(0.0)).collect(),
                top: p - from,
            });
        }
        let bins = 20;
        let max = self.max[latent].max(f32::MIN_POSITIVE);
        let mut counts = vec![0u64; bins];
        for &v in values {
            counts[((v / max * bins as f32) as usize).min(bins - 1)] += 1;
        }
        let histogram = counts
            .iter()
            .enumerate()
            .map(|(i, &c)| (format!("{:.2}", (i as f32 + 0.5) / bins as f32 * max), c))
            .collect();
        let (promoted, suppressed) = self.logit_effects(latent, 10)?;
        Ok(FeatureView {
            sae: self.sae_name.clone(),
            latent,
            tokens: self.tokens,
            fired: self.fired[latent],
            max: self.max[latent],
            mean: if values.is_empty() {
                0.0
            } else {
                values.iter().map(|&v| v as f64).sum::<f64>() / values.len() as f64
            },
            train_log10_density: match &self.sae.sparsity {
                Some(s) => Some(s.get(latent)?.to_scalar::<f32>()?),
                None => None,
            },
            histogram,
            contexts,
            promoted,
            suppressed,
        })
    }

    /// Latent `latent`'s activation at every position of held-out sequence `i`.
    fn activations_in(&self, i: usize, latent: usize) -> Result<Vec<f32>> {
        let seq = &self.sequences[i];
        let out = self.model.run(&TokenBatch::new(&[seq])?, &Forward::new().hook(&self.hook))?;
        let x = out.tokens(&self.hook)?;
        let z = self.sae.encode(&x)?;
        Ok(z.narrow(1, latent, 1)?.flatten_all()?.to_vec1::<f32>()?)
    }

    /// The tokens whose logits the latent's decoder row raises and lowers most (W_dec · W_U), for models
    /// with an LM head.
    fn logit_effects(&self, latent: usize, n: usize) -> Result<(Vec<(String, f32)>, Vec<(String, f32)>)> {
        // Only a direction in the residual stream (d_model wide: resid, attn_out, mlp_out hooks) goes
        // through the LM head as it is; an MLP's hidden layer would need W_out first.
        if self.sae.config.d_in != self.model.info().width {
            return Ok((Vec::new(), Vec::new()));
        }
        let row = self.sae.w_dec.narrow(0, latent, 1)?;
        let Some(logits) = self.model.unembed(&row)? else { return Ok((Vec::new(), Vec::new())) };
        let logits = logits.flatten_all()?.to_vec1::<f32>()?;
        let mut order: Vec<usize> = (0..logits.len()).collect();
        order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]).then(a.cmp(&b)));
        let text = |&i: &usize| (self.model.tokenizer().token_text(i as u32), logits[i]);
        Ok((order.iter().take(n).map(text).collect(), order.iter().rev().take(n).map(text).collect()))
    }
}

/// A context around one of a latent's top activations.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Context {
    pub tokens: Vec<String>,
    pub activations: Vec<f32>,
    /// The top token's place in `tokens`.
    pub top: usize,
}

/// One latent: how often and how strongly it fires, where, and what it writes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FeatureView {
    pub sae: String,
    pub latent: usize,
    pub tokens: u64,
    pub fired: u64,
    pub max: f32,
    pub mean: f64,
    /// log10 of its firing fraction over the last training window (`sparsity.safetensors`), when known.
    pub train_log10_density: Option<f32>,
    /// (bin centre, count) of its nonzero activations.
    pub histogram: Vec<(String, u64)>,
    pub contexts: Vec<Context>,
    /// Causal models: the tokens it promotes and suppresses, with their logit change per unit activation.
    pub promoted: Vec<(String, f32)>,
    pub suppressed: Vec<(String, f32)>,
}

impl FeatureView {
    /// The contexts as text: the top token in ⟦ ⟧, each token with its activation when nonzero.
    fn contexts_plain(&self) -> String {
        self.contexts
            .iter()
            .map(|c| {
                c.tokens
                    .iter()
                    .zip(&c.activations)
                    .enumerate()
                    .map(|(i, (t, a))| if i == c.top { format!("⟦{t}⟧({a:.2})") } else { t.clone() })
                    .collect::<String>()
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The contexts as HTML: each token shaded by its activation (relative to the latent's max), escaped.
    fn contexts_html(&self) -> String {
        let max = self.max.max(f32::MIN_POSITIVE);
        let mut html = String::from("<div style=\"font-family: monospace; line-height: 1.8\">");
        for c in &self.contexts {
            html.push_str("<div>");
            for (i, (t, &a)) in c.tokens.iter().zip(&c.activations).enumerate() {
                let alpha = (a / max).clamp(0.0, 1.0);
                let border = if i == c.top { "border-bottom: 2px solid #d62728;" } else { "" };
                html.push_str(&format!(
                    "<span title=\"{a:.3}\" style=\"background: rgba(214, 39, 40, {alpha:.2}); white-space: pre; {border}\">{}</span>",
                    escape(t)
                ));
            }
            html.push_str("</div>");
        }
        html.push_str("</div>");
        html
    }
}

impl Render for FeatureView {
    fn bundle(&self) -> MimeBundle {
        let density = self.fired as f64 / self.tokens.max(1) as f64;
        let mut card = Card::new(format!("{} latent {}", self.sae, self.latent))
            .fact("density", format!("{:.3}% of {} held-out tokens", density * 100.0, crate::units::count(self.tokens)))
            .fact("activation", format!("max {:.3}, mean {:.3} when firing", self.max, self.mean));
        if let Some(d) = self.train_log10_density {
            card = card.fact("in training", format!("log10 density {d:.2}"));
        }
        card = card.section(
            &Histogram::new(format!("latent {} activations", self.latent), "activation", self.histogram.clone())
                .bundle(),
        );
        let contexts = MimeBundle::new(format!("top contexts\n{}", self.contexts_plain()))
            .with("text/html", format!("<div class=\"title\">top contexts</div>{}", self.contexts_html()));
        card = card.section(&contexts);
        if !self.promoted.is_empty() {
            let mut table = Table::new("logit effect (W_dec · W_U)", &["promotes", "", "suppresses", ""]);
            for ((p, pv), (s, sv)) in self.promoted.iter().zip(&self.suppressed) {
                table.row(vec![format!("{p:?}"), format!("{pv:+.3}"), format!("{s:?}"), format!("{sv:+.3}")]);
            }
            card = card.section(&table.bundle());
        }
        card.bundle()
    }
}

impl Render for FeatureAtlas {
    fn bundle(&self) -> MimeBundle {
        self.table(10).bundle()
    }
}
