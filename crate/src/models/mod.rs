//! Language models whose activations SAEs are trained on, in pure Rust on candle: GPT-2, the Llama family
//! (Llama, Mistral, Qwen-2) and BERT encoders (MiniLM), loaded from a Hugging Face folder or Hub repository,
//! run to TransformerLens-named hook points ([`HookPoint`]), with hooks read and replaced in one pass.
//!
//! [`Model`] is what a user holds: its [`ModelInfo`] (renders as a model card), its tokenizer, and
//! [`Model::run`], which takes a [`TokenBatch`] and a [`Forward`] (hooks to record, replacements, logits,
//! loss, sentence embedding) and returns a [`ModelOutput`]. Each family implements [`LanguageModel`]: a
//! forward pass that threads its activations through a [`HookRun`]; the loss, logits and pooling are
//! computed here, once for every family.
//!
//! The large matrix products go through OpenBLAS when the system has it ([`blas`]), else candle's `gemm`.
//! Threads: both use `RAYON_NUM_THREADS` threads when it is set, else one per core; set it before starting
//! the process (a kernel's environment) to pin it.

pub mod bert;
pub mod blas;
pub mod files;
pub mod gpt2;
pub mod hooks;
pub mod llama;
mod output;
pub mod table;
pub mod weights;

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;

pub use candle_core::{DType, Device, Tensor};
pub use files::ModelFiles;
pub use hooks::{Forward, HookFn, HookPoint, HookRun};
pub use output::{ModelOutput, TokenBatch};

use crate::error::{Error, Result};
use crate::hub::Hub;
use crate::tokenize::{Tokenization, Tokenizer};

/// The model families saekit runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    Gpt2,
    Llama,
    Bert,
}

impl Family {
    pub fn as_str(self) -> &'static str {
        match self {
            Family::Gpt2 => "gpt2",
            Family::Llama => "llama",
            Family::Bert => "bert",
        }
    }

    /// Whether the model predicts the next token (and so has logits and a loss).
    pub fn is_causal(self) -> bool {
        self != Family::Bert
    }

    /// Whether positions are learned embeddings, so sequences longer than the table are refused.
    fn learned_positions(self) -> bool {
        self != Family::Llama
    }
}

/// What a model is: family, shape, parameters and hook points. Renders as a model card.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ModelInfo {
    pub name: String,
    pub family: Family,
    /// The architecture as Hugging Face names it (`GPT2LMHeadModel`, `Qwen2ForCausalLM`, `BertModel`).
    pub architecture: String,
    pub layers: usize,
    /// `d_model`: the width of the residual stream.
    pub width: usize,
    pub heads: usize,
    /// Key/value heads (fewer than `heads` under grouped-query attention).
    pub kv_heads: usize,
    pub head_width: usize,
    /// `d_mlp`: the width of `mlp.hook_post`.
    pub mlp_width: usize,
    pub vocab_size: usize,
    pub max_positions: usize,
    pub parameters: u64,
    /// The dtype the model computes in.
    pub dtype: String,
    #[serde(serialize_with = "hook_names")]
    pub hooks: Vec<HookPoint>,
    pub notes: Vec<String>,
    /// The folder or repository it was loaded from.
    pub source: String,
    /// How the sentence embedding is pooled (BERT), if the model has one.
    pub sentence_embedding: Option<String>,
    /// What identifies these exact weights, config, tokenizer and compute dtype (see
    /// [`files::fingerprint`]); empty until loaded from files.
    pub fingerprint: String,
}

fn hook_names<S: serde::Serializer>(hooks: &[HookPoint], s: S) -> std::result::Result<S::Ok, S::Error> {
    s.collect_seq(hooks.iter().map(HookPoint::to_string))
}

impl ModelInfo {
    /// The width of the activations at `hook`.
    pub fn hook_width(&self, hook: HookPoint) -> usize {
        match hook {
            HookPoint::MlpPost(_) => self.mlp_width,
            _ => self.width,
        }
    }

    /// The hook names in short form: `hook_embed, blocks.{0..5}.hook_resid_pre, …`.
    pub fn hooks_summary(&self) -> String {
        let mut parts: Vec<String> = Vec::new();
        let in_block: Vec<String> = self
            .hooks
            .iter()
            .filter(|h| h.layer() == Some(0))
            .map(|h| h.to_string().trim_start_matches("blocks.0.").to_string())
            .collect();
        for h in &self.hooks {
            if h.layer().is_none() && *h != HookPoint::FinalNormalized {
                parts.push(h.to_string());
            }
        }
        if self.layers > 0 {
            let range = if self.layers == 1 { "0".to_string() } else { format!("{{0..{}}}", self.layers - 1) };
            parts.push(format!("blocks.{range}.{{{}}}", in_block.join(", ")));
        }
        if self.hooks.contains(&HookPoint::FinalNormalized) {
            parts.push(HookPoint::FinalNormalized.to_string());
        }
        parts.join(", ")
    }
}

/// One model family's forward pass.
pub trait LanguageModel: Send + Sync {
    fn info(&self) -> &ModelInfo;

    /// Runs `batch` through the model, passing every hook point through `run` (which records and replaces)
    /// and stopping once `run` wants nothing further. Returns the final hidden state (after the final norm
    /// in causal families; the last block's output in BERT) when the pass reached the end.
    fn forward(&self, batch: &TokenBatch, run: &mut HookRun) -> Result<Option<Tensor>>;

    /// Logits `[batch, seq, vocab]` of the final hidden state; `None` for a model without an LM head.
    fn unembed(&self, hidden: &Tensor) -> Result<Option<Tensor>>;
}

/// How to load a model: the dtype to compute in (weights stored in another dtype are converted; default
/// f32) and the device (CPU).
#[derive(Debug, Clone)]
pub struct ModelOptions {
    pub dtype: DType,
    pub device: Device,
    pub hub: Option<Hub>,
}

impl Default for ModelOptions {
    fn default() -> Self {
        ModelOptions { dtype: DType::F32, device: Device::Cpu, hub: None }
    }
}

impl ModelOptions {
    /// Computes in `dtype` (`DType::F32`, `DType::BF16`, `DType::F16`).
    pub fn dtype(mut self, dtype: DType) -> ModelOptions {
        self.dtype = dtype;
        self
    }

    /// Fetches Hub repositories through `hub` (default: [`Hub::from_env`]).
    pub fn hub(mut self, hub: Hub) -> ModelOptions {
        self.hub = Some(hub);
        self
    }
}

/// A loaded language model with its tokenizer. Cheap to clone (the weights are shared).
#[derive(Clone)]
pub struct Model {
    inner: Arc<dyn LanguageModel>,
    info: ModelInfo,
    tokenizer: Tokenizer,
    normalize_embedding: bool,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Model({}, {} {}×{})", self.info.name, self.info.family.as_str(), self.info.layers, self.info.width)
    }
}

pub(crate) fn model_error(model: &str, message: impl Into<String>) -> Error {
    Error::Model { model: model.to_string(), message: message.into() }
}

impl Model {
    /// A model from a local folder if `spec` is one, else from the Hub repository `spec` (e.g. `gpt2`).
    pub fn load(spec: &str) -> Result<Model> {
        Model::load_with(spec, &ModelOptions::default())
    }

    /// [`Model::load`] with options (dtype, Hub connection).
    pub fn load_with(spec: &str, options: &ModelOptions) -> Result<Model> {
        let path = Path::new(spec);
        if path.is_dir() {
            return Model::from_files(ModelFiles::from_dir(path)?, options);
        }
        if path.exists() || spec.starts_with('.') || spec.starts_with('/') || spec.split('/').count() > 2 {
            return Err(model_error(spec, "not a model folder (expected a folder with config.json) nor a Hub repo id"));
        }
        let hub = match &options.hub {
            Some(hub) => hub.clone(),
            None => Hub::from_env()?,
        };
        let files = ModelFiles::from_hub(&hub, spec).map_err(|e| match e {
            Error::RepoNotFound { .. } => model_error(spec, format!("no local folder `{spec}`, and on the Hub: {e}")),
            e => e,
        })?;
        Model::from_files(files, options)
    }

    /// A model from files already found.
    pub fn from_files(files: ModelFiles, options: &ModelOptions) -> Result<Model> {
        let name = files.name.clone();
        let config = &files.config;
        let architecture =
            config.get("architectures").and_then(|a| a.get(0)).and_then(|a| a.as_str()).unwrap_or_default().to_string();
        let model_type = config.get("model_type").and_then(|t| t.as_str()).unwrap_or_default().to_string();
        let weights = weights::Weights::open(&name, &files.weights, options.dtype, &options.device)?;
        let normalize_embedding = bert::normalizes(files.modules.as_ref());
        let parse = |what: &str, e: serde_json::Error| -> Error {
            model_error(&name, format!("config.json does not describe a {what} model: {e}"))
        };
        let inner: Arc<dyn LanguageModel> = match (model_type.as_str(), architecture.as_str()) {
            ("gpt2", _) | (_, "GPT2LMHeadModel" | "GPT2Model") => {
                let c: gpt2::Gpt2Config = serde_json::from_value(config.clone()).map_err(|e| parse("GPT-2", e))?;
                Arc::new(gpt2::Gpt2::load(&name, c, weights)?)
            }
            ("llama" | "mistral" | "qwen2", _)
            | (_, "LlamaForCausalLM" | "MistralForCausalLM" | "Qwen2ForCausalLM") => {
                let c: llama::LlamaConfig =
                    serde_json::from_value(config.clone()).map_err(|e| parse("Llama-family", e))?;
                Arc::new(llama::Llama::load(&name, c, weights)?)
            }
            ("bert", _) | (_, "BertModel" | "BertForMaskedLM") => {
                bert::check_pooling(&name, files.pooling.as_ref(), files.modules.as_ref())?;
                let c: bert::BertConfig = serde_json::from_value(config.clone()).map_err(|e| parse("BERT", e))?;
                Arc::new(bert::Bert::load(&name, c, weights, normalize_embedding)?)
            }
            ("gemma" | "gemma2" | "gemma3" | "gemma3_text", _) => {
                return Err(model_error(
                    &name,
                    format!(
                        "architecture {model_type} is not supported yet; Gemma differs from Llama in scaled \
                         embeddings, (1 + w) RMSNorm weights, pre- and post-sublayer norms, GeGLU and logit \
                         soft-capping (see saekit::models::llama)"
                    ),
                ));
            }
            _ => {
                return Err(model_error(
                    &name,
                    format!(
                        "unknown architecture `{}` (model_type `{model_type}`); saekit runs gpt2, llama, mistral, \
                         qwen2 and bert models",
                        if architecture.is_empty() { "?" } else { &architecture }
                    ),
                ));
            }
        };
        let mut info = inner.info().clone();
        info.source = files.dir.display().to_string();
        info.fingerprint = files::fingerprint(&files, options.dtype)?;
        if !architecture.is_empty() {
            info.architecture = architecture;
        }
        let tokenizer = match &files.tokenizer {
            Some(path) => {
                let mut t = Tokenizer::from_file(path)?;
                t.rename(&name);
                t
            }
            None if info.family == Family::Gpt2 && info.vocab_size == 50257 => Tokenizer::gpt2()?,
            None => return Err(model_error(&name, format!("no tokenizer.json in {}", files.dir.display()))),
        };
        Ok(Model { inner, info, tokenizer, normalize_embedding })
    }

    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    /// The dtype the model computes in, from its card's name for it.
    fn info_dtype(&self) -> DType {
        match self.info.dtype.to_ascii_lowercase().as_str() {
            "bf16" | "bfloat16" => DType::BF16,
            "f16" | "float16" => DType::F16,
            _ => DType::F32,
        }
    }

    /// The logits the LM head gives directions `[n, d_model]` in the final residual stream (after the
    /// final norm): `[n, vocab]`, e.g. an SAE latent's decoder row times `W_U`. `None` without an LM head.
    pub fn unembed(&self, directions: &Tensor) -> Result<Option<Tensor>> {
        let (n, d) = directions.dims2()?;
        let hidden = directions.to_dtype(self.info_dtype())?.reshape((1, n, d))?;
        Ok(match self.inner.unembed(&hidden)? {
            Some(logits) => Some(logits.reshape((n, logits.dim(2)?))?.to_dtype(DType::F32)?),
            None => None,
        })
    }

    pub fn name(&self) -> &str {
        &self.info.name
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// The hook point named `name`, if this model has it (else an error listing the ones it has).
    pub fn hook(&self, name: &str) -> Result<HookPoint> {
        let unknown = || Error::UnknownHook {
            model: self.info.name.clone(),
            hook: name.to_string(),
            available: self.info.hooks_summary(),
        };
        let point: HookPoint = name.parse().map_err(|_| unknown())?;
        if self.info.hooks.contains(&point) { Ok(point) } else { Err(unknown()) }
    }

    /// Encodes `texts` with the model's tokenizer, adding its special tokens as its post-processor says
    /// (BERT's `[CLS] … [SEP]`), into a right-padded batch.
    pub fn encode<S: AsRef<str>>(&self, texts: &[S]) -> Result<TokenBatch> {
        let sequences =
            texts.iter().map(|t| self.tokenizer.encode_with_special_tokens(t.as_ref())).collect::<Result<Vec<_>>>()?;
        TokenBatch::new(&sequences)
    }

    /// Refuses tokens made by another tokenizer than the model's, naming both.
    pub fn check_tokens(&self, tokenization: &Tokenization) -> Result<()> {
        tokenization.check_tokenizer(&self.tokenizer)
    }

    /// Runs `batch` through the model as `forward` asks.
    pub fn run(&self, batch: &TokenBatch, forward: &Forward) -> Result<ModelOutput> {
        let info = &self.info;
        if self.info.family.learned_positions() && batch.seq() > info.max_positions {
            return Err(model_error(
                &info.name,
                format!(
                    "a sequence of {} tokens is longer than the model's {} positions; cut it (e.g. tokenize with \
                     max_length {})",
                    batch.seq(),
                    info.max_positions,
                    info.max_positions
                ),
            ));
        }
        if let Some(&bad) = batch.ids().iter().find(|&&id| id as usize >= info.vocab_size) {
            return Err(model_error(
                &info.name,
                format!("token id {bad} is outside the model's vocabulary of {}", info.vocab_size),
            ));
        }
        let causal_only = |what: &str| -> Result<()> {
            if info.family.is_causal() {
                Ok(())
            } else {
                Err(model_error(
                    &info.name,
                    format!("{what} needs a causal LM; {} is an encoder", info.family.as_str()),
                ))
            }
        };
        if forward.logits {
            causal_only("logits")?;
        }
        if forward.loss {
            causal_only("the next-token loss")?;
        }
        if forward.embedding && info.sentence_embedding.is_none() {
            return Err(model_error(&info.name, "this model has no sentence embedding (BERT encoders do)"));
        }
        if forward.loss && batch.lengths().iter().all(|&l| l < 2) {
            return Err(model_error(&info.name, "the next-token loss needs a sequence of at least 2 tokens"));
        }
        let mut replaced = BTreeSet::new();
        for (hook, _) in &forward.replace {
            if !replaced.insert(self.hook(hook)?) {
                return Err(Error::InvalidArgument(format!(
                    "{hook} is replaced twice in one pass; compose the two functions into one replacement"
                )));
            }
        }
        let capture: BTreeSet<HookPoint> = forward.hooks.iter().map(|h| self.hook(h)).collect::<Result<_>>()?;
        let replace: HashMap<HookPoint, HookFn> =
            forward.replace.iter().map(|(h, f)| Ok((self.hook(h)?, f.clone()))).collect::<Result<_>>()?;
        let to_the_end = forward.logits || forward.loss || forward.embedding;
        let mut run = HookRun::new(capture, replace, to_the_end);
        let hidden = self.inner.forward(batch, &mut run)?;
        let mut out = ModelOutput::new(&info.name, batch, run.into_recorded());
        if let Some(hidden) = hidden.filter(|_| to_the_end) {
            if forward.logits || forward.loss {
                let logits = self.inner.unembed(&hidden)?.ok_or_else(|| model_error(&info.name, "no LM head"))?;
                if forward.loss {
                    let (loss, per_token) = output::next_token_loss(&info.name, &logits, batch)?;
                    out.loss = Some(loss);
                    out.token_losses = Some(per_token);
                }
                if forward.logits {
                    out.logits = Some(logits);
                }
            }
            if forward.embedding {
                out.embedding = Some(output::mean_pool(&hidden, batch, self.normalize_embedding)?);
            }
        }
        Ok(out)
    }
}
