//! The activation store on a tiny GPT-2 (2 layers, 16 wide, fixed seed) over the embedded Austen corpus:
//! every kept token is served once per epoch in an order the seed fixes, values are the model's own
//! activations, `skip` resumes with the batches a full run gives, exclusions and outliers are counted,
//! a cache is reused and has lineage, f16/bf16 round within their precision, budgets are stated and
//! refused, disk usage and clean-up, and a fill killed with SIGKILL leaves nothing corrupt and reruns.
//! MiniLM's real weights, numpy reading the shards and the memory bound are in tests/test_activations.py.

mod support;

use std::collections::HashSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use saekit::activations::{ActivationSpec, CacheDtype, StoreOptions};
use saekit::display::Render;
use saekit::models::{Forward, Model, TokenBatch};
use saekit::tokenize::Tokenizer;
use saekit::{Error, Workspace};
use support::austen::{Fixture, fixture};

const BIN: &str = env!("CARGO_BIN_EXE_saekit");
const RESID: &str = "blocks.1.hook_resid_post";
const MLP: &str = "blocks.0.mlp.hook_post";

fn spec(f: &Fixture) -> ActivationSpec {
    ActivationSpec::new(&f.tokens, &f.model, [RESID, MLP])
        .max_tokens(6000)
        .batch_tokens(128)
        .buffer_tokens(1024)
        .shard_tokens(1000)
        .seed(3)
        .memory(1 << 30)
}

/// (rows, first hook's values) of every batch.
fn drain(store: &mut saekit::activations::ActivationStore) -> Vec<(Vec<u64>, Vec<f32>)> {
    let mut out = Vec::new();
    while let Some(batch) = store.next_batch().unwrap() {
        out.push((batch.rows.clone(), batch.tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap()));
    }
    out
}

#[test]
fn every_kept_token_is_served_once_with_the_models_own_activations() {
    let f = fixture();
    let mut store = f.ws.activation_store(&spec(&f)).unwrap();
    let cache = store.cache().clone();
    assert_eq!(cache.num_tokens(), 6000);
    let first = store.next_batch().unwrap().unwrap();
    assert_eq!(first.get(RESID).unwrap().dims(), [128, 16]);
    assert_eq!(first.get(MLP).unwrap().dims(), [128, 64]);
    assert!(first.get("blocks.0.hook_resid_pre").is_err());
    let shown = first.bundle();
    assert!(shown.plain().contains("128 tokens") && shown.plain().contains("[128, 64]"), "{}", shown.plain());

    // Mixed: the first batch is not in row order and spans many blocks of the cache.
    let mut sorted = first.rows.clone();
    sorted.sort_unstable();
    assert_ne!(sorted, first.rows);
    let blocks: HashSet<u64> = first.rows.iter().map(|r| r / 256).collect();
    assert!(blocks.len() >= 3, "{blocks:?}");

    // Values are the model's activations at that token, run on its own.
    let token_store = f.tokens.store().unwrap();
    for (i, &row) in first.rows.iter().enumerate().take(12) {
        let (sequence, position, token) = store.token_of(row).unwrap();
        let ids = token_store.get(sequence as usize).unwrap();
        assert_eq!(ids[position as usize], token);
        let out = f.model.run(&TokenBatch::new(&[ids]).unwrap(), &Forward::new().hooks([RESID, MLP])).unwrap();
        for (hook, width) in [(RESID, 16), (MLP, 64)] {
            let want = out.get(hook).unwrap().get(0).unwrap().get(position as usize).unwrap().to_vec1::<f32>().unwrap();
            let got = first.get(hook).unwrap().get(i).unwrap().to_vec1::<f32>().unwrap();
            assert_eq!(got.len(), width);
            for (g, w) in got.iter().zip(&want) {
                assert!((g - w).abs() <= 1e-4 * (1.0 + w.abs()), "{hook} row {row}: {g} vs {w}");
            }
        }
    }

    // Every row once, the rest left over (fewer than a batch).
    let mut seen: HashSet<u64> = first.rows.iter().copied().collect();
    let rest = drain(&mut store);
    for (rows, _) in &rest {
        assert_eq!(rows.len(), 128);
        for r in rows {
            assert!(seen.insert(*r), "row {r} served twice");
        }
    }
    assert_eq!(store.served_tokens(), seen.len() as u64);
    assert_eq!(store.served_tokens() + store.left_over(), 6000);
    assert!(store.left_over() < 128);
    assert!(store.next_batch().unwrap().is_none(), "a finished store stays finished");

    // The seed fixes the order; another seed gives another.
    let options = store.options().clone();
    let again = drain(&mut cache.store(&options).unwrap());
    let mut all = vec![(first.rows.clone(), first.tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap())];
    all.extend(rest);
    assert_eq!(again, all);
    let other = drain(&mut cache.store(&StoreOptions { seed: 4, ..options }).unwrap());
    assert_eq!(other.len(), all.len());
    assert_ne!(other[0].0, all[0].0);

    let card = store.bundle();
    assert!(card.plain().contains("served") && card.plain().contains(RESID), "{}", card.plain());
}

#[test]
fn skip_resumes_with_the_batches_a_full_run_gives() {
    let f = fixture();
    let cache = f.ws.activation_cache(&spec(&f)).unwrap();
    let options = StoreOptions { batch_tokens: 128, buffer_tokens: 1024, seed: 9, epochs: 2 };
    let full = drain(&mut cache.store(&options).unwrap());
    // Two epochs, each in its own order.
    assert!(full.len() >= 2 * (6000 / 128) - 1, "{}", full.len());
    let epoch_rows: usize = 6000 / 128;
    assert_ne!(full[0].0, full[epoch_rows + 1].0);
    for k in [0, 1, 3, 4, 17, epoch_rows, full.len() - 1] {
        let mut store = cache.store(&options).unwrap();
        assert_eq!(store.skip(k as u64 * 128).unwrap(), k as u64 * 128);
        let resumed = drain(&mut store);
        assert_eq!(resumed.len(), full.len() - k, "after skipping {k} batches");
        assert!(resumed == full[k..], "after skipping {k} batches the batches differ");
    }
    // Skipping past the end stops there; a partial batch cannot be skipped.
    let mut store = cache.store(&options).unwrap();
    assert_eq!(store.skip(1 << 30).unwrap(), full.len() as u64 * 128);
    assert!(store.next_batch().unwrap().is_none());
    let e = cache.store(&options).unwrap().skip(100).unwrap_err();
    assert!(e.to_string().contains("multiple of 128"), "{e}");
}

#[test]
fn special_tokens_and_outliers_are_left_out_and_counted() {
    let f = fixture();
    let bos = 50256u32;
    let cache = f.ws.activation_cache(&spec(&f)).unwrap();
    let s = cache.stats().clone();
    let token_store = f.tokens.store().unwrap();
    let run: Vec<u32> = (0..s.sequences as usize).flat_map(|i| token_store.get(i).unwrap()).collect();
    assert_eq!(s.tokens_seen, run.len() as u64);
    let bos_count = run.iter().filter(|&&t| t == bos).count() as u64;
    assert!(bos_count > 0);
    assert_eq!(s.dropped_special, bos_count);
    assert_eq!(s.kept + s.dropped_special + s.dropped_outlier + s.past_cap, s.tokens_seen);
    let store = cache.store(&StoreOptions::default()).unwrap();
    assert!((0..cache.num_tokens()).all(|r| store.token_of(r).unwrap().2 != bos), "no BOS is cached");

    // Kept when asked, and with no outlier filter every token run is kept (up to the cap).
    let keep = f.ws.activation_cache(&spec(&f).exclude_special_tokens(false).outlier_factor(None)).unwrap();
    assert_ne!(keep.id(), cache.id());
    assert_eq!(keep.stats().dropped_special + keep.stats().dropped_outlier, 0);
    let store = keep.store(&StoreOptions::default()).unwrap();
    assert!((0..keep.num_tokens()).any(|r| store.token_of(r).unwrap().2 == bos));

    // A tight factor drops many; what is kept is within it at every hook.
    let tight = f.ws.activation_cache(&spec(&f).outlier_factor(Some(1.1))).unwrap();
    let t = tight.stats();
    assert!(t.dropped_outlier > 100, "{t:?}");
    assert!(t.hooks.iter().all(|h| h.outliers <= t.dropped_outlier), "a token dropped at several hooks counts once");
    for h in &t.hooks {
        assert!(h.max_norm <= h.threshold.unwrap(), "{}: {} > {:?}", h.name, h.max_norm, h.threshold);
        assert!(h.median_norm > 0.0 && h.mean_norm > 0.0);
        assert_eq!(h.histogram.counts.iter().sum::<u64>(), t.kept + t.dropped_outlier + t.past_cap);
    }
    // The list of ids to leave out works the same way.
    let the = Tokenizer::gpt2().unwrap().token_to_id("Ġthe").unwrap();
    let listed = f.ws.activation_cache(&spec(&f).exclude_tokens([the])).unwrap();
    let ls = listed.stats();
    let n_the =
        (0..ls.sequences as usize).flat_map(|i| token_store.get(i).unwrap()).filter(|&x| x == the).count() as u64;
    assert!(n_the > 0);
    assert_eq!(ls.dropped_listed, n_the, "every listed token run is counted");

    let card = tight.bundle();
    assert!(card.plain().contains("outliers") && card.get("text/html").unwrap().contains("<svg"), "{}", card.plain());
}

#[test]
fn the_same_request_reuses_the_cache_and_lineage_names_tokens_and_model() {
    let f = fixture();
    let a = f.ws.activation_cache(&spec(&f)).unwrap();
    let b = f.ws.activation_cache(&spec(&f).shard_tokens(64).batch_tokens(256).seed(1)).unwrap();
    assert_eq!(a.id(), b.id(), "layout and serving do not change what is cached");
    let plan = f.ws.plan_activations(&spec(&f)).unwrap();
    assert_eq!(plan.disk, 0);
    assert_eq!(plan.reuses.as_deref(), Some(a.name()));
    let c = f.ws.activation_cache(&spec(&f).dtype(CacheDtype::F16)).unwrap();
    assert_ne!(c.id(), a.id());
    // Listed ids in any order name one cache; the same weights from another folder reuse it.
    let listed = f.ws.activation_cache(&spec(&f).exclude_tokens([7, 5])).unwrap();
    assert_eq!(f.ws.activation_cache(&spec(&f).exclude_tokens([5, 7, 5])).unwrap().id(), listed.id());
    let moved = f.dir.path().join("copy-of-gpt2");
    std::fs::create_dir_all(&moved).unwrap();
    for file in ["config.json", "model.safetensors"] {
        std::fs::copy(f.model_dir().join(file), moved.join(file)).unwrap();
    }
    let same = Model::load(moved.to_str().unwrap()).unwrap();
    assert_eq!(same.info().fingerprint, f.model.info().fingerprint);
    let again = f.ws.activation_cache(&ActivationSpec { model: same, ..spec(&f) }).unwrap();
    assert_eq!(again.id(), a.id(), "the model's identity, not its folder, decides");
    let lineage = a.lineage(&f.ws).unwrap();
    let parents: Vec<(String, i32)> =
        lineage.nodes.iter().filter(|(_, d)| *d == -1).map(|(r, d)| (r.kind.clone(), *d)).collect();
    assert!(parents.iter().any(|(k, _)| k == "tokenization"), "{parents:?}");
    assert!(parents.iter().any(|(k, _)| k == "model"), "{parents:?}");
    // The tokenization cannot be deleted from under its cache.
    assert!(matches!(f.ws.delete_tokenization(&f.tokens), Err(Error::InUse { .. })));
    // Shards and index agree.
    let index = a.index().unwrap();
    assert_eq!(index.num_tokens, 6000);
    assert_eq!(index.shards.len(), 6);
    assert_eq!(index.shards.iter().map(|s| s.rows).sum::<u64>(), 6000);
    assert_eq!(index.hooks.iter().map(|h| h.width).collect::<Vec<_>>(), [16, 64]);
    assert_eq!(f.ws.activation_caches().unwrap().len(), 3);
}

#[test]
fn half_precision_caches_round_within_their_precision() {
    let f = fixture();
    let options = StoreOptions { batch_tokens: 500, buffer_tokens: 1000, seed: 0, epochs: 1 };
    let exact = drain(&mut f.ws.activation_cache(&spec(&f)).unwrap().store(&options).unwrap());
    for (dtype, bits) in [(CacheDtype::F16, 11), (CacheDtype::Bf16, 8)] {
        let cache = f.ws.activation_cache(&spec(&f).dtype(dtype)).unwrap();
        let header = std::fs::read(cache.path().join(RESID).join("shard-00000.npy")).unwrap();
        let descr = if dtype == CacheDtype::F16 { "'<f2'" } else { "'<u2'" };
        assert!(String::from_utf8_lossy(&header[..128]).contains(descr));
        let half = drain(&mut cache.store(&options).unwrap());
        assert_eq!(half.len(), exact.len());
        let tolerance = 2f32.powi(-bits);
        let mut differs = false;
        for ((rows_h, h), (rows_e, e)) in half.iter().zip(&exact) {
            assert_eq!(rows_h, rows_e, "{dtype}: the same order");
            for (a, b) in h.iter().zip(e) {
                assert!((a - b).abs() <= tolerance * b.abs() + 1e-6, "{dtype}: {a} vs {b}");
                differs |= a != b;
            }
        }
        assert!(differs, "{dtype} rounds");
    }
}

#[test]
fn budgets_are_stated_up_front_and_refused_when_too_small() {
    let f = fixture();
    let plan = f.ws.plan_activations(&spec(&f)).unwrap();
    plan.check().unwrap();
    let text = plan.bundle().plain().to_string();
    for part in ["model weights", "forward pass", "shuffle buffer", "peak", "within budget"] {
        assert!(text.contains(part), "{part}: {text}");
    }
    let peak = plan.peak_memory;
    // A smaller budget runs fewer sequences at a time.
    let forward = plan.items.iter().find(|i| i.part.starts_with("forward pass")).unwrap().bytes;
    let budget = peak - forward * 3 / 4;
    let smaller = f.ws.plan_activations(&spec(&f).memory(budget)).unwrap();
    assert!(smaller.sequences_per_batch < plan.sequences_per_batch, "{smaller:?}");
    assert!(smaller.sequences_per_batch >= 4, "{smaller:?}");
    assert!(smaller.peak_memory <= budget);
    smaller.check().unwrap();
    // Too small for the model and the buffer: refused before any work.
    let e = f.ws.activation_store(&spec(&f).memory(32 << 20)).unwrap_err();
    let message = e.to_string();
    assert!(matches!(e, Error::OverBudget { .. }), "{e:?}");
    assert!(
        message.contains("memory") && message.contains("shuffle buffer") && message.contains("32.0 MiB"),
        "{message}"
    );
    let e = f.ws.activation_store(&spec(&f).disk(10_000)).unwrap_err();
    assert!(e.to_string().contains("of disk"), "{e}");
    assert!(f.ws.activation_caches().unwrap().is_empty());
    assert!(f.ws.plan_activations(&spec(&f).memory(32 << 20)).unwrap().bundle().plain().contains("refused"));
}

#[test]
fn disk_usage_by_kind_and_clean_up_of_unused_caches() {
    let f = fixture();
    let cache = f.ws.activation_cache(&spec(&f)).unwrap();
    let usage = f.ws.disk_usage().unwrap();
    let on_disk = dir_size(cache.path());
    assert_eq!(usage.bytes_of("activation caches"), on_disk);
    assert_eq!(cache.row().num_bytes, on_disk);
    assert!(usage.bytes_of("tokens") > 0);
    assert_eq!(usage.bytes_of("datasets"), 0, "a dataset by reference owns no files");
    assert!(usage.bundle().plain().contains("activation caches"));
    let cleaned = f.ws.remove_unused_caches().unwrap();
    assert_eq!(cleaned.removed.len(), 1);
    assert_eq!(cleaned.freed_bytes, on_disk);
    assert!(!cache.path().exists());
    assert_eq!(f.ws.disk_usage().unwrap().bytes_of("activation caches"), 0);
    assert!(f.tokens.store().is_ok(), "the tokens stay");
}

#[test]
fn a_job_shows_tokens_and_a_cancelled_one_leaves_nothing() {
    let f = fixture();
    let job = f.ws.activation_store_job(&spec(&f).max_tokens(200_000));
    let deadline = Instant::now() + Duration::from_secs(60);
    while job.progress().done == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let p = job.progress();
    assert_eq!(p.unit, "tokens");
    assert_eq!(p.total, Some(200_000));
    job.cancel();
    assert!(matches!(job.wait(), Err(Error::Cancelled)));
    assert!(f.ws.activation_caches().unwrap().is_empty());
    assert_eq!(std::fs::read_dir(f.ws.root().join("tmp")).map(|d| d.count()).unwrap_or(0), 0);
}

fn dir_size(path: &Path) -> u64 {
    std::fs::read_dir(path)
        .unwrap()
        .flatten()
        .map(|e| if e.file_type().unwrap().is_dir() { dir_size(&e.path()) } else { e.metadata().unwrap().len() })
        .sum()
}

#[test]
fn a_fill_killed_with_sigkill_leaves_nothing_corrupt_and_a_rerun_completes() {
    let f = fixture();
    let args = |extra: &[&str]| {
        let mut c = Command::new(BIN);
        c.args(["--workspace", f.ws.root().to_str().unwrap(), "activations", "make"])
            .args(["--tokenization", f.tokens.name(), "--model", f.model_dir().to_str().unwrap()])
            .args(["--hook", RESID, "--shard-tokens", "4096", "--memory", "1GiB"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        c
    };
    let mut child = args(&[]).spawn().unwrap();
    // Wait until a shard is being written under tmp/, then kill.
    let tmp = f.ws.root().join("tmp");
    let deadline = Instant::now() + Duration::from_secs(120);
    let writing = || {
        std::fs::read_dir(&tmp).into_iter().flatten().flatten().any(|e| {
            let shard = e.path().join(RESID).join("shard-00001.npy");
            shard.exists()
        })
    };
    while !writing() && Instant::now() < deadline {
        assert!(child.try_wait().unwrap().is_none(), "the fill ended before it could be killed");
        std::thread::sleep(Duration::from_millis(2));
    }
    assert!(writing(), "no shard appeared");
    child.kill().unwrap();
    child.wait().unwrap();

    // Nothing ready; the row reads as interrupted; reopening clears the partial.
    assert!(f.ws.activation_caches().unwrap().is_empty());
    let ws = Workspace::open(f.ws.root()).unwrap();
    assert_eq!(
        std::fs::read_dir(&tmp)
            .unwrap()
            .filter(|e| !e.as_ref().unwrap().path().to_string_lossy().ends_with(".lock"))
            .count(),
        0
    );
    let status = args(&["--max-tokens", "9000"]).status().unwrap();
    assert!(status.success());
    // The killed request (no cap) and the capped one are different caches; finish the killed one too.
    assert!(args(&[]).status().unwrap().success());
    let caches = ws.activation_caches().unwrap();
    assert_eq!(caches.len(), 2);
    for c in &caches {
        let mut store = c.store(&StoreOptions { batch_tokens: 1000, ..Default::default() }).unwrap();
        let mut n = 0;
        while let Some(b) = store.next_batch().unwrap() {
            n += b.len() as u64;
        }
        assert_eq!(n + store.left_over(), c.num_tokens());
    }
    let interrupted = ws.catalog().artifact(caches[1].id()).unwrap();
    assert_eq!(interrupted.status.to_string(), "ready");
}

/// SAE training on the store resumes exactly: a checkpoint after 4 steps, a new store skipped to the same
/// place, and 4 more steps end with the weights of 8 steps in one go.
#[test]
fn training_resumes_from_a_checkpoint_and_the_stores_position() {
    use saekit::sae::train::{TrainConfig, Trainer};
    use saekit::sae::{Architecture, Sae, SaeConfig};
    let f = fixture();
    let cache = f.ws.activation_cache(&spec(&f)).unwrap();
    let options = StoreOptions { batch_tokens: 128, buffer_tokens: 1024, seed: 2, epochs: 1 };
    let config = TrainConfig { lr: 1e-3, total_steps: 8, ..Default::default() };
    let fresh = || {
        Trainer::new(Sae::new(SaeConfig::new(16, 64, Architecture::TopK { k: 4 }), 0.1, 1).unwrap(), config.clone())
            .unwrap()
    };
    let run = |trainer: &mut Trainer, store: &mut saekit::activations::ActivationStore, steps: usize| {
        for _ in 0..steps {
            let batch = store.next_batch().unwrap().unwrap();
            trainer.step(batch.get(RESID).unwrap()).unwrap();
        }
    };
    let mut whole = fresh();
    run(&mut whole, &mut cache.store(&options).unwrap(), 8);
    let mut first = fresh();
    run(&mut first, &mut cache.store(&options).unwrap(), 4);
    let checkpoint = f.dir.path().join("checkpoint");
    first.save_checkpoint(&checkpoint).unwrap();
    let mut resumed = Trainer::load_checkpoint(&checkpoint).unwrap();
    let mut store = cache.store(&options).unwrap();
    store.skip(resumed.step * 128).unwrap();
    run(&mut resumed, &mut store, 4);
    let w = |t: &Trainer| t.sae().unwrap().w_dec.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert_eq!(w(&whole), w(&resumed));
    assert_ne!(w(&whole), w(&fresh()), "training moved the weights");
}
