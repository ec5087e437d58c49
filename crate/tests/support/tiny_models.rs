//! Tiny models written from a fixed seed (shared by the model and activation tests).

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};

/// Deterministic numbers in [-scale, scale) (splitmix64), so the tiny models are the same on every run.
pub fn numbers(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(1);
    (0..n)
        .map(|_| {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            ((z >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
        })
        .collect()
}

pub struct Writer {
    pub tensors: HashMap<String, Tensor>,
    seed: u64,
}

impl Writer {
    pub fn new(seed: u64) -> Writer {
        Writer { tensors: HashMap::new(), seed }
    }

    pub fn random(&mut self, name: &str, shape: &[usize], scale: f32) {
        self.seed += 1;
        let n = shape.iter().product();
        let t = Tensor::from_vec(numbers(n, self.seed, scale), shape, &Device::Cpu).unwrap();
        self.tensors.insert(name.to_string(), t);
    }

    pub fn ones(&mut self, name: &str, d: usize) {
        let values: Vec<f32> = numbers(d, self.seed + 1000, 0.1).into_iter().map(|x| 1.0 + x).collect();
        self.tensors.insert(name.to_string(), Tensor::from_vec(values, d, &Device::Cpu).unwrap());
    }

    pub fn save(&self, path: &Path) {
        candle_core::safetensors::save(&self.tensors, path).unwrap();
    }
}

pub const GPT2_D: usize = 16;

/// A 2-layer GPT-2 with GPT-2's vocabulary, 16 wide, in HF layout (no tokenizer.json: the embedded GPT-2
/// tokenizer is used for a vocabulary of 50,257).
pub fn write_gpt2(dir: &Path, prefix: &str, mask_buffers: bool) {
    std::fs::create_dir_all(dir).unwrap();
    let config = serde_json::json!({
        "architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "vocab_size": 50257, "n_positions": 32,
        "n_embd": GPT2_D, "n_layer": 2, "n_head": 4, "n_inner": null, "activation_function": "gelu_new",
        "layer_norm_epsilon": 1e-5
    });
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    let d = GPT2_D;
    let mut w = Writer::new(7);
    w.random(&format!("{prefix}wte.weight"), &[50257, d], 0.5);
    w.random(&format!("{prefix}wpe.weight"), &[32, d], 0.2);
    for l in 0..2 {
        let p = format!("{prefix}h.{l}");
        for ln in ["ln_1", "ln_2"] {
            w.ones(&format!("{p}.{ln}.weight"), d);
            w.random(&format!("{p}.{ln}.bias"), &[d], 0.1);
        }
        w.random(&format!("{p}.attn.c_attn.weight"), &[d, 3 * d], 0.4);
        w.random(&format!("{p}.attn.c_attn.bias"), &[3 * d], 0.1);
        w.random(&format!("{p}.attn.c_proj.weight"), &[d, d], 0.3);
        w.random(&format!("{p}.attn.c_proj.bias"), &[d], 0.1);
        w.random(&format!("{p}.mlp.c_fc.weight"), &[d, 4 * d], 0.3);
        w.random(&format!("{p}.mlp.c_fc.bias"), &[4 * d], 0.1);
        w.random(&format!("{p}.mlp.c_proj.weight"), &[4 * d, d], 0.2);
        w.random(&format!("{p}.mlp.c_proj.bias"), &[d], 0.1);
        if mask_buffers {
            let mask = Tensor::tril2(32, DType::F32, &Device::Cpu).unwrap().reshape((1, 1, 32, 32)).unwrap();
            w.tensors.insert(format!("{p}.attn.bias"), mask);
        }
    }
    w.ones(&format!("{prefix}ln_f.weight"), d);
    w.random(&format!("{prefix}ln_f.bias"), &[d], 0.1);
    w.save(&dir.join("model.safetensors"));
}
