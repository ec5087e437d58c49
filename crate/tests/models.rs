//! Language models on tiny weights written here from a fixed seed: hooks agree with each other and with the
//! block equations, replacements and early stopping behave, padding never leaks into real positions, the loss
//! is the logits' cross-entropy, layouts (prefixes, mask buffers, shards, Hub repositories) load alike, and
//! bad folders get errors that name what is wrong. Parity with an independent numpy implementation of each
//! family (and MiniLM's real weights) is in tests/test_models.py.

mod support;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use candle_core::{DType, Device, Tensor};
use saekit::display::Render;
use saekit::hub::{Hub, HubCache};
use saekit::models::{Forward, Model, ModelOptions, TokenBatch};
use saekit::tokenize::{TokenizeParams, Tokenizer};
use saekit::{Error, Source, Workspace};
use support::mock_hub::{MockFile, MockHub};
use support::tiny_models::{GPT2_D, Writer, write_gpt2};

/// A 2-layer Llama (grouped-query: 4 heads, 2 key/value heads), 16 wide, with GPT-2's tokenizer plus `<s>`.
fn write_llama(dir: &Path, tied: bool) {
    std::fs::create_dir_all(dir).unwrap();
    let mut tokenizer = Tokenizer::gpt2().unwrap();
    let bos = tokenizer.add_special_token("<s>").unwrap();
    tokenizer.save(&dir.join("tokenizer.json")).unwrap();
    let vocab = tokenizer.vocab_size();
    let config = serde_json::json!({
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": vocab, "hidden_size": 16,
        "intermediate_size": 24, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
        "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "max_position_embeddings": 64,
        "tie_word_embeddings": tied, "bos_token_id": bos, "hidden_act": "silu"
    });
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    let mut w = Writer::new(11);
    w.random("model.embed_tokens.weight", &[vocab, 16], 0.5);
    for l in 0..2 {
        let p = format!("model.layers.{l}");
        w.ones(&format!("{p}.input_layernorm.weight"), 16);
        w.ones(&format!("{p}.post_attention_layernorm.weight"), 16);
        w.random(&format!("{p}.self_attn.q_proj.weight"), &[16, 16], 0.4);
        w.random(&format!("{p}.self_attn.k_proj.weight"), &[8, 16], 0.4);
        w.random(&format!("{p}.self_attn.v_proj.weight"), &[8, 16], 0.4);
        w.random(&format!("{p}.self_attn.o_proj.weight"), &[16, 16], 0.3);
        w.random(&format!("{p}.mlp.gate_proj.weight"), &[24, 16], 0.3);
        w.random(&format!("{p}.mlp.up_proj.weight"), &[24, 16], 0.3);
        w.random(&format!("{p}.mlp.down_proj.weight"), &[16, 24], 0.3);
    }
    w.ones("model.norm.weight", 16);
    if !tied {
        w.random("lm_head.weight", &[vocab, 16], 0.3);
    }
    w.save(&dir.join("model.safetensors"));
}

fn values(t: &Tensor) -> Vec<f32> {
    t.to_dtype(DType::F32).unwrap().flatten_all().unwrap().to_vec1().unwrap()
}

fn assert_close(a: &Tensor, b: &Tensor, what: &str) {
    let (a, b) = (values(a), values(b));
    assert_eq!(a.len(), b.len(), "{what}: sizes differ");
    let worst = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
    assert!(worst < 1e-5, "{what}: max |Δ| = {worst}");
}

fn all_hooks(model: &Model) -> Forward {
    Forward::new().hooks(model.info().hooks.iter())
}

fn batch() -> TokenBatch {
    TokenBatch::new(&[vec![464u32, 3290, 3332, 319, 262, 2603, 13], vec![15496, 995, 0]]).unwrap()
}

#[test]
fn gpt2_hooks_agree_with_the_block_equations() {
    let dir = tempfile::tempdir().unwrap();
    write_gpt2(dir.path(), "", false);
    let model = Model::load(dir.path().to_str().unwrap()).unwrap();
    let out = model.run(&batch(), &all_hooks(&model).loss()).unwrap();
    let h = |name: &str| out.get(name).unwrap().clone();
    assert_close(&h("blocks.0.hook_resid_pre"), &(h("hook_embed") + h("hook_pos_embed")).unwrap(), "resid_pre 0");
    for l in 0..2 {
        let mid = (h(&format!("blocks.{l}.hook_resid_pre")) + h(&format!("blocks.{l}.hook_attn_out"))).unwrap();
        assert_close(&h(&format!("blocks.{l}.hook_resid_mid")), &mid, "resid_mid");
        let post = (h(&format!("blocks.{l}.hook_resid_mid")) + h(&format!("blocks.{l}.hook_mlp_out"))).unwrap();
        assert_close(&h(&format!("blocks.{l}.hook_resid_post")), &post, "resid_post");
        assert_eq!(h(&format!("blocks.{l}.mlp.hook_post")).dims(), &[2, 7, 4 * GPT2_D]);
    }
    assert_close(&h("blocks.1.hook_resid_pre"), &h("blocks.0.hook_resid_post"), "resid_pre 1 = resid_post 0");
    let loss = out.loss.unwrap();
    assert!(loss.is_finite() && loss > 0.0, "{loss}");
    let card = model.bundle().plain().to_string();
    let fact = |key: &str| {
        let line = card.lines().find(|l| l.trim_start().starts_with(key)).unwrap_or_default();
        line.trim_start()[key.len()..].trim().to_string()
    };
    assert_eq!((fact("family").as_str(), fact("layers").as_str(), fact("width").as_str()), ("gpt2", "2", "16"));
    assert!(fact("hooks").contains("hook_resid_post") && fact("hooks").contains("ln_final"), "{card}");
}

#[test]
fn prefixed_names_and_mask_buffers_load_the_same_model() {
    let dir = tempfile::tempdir().unwrap();
    write_gpt2(&dir.path().join("plain"), "", false);
    write_gpt2(&dir.path().join("prefixed"), "transformer.", true);
    let plain = Model::load(dir.path().join("plain").to_str().unwrap()).unwrap();
    let prefixed = Model::load(dir.path().join("prefixed").to_str().unwrap()).unwrap();
    let forward = Forward::new().logits();
    let (a, b) = (plain.run(&batch(), &forward).unwrap(), prefixed.run(&batch(), &forward).unwrap());
    assert_close(a.logits.as_ref().unwrap(), b.logits.as_ref().unwrap(), "logits");
    assert_eq!(plain.info().parameters, prefixed.info().parameters, "mask buffers are not parameters");
}

/// Each sequence alone gives what it gives inside a ragged batch, at its real positions.
#[test]
fn padding_never_reaches_real_positions() {
    let dir = tempfile::tempdir().unwrap();
    write_gpt2(&dir.path().join("gpt2"), "", false);
    write_llama(&dir.path().join("llama"), false);
    for name in ["gpt2", "llama"] {
        let model = Model::load(dir.path().join(name).to_str().unwrap()).unwrap();
        let forward = Forward::new().hook("blocks.1.hook_resid_post").loss();
        let together = model.run(&batch(), &forward).unwrap();
        let alone = model.run(&TokenBatch::new(&[vec![15496u32, 995, 0]]).unwrap(), &forward).unwrap();
        let rows = together.tokens("blocks.1.hook_resid_post").unwrap();
        assert_close(&rows.narrow(0, 7, 3).unwrap(), &alone.tokens("blocks.1.hook_resid_post").unwrap(), name);
        let losses = together.token_losses.unwrap();
        assert_close(
            &losses.get(1).unwrap().narrow(0, 0, 2).unwrap(),
            &alone.token_losses.unwrap().get(0).unwrap(),
            name,
        );
        assert_eq!(values(&losses.get(1).unwrap())[2..], [0.0; 4], "{name}: no loss past the end");
    }
}

#[test]
fn the_loss_is_the_cross_entropy_of_the_logits() {
    let dir = tempfile::tempdir().unwrap();
    write_llama(dir.path(), true);
    let model = Model::load(dir.path().to_str().unwrap()).unwrap();
    assert!(model.info().notes.iter().any(|n| n.contains("tied")), "{:?}", model.info().notes);
    let batch = batch();
    let out = model.run(&batch, &Forward::new().logits().loss()).unwrap();
    let logits = out.logits.as_ref().unwrap();
    let vocab = model.info().vocab_size;
    let flat = values(logits);
    let (mut total, mut n) = (0f64, 0);
    for (b, &len) in batch.lengths().iter().enumerate() {
        for t in 0..len - 1 {
            let row = &flat[(b * batch.seq() + t) * vocab..(b * batch.seq() + t + 1) * vocab];
            let max = row.iter().cloned().fold(f32::MIN, f32::max) as f64;
            let log_sum = row.iter().map(|&x| (x as f64 - max).exp()).sum::<f64>().ln() + max;
            let target = batch.ids()[b * batch.seq() + t + 1] as usize;
            total += log_sum - row[target] as f64;
            n += 1;
        }
    }
    let expected = (total / n as f64) as f32;
    assert!((out.loss.unwrap() - expected).abs() < 1e-4, "{} vs {expected}", out.loss.unwrap());
}

#[test]
fn replacements_change_what_follows_and_the_pass_stops_at_the_deepest_hook() {
    let dir = tempfile::tempdir().unwrap();
    write_llama(dir.path(), false);
    let model = Model::load(dir.path().to_str().unwrap()).unwrap();
    let clean = model.run(&batch(), &Forward::new().hook("blocks.1.hook_resid_pre").logits()).unwrap();
    // The identity changes nothing; doubling the stream entering block 1 changes what block 1 reads.
    let same =
        model.run(&batch(), &Forward::new().logits().replace("blocks.1.hook_resid_pre", |x| Ok(x.clone()))).unwrap();
    assert_close(clean.logits.as_ref().unwrap(), same.logits.as_ref().unwrap(), "identity replacement");
    let doubled = model
        .run(
            &batch(),
            &Forward::new()
                .hook("blocks.1.hook_resid_pre")
                .logits()
                .replace("blocks.1.hook_resid_pre", |x| Ok((x * 2.0)?)),
        )
        .unwrap();
    let recorded = (clean.get("blocks.1.hook_resid_pre").unwrap() * 2.0).unwrap();
    assert_close(doubled.get("blocks.1.hook_resid_pre").unwrap(), &recorded, "the recording sees the replacement");
    let delta = values(&(doubled.logits.unwrap() - clean.logits.unwrap()).unwrap().abs().unwrap());
    assert!(delta.iter().cloned().fold(0f32, f32::max) > 1e-3, "the logits moved");
    // Nothing after the deepest hook asked for is computed.
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let count = move |x: &Tensor| {
        counter.fetch_add(1, Ordering::SeqCst);
        Ok(x.clone())
    };
    let out = model
        .run(&batch(), &Forward::new().hook("blocks.0.hook_attn_out").replace("blocks.0.hook_mlp_out", count.clone()))
        .unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 0, "the MLP of block 0 was not run");
    assert_eq!(out.hooks.len(), 1);
    model
        .run(&batch(), &Forward::new().hook("blocks.1.hook_resid_pre").replace("blocks.0.hook_mlp_out", count))
        .unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[test]
fn several_hooks_come_from_one_pass_in_bf16_too() {
    let dir = tempfile::tempdir().unwrap();
    write_llama(dir.path(), false);
    let path = dir.path().to_str().unwrap();
    let f32_model = Model::load(path).unwrap();
    let bf16_model = Model::load_with(path, &ModelOptions::default().dtype(DType::BF16)).unwrap();
    assert_eq!(bf16_model.info().dtype, "bf16");
    let forward =
        Forward::new().hooks(["blocks.0.hook_resid_post", "blocks.1.mlp.hook_post", "ln_final.hook_normalized"]);
    let (a, b) = (f32_model.run(&batch(), &forward).unwrap(), bf16_model.run(&batch(), &forward).unwrap());
    assert_eq!(a.hooks.len(), 3);
    assert_eq!(a.get("blocks.1.mlp.hook_post").unwrap().dims(), &[2, 7, 24]);
    for (point, x) in &a.hooks {
        let (x, y) = (values(x), values(&b.hooks[point]));
        let scale = x.iter().map(|v| v.abs()).fold(0f32, f32::max);
        let worst = x.iter().zip(&y).map(|(p, q)| (p - q).abs()).fold(0f32, f32::max);
        assert!(worst < 0.05 * scale.max(1.0), "{point}: bf16 off by {worst} (scale {scale})");
    }
}

#[test]
fn bad_models_and_requests_get_errors_that_say_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write_gpt2(&root.join("gpt2"), "", false);
    let model = Model::load(root.join("gpt2").to_str().unwrap()).unwrap();
    let err = |r: saekit::Result<saekit::models::ModelOutput>| r.unwrap_err().to_string();
    let e = err(model.run(&batch(), &Forward::new().hook("blocks.7.hook_resid_post")));
    assert!(e.contains("blocks.7.hook_resid_post") && e.contains("blocks.{0..1}"), "{e}");
    let e = err(model.run(&batch(), &Forward::new().hook("blocks.0.resid")));
    assert!(e.contains("blocks.0.resid"), "{e}");
    let long = TokenBatch::new(&[vec![1u32; 33]]).unwrap();
    let e = err(model.run(&long, &Forward::new().hook("hook_embed")));
    assert!(e.contains("33 tokens") && e.contains("32 positions"), "{e}");
    let e = err(model.run(&TokenBatch::new(&[vec![60000u32]]).unwrap(), &Forward::new().hook("hook_embed")));
    assert!(e.contains("60000") && e.contains("50257"), "{e}");
    let e = err(model.run(&batch(), &Forward::new().embedding()));
    assert!(e.contains("sentence embedding"), "{e}");

    // An architecture saekit does not run, a missing tensor, PyTorch pickles only, no config at all.
    let odd = root.join("odd");
    std::fs::create_dir_all(&odd).unwrap();
    std::fs::copy(root.join("gpt2/model.safetensors"), odd.join("model.safetensors")).unwrap();
    std::fs::write(odd.join("config.json"), r#"{"architectures": ["MambaForCausalLM"], "model_type": "mamba"}"#)
        .unwrap();
    let e = Model::load(odd.to_str().unwrap()).unwrap_err().to_string();
    assert!(e.contains("MambaForCausalLM") && e.contains("mamba") && e.contains("gpt2, llama"), "{e}");
    std::fs::write(odd.join("config.json"), r#"{"model_type": "gemma2"}"#).unwrap();
    let e = Model::load(odd.to_str().unwrap()).unwrap_err().to_string();
    assert!(e.contains("gemma2") && e.contains("soft-capping"), "{e}");

    let mut missing = candle_core::safetensors::load(root.join("gpt2/model.safetensors"), &Device::Cpu).unwrap();
    missing.remove("h.1.mlp.c_fc.bias");
    let broken = root.join("broken");
    std::fs::create_dir_all(&broken).unwrap();
    std::fs::copy(root.join("gpt2/config.json"), broken.join("config.json")).unwrap();
    candle_core::safetensors::save(&missing, broken.join("model.safetensors")).unwrap();
    let e = Model::load(broken.to_str().unwrap()).unwrap_err().to_string();
    assert!(e.contains("h.1.mlp.c_fc.bias") && e.contains("model.safetensors"), "{e}");

    std::fs::remove_file(broken.join("model.safetensors")).unwrap();
    std::fs::write(broken.join("pytorch_model.bin"), b"pickle").unwrap();
    let e = Model::load(broken.to_str().unwrap()).unwrap_err().to_string();
    assert!(e.contains("safetensors only"), "{e}");
    let e = Model::load(root.join("nowhere/at/all").to_str().unwrap()).unwrap_err().to_string();
    assert!(e.contains("not a model folder"), "{e}");
}

#[test]
fn a_model_loads_by_repo_id_from_a_hub_and_then_from_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("local");
    write_gpt2(&local, "", false);
    let server = MockHub::start();
    let file = |name: &str| std::fs::read(local.join(name)).unwrap();
    server.add_repo(
        "models",
        "saekit-tests/tiny-gpt2",
        "main",
        vec![
            MockFile::git("config.json", file("config.json")),
            MockFile::lfs("model.safetensors", file("model.safetensors")),
            MockFile::git("README.md", "# tiny"),
        ],
    );
    let hub = Hub::new(&server.url(), HubCache::new(dir.path().join("cache")));
    let options = ModelOptions::default().hub(hub.clone());
    let from_hub = Model::load_with("saekit-tests/tiny-gpt2", &options).unwrap();
    assert_eq!(from_hub.name(), "saekit-tests/tiny-gpt2");
    let from_disk = Model::load(local.to_str().unwrap()).unwrap();
    let forward = Forward::new().hook("blocks.1.hook_resid_post");
    assert_close(
        from_hub.run(&batch(), &forward).unwrap().get("blocks.1.hook_resid_post").unwrap(),
        from_disk.run(&batch(), &forward).unwrap().get("blocks.1.hook_resid_post").unwrap(),
        "hub vs disk",
    );
    assert!(server.body_bytes("") >= std::fs::metadata(local.join("model.safetensors")).unwrap().len());
    server.clear_log();
    let offline = ModelOptions::default().hub(hub.with_offline(true));
    Model::load_with("saekit-tests/tiny-gpt2", &offline).unwrap();
    assert!(server.requests().is_empty(), "offline, the cached files are used");
}

#[test]
fn tokens_of_another_tokenizer_are_refused_naming_both() {
    let dir = tempfile::tempdir().unwrap();
    write_gpt2(&dir.path().join("gpt2"), "", false);
    write_llama(&dir.path().join("llama"), false);
    let file = dir.path().join("d.jsonl");
    std::fs::write(&file, "{\"text\": \"Hello world\"}\n{\"text\": \"The cat sat.\"}\n").unwrap();
    let ws = Workspace::open(dir.path().join("ws")).unwrap();
    ws.add_dataset("d", &Source::open(&file).unwrap()).unwrap();
    let tokens = ws.tokenize("d", &Tokenizer::gpt2().unwrap(), &TokenizeParams::default()).unwrap();
    let gpt2 = Model::load(dir.path().join("gpt2").to_str().unwrap()).unwrap();
    gpt2.check_tokens(&tokens).unwrap();
    let llama = Model::load(dir.path().join("llama").to_str().unwrap()).unwrap();
    let e = llama.check_tokens(&tokens).unwrap_err();
    assert!(matches!(e, Error::TokenizerMismatch { .. }), "{e:?}");
    let e = e.to_string();
    assert!(e.contains("gpt2") && e.contains("llama"), "{e}");
}

/// The Hub's `gpt2` tokenizer.json: legacy `"a b"` merges, `""` affixes, its own offsets and post-processor
/// settings, added tokens marked `normalized`. It gives the ids the embedded tokenizer gives, so it is the
/// same tokenizer.
#[test]
fn the_hubs_gpt2_tokenizer_json_has_the_embedded_identity() {
    let embedded = Tokenizer::gpt2().unwrap();
    let dir = tempfile::tempdir().unwrap();
    embedded.save(&dir.path().join("ours.json")).unwrap();
    let ours: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("ours.json")).unwrap()).unwrap();
    let merges: Vec<String> = ours["model"]["merges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| match m {
            serde_json::Value::Array(pair) => format!("{} {}", pair[0].as_str().unwrap(), pair[1].as_str().unwrap()),
            other => other.as_str().unwrap().to_string(),
        })
        .collect();
    let byte_level = |prefix: bool, trim: bool| serde_json::json!({"type": "ByteLevel", "add_prefix_space": prefix, "trim_offsets": trim, "use_regex": true});
    let hub = serde_json::json!({
        "version": "1.0", "truncation": null, "padding": null,
        "added_tokens": [{"id": 50256, "special": true, "content": "<|endoftext|>", "single_word": false,
            "lstrip": false, "rstrip": false, "normalized": true}],
        "normalizer": null,
        "pre_tokenizer": byte_level(false, true),
        "post_processor": byte_level(true, false),
        "decoder": byte_level(true, true),
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": "",
            "end_of_word_suffix": "", "fuse_unk": false, "byte_fallback": false,
            "vocab": ours["model"]["vocab"], "merges": merges}
    });
    let path = dir.path().join("hub-gpt2.json");
    std::fs::write(&path, serde_json::to_string_pretty(&hub).unwrap()).unwrap();
    let from_hub = Tokenizer::from_file(&path).unwrap();
    assert_eq!(from_hub.hash(), embedded.hash());
    let text = "Hello world, <|endoftext|> naïve 🙂";
    assert_eq!(from_hub.encode(text).unwrap(), embedded.encode(text).unwrap());
    // One merge fewer is another tokenizer.
    let mut fewer = hub.clone();
    fewer["model"]["merges"].as_array_mut().unwrap().pop();
    std::fs::write(&path, fewer.to_string()).unwrap();
    assert_ne!(Tokenizer::from_file(&path).unwrap().hash(), embedded.hash());
}

/// Mistral's sliding window: with a window of 2 and two blocks, position t sees tokens t−2..t only, so the
/// first token cannot reach position 3 (it does without the window).
#[test]
fn a_sliding_window_limits_what_each_position_sees() {
    let dir = tempfile::tempdir().unwrap();
    write_llama(dir.path(), false);
    let path = dir.path().join("config.json");
    let mut config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let hook = "blocks.1.hook_resid_post";
    let reach = |config: &serde_json::Value| -> (f32, f32) {
        std::fs::write(&path, config.to_string()).unwrap();
        let model = Model::load(dir.path().to_str().unwrap()).unwrap();
        let run = |first: u32| {
            model.run(&TokenBatch::new(&[vec![first, 11, 12, 13, 14]]).unwrap(), &Forward::new().hook(hook)).unwrap()
        };
        let (a, b) = (run(10), run(500));
        let delta = (a.get(hook).unwrap() - b.get(hook).unwrap()).unwrap().abs().unwrap().get(0).unwrap();
        let worst = |t: usize| values(&delta.get(t).unwrap()).into_iter().fold(0f32, f32::max);
        (worst(2), worst(3))
    };
    let (near, far) = reach(&config);
    assert!(near > 1e-4 && far > 1e-4, "without a window the first token reaches every position: {near} {far}");
    config["model_type"] = "mistral".into();
    config["architectures"] = serde_json::json!(["MistralForCausalLM"]);
    config["sliding_window"] = 2.into();
    let (near, far) = reach(&config);
    assert!(near > 1e-4, "position 2 still sees token 0 through block 0: {near}");
    assert_eq!(far, 0.0, "position 3 is out of reach");
}

/// θ from `rope_parameters` (newer transformers) is θ; Llama's `attention_bias` puts a bias on o_proj too.
#[test]
fn config_fields_are_read_as_transformers_writes_them() {
    let dir = tempfile::tempdir().unwrap();
    write_llama(dir.path(), false);
    let path = dir.path().join("config.json");
    let original: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let hook = "blocks.1.hook_resid_post";
    let output = |config: &serde_json::Value| -> saekit::Result<Vec<f32>> {
        std::fs::write(&path, config.to_string()).unwrap();
        let model = Model::load(dir.path().to_str().unwrap())?;
        Ok(values(model.run(&batch(), &Forward::new().hook(hook))?.get(hook)?))
    };
    let mut top = original.clone();
    top["rope_theta"] = 500_000.0.into();
    let mut nested = original.clone();
    nested.as_object_mut().unwrap().remove("rope_theta");
    nested["rope_parameters"] = serde_json::json!({"rope_type": "default", "rope_theta": 500_000.0});
    let (plain, top, nested) = (output(&original).unwrap(), output(&top).unwrap(), output(&nested).unwrap());
    assert_eq!(top, nested, "rope_parameters.rope_theta is the θ");
    assert_ne!(plain, top, "θ matters");

    let mut biased = original.clone();
    biased["attention_bias"] = true.into();
    let e = output(&biased).unwrap_err().to_string();
    assert!(e.contains("q_proj.bias"), "{e}");
    let mut weights = candle_core::safetensors::load(dir.path().join("model.safetensors"), &Device::Cpu).unwrap();
    for l in 0..2 {
        for (name, d) in [("q_proj", 16), ("k_proj", 8), ("v_proj", 8)] {
            weights.insert(
                format!("model.layers.{l}.self_attn.{name}.bias"),
                Tensor::zeros(d, DType::F32, &Device::Cpu).unwrap(),
            );
        }
    }
    candle_core::safetensors::save(&weights, dir.path().join("model.safetensors")).unwrap();
    let e = output(&biased).unwrap_err().to_string();
    assert!(e.contains("o_proj.bias"), "o_proj has a bias too under attention_bias: {e}");
}

#[test]
fn a_replacement_must_keep_shape_and_dtype_and_comes_once_per_hook() {
    let dir = tempfile::tempdir().unwrap();
    write_gpt2(dir.path(), "", false);
    let model = Model::load(dir.path().to_str().unwrap()).unwrap();
    let hook = "blocks.0.hook_resid_post";
    let e = model.run(&batch(), &Forward::new().hook(hook).replace(hook, |x| Ok(x.to_dtype(DType::F64)?))).unwrap_err();
    assert!(e.to_string().contains("F64") && e.to_string().contains(hook), "{e}");
    let twice = Forward::new().replace(hook, |x| Ok(x.clone())).replace(hook, |x| Ok(x.clone())).hook(hook);
    let e = model.run(&batch(), &twice).unwrap_err().to_string();
    assert!(e.contains("replaced twice"), "{e}");
}

/// A sentence-transformers folder whose embedding is not mean pooling (or has a Dense head) is refused
/// rather than given a wrong embedding.
#[test]
fn sentence_embeddings_other_than_mean_pooling_are_refused() {
    use saekit::models::bert::check_pooling;
    let mean = serde_json::json!({"pooling_mode_mean_tokens": true, "pooling_mode_cls_token": false});
    let modules = |extra: &str| {
        serde_json::json!([{"type": "sentence_transformers.models.Transformer"},
            {"type": "sentence_transformers.models.Pooling"}, {"type": extra}])
    };
    check_pooling("m", Some(&mean), Some(&modules("sentence_transformers.models.Normalize"))).unwrap();
    let e = check_pooling("m", Some(&mean), Some(&modules("sentence_transformers.models.Dense"))).unwrap_err();
    assert!(e.to_string().contains("Dense"), "{e}");
    let cls = serde_json::json!({"pooling_mode_mean_tokens": false, "pooling_mode_cls_token": true});
    let e = check_pooling("m", Some(&cls), None).unwrap_err();
    assert!(e.to_string().contains("pooling_mode_cls_token"), "{e}");
    let weighted = serde_json::json!({"pooling_mode_mean_tokens": true, "pooling_mode_weightedmean_tokens": true});
    assert!(check_pooling("m", Some(&weighted), None).is_err());
}

/// A published SAE lives in a subfolder of a Hub model repository, in SAELens' layout: it loads from there
/// (into the HF cache) and encodes as the same SAE from a folder does.
#[test]
fn an_sae_loads_from_a_hub_repositorys_subfolder() {
    use saekit::sae::{Architecture, Sae, SaeConfig};
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("sae");
    Sae::new(SaeConfig::new(GPT2_D, 32, Architecture::TopK { k: 4 }), 0.1, 1).unwrap().save(&local).unwrap();
    let file = |name: &str| std::fs::read(local.join(name)).unwrap();
    let server = MockHub::start();
    server.add_repo(
        "models",
        "saekit-tests/tiny-saes",
        "main",
        vec![
            MockFile::git("blocks.1.hook_resid_post/cfg.json", file("cfg.json")),
            MockFile::lfs("blocks.1.hook_resid_post/sae_weights.safetensors", file("sae_weights.safetensors")),
            MockFile::git("README.md", "# saes"),
        ],
    );
    let hub = Hub::new(&server.url(), HubCache::new(dir.path().join("cache")));
    let from_hub = Sae::from_hub(&hub, "saekit-tests/tiny-saes", "blocks.1.hook_resid_post").unwrap();
    assert_eq!(from_hub.source.as_deref(), Some("saekit-tests/tiny-saes/blocks.1.hook_resid_post"));
    let x = Tensor::ones((3, GPT2_D), DType::F32, &Device::Cpu).unwrap();
    let from_disk = Sae::load(&local).unwrap();
    assert_eq!(values(&from_hub.encode(&x).unwrap()), values(&from_disk.encode(&x).unwrap()));
    let e = Sae::from_hub(&hub, "saekit-tests/tiny-saes", "blocks.0.hook_resid_post").unwrap_err();
    assert!(e.to_string().contains("cfg.json"), "{e}");
}
