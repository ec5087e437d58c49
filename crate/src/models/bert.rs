//! BERT encoders (the MiniLM family, sentence-transformers models) from the Hugging Face layout: post-LayerNorm
//! blocks, `gelu` = the erf form, absolute positions (at most `max_position_embeddings`, 512 for MiniLM;
//! longer sequences are refused), padded keys masked out. Names with or without the `bert.` prefix; the
//! `embeddings.position_ids` buffer is ignored; there is no LM head. The sentence embedding is the mean of the
//! last hidden states over the real tokens (sentence-transformers' `1_Pooling`), L2-normalised when the
//! folder's `modules.json` lists `Normalize` — not BERT's `pooler`.

use candle_core::Tensor;
use serde::Deserialize;

use super::hooks::{HookPoint, HookRun};
use super::weights::{LayerNorm, Linear, Weights, attention, gelu_erf, padding_mask, split_heads};
use super::{Family, LanguageModel, ModelInfo, TokenBatch, model_error};
use crate::error::Result;

/// The fields of BERT's `config.json` that the forward pass uses.
#[derive(Debug, Clone, Deserialize)]
pub struct BertConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    #[serde(default = "default_act")]
    pub hidden_act: String,
    #[serde(default = "default_positions")]
    pub max_position_embeddings: usize,
    #[serde(default = "default_types")]
    pub type_vocab_size: usize,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    #[serde(default = "default_position_type")]
    pub position_embedding_type: String,
}

fn default_act() -> String {
    "gelu".into()
}
fn default_positions() -> usize {
    512
}
fn default_types() -> usize {
    2
}
fn default_eps() -> f64 {
    1e-12
}
fn default_position_type() -> String {
    "absolute".into()
}

struct Block {
    query: Linear,
    key: Linear,
    value: Linear,
    attn_out: Linear,
    attn_norm: LayerNorm,
    intermediate: Linear,
    output: Linear,
    output_norm: LayerNorm,
}

pub struct Bert {
    info: ModelInfo,
    config: BertConfig,
    word: Tensor,
    position: Tensor,
    token_type: Tensor,
    embed_norm: LayerNorm,
    blocks: Vec<Block>,
}

impl Bert {
    pub fn load(name: &str, config: BertConfig, weights: Weights, normalize: bool) -> Result<Bert> {
        if config.hidden_act != "gelu" {
            return Err(model_error(name, format!("hidden_act `{}` is not supported (gelu is)", config.hidden_act)));
        }
        if config.position_embedding_type != "absolute" {
            return Err(model_error(
                name,
                format!("position_embedding_type `{}` is not supported (absolute is)", config.position_embedding_type),
            ));
        }
        let d = config.hidden_size;
        let heads = config.num_attention_heads;
        if heads == 0 || d % heads != 0 {
            return Err(model_error(name, format!("hidden_size {d} is not a multiple of num_attention_heads {heads}")));
        }
        let weights = weights.with_prefix_of(&["", "bert."], "embeddings.word_embeddings.weight")?;
        let (n, d_mlp, eps) = (config.num_hidden_layers, config.intermediate_size, config.layer_norm_eps);
        let blocks = (0..n)
            .map(|l| {
                let p = format!("encoder.layer.{l}");
                Ok(Block {
                    query: Linear::load(&weights, &format!("{p}.attention.self.query"), d, d, true)?,
                    key: Linear::load(&weights, &format!("{p}.attention.self.key"), d, d, true)?,
                    value: Linear::load(&weights, &format!("{p}.attention.self.value"), d, d, true)?,
                    attn_out: Linear::load(&weights, &format!("{p}.attention.output.dense"), d, d, true)?,
                    attn_norm: LayerNorm::load(&weights, &format!("{p}.attention.output.LayerNorm"), d, eps)?,
                    intermediate: Linear::load(&weights, &format!("{p}.intermediate.dense"), d, d_mlp, true)?,
                    output: Linear::load(&weights, &format!("{p}.output.dense"), d_mlp, d, true)?,
                    output_norm: LayerNorm::load(&weights, &format!("{p}.output.LayerNorm"), d, eps)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let word = weights.get("embeddings.word_embeddings.weight", &[config.vocab_size, d])?;
        let position = weights.get("embeddings.position_embeddings.weight", &[config.max_position_embeddings, d])?;
        let token_type = weights.get("embeddings.token_type_embeddings.weight", &[config.type_vocab_size, d])?;
        let embed_norm = LayerNorm::load(&weights, "embeddings.LayerNorm", d, eps)?;
        let info = ModelInfo {
            name: name.to_string(),
            family: Family::Bert,
            architecture: "BertModel".into(),
            layers: n,
            width: d,
            heads,
            kv_heads: heads,
            head_width: d / heads,
            mlp_width: d_mlp,
            vocab_size: config.vocab_size,
            max_positions: config.max_position_embeddings,
            parameters: weights.stored_parameters(),
            dtype: format!("{:?}", weights.dtype()).to_lowercase(),
            hooks: HookPoint::all(n, true, false),
            notes: vec!["post-LayerNorm blocks, bidirectional attention".into()],
            source: String::new(),
            sentence_embedding: Some(if normalize { "mean pooling, L2-normalised" } else { "mean pooling" }.into()),
            fingerprint: String::new(),
        };
        Ok(Bert { info, config, word, position, token_type, embed_norm, blocks })
    }
}

impl LanguageModel for Bert {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    fn forward(&self, batch: &TokenBatch, run: &mut HookRun) -> Result<Option<Tensor>> {
        let device = self.word.device().clone();
        let dtype = self.word.dtype();
        let (b, s) = (batch.batch(), batch.seq());
        let d = self.config.hidden_size;
        let ids = batch.ids_tensor(&device)?;
        let embed = self.word.index_select(&ids.flatten_all()?, 0)?.reshape((b, s, d))?;
        let embed = run.at(HookPoint::Embed, embed)?;
        let positions = Tensor::arange(0u32, s as u32, &device)?;
        let pos = self.position.index_select(&positions, 0)?.unsqueeze(0)?.expand((b, s, d))?.contiguous()?;
        let pos = run.at(HookPoint::PosEmbed, pos)?;
        let token_type = self.token_type.get(0)?;
        let mut x = self.embed_norm.forward(&(embed + pos)?.broadcast_add(&token_type)?)?;
        let mask = padding_mask(batch.lengths(), s, dtype, &device)?;
        let heads = self.config.num_attention_heads;
        let d_head = d / heads;
        let scale = 1.0 / (d_head as f64).sqrt();
        for (l, block) in self.blocks.iter().enumerate() {
            if !run.wants(HookPoint::ResidPre(l)) {
                return Ok(None);
            }
            x = run.at(HookPoint::ResidPre(l), x)?;
            if !run.wants(HookPoint::AttnOut(l)) {
                return Ok(None);
            }
            let q = split_heads(&block.query.forward(&x)?, heads, d_head)?;
            let k = split_heads(&block.key.forward(&x)?, heads, d_head)?;
            let v = split_heads(&block.value.forward(&x)?, heads, d_head)?;
            let attn = block.attn_out.forward(&attention(&q, &k, &v, &mask, scale)?)?;
            let attn = run.at(HookPoint::AttnOut(l), attn)?;
            x = run.at(HookPoint::ResidMid(l), block.attn_norm.forward(&(attn + x)?)?)?;
            if !run.wants(HookPoint::MlpPost(l)) {
                return Ok(None);
            }
            let hidden = run.at(HookPoint::MlpPost(l), gelu_erf(&block.intermediate.forward(&x)?)?)?;
            let mlp = run.at(HookPoint::MlpOut(l), block.output.forward(&hidden)?)?;
            x = run.at(HookPoint::ResidPost(l), block.output_norm.forward(&(mlp + x)?)?)?;
        }
        Ok(Some(x))
    }

    fn unembed(&self, _hidden: &Tensor) -> Result<Option<Tensor>> {
        Ok(None)
    }
}

/// Whether a sentence-transformers folder's `modules.json` ends with a `Normalize` module.
pub fn normalizes(modules_json: Option<&serde_json::Value>) -> bool {
    modules_json.and_then(|m| m.as_array()).is_some_and(|modules| {
        modules.iter().any(|m| m.get("type").and_then(|t| t.as_str()).is_some_and(|t| t.ends_with(".Normalize")))
    })
}

/// Refuses a sentence-transformers model whose embedding is not what saekit computes: pooling other than
/// the mean of the tokens (`1_Pooling/config.json`), or modules beyond Transformer, Pooling and Normalize
/// (a `Dense` projection, say) in `modules.json`.
pub fn check_pooling(
    name: &str,
    pooling: Option<&serde_json::Value>,
    modules: Option<&serde_json::Value>,
) -> Result<()> {
    if let Some(modules) = modules.and_then(|m| m.as_array()) {
        let known = [".Transformer", ".Pooling", ".Normalize"];
        let other: Vec<&str> = modules
            .iter()
            .filter_map(|m| m.get("type").and_then(|t| t.as_str()))
            .filter(|t| !known.iter().any(|k| t.ends_with(k)))
            .collect();
        if !other.is_empty() {
            return Err(model_error(
                name,
                format!(
                    "modules.json has {}; saekit's sentence embedding is mean pooling (and Normalize) only",
                    other.join(", ")
                ),
            ));
        }
    }
    let Some(pooling) = pooling else { return Ok(()) };
    let modes: Vec<&str> = pooling
        .as_object()
        .map(|o| {
            o.iter()
                .filter(|(k, v)| k.starts_with("pooling_mode_") && v.as_bool() == Some(true))
                .map(|(k, _)| k.as_str())
                .collect()
        })
        .unwrap_or_default();
    if modes == ["pooling_mode_mean_tokens"] {
        Ok(())
    } else {
        Err(model_error(
            name,
            format!(
                "1_Pooling asks for {}; saekit's sentence embedding is mean pooling (pooling_mode_mean_tokens) only",
                if modes.is_empty() { "no pooling mode".to_string() } else { modes.join(", ") }
            ),
        ))
    }
}
