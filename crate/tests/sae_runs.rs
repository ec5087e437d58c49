//! SAE training runs on the tiny GPT-2 over Austen: several SAEs from one activation pass, each one's
//! weights those of a lone trainer fed the same store; the run as a catalog artifact with lineage, its
//! files (SAELens' layout, the history as Parquet, the resolved config); reuse; `saekit train` killed with
//! SIGKILL and run again, and a cancelled job run again, end with an uninterrupted run's weights; and
//! `saekit runs`.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use saekit::activations::StoreOptions;
use saekit::display::Render;
use saekit::sae::train::{TrainConfig, Trainer};
use saekit::sae::{Architecture, Sae, SaeConfig, SaeRunSpec, SaeSpec};
use saekit::{Error, Workspace};
use support::austen::{Fixture, fixture};

const BIN: &str = env!("CARGO_BIN_EXE_saekit");
const RESID: &str = "blocks.1.hook_resid_post";
const MLP: &str = "blocks.0.mlp.hook_post";

fn cache_params() -> saekit::activations::CacheParams {
    saekit::activations::CacheParams { max_tokens: Some(3000), ..Default::default() }
}

/// Three SAEs at two hooks: TopK and standard at the residual stream, a normalised TopK with `b_dec`
/// at the mean at the MLP; 24 steps of 128 tokens, a history row every 4 steps.
fn three(f: &Fixture) -> SaeRunSpec {
    let quick = TrainConfig { lr: 3e-3, dead_feature_window: 8, feature_sampling_window: 10, ..Default::default() };
    SaeRunSpec::new(&f.tokens, &f.model)
        .sae(SaeSpec::topk(RESID, 64, 4).train(quick.clone()))
        .sae(SaeSpec::standard(RESID, 32, 0.5).train(TrainConfig { l1_coefficient: 0.5, ..quick.clone() }))
        .sae(SaeSpec::topk(MLP, 128, 8).train(quick).normalized().b_dec_at_mean().name("mlp"))
        .cache(cache_params())
        .training_tokens(24 * 128)
        .batch_tokens(128)
        .buffer_tokens(1024)
        .seed(5)
        .metrics_every(4)
        .checkpoint_every(0)
}

fn weights(sae: &Sae) -> Vec<Vec<f32>> {
    [&sae.w_enc, &sae.b_enc, &sae.w_dec, &sae.b_dec]
        .iter()
        .map(|t| t.flatten_all().unwrap().to_vec1::<f32>().unwrap())
        .collect()
}

#[test]
fn several_saes_train_from_one_pass_into_a_run_with_lineage_files_and_history() {
    let f = fixture();
    let run = f.ws.train_saes(&three(&f)).unwrap();
    assert_eq!((run.steps(), run.tokens()), (24, 24 * 128));
    let names: Vec<&str> = run.summaries().iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, [format!("{RESID}-topk4-64").as_str(), &format!("{RESID}-standard-32"), "mlp"]);
    assert_eq!(f.ws.activation_caches().unwrap().len(), 1, "one cache holds both hooks");
    let cache = f.ws.activation_caches().unwrap().remove(0);
    let hooks: Vec<&str> = cache.hooks().iter().map(|h| h.name.as_str()).collect();
    assert_eq!(hooks, [RESID, MLP]);

    // The first SAE is what a lone trainer makes from a store of the same options: the run adds nothing
    // to the batches and steps.
    let store_options = StoreOptions { batch_tokens: 128, buffer_tokens: 1024, seed: 5, epochs: 2 };
    let mut store = cache.store(&store_options).unwrap();
    let quick = TrainConfig {
        lr: 3e-3,
        dead_feature_window: 8,
        feature_sampling_window: 10,
        total_steps: 24,
        ..Default::default()
    };
    // The run's products are on the system's OpenBLAS when it opens (`blas: auto`); the lone trainer's too.
    let blas = saekit::sae::blas::Blas::open("openblas").ok().map(std::sync::Arc::new);
    let mut lone = Trainer::new(Sae::new(SaeConfig::new(16, 64, Architecture::TopK { k: 4 }), 0.1, 5).unwrap(), quick)
        .unwrap()
        .blas(blas);
    for _ in 0..24 {
        lone.step(store.next_batch().unwrap().unwrap().get(RESID).unwrap()).unwrap();
    }
    let first = run.sae(&names[0]).unwrap();
    assert_eq!(weights(&first), weights(&lone.sae().unwrap()));
    // Its sparsity file is the last window's densities (steps 21–24: 4 × 128 tokens), as log10.
    let sparsity = first.sparsity.as_ref().unwrap().to_vec1::<f32>().unwrap();
    assert_eq!(sparsity, lone.log10_density());
    let fired = sparsity.iter().filter(|&&s| s > -10.0).count();
    assert!(fired > 4 && fired <= 64, "{fired}");
    let total: f64 = lone.feature_density().iter().sum();
    assert!((total - 4.0).abs() < 1e-9, "TopK k=4: the densities sum to k ({total})");

    // Files: SAELens' layout with metadata, normalisation folded in, the resolved config, the history.
    let mlp = run.sae("mlp").unwrap();
    assert_eq!((mlp.config.d_in, mlp.config.d_sae, mlp.config.k), (64, 128, Some(8)));
    assert_eq!(mlp.config.normalize_activations, "none");
    let meta = &mlp.config.metadata;
    assert_eq!(meta.hook_name.as_deref(), Some(MLP));
    assert_eq!(meta.model_name.as_deref(), Some(f.model.name()));
    assert_eq!((meta.context_size, meta.prepend_bos), (Some(32), Some(true)));
    assert_eq!(meta.dataset_path.as_deref(), Some(f.tokens.name()));
    let stats = cache.stats().hooks.iter().find(|h| h.name == MLP).unwrap();
    let scale = run.summaries()[2].input_scale;
    assert!((scale - 8.0 / stats.mean_norm).abs() < 1e-12, "√64 / mean norm: {scale}");
    assert_eq!(run.summaries()[0].input_scale, 1.0);
    // Folded: the saved SAE on raw activations reconstructs them at their own scale.
    let batch = cache.store(&StoreOptions { batch_tokens: 512, ..Default::default() }).unwrap().next_batch().unwrap();
    let x = batch.unwrap().get(MLP).unwrap().clone();
    let (_, x_hat) = mlp.forward(&x).unwrap();
    let norm = |t: &saekit::models::Tensor| t.sqr().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap().sqrt();
    let ratio = norm(&x_hat) / norm(&x);
    assert!(ratio > 0.3 && ratio < 1.5, "reconstruction at the input's scale: {ratio}");

    let config = run.config().unwrap();
    assert_eq!(config.saes[1].hook, RESID);
    assert_eq!(config.saes[1].seed, Some(6), "the run's seed plus the SAE's place");
    assert_eq!(config.cache.hooks, [RESID, MLP]);
    assert_eq!(config.saes[0].train.total_steps, 24);

    let history = run.history().unwrap();
    assert_eq!(history.rows.len(), 3 * 6, "3 SAEs × steps 4, 8, …, 24");
    let steps: Vec<u64> = history.rows.iter().filter(|r| r.sae == "mlp").map(|r| r.metrics.step).collect();
    assert_eq!(steps, [4, 8, 12, 16, 20, 24]);
    assert_eq!(history.rows.last().unwrap().tokens, 24 * 128);
    for s in run.summaries() {
        let curve = history.series(&s.name, |r| r.metrics.mse);
        assert!(curve.last().unwrap().1 < curve[0].1, "{}: MSE falls: {curve:?}", s.name);
        assert_eq!(s.last, history.rows.iter().rev().find(|r| r.sae == s.name).unwrap().metrics);
    }
    assert!(run.path().join("history.parquet").is_file());
    assert!(!run.path().join("checkpoint").exists(), "no checkpoint is kept with a finished run");

    // Lineage: the cache, the tokenization and the model.
    let lineage = run.lineage(&f.ws).unwrap();
    let mut parents: Vec<&str> =
        lineage.nodes.iter().filter(|(_, depth)| *depth == -1).map(|(a, _)| a.kind.as_str()).collect();
    parents.sort();
    assert_eq!(parents, ["activations", "model", "tokenization"]);

    // Shown: the SAEs with their last metrics and the curves.
    let card = run.bundle();
    for text in ["SAE run", "mlp", "topk k=4", "explained variance", "24 steps"] {
        assert!(card.plain().contains(text), "{text}: {}", card.plain());
    }
    assert!(card.get("image/svg+xml").is_some() || card.get("text/html").unwrap().contains("<svg"));

    // The same request again is the same run, not trained again.
    let job = f.ws.train_saes_job(&three(&f));
    let again = job.wait().unwrap();
    assert_eq!(again.id(), run.id());
    assert!(
        job.bundle().plain().contains("24 of 24"),
        "a reused run shows its final dashboard: {}",
        job.bundle().plain()
    );
    assert_eq!(f.ws.sae_runs().unwrap().len(), 1);
    // Where and how the steps run is not part of the run: another thread count or BLAS is the same run.
    let elsewhere = f.ws.train_saes(&three(&f).threads(1).blas("gemm")).unwrap();
    assert_eq!(elsewhere.id(), run.id());
    // The same name with another config is refused.
    let other = three(&f).name(run.name()).seed(9);
    let e = f.ws.train_saes(&other).unwrap_err();
    assert!(e.to_string().contains("another config"), "{e}");
}

#[test]
fn a_config_is_checked_before_anything_is_made() {
    let f = fixture();
    let bad = |spec: SaeRunSpec, want: &str| {
        let e = f.ws.train_saes(&spec).unwrap_err();
        assert!(e.to_string().contains(want), "{want}: {e}");
    };
    let base = || SaeRunSpec::new(&f.tokens, &f.model).cache(cache_params()).batch_tokens(128);
    bad(base(), "at least one SAE");
    bad(base().sae(SaeSpec::topk("blocks.7.hook_resid_post", 8, 2)), "blocks.7");
    bad(base().sae(SaeSpec::topk(RESID, 8, 9)), "k 9 must be between 1 and d_sae 8");
    bad(base().sae(SaeSpec::topk(RESID, 8, 2)).sae(SaeSpec::topk(RESID, 8, 2)), "two SAEs are named");
    bad(base().sae(SaeSpec { normalize_activations: "layer_norm".into(), ..SaeSpec::topk(RESID, 8, 2) }), "layer_norm");
    assert!(f.ws.activation_caches().unwrap().is_empty(), "nothing was cached for a bad config");
    bad(base().sae(SaeSpec::topk(RESID, 8, 2)).training_tokens(100), "is not one step");
}

/// A run config for the CLI: a long enough run (a wide MLP SAE, 240 steps) with a checkpoint every 20.
fn cli_config(f: &Fixture, name: &str) -> PathBuf {
    let config = serde_json::json!({
        "name": name,
        "tokenization": f.tokens.name(),
        "model": f.model_dir(),
        "saes": [
            {"hook": MLP, "d_sae": 2048, "k": 16, "lr": 1e-3, "dead_feature_window": 50},
            {"hook": RESID, "architecture": "standard", "d_sae": 64, "l1_coefficient": 0.3, "l1_warm_up_steps": 30}
        ],
        "training_tokens": 240 * 128,
        "train_batch_size_tokens": 128,
        "buffer_tokens": 1024,
        "seed": 1,
        "metrics_every": 10,
        "checkpoint_every": 20,
        "cache": {"max_tokens": 3000},
        "memory": "1GiB"
    });
    let path = f.dir.path().join(format!("{name}.json"));
    std::fs::write(&path, serde_json::to_string_pretty(&config).unwrap()).unwrap();
    path
}

fn train(ws: &Workspace, config: &Path) -> Command {
    let mut c = Command::new(BIN);
    c.args(["--workspace", ws.root().to_str().unwrap(), "train", config.to_str().unwrap()]);
    c
}

/// The resumable work directory of a run, once it holds a checkpoint.
fn checkpointed(ws: &Workspace) -> Option<PathBuf> {
    std::fs::read_dir(ws.root().join("tmp"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.join("checkpoint/state.json").is_file() && p.join("RESUMABLE").is_file())
}

#[test]
fn saekit_train_killed_with_sigkill_resumes_to_the_weights_of_an_uninterrupted_run() {
    let f = fixture();
    let whole = train(&f.ws, &cli_config(&f, "whole")).output().unwrap();
    assert!(whole.status.success(), "{}", String::from_utf8_lossy(&whole.stderr));
    let card = String::from_utf8_lossy(&whole.stdout);
    assert!(card.contains("SAE run whole") && card.contains("240 steps"), "{card}");

    let killed_config = cli_config(&f, "killed");
    let mut child = train(&f.ws, &killed_config).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(300);
    let partial = loop {
        if let Some(p) = checkpointed(&f.ws) {
            break p;
        }
        assert!(child.try_wait().unwrap().is_none(), "the run ended before it could be killed");
        assert!(Instant::now() < deadline, "no checkpoint appeared");
        std::thread::sleep(Duration::from_millis(2));
    };
    child.kill().unwrap();
    child.wait().unwrap();
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(partial.join("checkpoint/state.json")).unwrap()).unwrap();
    let at = state["step"].as_u64().unwrap();
    assert!(at > 0 && at < 240 && at % 20 == 0, "killed at a checkpoint mid-run: {at}");
    assert_eq!(f.ws.sae_runs().unwrap().len(), 1, "the killed run is not ready");

    // Reopening (which clears dead writers' partials) keeps the resumable one; running again continues.
    let ws = Workspace::open(f.ws.root()).unwrap();
    assert!(partial.join("checkpoint/state.json").is_file());
    let again = train(&ws, &killed_config).output().unwrap();
    assert!(again.status.success(), "{}", String::from_utf8_lossy(&again.stderr));
    assert!(!partial.exists(), "the partial became the run");
    let (whole, killed) = (ws.sae_run("whole").unwrap(), ws.sae_run("killed").unwrap());
    for name in ["blocks.0.mlp.hook_post-topk16-2048", "blocks.1.hook_resid_post-standard-64"] {
        let (a, b) = (whole.sae(name).unwrap(), killed.sae(name).unwrap());
        assert_eq!(weights(&a), weights(&b), "{name}");
        assert_eq!(
            a.sparsity.unwrap().to_vec1::<f32>().unwrap(),
            b.sparsity.unwrap().to_vec1::<f32>().unwrap(),
            "{name}: the density window came back too"
        );
    }
    let strip = |h: saekit::sae::RunHistory| -> Vec<_> { h.rows.into_iter().map(|r| (r.sae, r.metrics)).collect() };
    let (a, b) = (strip(whole.history().unwrap()), strip(killed.history().unwrap()));
    assert_eq!(a.len(), b.len());
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        assert_eq!(x, y, "history row {i} (killed at step {at})");
    }

    // `saekit runs` lists both with their SAEs' final metrics.
    let out = Command::new(BIN).args(["--workspace", ws.root().to_str().unwrap(), "runs"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.lines().count(), 1 + 2 * 2, "{text}");
    let last = whole.summaries()[0].last;
    assert!(text.contains(&format!("whole\t240\t{}\tblocks.0.mlp.hook_post-topk16-2048", 240 * 128)), "{text}");
    assert!(text.contains(&format!("{:.4}", last.explained_variance)), "{text}");
}

#[test]
fn a_cancelled_job_keeps_its_checkpoint_and_the_next_attempt_continues_from_it() {
    let f = fixture();
    let spec = three(&f).training_tokens(400 * 128).checkpoint_every(10).name("cancelled");
    let whole_job = f.ws.train_saes_job(&spec.clone().name("whole"));
    let whole = whole_job.wait().unwrap();
    // Its display ends as the dashboard of the finished run: where it got, each SAE's last metrics, curves.
    let shown = whole_job.bundle();
    for text in ["done in", "Training whole", "400 of 400", "mlp", "explained variance", "dead latents"] {
        assert!(shown.plain().contains(text), "{text}: {}", shown.plain());
    }
    assert!(shown.get("text/html").unwrap().contains("<svg"), "the curves are static SVG");
    let job = f.ws.train_saes_job(&spec);
    let deadline = Instant::now() + Duration::from_secs(300);
    while checkpointed(&f.ws).is_none() {
        assert!(Instant::now() < deadline && !job.status().is_finished(), "no checkpoint before the end");
        std::thread::sleep(Duration::from_millis(1));
    }
    job.cancel();
    assert!(matches!(job.wait(), Err(Error::Cancelled)));
    let id = f.ws.catalog().with_conn(|c| f.ws.catalog().artifact_id_in(c, "sae_run", "cancelled")).unwrap();
    let row = f.ws.catalog().artifact(id.expect("the cancelled run's row")).unwrap();
    assert_eq!(row.status.to_string(), "failed", "the cancelled run stays listed beside its partial");
    assert!(row.error.unwrap_or_default().contains("cancel"));
    let partial = row.path.expect("the row names the partial it left");
    assert!(partial.join("checkpoint/state.json").is_file(), "{}", partial.display());
    let resumed = f.ws.train_saes(&spec).unwrap();
    for s in whole.summaries() {
        assert_eq!(weights(&whole.sae(&s.name).unwrap()), weights(&resumed.sae(&s.name).unwrap()), "{}", s.name);
    }
    assert!(!partial.exists(), "the partial became the run");

    // A cancelled run deleted takes its partial with it.
    let job = f.ws.train_saes_job(&spec.clone().name("dropped"));
    while checkpointed(&f.ws).is_none() {
        assert!(!job.status().is_finished(), "no checkpoint before the end");
        std::thread::sleep(Duration::from_millis(1));
    }
    job.cancel();
    assert!(job.wait().is_err());
    let partial = checkpointed(&f.ws).unwrap();
    let id = f.ws.catalog().with_conn(|c| f.ws.catalog().artifact_id_in(c, "sae_run", "dropped")).unwrap().unwrap();
    f.ws.delete_artifact(&id, false).unwrap();
    assert!(!partial.exists(), "deleted with its row: {}", partial.display());
}

#[test]
fn saekit_train_names_the_file_and_the_field_of_a_bad_config() {
    let f = fixture();
    let path = f.dir.path().join("bad.json");
    std::fs::write(&path, r#"{"tokenization": "x", "model": "y", "saes": [{"hook": "h", "d_sea": 3}]}"#).unwrap();
    let out = train(&f.ws, &path).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.json") && err.contains("unknown field `d_sea`"), "{err}");
}

/// An SAE that reconstructs exactly (W_enc = [I, −I], W_dec = [I; −I]: relu(x) − relu(−x) = x) and one
/// that reconstructs nothing, spliced into the tiny GPT-2 on held-out sequences: the first recovers all of
/// the CE that zeroing the hook loses, with no KL; the second none; the reconstruction metrics are their
/// formulas over the same tokens read independently (BOS left out).
#[test]
fn evaluation_splices_saes_into_the_model_on_held_out_sequences() {
    use saekit::sae::eval::{Evaluated, evaluate};
    use std::sync::Arc;
    let f = fixture();
    let d = 16;
    let mut perfect = Sae::new(SaeConfig::new(d, 2 * d, Architecture::Standard), 0.1, 0).unwrap();
    let mut enc = vec![0f32; d * 2 * d];
    let mut dec = vec![0f32; 2 * d * d];
    for i in 0..d {
        enc[i * 2 * d + i] = 1.0;
        enc[i * 2 * d + d + i] = -1.0;
        dec[i * d + i] = 1.0;
        dec[(d + i) * d + i] = -1.0;
    }
    let device = saekit::models::Device::Cpu;
    perfect.w_enc = saekit::models::Tensor::from_vec(enc, (d, 2 * d), &device).unwrap();
    perfect.w_dec = saekit::models::Tensor::from_vec(dec, (2 * d, d), &device).unwrap();
    let mut nothing = perfect.clone();
    nothing.w_dec = nothing.w_dec.zeros_like().unwrap();
    let saes = [("perfect", perfect), ("nothing", nothing)].map(|(name, sae)| Evaluated {
        name: name.into(),
        hook: RESID.into(),
        sae: Arc::new(sae),
    });
    let store = f.tokens.store().unwrap();
    let sequences: Vec<Vec<u32>> = (200..212).map(|i| store.get(i).unwrap()).collect();
    let evaluation = evaluate(&f.model, &saes, &sequences, 5, &[50256]).unwrap();
    let (p, n) = (&evaluation.saes[0], &evaluation.saes[1]);

    // The tokens, and Σ‖x‖² over them, read from the model directly.
    let mut tokens = 0u64;
    let mut sum_sq = 0f64;
    let mut clean_ce = (0f64, 0f64);
    for s in &sequences {
        let out = f
            .model
            .run(&saekit::models::TokenBatch::new(&[s]).unwrap(), &saekit::models::Forward::new().hook(RESID).loss())
            .unwrap();
        let x = out.tokens(RESID).unwrap().to_vec2::<f32>().unwrap();
        for (row, &id) in x.iter().zip(s) {
            if id != 50256 {
                tokens += 1;
                sum_sq += row.iter().map(|v| (*v as f64).powi(2)).sum::<f64>();
            }
        }
        clean_ce.0 += out.loss.unwrap() as f64 * (s.len() - 1) as f64;
        clean_ce.1 += (s.len() - 1) as f64;
    }
    assert_eq!((p.tokens, n.tokens), (tokens, tokens));
    assert!(p.mse < 1e-8 && p.explained_variance > 1.0 - 1e-8, "{p:?}");
    assert!((n.mse - sum_sq / tokens as f64).abs() < 1e-6 * n.mse, "nothing reconstructed: MSE is Σ‖x‖²/N: {n:?}");
    assert!(n.explained_variance < 0.0, "worse than the mean: {n:?}");
    assert!(p.l0 > 15.0 && p.l0 <= 16.0, "every nonzero coordinate is one latent: {}", p.l0);
    let (dp, dn) = (p.downstream, n.downstream);
    assert_eq!(dp.measure, "next-token CE");
    assert!((dp.clean - clean_ce.0 / clean_ce.1).abs() < 1e-5, "{dp:?} vs {clean_ce:?}");
    // (A random tiny model is worse than uniform, so zeroing its residual stream lowers the CE: what
    // counts is that it moves it.)
    assert!((dp.ablated - dp.clean).abs() > 1e-3, "zeroing the residual stream changes the CE: {dp:?}");
    assert!((dp.recovered.unwrap() - 1.0).abs() < 1e-3 && dp.kl_with_sae.unwrap() < 1e-6, "{dp:?}");
    assert!(dn.recovered.unwrap().abs() < 1e-6 && (dn.kl_with_sae.unwrap() - dn.kl_ablated.unwrap()).abs() < 1e-9);
    assert!(dn.kl_ablated.unwrap() > 1e-3);
    let shown = evaluation.bundle().plain().to_string();
    assert!(shown.contains("perfect") && shown.contains("100.0%") && shown.contains("recovered"), "{shown}");

    // A run's evaluation uses the sequences after those its cache read.
    let run = f.ws.train_saes(&three(&f)).unwrap();
    let evaluation = run.evaluate(&f.ws, &f.model, 6).unwrap();
    assert_eq!(evaluation.sequences, 6);
    assert_eq!(evaluation.saes.len(), 3);
    let first = f.ws.activation_caches().unwrap()[0].stats().sequences as usize;
    let held_out: u64 =
        (first..first + 6).map(|i| store.get(i).unwrap().iter().filter(|&&t| t != 50256).count() as u64).sum();
    assert_eq!(evaluation.saes[0].tokens, held_out);
    for s in &evaluation.saes {
        let r = s.downstream.recovered.unwrap();
        assert!(r.is_finite() && s.explained_variance.is_finite(), "{s:?}");
    }
    // From a terminal.
    let out = Command::new(BIN)
        .args(["--workspace", f.ws.root().to_str().unwrap(), "eval", run.name(), "--sequences", "6", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["saes"][2]["name"], "mlp");
    assert_eq!(json["saes"][0]["tokens"].as_u64(), Some(held_out));
}

/// Feature views of a run's SAE on held-out tokens: every latent's firing counted, the top contexts the
/// latent's own strongest activations (recomputed per sequence), the histogram its firings, the logit
/// effects in order; dataset text escaped; and runs compared with their frontier.
#[test]
fn feature_views_and_run_comparison() {
    use saekit::sae::{Comparison, FeatureView};
    let f = fixture();
    let run = f.ws.train_saes(&three(&f)).unwrap();
    let name = run.summaries()[0].name.clone();
    let atlas = run.features(&f.ws, &f.model, &name, 10).unwrap();
    let evaluation = run.evaluate(&f.ws, &f.model, 10).unwrap();
    assert_eq!(atlas.tokens, evaluation.saes[0].tokens, "the same held-out tokens");
    let density = atlas.density();
    let l0: f64 = density.iter().sum();
    assert!((l0 - evaluation.saes[0].l0).abs() < 1e-9, "densities sum to L0: {l0} vs {}", evaluation.saes[0].l0);
    let mlp = run.features(&f.ws, &f.model, "mlp", 4).unwrap();
    let busiest = (0..mlp.d_sae()).max_by_key(|&j| (mlp.density()[j] * 1e9) as u64).unwrap();
    assert!(mlp.feature(busiest).unwrap().promoted.is_empty(), "an MLP-hidden direction has no direct logit effect");
    let densest = (0..atlas.d_sae()).max_by(|&a, &b| density[a].total_cmp(&density[b])).unwrap();
    let view = atlas.feature(densest).unwrap();
    assert_eq!(view.fired as f64, density[densest] * atlas.tokens as f64);
    assert_eq!(view.histogram.iter().map(|(_, c)| c).sum::<u64>(), view.fired);
    assert!(!view.contexts.is_empty() && view.contexts.len() <= 8);
    let top = &view.contexts[0];
    assert!((top.activations[top.top] - view.max).abs() <= 1e-4 * view.max.max(1.0), "{top:?} vs max {}", view.max);
    for pair in view.contexts.windows(2) {
        assert!(pair[0].activations[pair[0].top] >= pair[1].activations[pair[1].top] - 1e-4, "strongest first");
    }
    assert_eq!(
        (view.promoted.len(), view.suppressed.len()),
        (10, 10),
        "GPT-2 has an LM head, the SAE is on the residual stream"
    );
    assert!(view.promoted.windows(2).all(|w| w[0].1 >= w[1].1) && view.promoted[0].1 > view.suppressed[0].1);
    assert!(view.train_log10_density.is_some(), "sparsity.safetensors is read");
    let shown = view.bundle();
    for text in ["latent", "density", "top contexts", "⟦", "promotes"] {
        assert!(shown.plain().contains(text), "{text}: {}", shown.plain());
    }
    assert!(atlas.feature(atlas.d_sae()).is_err());
    let table = atlas.table(5).bundle().plain().to_string();
    assert!(table.contains("densest") && table.contains("rarest") && table.contains("dead"), "{table}");

    // Text from the data is escaped.
    let mut hostile: FeatureView = view.clone();
    hostile.contexts[0].tokens[0] = "<script>alert(1)</script>".into();
    let html = hostile.bundle().get("text/html").unwrap().to_string();
    assert!(html.contains("&lt;script&gt;") && !html.contains("<script>"), "escaped");

    // Comparing: a point per SAE, the frontier marked, the charts static SVG.
    let comparison = Comparison::new([(run.name(), &evaluation)]);
    assert_eq!(comparison.points.len(), 3);
    assert!(!comparison.frontier().is_empty());
    let shown = comparison.bundle();
    assert!(shown.plain().contains("on the frontier") && shown.get("image/svg+xml").unwrap().contains("<svg"));
}

/// A run `saekit train` makes in another process, watched from here through the workspace: the watch's
/// display becomes the run's dashboard while it trains (its progress the run's steps), and the watch ends
/// with the run.
#[test]
fn a_run_another_process_trains_is_watched_from_the_workspace() {
    let f = fixture();
    let watch = f.ws.watch_sae_run("elsewhere");
    std::thread::sleep(Duration::from_millis(300));
    assert!(watch.view().is_none() && !watch.status().is_finished(), "waiting for it to start");
    let mut child =
        train(&f.ws, &cli_config(&f, "elsewhere")).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(300);
    let mid = loop {
        let p = watch.progress();
        if let Some(view) = watch.view().filter(|_| p.phase == "training" && p.done < 240) {
            break (view, p);
        }
        assert!(!watch.status().is_finished(), "the watch ended before a dashboard: {:?}", watch.progress());
        assert!(Instant::now() < deadline, "no dashboard while it trained");
        std::thread::sleep(Duration::from_millis(5));
    };
    let (view, progress) = mid;
    assert_eq!(progress.total, Some(240));
    assert!(view.plain().contains("Training elsewhere") && view.plain().contains("of 240"), "{}", view.plain());
    let run = watch.wait().unwrap();
    assert!(child.wait().unwrap().success());
    assert_eq!((run.name(), run.steps()), ("elsewhere", 240));
    assert!(watch.bundle().plain().contains("240 of 240"), "{}", watch.bundle().plain());
}
