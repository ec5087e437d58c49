//! GPT-2 from the Hugging Face layout: `config.json` and `model.safetensors` with names as `GPT2Model` or
//! `GPT2LMHeadModel` writes them (with or without the `transformer.` prefix; the `h.N.attn.bias` causal-mask
//! buffers some files carry are ignored). Conv1D weights are `[in, out]`, so they multiply as stored; the
//! unembedding is tied to `wte`; `gelu_new` is GELU's tanh approximation.

use candle_core::{IndexOp, Tensor};
use serde::Deserialize;

use super::hooks::{HookPoint, HookRun};
use super::weights::{LayerNorm, Linear, Weights, attention, causal_mask, gelu_erf, gelu_tanh, split_heads, unembed};
use super::{Family, LanguageModel, ModelInfo, TokenBatch, model_error};
use crate::error::Result;

/// The fields of GPT-2's `config.json` that the forward pass uses.
#[derive(Debug, Clone, Deserialize)]
pub struct Gpt2Config {
    pub vocab_size: usize,
    /// Older configs name it `n_ctx`; current ones write both.
    #[serde(default)]
    pub n_positions: Option<usize>,
    #[serde(default)]
    pub n_ctx: Option<usize>,
    pub n_embd: usize,
    pub n_layer: usize,
    pub n_head: usize,
    #[serde(default)]
    pub n_inner: Option<usize>,
    #[serde(default = "default_activation")]
    pub activation_function: String,
    #[serde(default = "default_eps")]
    pub layer_norm_epsilon: f64,
    #[serde(default = "yes")]
    pub scale_attn_weights: bool,
    /// Mistral/Stanford CRFM GPT-2s divide attention scores by the layer number too; not supported.
    #[serde(default)]
    pub scale_attn_by_inverse_layer_idx: bool,
}

fn default_activation() -> String {
    "gelu_new".into()
}
fn default_eps() -> f64 {
    1e-5
}
fn yes() -> bool {
    true
}

struct Block {
    ln_1: LayerNorm,
    c_attn: Linear,
    c_proj: Linear,
    ln_2: LayerNorm,
    c_fc: Linear,
    mlp_proj: Linear,
}

pub struct Gpt2 {
    info: ModelInfo,
    config: Gpt2Config,
    activation: Activation,
    wte: Tensor,
    wpe: Tensor,
    blocks: Vec<Block>,
    ln_f: LayerNorm,
}

#[derive(Clone, Copy)]
enum Activation {
    GeluNew,
    Gelu,
    Relu,
}

impl Gpt2 {
    pub fn load(name: &str, config: Gpt2Config, weights: Weights) -> Result<Gpt2> {
        let activation = match config.activation_function.as_str() {
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Activation::GeluNew,
            "gelu" => Activation::Gelu,
            "relu" => Activation::Relu,
            other => {
                return Err(model_error(
                    name,
                    format!("activation_function `{other}` is not supported (gelu_new, gelu, relu are)"),
                ));
            }
        };
        if config.scale_attn_by_inverse_layer_idx {
            return Err(model_error(name, "scale_attn_by_inverse_layer_idx is not supported"));
        }
        let (d, n) = (config.n_embd, config.n_layer);
        let positions = config
            .n_positions
            .or(config.n_ctx)
            .ok_or_else(|| model_error(name, "config.json gives neither n_positions nor n_ctx"))?;
        if config.n_head == 0 || d % config.n_head != 0 {
            return Err(model_error(name, format!("n_embd {d} is not a multiple of n_head {}", config.n_head)));
        }
        let d_mlp = config.n_inner.unwrap_or(4 * d);
        let weights = weights.with_prefix_of(&["", "transformer."], "wte.weight")?;
        let eps = config.layer_norm_epsilon;
        let conv = |name: &str, d_in: usize, d_out: usize| -> Result<Linear> {
            Ok(Linear::from_in_out(
                weights.get(&format!("{name}.weight"), &[d_in, d_out])?,
                Some(weights.get(&format!("{name}.bias"), &[d_out])?),
            ))
        };
        let blocks = (0..n)
            .map(|l| {
                Ok(Block {
                    ln_1: LayerNorm::load(&weights, &format!("h.{l}.ln_1"), d, eps)?,
                    c_attn: conv(&format!("h.{l}.attn.c_attn"), d, 3 * d)?,
                    c_proj: conv(&format!("h.{l}.attn.c_proj"), d, d)?,
                    ln_2: LayerNorm::load(&weights, &format!("h.{l}.ln_2"), d, eps)?,
                    c_fc: conv(&format!("h.{l}.mlp.c_fc"), d, d_mlp)?,
                    mlp_proj: conv(&format!("h.{l}.mlp.c_proj"), d_mlp, d)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let wte = weights.get("wte.weight", &[config.vocab_size, d])?;
        let wpe = weights.get("wpe.weight", &[positions, d])?;
        let ln_f = LayerNorm::load(&weights, "ln_f", d, eps)?;
        let info = ModelInfo {
            name: name.to_string(),
            family: Family::Gpt2,
            architecture: "GPT2LMHeadModel".into(),
            layers: n,
            width: d,
            heads: config.n_head,
            kv_heads: config.n_head,
            head_width: d / config.n_head,
            mlp_width: d_mlp,
            vocab_size: config.vocab_size,
            max_positions: positions,
            parameters: weights.stored_parameters(),
            dtype: format!("{:?}", weights.dtype()).to_lowercase(),
            hooks: HookPoint::all(n, true, true),
            notes: vec![format!("activation {}, tied unembedding", config.activation_function)],
            source: String::new(),
            sentence_embedding: None,
            fingerprint: String::new(),
        };
        Ok(Gpt2 { info, config, activation, wte, wpe, blocks, ln_f })
    }
}

impl LanguageModel for Gpt2 {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    fn forward(&self, batch: &TokenBatch, run: &mut HookRun) -> Result<Option<Tensor>> {
        let device = self.wte.device().clone();
        let (b, s) = (batch.batch(), batch.seq());
        let d = self.config.n_embd;
        let ids = batch.ids_tensor(&device)?;
        let embed = self.wte.index_select(&ids.flatten_all()?, 0)?.reshape((b, s, d))?;
        let embed = run.at(HookPoint::Embed, embed)?;
        let positions = Tensor::arange(0u32, s as u32, &device)?;
        let pos = self.wpe.index_select(&positions, 0)?.unsqueeze(0)?.expand((b, s, d))?.contiguous()?;
        let pos = run.at(HookPoint::PosEmbed, pos)?;
        let mask = causal_mask(s, None, self.wte.dtype(), &device)?;
        let heads = self.config.n_head;
        let d_head = d / heads;
        let scale = if self.config.scale_attn_weights { 1.0 / (d_head as f64).sqrt() } else { 1.0 };
        let attention_of = |l: usize, x: &Tensor| -> Result<Tensor> {
            let block = &self.blocks[l];
            let qkv = block.c_attn.forward(&block.ln_1.forward(x)?)?;
            let q = split_heads(&qkv.i((.., .., 0..d))?, heads, d_head)?;
            let k = split_heads(&qkv.i((.., .., d..2 * d))?, heads, d_head)?;
            let v = split_heads(&qkv.i((.., .., 2 * d..3 * d))?, heads, d_head)?;
            block.c_proj.forward(&attention(&q, &k, &v, &mask, scale)?)
        };
        let mlp_hidden = |l: usize, x: &Tensor| -> Result<Tensor> {
            let block = &self.blocks[l];
            let hidden = block.c_fc.forward(&block.ln_2.forward(x)?)?;
            Ok(match self.activation {
                Activation::GeluNew => gelu_tanh(&hidden)?,
                Activation::Gelu => gelu_erf(&hidden)?,
                Activation::Relu => hidden.relu()?,
            })
        };
        run.pre_norm_blocks(
            (embed + pos)?,
            self.blocks.len(),
            attention_of,
            mlp_hidden,
            |l, hidden| self.blocks[l].mlp_proj.forward(hidden),
            |x| self.ln_f.forward(x),
        )
    }

    fn unembed(&self, hidden: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(unembed(hidden, &self.wte)?))
    }
}
