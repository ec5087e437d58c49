//! A model's weights: its safetensors files memory-mapped, tensors looked up by name (with or without a
//! prefix such as `transformer.` or `bert.`), checked against the shape the family expects, and converted to
//! the dtype the model computes in. Errors name the tensor and the files.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use candle_core::safetensors::MmapedSafetensors;
use candle_core::{DType, Device, Tensor};

use crate::error::{Error, Result};

/// The safetensors files of one model.
pub struct Weights {
    model: String,
    files: Vec<PathBuf>,
    tensors: MmapedSafetensors,
    names: BTreeSet<String>,
    prefix: String,
    dtype: DType,
    device: Device,
}

impl Weights {
    /// Maps `files` and reads their headers; tensors come out as `dtype` on `device`.
    pub fn open(model: &str, files: &[PathBuf], dtype: DType, device: &Device) -> Result<Weights> {
        if files.is_empty() {
            return Err(Error::Model { model: model.into(), message: "no .safetensors weights found".into() });
        }
        // SAFETY: the files are mapped read-only; like every mmap, they must not be truncated while mapped
        // (the HF cache and saekit never rewrite a weights file in place).
        let tensors = unsafe { MmapedSafetensors::multi(files) }.map_err(|e| Error::Model {
            model: model.into(),
            message: format!("cannot read the safetensors weights: {e}"),
        })?;
        let names = tensors.tensors().into_iter().map(|(name, _)| name).collect();
        Ok(Weights {
            model: model.into(),
            files: files.to_vec(),
            tensors,
            names,
            prefix: String::new(),
            dtype,
            device: device.clone(),
        })
    }

    /// Looks names up under the first of `prefixes` (e.g. `["", "transformer."]`) under which `probe` exists.
    pub fn with_prefix_of(mut self, prefixes: &[&str], probe: &str) -> Result<Weights> {
        match prefixes.iter().find(|p| self.names.contains(&format!("{p}{probe}"))) {
            Some(p) => {
                self.prefix = p.to_string();
                Ok(self)
            }
            None => Err(self.missing(probe)),
        }
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The parameters the files hold, as `num_parameters()` counts them in transformers: every float tensor
    /// but the buffers (GPT-2's `attn.bias`/`attn.masked_bias` masks, BERT's `position_ids`), including stored
    /// weights the forward pass does not use (BERT's pooler).
    pub fn stored_parameters(&self) -> u64 {
        self.tensors
            .tensors()
            .iter()
            .filter(|(name, view)| {
                let buffer = name.ends_with(".attn.bias")
                    || name.ends_with(".attn.masked_bias")
                    || name.ends_with("position_ids");
                let float = DType::try_from(view.dtype()).is_ok_and(|d| d.is_float());
                float && !buffer
            })
            .map(|(_, view)| view.shape().iter().product::<usize>() as u64)
            .sum()
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Whether the tensor exists (under the prefix).
    pub fn contains(&self, name: &str) -> bool {
        self.names.contains(&format!("{}{name}", self.prefix))
    }

    /// The tensor `name`, which must have `shape`.
    pub fn get(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        self.get_opt(name, shape)?.ok_or_else(|| self.missing(name))
    }

    /// The tensor `name` if the files have it.
    pub fn get_opt(&self, name: &str, shape: &[usize]) -> Result<Option<Tensor>> {
        self.load_exact(&format!("{}{name}", self.prefix), shape)
    }

    /// The tensor named exactly `name` (outside the prefix, as `lm_head.weight` is), if the files have it.
    pub fn get_unprefixed_opt(&self, name: &str, shape: &[usize]) -> Result<Option<Tensor>> {
        self.load_exact(name, shape)
    }

    fn load_exact(&self, full: &str, shape: &[usize]) -> Result<Option<Tensor>> {
        if !self.names.contains(full) {
            return Ok(None);
        }
        let tensor = self
            .tensors
            .load(full, &self.device)
            .map_err(|e| Error::Model { model: self.model.clone(), message: format!("tensor `{full}`: {e}") })?;
        if tensor.dims() != shape {
            return Err(Error::Model {
                model: self.model.clone(),
                message: format!("tensor `{full}` has shape {:?}, expected {shape:?} from config.json", tensor.dims()),
            });
        }
        Ok(Some(if tensor.dtype() == self.dtype { tensor } else { tensor.to_dtype(self.dtype)? }))
    }

    fn missing(&self, name: &str) -> Error {
        let files: Vec<String> = self.files.iter().map(|f| file_name(f)).collect();
        let near: Vec<&String> = self.names.iter().take(6).collect();
        Error::Model {
            model: self.model.clone(),
            message: format!(
                "weights have no tensor `{}{name}` (files: {}; they hold {} tensors, e.g. {})",
                self.prefix,
                files.join(", "),
                self.names.len(),
                near.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
            ),
        }
    }
}

fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned())
}

/// `y = x·W + b` with `W` stored `[in, out]` (GPT-2's Conv1D layout), or a torch `Linear` (`[out, in]`)
/// viewed transposed, so both multiply without a copy.
pub struct Linear {
    w: Tensor,
    b: Option<Tensor>,
}

impl Linear {
    /// A layer from a weight stored `[in, out]`.
    pub fn from_in_out(w: Tensor, b: Option<Tensor>) -> Linear {
        Linear { w, b }
    }

    /// A layer from a torch `Linear` weight, stored `[out, in]`.
    pub fn from_out_in(w: Tensor, b: Option<Tensor>) -> Result<Linear> {
        Ok(Linear { w: w.t()?, b })
    }

    /// Loads `{name}.weight` (and `{name}.bias` if `bias`) of a torch `Linear` with `[out, in]` weights.
    pub fn load(weights: &Weights, name: &str, d_in: usize, d_out: usize, bias: bool) -> Result<Linear> {
        let w = weights.get(&format!("{name}.weight"), &[d_out, d_in])?;
        let b = if bias { Some(weights.get(&format!("{name}.bias"), &[d_out])?) } else { None };
        Linear::from_out_in(w, b)
    }

    /// Applies the layer to `[..., in]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let dims = x.dims().to_vec();
        let d_in = *dims.last().unwrap_or(&0);
        let rows: usize = dims[..dims.len().saturating_sub(1)].iter().product();
        let y = super::blas::matmul(&x.reshape((rows, d_in))?, &self.w)?;
        let y = match &self.b {
            Some(b) => y.broadcast_add(b)?,
            None => y,
        };
        let mut out = dims;
        if let Some(last) = out.last_mut() {
            *last = self.w.dim(1)?;
        }
        Ok(y.reshape(out)?)
    }
}

/// LayerNorm with weight and bias.
pub struct LayerNorm {
    w: Tensor,
    b: Tensor,
    eps: f32,
}

impl LayerNorm {
    pub fn load(weights: &Weights, name: &str, d: usize, eps: f64) -> Result<LayerNorm> {
        Ok(LayerNorm {
            w: weights.get(&format!("{name}.weight"), &[d])?,
            b: weights.get(&format!("{name}.bias"), &[d])?,
            eps: eps as f32,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(candle_nn::ops::layer_norm(&x.contiguous()?, &self.w, &self.b, self.eps)?)
    }
}

/// RMSNorm: `x / sqrt(mean(x²) + eps) · w`.
pub struct RmsNorm {
    w: Tensor,
    eps: f32,
}

impl RmsNorm {
    pub fn load(weights: &Weights, name: &str, d: usize, eps: f64) -> Result<RmsNorm> {
        Ok(RmsNorm { w: weights.get(&format!("{name}.weight"), &[d])?, eps: eps as f32 })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(candle_nn::ops::rms_norm(&x.contiguous()?, &self.w, self.eps)?)
    }
}

/// GELU in its erf form, `x·(1 + erf(x/√2))/2`, for f32 on the CPU: erf by Abramowitz & Stegun 7.1.26
/// (absolute error below 1.5e-7) over the system's `expf`. candle's own `gelu_erf` (taken for other dtypes)
/// calls a scalar erf that took a seventh of a MiniLM pass.
pub fn gelu_erf(x: &Tensor) -> Result<Tensor> {
    if x.dtype() != DType::F32 || !x.device().is_cpu() {
        return Ok(x.gelu_erf()?);
    }
    map_f32(x, gelu_erf_scalar)
}

/// GELU's tanh approximation (`gelu_new`), `x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))/2`, for f32 on the CPU,
/// with `tanh(y) = 1 − 2/(e^{2y} + 1)` over the system's `expf`; candle's `gelu` (taken for other dtypes)
/// spent a sixth of a GPT-2 pass in the C library's `tanhf`.
pub fn gelu_tanh(x: &Tensor) -> Result<Tensor> {
    if x.dtype() != DType::F32 || !x.device().is_cpu() {
        return Ok(x.gelu()?);
    }
    map_f32(x, |v| {
        let y = 0.797_884_6 * (v + 0.044_715 * v * v * v);
        let tanh = 1.0 - 2.0 / ((2.0 * y).exp() + 1.0);
        0.5 * v * (1.0 + tanh)
    })
}

/// `f` applied to every value of an f32 tensor, on a thread per core (`RAYON_NUM_THREADS` when set).
fn map_f32(x: &Tensor, f: impl Fn(f32) -> f32 + Copy + Send) -> Result<Tensor> {
    let dims = x.dims().to_vec();
    let mut values = x.flatten_all()?.to_vec1::<f32>()?;
    let threads = std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|t| t.parse::<usize>().ok())
        .filter(|&t| t > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let chunk = values.len().div_ceil(threads).max(1 << 14);
    if values.len() <= chunk {
        values.iter_mut().for_each(|v| *v = f(*v));
        return Ok(Tensor::from_vec(values, dims, x.device())?);
    }
    std::thread::scope(|scope| {
        for part in values.chunks_mut(chunk) {
            scope.spawn(move || part.iter_mut().for_each(|v| *v = f(*v)));
        }
    });
    Ok(Tensor::from_vec(values, dims, x.device())?)
}

fn gelu_erf_scalar(x: f32) -> f32 {
    const P: f32 = 0.327_591_1;
    const A: [f32; 5] = [0.254_829_6, -0.284_496_74, 1.421_413_7, -1.453_152_1, 1.061_405_4];
    let z = (x * std::f32::consts::FRAC_1_SQRT_2).abs();
    let t = 1.0 / (1.0 + P * z);
    let poly = t * (A[0] + t * (A[1] + t * (A[2] + t * (A[3] + t * A[4]))));
    let erf = 1.0 - poly * (-z * z).exp();
    let erf = if x < 0.0 { -erf } else { erf };
    0.5 * x * (1.0 + erf)
}

/// Logits `[b, s, vocab]` of `hidden` `[b, s, d]` against an unembedding stored `[vocab, d]` (a tied
/// embedding or an `lm_head`).
pub fn unembed(hidden: &Tensor, weight: &Tensor) -> Result<Tensor> {
    let (b, s, d) = hidden.dims3()?;
    let logits = super::blas::matmul(&hidden.reshape((b * s, d))?, &weight.t()?)?;
    Ok(logits.reshape((b, s, weight.dim(0)?))?)
}

/// Splits `[b, s, heads·d_head]` into `[b, heads, s, d_head]`.
pub fn split_heads(x: &Tensor, heads: usize, d_head: usize) -> Result<Tensor> {
    let (b, s, _) = x.dims3()?;
    Ok(x.reshape((b, s, heads, d_head))?.transpose(1, 2)?.contiguous()?)
}

/// Scaled dot-product attention of `q` `[b, h, s, d]` over `k`, `v` `[b, kv, s, d]` (grouped-query when
/// `kv < h`: each key/value head serves `h / kv` query heads), with an additive `mask` broadcast to
/// `[b, h, s, s]`; returns `[b, s, h·d]`.
pub fn attention(q: &Tensor, k: &Tensor, v: &Tensor, mask: &Tensor, scale: f64) -> Result<Tensor> {
    let (b, h, s, d) = q.dims4()?;
    let kv = k.dim(1)?;
    let (k, v) = if kv == h {
        (k.clone(), v.clone())
    } else {
        let rep = h / kv;
        let expand =
            |t: &Tensor| -> Result<Tensor> { Ok(t.unsqueeze(2)?.expand((b, kv, rep, s, d))?.reshape((b, h, s, d))?) };
        (expand(k)?, expand(v)?)
    };
    let scores = (q.matmul(&k.t()?)? * scale)?.broadcast_add(mask)?;
    // The softmax sums in f32 whatever the model computes in, as transformers does.
    let probs = candle_nn::ops::softmax_last_dim(&scores.to_dtype(DType::F32)?)?.to_dtype(q.dtype())?;
    let context = probs.matmul(&v.contiguous()?)?;
    Ok(context.transpose(1, 2)?.reshape((b, s, h * d))?)
}

/// The additive causal mask `[s, s]`: 0 where a query may look (keys at or before it, and within `window`
/// positions when a sliding window is set), −∞ elsewhere.
pub fn causal_mask(s: usize, window: Option<usize>, dtype: DType, device: &Device) -> Result<Tensor> {
    let mut values = vec![0f32; s * s];
    for i in 0..s {
        for j in 0..s {
            let outside = j > i || window.is_some_and(|w| i - j >= w);
            if outside {
                values[i * s + j] = f32::NEG_INFINITY;
            }
        }
    }
    Ok(Tensor::from_vec(values, (s, s), device)?.to_dtype(dtype)?)
}

/// The additive padding mask `[b, 1, 1, s]`: −∞ on the keys past each sequence's length.
pub fn padding_mask(lengths: &[usize], s: usize, dtype: DType, device: &Device) -> Result<Tensor> {
    let mut values = vec![0f32; lengths.len() * s];
    for (i, &len) in lengths.iter().enumerate() {
        for v in &mut values[i * s + len.min(s)..(i + 1) * s] {
            *v = f32::NEG_INFINITY;
        }
    }
    Ok(Tensor::from_vec(values, (lengths.len(), 1, 1, s), device)?.to_dtype(dtype)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_gelus_agree_with_candles_to_float_precision() {
        let x = (Tensor::arange(-6000f32, 6000.0, &Device::Cpu).unwrap() / 1000.0).unwrap();
        let ours = gelu_erf(&x).unwrap().to_vec1::<f32>().unwrap();
        let candle = x.gelu_erf().unwrap().to_vec1::<f32>().unwrap();
        let worst = ours.iter().zip(&candle).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(worst < 1e-6, "{worst}");
        let ours = gelu_tanh(&x).unwrap().to_vec1::<f32>().unwrap();
        let candle = x.gelu().unwrap().to_vec1::<f32>().unwrap();
        let worst = ours.iter().zip(&candle).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(worst < 1e-6, "{worst}");
    }
}
