//! Sparse autoencoders in SAELens' layout: a folder with `cfg.json`, `sae_weights.safetensors` (exactly
//! `W_enc` [d_in, d_sae], `b_enc` [d_sae], `W_dec` [d_sae, d_in], `b_dec` [d_in]) and optionally
//! `sparsity.safetensors` (one tensor `sparsity` [d_sae], log10 firing fractions). saekit writes what SAELens
//! 6 loads (`metadata.sae_lens_version` ≥ 6.0.0, or SAELens reads the folder as a legacy one) and reads what
//! SAELens writes, from a folder or a Hub repository.
//!
//! Architectures are registered by name ([`Architecture`]): `standard` (ReLU) and `topk` (the k largest
//! pre-activations, then ReLU of the kept values, the rest zero, as SAELens and OpenAI's reference do).
//! Both subtract `b_dec` from the input first when `apply_b_dec_to_input`.
//!
//! Rooms: this module (the SAE and its files), [`train`] (one SAE's step, optimiser and checkpoint),
//! [`run`] (several SAEs trained from one activation pass, as a catalog artifact, with checkpoints and
//! resume), [`history`] (the metrics history as Parquet), [`table`] (the run's catalog record).

pub mod blas;
pub mod compare;
pub mod eval;
pub mod features;
pub mod history;
pub mod run;
pub(crate) mod step;
pub mod table;
pub mod train;

pub use compare::Comparison;
pub use eval::{Evaluation, SaeEvaluation};
pub use features::{FeatureAtlas, FeatureView};
pub use history::HistoryRow;
pub use run::{RunConfig, RunHistory, SaeRun, SaeRunSpec, SaeSpec};
pub use table::{SAE_RUN_KIND, SaeSummary};

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::display::{Card, MimeBundle, Render};
use crate::error::{Error, Result};
use crate::hub::Hub;
use crate::units::count;

/// The SAELens version saekit's files claim to be compatible with (SAELens 6's layout).
pub const SAE_LENS_VERSION: &str = "6.0.0";
pub const CONFIG_FILE: &str = "cfg.json";
pub const WEIGHTS_FILE: &str = "sae_weights.safetensors";
pub const SPARSITY_FILE: &str = "sparsity.safetensors";

/// How an SAE turns pre-activations into latents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Architecture {
    /// ReLU.
    Standard,
    /// The `k` largest pre-activations of each token, then ReLU; every other latent is zero.
    TopK { k: usize },
}

impl Architecture {
    /// The names SAELens' `cfg.json` uses, for the architectures saekit runs.
    pub const NAMES: [&'static str; 2] = ["standard", "topk"];

    pub fn name(self) -> &'static str {
        match self {
            Architecture::Standard => "standard",
            Architecture::TopK { .. } => "topk",
        }
    }

    /// The architecture `name` with `k` (for TopK; SAELens' default is 100).
    pub fn by_name(name: &str, k: Option<usize>) -> Result<Architecture> {
        match name {
            "standard" => Ok(Architecture::Standard),
            "topk" => Ok(Architecture::TopK { k: k.unwrap_or(100) }),
            other => Err(Error::InvalidArgument(format!(
                "SAE architecture `{other}` is not supported yet; saekit runs {}",
                Architecture::NAMES.join(", ")
            ))),
        }
    }
}

/// What the SAE was trained on, as SAELens' `metadata` names it (unknown keys are kept).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SaeMetadata {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hook_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hook_head_index: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_size: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prepend_bos: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exclude_special_tokens: Option<Value>,
    #[serde(default)]
    pub sae_lens_version: Option<String>,
    #[serde(flatten)]
    pub extra: serde_json::Map<String, Value>,
}

/// An SAE's `cfg.json`, in SAELens' names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SaeConfig {
    pub d_in: usize,
    pub d_sae: usize,
    pub architecture: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub k: Option<usize>,
    pub dtype: String,
    #[serde(default = "cpu")]
    pub device: String,
    #[serde(default = "yes")]
    pub apply_b_dec_to_input: bool,
    #[serde(default = "none")]
    pub normalize_activations: String,
    #[serde(default = "none")]
    pub reshape_activations: String,
    #[serde(default)]
    pub metadata: SaeMetadata,
}

fn cpu() -> String {
    "cpu".into()
}
fn yes() -> bool {
    true
}
fn none() -> String {
    "none".into()
}

impl SaeConfig {
    /// A config for a new SAE: f32, `b_dec` applied to the input, no normalisation.
    pub fn new(d_in: usize, d_sae: usize, architecture: Architecture) -> SaeConfig {
        SaeConfig {
            d_in,
            d_sae,
            architecture: architecture.name().into(),
            k: match architecture {
                Architecture::TopK { k } => Some(k),
                Architecture::Standard => None,
            },
            dtype: "float32".into(),
            device: cpu(),
            apply_b_dec_to_input: true,
            normalize_activations: none(),
            reshape_activations: none(),
            metadata: SaeMetadata { sae_lens_version: Some(SAE_LENS_VERSION.into()), ..Default::default() },
        }
    }

    pub fn architecture(&self) -> Result<Architecture> {
        Architecture::by_name(&self.architecture, self.k)
    }
}

/// A sparse autoencoder's weights and config.
#[derive(Debug, Clone)]
pub struct Sae {
    pub config: SaeConfig,
    /// `[d_in, d_sae]`
    pub w_enc: Tensor,
    /// `[d_sae]`
    pub b_enc: Tensor,
    /// `[d_sae, d_in]`
    pub w_dec: Tensor,
    /// `[d_in]`
    pub b_dec: Tensor,
    /// `[d_sae]`: log10 of each latent's firing fraction, when known.
    pub sparsity: Option<Tensor>,
    /// Where it was loaded from.
    pub source: Option<String>,
}

/// Deterministic uniform numbers in [-1, 1) from `seed` (SplitMix64), for initialisation (and benchmarks'
/// random activations).
pub fn uniform(n: usize, seed: u64) -> Vec<f32> {
    let mut state = seed;
    (0..n)
        .map(|_| {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            (z >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}

fn sae_error(what: impl AsRef<Path>, message: impl Into<String>) -> Error {
    Error::format(what, message.into())
}

impl Sae {
    /// The same SAE with its tensors on `device`.
    pub fn to_device(&self, device: &Device) -> Result<Sae> {
        Ok(Sae {
            w_enc: self.w_enc.to_device(device)?,
            b_enc: self.b_enc.to_device(device)?,
            w_dec: self.w_dec.to_device(device)?,
            b_dec: self.b_dec.to_device(device)?,
            sparsity: self.sparsity.as_ref().map(|t| t.to_device(device)).transpose()?,
            ..self.clone()
        })
    }

    /// A new SAE initialised as SAELens 6 does: decoder rows uniform (Kaiming's bound) rescaled to norm
    /// `decoder_norm` (SAELens: 0.1), `W_enc = W_decᵀ`, both biases zero.
    pub fn new(config: SaeConfig, decoder_norm: f32, seed: u64) -> Result<Sae> {
        config.architecture()?;
        let (d_in, d_sae) = (config.d_in, config.d_sae);
        if d_in == 0 || d_sae == 0 {
            return Err(Error::InvalidArgument(format!("an SAE needs d_in and d_sae above 0 (got {d_in}, {d_sae})")));
        }
        let mut w = uniform(d_sae * d_in, seed);
        for row in w.chunks_mut(d_in) {
            let norm = row.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
            for x in row.iter_mut() {
                *x *= decoder_norm / norm;
            }
        }
        let w_dec = Tensor::from_vec(w, (d_sae, d_in), &Device::Cpu)?;
        Ok(Sae {
            w_enc: w_dec.t()?.contiguous()?,
            b_enc: Tensor::zeros(d_sae, DType::F32, &Device::Cpu)?,
            w_dec,
            b_dec: Tensor::zeros(d_in, DType::F32, &Device::Cpu)?,
            sparsity: None,
            source: None,
            config,
        })
    }

    pub fn architecture(&self) -> Architecture {
        self.config.architecture().unwrap_or(Architecture::Standard)
    }

    /// Latents of `x` `[n, d_in]`: `[n, d_sae]`, f32.
    pub fn encode(&self, x: &Tensor) -> Result<Tensor> {
        let x = x.to_dtype(DType::F32)?;
        if x.dims().len() != 2 || x.dim(1)? != self.config.d_in {
            return Err(Error::InvalidArgument(format!(
                "an SAE with d_in {} encodes [tokens, {}], not {:?}",
                self.config.d_in,
                self.config.d_in,
                x.dims()
            )));
        }
        let x = if self.config.apply_b_dec_to_input { x.broadcast_sub(&self.b_dec)? } else { x };
        let pre = x.matmul(&self.w_enc)?.broadcast_add(&self.b_enc)?;
        match self.architecture() {
            Architecture::Standard => Ok(pre.relu()?),
            Architecture::TopK { k } => top_k_relu(&pre, k),
        }
    }

    /// The reconstruction of latents `[n, d_sae]`: `[n, d_in]`.
    pub fn decode(&self, latents: &Tensor) -> Result<Tensor> {
        Ok(latents.matmul(&self.w_dec)?.broadcast_add(&self.b_dec)?)
    }

    /// (latents, reconstruction) of `x`.
    pub fn forward(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        let latents = self.encode(x)?;
        let reconstruction = self.decode(&latents)?;
        Ok((latents, reconstruction))
    }

    /// Writes the SAELens layout into `dir` (created if needed); each file under a temporary name, renamed
    /// when complete.
    pub fn save(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let mut config = self.config.clone();
        config.dtype = "float32".into();
        if config.metadata.sae_lens_version.is_none() {
            config.metadata.sae_lens_version = Some(SAE_LENS_VERSION.into());
        }
        let text = serde_json::to_string_pretty(&config).map_err(|e| Error::format(dir.join(CONFIG_FILE), e))?;
        crate::files::write_atomically(&dir.join(CONFIG_FILE), text.as_bytes())?;
        let tensors: HashMap<String, Tensor> =
            [("W_enc", &self.w_enc), ("b_enc", &self.b_enc), ("W_dec", &self.w_dec), ("b_dec", &self.b_dec)]
                .into_iter()
                .map(|(n, t)| Ok((n.to_string(), t.to_dtype(DType::F32)?.contiguous()?)))
                .collect::<Result<_>>()?;
        save_safetensors(&tensors, &dir.join(WEIGHTS_FILE))?;
        if let Some(s) = &self.sparsity {
            let tensors = HashMap::from([("sparsity".to_string(), s.to_dtype(DType::F32)?.contiguous()?)]);
            save_safetensors(&tensors, &dir.join(SPARSITY_FILE))?;
        }
        Ok(())
    }

    /// Reads an SAELens-layout folder, strictly: the four tensors with their shapes and nothing else.
    pub fn load(dir: &Path) -> Result<Sae> {
        let config_path = dir.join(CONFIG_FILE);
        let text = std::fs::read_to_string(&config_path).map_err(|e| Error::io(&config_path, e))?;
        let config: SaeConfig = serde_json::from_str(&text).map_err(|e| {
            sae_error(&config_path, format!("not an SAELens cfg.json (needs d_in, d_sae, architecture, dtype): {e}"))
        })?;
        config.architecture().map_err(|e| sae_error(&config_path, e.to_string()))?;
        if config.normalize_activations != "none" {
            return Err(sae_error(
                &config_path,
                format!(
                    "normalize_activations `{}` is not supported yet (saekit folds normalisation into the weights \
                     and writes \"none\")",
                    config.normalize_activations
                ),
            ));
        }
        if config.reshape_activations != "none" {
            return Err(sae_error(
                &config_path,
                format!("reshape_activations `{}` is not supported", config.reshape_activations),
            ));
        }
        let weights_path = dir.join(WEIGHTS_FILE);
        let mut tensors = candle_core::safetensors::load(&weights_path, &Device::Cpu)
            .map_err(|e| sae_error(&weights_path, format!("unreadable safetensors: {e}")))?;
        let (d_in, d_sae) = (config.d_in, config.d_sae);
        let expected: [(&str, Vec<usize>); 4] =
            [("W_enc", vec![d_in, d_sae]), ("b_enc", vec![d_sae]), ("W_dec", vec![d_sae, d_in]), ("b_dec", vec![d_in])];
        let mut extra: Vec<String> =
            tensors.keys().filter(|k| !expected.iter().any(|(n, _)| n == k)).cloned().collect();
        extra.sort();
        if !extra.is_empty() {
            return Err(sae_error(
                &weights_path,
                format!("unexpected tensors {} (SAELens loads strictly)", extra.join(", ")),
            ));
        }
        let mut take = |name: &str, shape: &[usize]| -> Result<Tensor> {
            let t = tensors.remove(name).ok_or_else(|| sae_error(&weights_path, format!("no tensor `{name}`")))?;
            if t.dims() != shape {
                return Err(sae_error(
                    &weights_path,
                    format!("`{name}` is {:?}, expected {shape:?} for d_in {d_in}, d_sae {d_sae}", t.dims()),
                ));
            }
            Ok(t.to_dtype(DType::F32)?)
        };
        let (w_enc, b_enc, w_dec, b_dec) = (
            take("W_enc", &expected[0].1)?,
            take("b_enc", &expected[1].1)?,
            take("W_dec", &expected[2].1)?,
            take("b_dec", &expected[3].1)?,
        );
        let sparsity_path = dir.join(SPARSITY_FILE);
        let sparsity = if sparsity_path.is_file() {
            let mut s = candle_core::safetensors::load(&sparsity_path, &Device::Cpu)
                .map_err(|e| sae_error(&sparsity_path, format!("unreadable safetensors: {e}")))?;
            let t = s.remove("sparsity").ok_or_else(|| sae_error(&sparsity_path, "no tensor `sparsity`"))?;
            if t.dims() != [d_sae] {
                return Err(sae_error(&sparsity_path, format!("`sparsity` is {:?}, expected [{d_sae}]", t.dims())));
            }
            Some(t.to_dtype(DType::F32)?)
        } else {
            None
        };
        Ok(Sae { config, w_enc, b_enc, w_dec, b_dec, sparsity, source: Some(dir.display().to_string()) })
    }

    /// An SAE from a Hub model repository, in `subfolder` (published SAEs keep one folder per hook, e.g.
    /// `blocks.8.hook_resid_pre`; empty for the repository's root), fetched into the HF cache.
    pub fn from_hub(hub: &Hub, repo_id: &str, subfolder: &str) -> Result<Sae> {
        let repo = hub.model(repo_id);
        let prefix = if subfolder.trim_matches('/').is_empty() {
            String::new()
        } else {
            format!("{}/", subfolder.trim_matches('/'))
        };
        let config = repo.file(&format!("{prefix}{CONFIG_FILE}"))?;
        repo.file(&format!("{prefix}{WEIGHTS_FILE}"))?;
        let info = repo.info()?;
        if info.files.iter().any(|f| f.path == format!("{prefix}{SPARSITY_FILE}")) {
            repo.file(&format!("{prefix}{SPARSITY_FILE}"))?;
        }
        let dir: PathBuf = config.parent().map(Path::to_path_buf).unwrap_or_default();
        let mut sae = Sae::load(&dir)?;
        sae.source = Some(format!("{repo_id}/{}", subfolder.trim_matches('/')).trim_end_matches('/').to_string());
        Ok(sae)
    }

    /// Parameters (the four tensors' elements).
    pub fn parameters(&self) -> u64 {
        let (d_in, d_sae) = (self.config.d_in as u64, self.config.d_sae as u64);
        2 * d_in * d_sae + d_in + d_sae
    }

    /// An SAE trained on inputs scaled by `scale` (`expected_average_only_in`: √d_in / mean‖x‖), as one
    /// that takes the raw inputs and gives raw reconstructions, with the same latents: `W_enc · scale`,
    /// `W_dec / scale`, `b_dec / scale` (`b_enc` unchanged). Its config says `normalize_activations: "none"`.
    pub fn fold_input_scale(&self, scale: f64) -> Result<Sae> {
        if !(scale.is_finite() && scale > 0.0) {
            return Err(Error::InvalidArgument(format!("an input scale must be finite and above 0, not {scale}")));
        }
        let mut sae = self.clone();
        sae.w_enc = (&self.w_enc * scale)?;
        sae.w_dec = (&self.w_dec / scale)?;
        sae.b_dec = (&self.b_dec / scale)?;
        sae.config.normalize_activations = none();
        Ok(sae)
    }
}

fn save_safetensors(tensors: &HashMap<String, Tensor>, path: &Path) -> Result<()> {
    let tmp = path.with_extension("safetensors.partial");
    candle_core::safetensors::save(tensors, &tmp).map_err(|e| Error::format(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

/// Per row of `pre` `[n, d_sae]`: the `k` largest values (ties to the lower index), then ReLU; zeros
/// elsewhere.
pub fn top_k_relu(pre: &Tensor, k: usize) -> Result<Tensor> {
    Ok(top_k(pre, k, true)?.0)
}

/// Per row of `pre`: the `k` largest values (ties to the lower index), ReLU'd when `relu`, zeros elsewhere;
/// and the 0/1 mask of the chosen places.
pub fn top_k(pre: &Tensor, k: usize, relu: bool) -> Result<(Tensor, Tensor)> {
    if !pre.device().is_cpu() {
        return top_k_by_sort(pre, k, relu);
    }
    let (n, d) = pre.dims2()?;
    let k = k.min(d);
    let values = pre.flatten_all()?.to_vec1::<f32>()?;
    let mut out = vec![0f32; n * d];
    let mut chosen = vec![0f32; n * d];
    let mut order: Vec<u32> = Vec::with_capacity(d);
    for r in 0..n {
        let row = &values[r * d..(r + 1) * d];
        order.clear();
        order.extend(0..d as u32);
        if k < d && k > 0 {
            let larger = |a: &u32, b: &u32| row[*b as usize].total_cmp(&row[*a as usize]).then(a.cmp(b));
            order.select_nth_unstable_by(k - 1, larger);
        }
        for &j in &order[..k] {
            let v = row[j as usize];
            out[r * d + j as usize] = if relu { v.max(0.0) } else { v };
            chosen[r * d + j as usize] = 1.0;
        }
    }
    Ok((Tensor::from_vec(out, (n, d), pre.device())?, Tensor::from_vec(chosen, (n, d), pre.device())?))
}

/// Latents per sort in [`top_k_by_sort`]: candle's CUDA sort holds a whole row (padded to a power of two) in
/// shared memory, which runs out above ~8k f32 columns; 1,024 fits on every GPU.
const SORT_CHUNK: usize = 1024;

/// [`top_k`] with candle's operations on the tensor's own device (for a GPU): each row is cut into chunks
/// of [`SORT_CHUNK`] latents, each chunk sorted and its top k kept (the row's top k are among them), until
/// a row is short enough to sort whole. Exact; ties go to the order the device's sort leaves them in.
pub fn top_k_by_sort(pre: &Tensor, k: usize, relu: bool) -> Result<(Tensor, Tensor)> {
    let (n, d) = pre.dims2()?;
    let k = k.min(d);
    let device = pre.device();
    let mut values = pre.to_dtype(DType::F32)?.contiguous()?;
    let mut index = Tensor::arange(0u32, d as u32, device)?.unsqueeze(0)?.broadcast_as((n, d))?.contiguous()?;
    while values.dim(1)? > SORT_CHUNK && 2 * k <= SORT_CHUNK {
        let cols = values.dim(1)?;
        let chunks = cols.div_ceil(SORT_CHUNK);
        let pad = chunks * SORT_CHUNK - cols;
        if pad > 0 {
            let low = Tensor::full(f32::NEG_INFINITY, (n, pad), device)?;
            values = Tensor::cat(&[&values, &low], 1)?;
            index = Tensor::cat(&[&index, &Tensor::zeros((n, pad), DType::U32, device)?], 1)?;
        }
        let v = values.reshape((n, chunks, SORT_CHUNK))?;
        let i = index.reshape((n, chunks, SORT_CHUNK))?;
        let order = v.arg_sort_last_dim(false)?.narrow(2, 0, k)?.contiguous()?;
        values = v.gather(&order, 2)?.reshape((n, chunks * k))?;
        index = i.gather(&order, 2)?.reshape((n, chunks * k))?;
    }
    let order = values.arg_sort_last_dim(false)?.narrow(1, 0, k)?.contiguous()?;
    let mut top = values.gather(&order, 1)?;
    let at = index.gather(&order, 1)?.contiguous()?;
    if relu {
        top = top.relu()?;
    }
    let zeros = Tensor::zeros((n, d), DType::F32, device)?;
    let out = zeros.scatter_add(&at, &top, 1)?;
    let chosen = zeros.scatter_add(&at, &top.ones_like()?, 1)?;
    Ok((out, chosen))
}

impl Render for Sae {
    fn bundle(&self) -> MimeBundle {
        let c = &self.config;
        let m = &c.metadata;
        let arch = match self.architecture() {
            Architecture::TopK { k } => format!("topk (k = {k})"),
            Architecture::Standard => "standard (ReLU)".into(),
        };
        let mut card = Card::new(format!("SAE {} × {}", count(c.d_in as u64), count(c.d_sae as u64)))
            .badge(c.architecture.clone())
            .fact("architecture", arch)
            .fact("parameters", count(self.parameters()))
            .fact("model", m.model_name.clone().unwrap_or_else(|| "–".into()))
            .fact("hook", m.hook_name.clone().unwrap_or_else(|| "–".into()))
            .fact("b_dec on input", c.apply_b_dec_to_input.to_string())
            .fact("SAELens", m.sae_lens_version.clone().unwrap_or_else(|| "legacy (no version)".into()));
        if let Some(source) = &self.source {
            card = card.fact("source", source.clone());
        }
        if let Some(s) = self.sparsity.as_ref().and_then(|s| s.to_vec1::<f32>().ok()) {
            let dead = s.iter().filter(|&&x| x < -6.0).count();
            card = card.fact("sparsity", format!("{} latents below 10⁻⁶ firing", count(dead as u64)));
        }
        card.bundle()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_by_sort_picks_what_the_host_picks() {
        // 3,000 latents: three chunks and a padded one; k of 5 and 40 (and 700, more than half a chunk: one
        // sort of the whole row), with and without ReLU.
        let pre = Tensor::from_vec(uniform(7 * 3000, 11), (7, 3000), &Device::Cpu).unwrap();
        for (k, relu) in [(5, true), (40, false), (40, true), (700, false)] {
            let (a, ma) = top_k(&pre, k, relu).unwrap();
            let (b, mb) = top_k_by_sort(&pre, k, relu).unwrap();
            assert_eq!(a.to_vec2::<f32>().unwrap(), b.to_vec2::<f32>().unwrap(), "k {k} relu {relu}");
            assert_eq!(ma.to_vec2::<f32>().unwrap(), mb.to_vec2::<f32>().unwrap(), "k {k} relu {relu}: chosen");
        }
    }

    #[test]
    fn top_k_keeps_the_k_largest_then_relu_with_ties_to_the_lower_index() {
        let pre = Tensor::from_vec(vec![0.5f32, -1.0, 2.0, 0.5, -3.0, -0.5, -0.2, -4.0], (2, 4), &Device::Cpu).unwrap();
        let out = top_k_relu(&pre, 2).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(out[0], [0.5, 0.0, 2.0, 0.0], "2.0 and the first 0.5");
        assert_eq!(out[1], [0.0, 0.0, 0.0, 0.0], "kept values are ReLU'd: all negative gives zeros");
        let all = top_k_relu(&pre, 10).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(all[0], [0.5, 0.0, 2.0, 0.5]);
    }

    /// Folding a scale s into the weights: the folded SAE on x has the latents the original has on s·x,
    /// and reconstructs x at its own scale (the original's reconstruction of s·x, divided by s).
    #[test]
    fn a_folded_input_scale_gives_the_same_latents_on_raw_inputs() {
        for arch in [Architecture::TopK { k: 3 }, Architecture::Standard] {
            let mut sae = Sae::new(SaeConfig::new(6, 10, arch), 0.3, 2).unwrap();
            sae.b_dec = Tensor::from_vec(vec![0.1f32, -0.2, 0.3, 0.0, 0.5, -0.1], 6, &Device::Cpu).unwrap();
            sae.b_enc = Tensor::from_vec(uniform(10, 4), 10, &Device::Cpu).unwrap();
            sae.config.normalize_activations = "expected_average_only_in".into();
            let x = Tensor::from_vec(uniform(24, 9), (4, 6), &Device::Cpu).unwrap();
            let s = 3.7;
            let folded = sae.fold_input_scale(s).unwrap();
            assert_eq!(folded.config.normalize_activations, "none");
            let (z_scaled, x_hat_scaled) = sae.forward(&(&x * s).unwrap()).unwrap();
            let (z, x_hat) = folded.forward(&x).unwrap();
            let close = |a: &Tensor, b: &Tensor| {
                let (a, b) = (
                    a.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                    b.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                );
                a.iter().zip(&b).all(|(a, b)| (a - b).abs() <= 1e-5 * (1.0 + b.abs()))
            };
            assert!(close(&z, &z_scaled), "{arch:?}: latents");
            assert!(close(&x_hat, &(x_hat_scaled / s).unwrap()), "{arch:?}: reconstruction");
            assert!(sae.fold_input_scale(0.0).is_err() && sae.fold_input_scale(f64::NAN).is_err());
        }
    }

    #[test]
    fn save_then_load_gives_the_same_sae_and_encoding() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = SaeConfig::new(6, 10, Architecture::TopK { k: 3 });
        config.metadata.hook_name = Some("blocks.1.hook_resid_post".into());
        let mut sae = Sae::new(config, 0.1, 5).unwrap();
        sae.b_dec = Tensor::from_vec(vec![0.1f32, -0.2, 0.3, 0.0, 0.5, -0.1], 6, &Device::Cpu).unwrap();
        sae.sparsity = Some(Tensor::from_vec(vec![-2.0f32; 10], 10, &Device::Cpu).unwrap());
        sae.save(dir.path()).unwrap();
        let back = Sae::load(dir.path()).unwrap();
        assert_eq!(back.config, sae.config);
        let x = Tensor::from_vec((0..24).map(|i| (i as f32 * 0.37).sin()).collect::<Vec<_>>(), (4, 6), &Device::Cpu)
            .unwrap();
        let (a, b) =
            (sae.encode(&x).unwrap().to_vec2::<f32>().unwrap(), back.encode(&x).unwrap().to_vec2::<f32>().unwrap());
        assert_eq!(a, b);
        assert!(a.iter().all(|row| row.iter().filter(|v| **v > 0.0).count() <= 3));
        assert_eq!(back.sparsity.as_ref().unwrap().to_vec1::<f32>().unwrap(), vec![-2.0; 10]);
        let card = back.bundle();
        assert!(card.plain().contains("topk (k = 3)") && card.plain().contains("blocks.1.hook_resid_post"));
        let e = sae.encode(&Tensor::zeros((2, 5), DType::F32, &Device::Cpu).unwrap()).unwrap_err();
        assert!(e.to_string().contains("d_in 6"), "{e}");
    }
}
