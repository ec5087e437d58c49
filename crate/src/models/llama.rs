//! The Llama family: Llama 2/3, Mistral and Qwen-2/2.5, from `config.json` as Hugging Face writes it and
//! `model.safetensors` (or shards) with `LlamaForCausalLM` names. RMSNorm, rotary position embeddings in
//! the "rotate half" layout (with Llama 3's and linear `rope_scaling`), grouped-query attention, SwiGLU
//! MLP; Qwen-2 adds biases on q/k/v, Mistral a sliding attention window.
//!
//! Gemma-2 would add, beyond this: embeddings scaled by `sqrt(hidden_size)`, RMSNorm weights stored as
//! `w − 1` (applied as `1 + w`), four norms per block (pre and post each sublayer), GeGLU (tanh GELU) in
//! place of SwiGLU, attention and final-logit soft-capping (`cap · tanh(x / cap)`), a query scale from
//! `query_pre_attn_scalar`, and sliding-window attention on alternate layers.

use candle_core::{DType, Device, Tensor};
use serde::Deserialize;

use super::hooks::{HookPoint, HookRun};
use super::weights::{Linear, RmsNorm, Weights, attention, causal_mask, split_heads, unembed};
use super::{Family, LanguageModel, ModelInfo, TokenBatch, model_error};
use crate::error::Result;

/// The fields of a Llama-family `config.json` that the forward pass uses.
#[derive(Debug, Clone, Deserialize)]
pub struct LlamaConfig {
    #[serde(default)]
    pub model_type: String,
    #[serde(default)]
    pub architectures: Vec<String>,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    #[serde(default)]
    pub num_key_value_heads: Option<usize>,
    #[serde(default)]
    pub head_dim: Option<usize>,
    #[serde(default = "default_eps")]
    pub rms_norm_eps: f64,
    #[serde(default)]
    pub rope_theta: Option<f64>,
    #[serde(default)]
    pub rope_scaling: Option<serde_json::Value>,
    /// Newer transformers write θ and the scaling together here instead.
    #[serde(default)]
    pub rope_parameters: Option<serde_json::Value>,
    #[serde(default = "default_positions")]
    pub max_position_embeddings: usize,
    #[serde(default)]
    pub tie_word_embeddings: bool,
    #[serde(default)]
    pub attention_bias: Option<bool>,
    #[serde(default)]
    pub mlp_bias: bool,
    #[serde(default = "default_act")]
    pub hidden_act: String,
    #[serde(default)]
    pub sliding_window: Option<usize>,
    #[serde(default)]
    pub use_sliding_window: Option<bool>,
}

fn default_eps() -> f64 {
    1e-6
}
fn default_positions() -> usize {
    2048
}
fn default_act() -> String {
    "silu".into()
}

struct Block {
    input_norm: RmsNorm,
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    post_norm: RmsNorm,
    gate: Linear,
    up: Linear,
    down: Linear,
}

pub struct Llama {
    info: ModelInfo,
    config: LlamaConfig,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    window: Option<usize>,
    inv_freq: Vec<f32>,
    embed: Tensor,
    blocks: Vec<Block>,
    norm: RmsNorm,
    lm_head: Tensor,
}

impl Llama {
    pub fn load(name: &str, mut config: LlamaConfig, weights: Weights) -> Result<Llama> {
        if config.model_type.is_empty() {
            config.model_type = match config.architectures.first().map(String::as_str) {
                Some("Qwen2ForCausalLM") => "qwen2",
                Some("MistralForCausalLM") => "mistral",
                _ => "llama",
            }
            .into();
        }
        let qwen2 = config.model_type == "qwen2";
        if qwen2 && config.use_sliding_window == Some(true) {
            return Err(model_error(
                name,
                "Qwen-2 with use_sliding_window (a window on the layers past max_window_layers) is not supported",
            ));
        }
        let parameters = config.rope_parameters.as_ref();
        let theta = config
            .rope_theta
            .or_else(|| parameters.and_then(|p| p.get("rope_theta")).and_then(serde_json::Value::as_f64))
            .unwrap_or(10_000.0);
        let scaling = config.rope_scaling.clone().or_else(|| parameters.cloned());
        if config.hidden_act != "silu" {
            return Err(model_error(name, format!("hidden_act `{}` is not supported (silu is)", config.hidden_act)));
        }
        let d = config.hidden_size;
        let heads = config.num_attention_heads;
        let kv_heads = config.num_key_value_heads.unwrap_or(heads);
        let head_dim = config.head_dim.unwrap_or(d / heads.max(1));
        if heads == 0 || kv_heads == 0 || heads % kv_heads != 0 {
            return Err(model_error(
                name,
                format!("num_attention_heads {heads} is not a multiple of num_key_value_heads {kv_heads}"),
            ));
        }
        let inv_freq = rope_frequencies(name, head_dim, theta, scaling.as_ref())?;
        // Qwen-2 has biases on q/k/v only; Llama's `attention_bias` puts them on o_proj too.
        let qkv_bias = config.attention_bias.unwrap_or(qwen2);
        let o_bias = !qwen2 && config.attention_bias == Some(true);
        let window = if qwen2 { None } else { config.sliding_window };
        let weights = weights.with_prefix_of(&["model.", ""], "embed_tokens.weight")?;
        let (n, d_mlp) = (config.num_hidden_layers, config.intermediate_size);
        let eps = config.rms_norm_eps;
        let blocks = (0..n)
            .map(|l| {
                let p = format!("layers.{l}");
                Ok(Block {
                    input_norm: RmsNorm::load(&weights, &format!("{p}.input_layernorm"), d, eps)?,
                    q: Linear::load(&weights, &format!("{p}.self_attn.q_proj"), d, heads * head_dim, qkv_bias)?,
                    k: Linear::load(&weights, &format!("{p}.self_attn.k_proj"), d, kv_heads * head_dim, qkv_bias)?,
                    v: Linear::load(&weights, &format!("{p}.self_attn.v_proj"), d, kv_heads * head_dim, qkv_bias)?,
                    o: Linear::load(&weights, &format!("{p}.self_attn.o_proj"), heads * head_dim, d, o_bias)?,
                    post_norm: RmsNorm::load(&weights, &format!("{p}.post_attention_layernorm"), d, eps)?,
                    gate: Linear::load(&weights, &format!("{p}.mlp.gate_proj"), d, d_mlp, config.mlp_bias)?,
                    up: Linear::load(&weights, &format!("{p}.mlp.up_proj"), d, d_mlp, config.mlp_bias)?,
                    down: Linear::load(&weights, &format!("{p}.mlp.down_proj"), d_mlp, d, config.mlp_bias)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let embed = weights.get("embed_tokens.weight", &[config.vocab_size, d])?;
        let norm = RmsNorm::load(&weights, "norm", d, eps)?;
        // `lm_head` sits outside the `model.` prefix in HF files.
        let untied = weights.get_unprefixed_opt("lm_head.weight", &[config.vocab_size, d])?;
        let tied = untied.is_none();
        if tied && !config.tie_word_embeddings {
            return Err(model_error(
                name,
                "weights have no `lm_head.weight` and config.json does not set tie_word_embeddings".to_string(),
            ));
        }
        let lm_head = untied.unwrap_or_else(|| embed.clone());
        let mut notes = vec![format!(
            "rope θ {}{}, {}",
            theta,
            scaling
                .as_ref()
                .and_then(|s| s.get("rope_type").or(s.get("type")))
                .and_then(|t| t.as_str())
                .filter(|t| *t != "default")
                .map_or(String::new(), |t| format!(" ({t} scaling)")),
            if tied { "tied unembedding" } else { "separate unembedding" }
        )];
        if qkv_bias {
            notes.push("q/k/v biases".into());
        }
        if let Some(w) = window {
            notes.push(format!("sliding window {w}"));
        }
        let info = ModelInfo {
            name: name.to_string(),
            family: Family::Llama,
            architecture: config.architectures.first().cloned().unwrap_or_else(|| {
                match config.model_type.as_str() {
                    "qwen2" => "Qwen2ForCausalLM",
                    "mistral" => "MistralForCausalLM",
                    _ => "LlamaForCausalLM",
                }
                .into()
            }),
            layers: n,
            width: d,
            heads,
            kv_heads,
            head_width: head_dim,
            mlp_width: d_mlp,
            vocab_size: config.vocab_size,
            max_positions: config.max_position_embeddings,
            parameters: weights.stored_parameters(),
            dtype: format!("{:?}", weights.dtype()).to_lowercase(),
            hooks: HookPoint::all(n, false, true),
            notes,
            source: String::new(),
            sentence_embedding: None,
            fingerprint: String::new(),
        };
        Ok(Llama { info, config, heads, kv_heads, head_dim, window, inv_freq, embed, blocks, norm, lm_head })
    }

    /// cos and sin `[s, head_dim/2]` for positions `0..s`.
    fn rotary(&self, s: usize, dtype: DType, device: &Device) -> Result<(Tensor, Tensor)> {
        let half = self.inv_freq.len();
        let mut cos = Vec::with_capacity(s * half);
        let mut sin = Vec::with_capacity(s * half);
        for p in 0..s {
            for &f in &self.inv_freq {
                let angle = p as f64 * f as f64;
                cos.push(angle.cos() as f32);
                sin.push(angle.sin() as f32);
            }
        }
        let cos = Tensor::from_vec(cos, (s, half), device)?.to_dtype(dtype)?;
        let sin = Tensor::from_vec(sin, (s, half), device)?.to_dtype(dtype)?;
        Ok((cos, sin))
    }
}

/// RoPE's inverse frequencies `θ^(−2i/d)`, adjusted as `rope_scaling` asks (`llama3`, `linear`).
fn rope_frequencies(name: &str, head_dim: usize, theta: f64, scaling: Option<&serde_json::Value>) -> Result<Vec<f32>> {
    let base: Vec<f64> = (0..head_dim / 2).map(|i| 1.0 / theta.powf(2.0 * i as f64 / head_dim as f64)).collect();
    let Some(scaling) = scaling.filter(|s| !s.is_null()) else {
        return Ok(base.into_iter().map(|f| f as f32).collect());
    };
    let kind = scaling.get("rope_type").or_else(|| scaling.get("type")).and_then(|t| t.as_str()).unwrap_or("default");
    let number = |key: &str| -> Result<f64> {
        scaling
            .get(key)
            .and_then(serde_json::Value::as_f64)
            .ok_or_else(|| model_error(name, format!("rope_scaling of type {kind} needs a number `{key}`")))
    };
    let scaled: Vec<f64> = match kind {
        "default" => base,
        "linear" => {
            let factor = number("factor")?;
            base.into_iter().map(|f| f / factor).collect()
        }
        "llama3" => {
            let factor = number("factor")?;
            let low = number("low_freq_factor")?;
            let high = number("high_freq_factor")?;
            let original = number("original_max_position_embeddings")?;
            let low_wavelen = original / low;
            let high_wavelen = original / high;
            base.into_iter()
                .map(|f| {
                    let wavelen = 2.0 * std::f64::consts::PI / f;
                    if wavelen < high_wavelen {
                        f
                    } else if wavelen > low_wavelen {
                        f / factor
                    } else {
                        let smooth = (original / wavelen - low) / (high - low);
                        (1.0 - smooth) * f / factor + smooth * f
                    }
                })
                .collect()
        }
        other => {
            return Err(model_error(
                name,
                format!("rope_scaling type `{other}` is not supported (default, linear and llama3 are)"),
            ));
        }
    };
    Ok(scaled.into_iter().map(|f| f as f32).collect())
}

impl LanguageModel for Llama {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    fn forward(&self, batch: &TokenBatch, run: &mut HookRun) -> Result<Option<Tensor>> {
        let device = self.embed.device().clone();
        let dtype = self.embed.dtype();
        let (b, s) = (batch.batch(), batch.seq());
        let d = self.config.hidden_size;
        let ids = batch.ids_tensor(&device)?;
        let embed = self.embed.index_select(&ids.flatten_all()?, 0)?.reshape((b, s, d))?;
        let x = run.at(HookPoint::Embed, embed)?;
        let mask = causal_mask(s, self.window, dtype, &device)?;
        let (cos, sin) = self.rotary(s, dtype, &device)?;
        let scale = 1.0 / (self.head_dim as f64).sqrt();
        let attention_of = |l: usize, x: &Tensor| -> Result<Tensor> {
            let block = &self.blocks[l];
            let h = block.input_norm.forward(x)?;
            let q = split_heads(&block.q.forward(&h)?, self.heads, self.head_dim)?;
            let k = split_heads(&block.k.forward(&h)?, self.kv_heads, self.head_dim)?;
            let v = split_heads(&block.v.forward(&h)?, self.kv_heads, self.head_dim)?;
            let q = candle_nn::rotary_emb::rope(&q, &cos, &sin)?;
            let k = candle_nn::rotary_emb::rope(&k, &cos, &sin)?;
            block.o.forward(&attention(&q, &k, &v, &mask, scale)?)
        };
        let mlp_hidden = |l: usize, x: &Tensor| -> Result<Tensor> {
            let block = &self.blocks[l];
            let h = block.post_norm.forward(x)?;
            Ok((candle_nn::ops::silu(&block.gate.forward(&h)?)? * block.up.forward(&h)?)?)
        };
        run.pre_norm_blocks(
            x,
            self.blocks.len(),
            attention_of,
            mlp_hidden,
            |l, hidden| self.blocks[l].down.forward(hidden),
            |x| self.norm.forward(x),
        )
    }

    fn unembed(&self, hidden: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(unembed(hidden, &self.lm_head)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn llama3_scaling_keeps_high_frequencies_and_divides_low_ones() {
        let scaling = serde_json::json!({"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
            "high_freq_factor": 4.0, "original_max_position_embeddings": 8192});
        let plain = rope_frequencies("m", 128, 500_000.0, None).unwrap();
        let scaled = rope_frequencies("m", 128, 500_000.0, Some(&scaling)).unwrap();
        assert_eq!(plain[0], scaled[0], "the highest frequency is kept");
        assert!((scaled[63] - plain[63] / 8.0).abs() < 1e-12, "the lowest is divided by the factor");
        let e = rope_frequencies("m", 128, 1e4, Some(&serde_json::json!({"rope_type": "yarn"}))).unwrap_err();
        assert!(e.to_string().contains("yarn"), "{e}");
    }
}
