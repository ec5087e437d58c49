//! A training run: several SAEs (different hooks, widths, k or L1) trained from one pass over an
//! activation store, as one catalog artifact of kind `sae_run` with lineage to the activation cache, the
//! tokenization and the model.
//!
//! - [`SaeRunSpec`]: the tokenization and model (live handles) and a [`RunConfig`] (plain data, every knob
//!   named and defaulted, JSON in and out: what `saekit train CONFIG.json` reads and what the run saves as
//!   `config.json`, resolved). [`Workspace::train_saes`] (or its job form) makes the activation cache (or
//!   reuses it), then trains.
//! - The run's directory: `config.json`, `saes/<name>/` in SAELens' layout (with `sparsity.safetensors`,
//!   any input normalisation folded into the weights), `history.parquet` (a row per SAE every
//!   `metrics_every` steps).
//! - Checkpoints every `checkpoint_every` steps (each SAE's weights, Adam moments and latent clocks, the
//!   step, the history so far): the run's work directory is kept when it fails, is cancelled or is killed,
//!   and the next attempt at the same name continues from the last checkpoint, with the activation store
//!   skipped to the same place, to the same weights an uninterrupted run ends with.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::blas::Blas;
use super::eval::{Evaluated, Evaluation};
use super::features::FeatureAtlas;
use super::history::{HISTORY_FILE, HistoryRow, read_history, write_history};
use super::table::{self, SAE_RUN_KIND, SaeRunRecord, SaeRunRow, SaeSummary};
use super::train::{TrainConfig, Trainer, training_device};
use super::{Architecture, Sae, SaeConfig};
use crate::activations::{ActivationCache, ActivationSpec, ActivationStore, CacheParams, StoreOptions};
use crate::catalog::{Artifact, ArtifactPlan, ArtifactStatus, IfReady, Lineage, RESUMABLE_MARKER, Request, Workspace};
use crate::display::{Card, ChartGrid, LineChart, MimeBundle, Render, Table};
use crate::error::{Error, Result};
use crate::jobs::{Job, JobContext};
use crate::models::Model;
use crate::tokenize::Tokenization;

const CONFIG_FILE: &str = "config.json";
const SAES_DIR: &str = "saes";
const CHECKPOINT_DIR: &str = "checkpoint";
const OLD_CHECKPOINT_DIR: &str = ".checkpoint.old";
const PARTIAL_CHECKPOINT_DIR: &str = ".checkpoint.partial";
const STATE_FILE: &str = "state.json";
/// How often a training job publishes its dashboard.
const VIEW_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// `normalize_activations` values a run accepts.
const NORMALIZATIONS: [&str; 2] = ["none", "expected_average_only_in"];

/// One SAE of a run. Its training knobs ([`TrainConfig`], in SAELens' names) sit beside its shape in
/// JSON; `total_steps` is the run's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SaeSpec {
    /// Unique in the run (a folder name); default `<hook>-<architecture>[k]-<d_sae>`.
    pub name: String,
    /// A hook by TransformerLens name.
    pub hook: String,
    pub d_sae: usize,
    /// `topk` or `standard`.
    pub architecture: String,
    /// `topk`: latents kept per token (default 100, as SAELens).
    pub k: Option<usize>,
    /// Decoder rows start at this norm (SAELens: 0.1).
    pub decoder_init_norm: f32,
    /// `zeros` (SAELens 6) or `mean`: `b_dec` starts at the first batch's mean.
    pub b_dec_init: String,
    pub apply_b_dec_to_input: bool,
    /// `none`, or `expected_average_only_in`: train on inputs scaled by √d_in / mean‖x‖ (the mean over
    /// the whole cache, from its statistics), folded into the saved weights.
    pub normalize_activations: String,
    /// The initialisation's seed (default: the run's seed plus the SAE's place in the list).
    pub seed: Option<u64>,
    #[serde(flatten)]
    pub train: TrainConfig,
}

impl Default for SaeSpec {
    fn default() -> Self {
        SaeSpec {
            name: String::new(),
            hook: String::new(),
            d_sae: 0,
            architecture: "topk".into(),
            k: None,
            decoder_init_norm: 0.1,
            b_dec_init: "zeros".into(),
            apply_b_dec_to_input: true,
            normalize_activations: "none".into(),
            seed: None,
            train: TrainConfig::default(),
        }
    }
}

impl SaeSpec {
    /// A TopK SAE of `d_sae` latents at `hook`, keeping `k` per token.
    pub fn topk(hook: &str, d_sae: usize, k: usize) -> SaeSpec {
        SaeSpec { hook: hook.into(), d_sae, architecture: "topk".into(), k: Some(k), ..Default::default() }
    }

    /// A standard (ReLU + L1) SAE of `d_sae` latents at `hook` with L1 coefficient `l1`.
    pub fn standard(hook: &str, d_sae: usize, l1: f64) -> SaeSpec {
        let train = TrainConfig { l1_coefficient: l1, ..Default::default() };
        SaeSpec { hook: hook.into(), d_sae, architecture: "standard".into(), train, ..Default::default() }
    }

    pub fn name(mut self, name: &str) -> Self {
        self.name = name.into();
        self
    }

    pub fn lr(mut self, lr: f64) -> Self {
        self.train.lr = lr;
        self
    }

    /// Every training knob at once.
    pub fn train(mut self, train: TrainConfig) -> Self {
        self.train = train;
        self
    }

    /// Start `b_dec` at the first batch's mean.
    pub fn b_dec_at_mean(mut self) -> Self {
        self.b_dec_init = "mean".into();
        self
    }

    /// Train on inputs scaled to an expected norm of √d_in (`expected_average_only_in`), folded into
    /// the saved weights.
    pub fn normalized(mut self) -> Self {
        self.normalize_activations = "expected_average_only_in".into();
        self
    }

    fn architecture(&self) -> Result<Architecture> {
        let k = match self.architecture.as_str() {
            "topk" => Some(self.k.unwrap_or(100)),
            _ => self.k,
        };
        Architecture::by_name(&self.architecture, k)
    }

    fn default_name(&self, arch: Architecture) -> String {
        match arch {
            Architecture::TopK { k } => format!("{}-topk{k}-{}", self.hook, self.d_sae),
            Architecture::Standard => format!("{}-standard-{}", self.hook, self.d_sae),
        }
    }
}

/// A whole run, as plain data: what `saekit train CONFIG.json` reads (every field but `tokenization`,
/// `model` and `saes` may be left out) and what the run saves, resolved, as `config.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RunConfig {
    /// The run's name in the workspace (default: `<tokenization>/<model>/sae-<16 hex of the config>`).
    pub name: Option<String>,
    /// A tokenization in the workspace, by name or id.
    pub tokenization: String,
    /// A model folder in the HF layout, or a Hub repo id.
    pub model: String,
    pub saes: Vec<SaeSpec>,
    /// Tokens to train on (default: one pass over the cache; more passes over it when above its size).
    pub training_tokens: Option<u64>,
    pub train_batch_size_tokens: usize,
    /// The activation store's shuffle buffer, in tokens.
    pub buffer_tokens: usize,
    /// The store's order and (with each SAE's place) the initialisations.
    pub seed: u64,
    /// A history row per SAE every this many steps (and at the last).
    pub metrics_every: u64,
    /// A checkpoint every this many steps (0: none).
    pub checkpoint_every: u64,
    /// What the activation cache holds (its hooks are the SAEs').
    pub cache: CacheParams,
    /// The activation store's memory budget, e.g. `4GiB`.
    pub memory: String,
    /// The cache's disk budget (default: what is free).
    pub disk: Option<String>,
    /// Where the SAEs train: `cpu` (the CPU step) or `cuda` / `cuda:N` (candle's CUDA device; saekit built
    /// with its `cuda` feature). Not part of the run's identity: a run may resume on another device.
    pub device: String,
    /// Threads of the CPU step (0: one per core). Not part of the run's identity.
    pub threads: usize,
    /// What runs the CPU step's products: `auto` (the default: the system's OpenBLAS when it opens, else the
    /// `gemm` crate), `gemm`, `openblas`, or a path to a library with `cblas_sgemm`. Not part of the run's
    /// identity.
    pub blas: String,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            name: None,
            tokenization: String::new(),
            model: String::new(),
            saes: Vec::new(),
            training_tokens: None,
            train_batch_size_tokens: 4096,
            buffer_tokens: 65536,
            seed: 0,
            metrics_every: 10,
            checkpoint_every: 1000,
            cache: CacheParams::default(),
            memory: "4GiB".into(),
            disk: None,
            device: "cpu".into(),
            threads: 0,
            blas: "auto".into(),
        }
    }
}

impl RunConfig {
    /// A config from JSON, every knob left out at its default; an unknown key is an error that names it
    /// (a misspelt `lr_warmup_steps` must not silently train with the default).
    pub fn from_json(text: &str) -> Result<RunConfig> {
        let bad = |m: String| Error::InvalidArgument(format!("not an SAE run config: {m}"));
        let value: serde_json::Value = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
        let known = serde_json::to_value(SaeSpec::default()).map_err(|e| bad(e.to_string()))?;
        if let Some(saes) = value.get("saes").and_then(|s| s.as_array()) {
            for (i, sae) in saes.iter().enumerate() {
                let Some(sae) = sae.as_object() else { continue };
                for key in sae.keys() {
                    if known.get(key).is_none() {
                        let mut names: Vec<&String> = known.as_object().map(|o| o.keys().collect()).unwrap_or_default();
                        names.sort();
                        let names: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
                        return Err(bad(format!(
                            "saes[{i}]: unknown field `{key}`; expected one of {}",
                            names.join(", ")
                        )));
                    }
                }
            }
        }
        serde_json::from_value(value).map_err(|e| bad(e.to_string()))
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

impl Render for RunConfig {
    fn bundle(&self) -> MimeBundle {
        let mut run = self.clone();
        let saes = std::mem::take(&mut run.saes);
        let mut card = Card::new("SAE run config").section(&Table::fields("run", &run).bundle());
        for sae in &saes {
            card = card.section(&Table::fields(format!("SAE {}", sae.name), sae).bundle());
        }
        card.bundle()
    }
}

/// SAEs to train: the tokens, the model and the run's config. Cheap to clone.
#[derive(Debug, Clone)]
pub struct SaeRunSpec {
    pub tokenization: Tokenization,
    pub model: Model,
    pub config: RunConfig,
}

impl Render for SaeRunSpec {
    fn bundle(&self) -> MimeBundle {
        self.config.bundle()
    }
}

impl SaeRunSpec {
    /// A run over `tokenization`'s tokens through `model`, with the defaults; add SAEs with [`Self::sae`].
    pub fn new(tokenization: &Tokenization, model: &Model) -> SaeRunSpec {
        let config = RunConfig {
            tokenization: tokenization.name().to_string(),
            model: model.name().to_string(),
            ..Default::default()
        };
        SaeRunSpec { tokenization: tokenization.clone(), model: model.clone(), config }
    }

    /// The run `config` describes: its tokenization from `ws`, its model loaded.
    pub fn from_config(ws: &Workspace, config: RunConfig) -> Result<SaeRunSpec> {
        if config.tokenization.is_empty() || config.model.is_empty() {
            return Err(Error::InvalidArgument("an SAE run config names its `tokenization` and `model`".into()));
        }
        let tokenization = ws.tokenization(&config.tokenization)?;
        let model = Model::load(&config.model)?;
        Ok(SaeRunSpec {
            config: RunConfig { tokenization: tokenization.name().to_string(), ..config },
            tokenization,
            model,
        })
    }

    pub fn sae(mut self, sae: SaeSpec) -> Self {
        self.config.saes.push(sae);
        self
    }

    /// Several SAEs at once (a sweep: e.g. `[16, 32, 64].map(|k| SaeSpec::topk(hook, 4096, k))`), all
    /// trained from the same activation pass.
    pub fn saes(mut self, saes: impl IntoIterator<Item = SaeSpec>) -> Self {
        self.config.saes.extend(saes);
        self
    }

    pub fn name(mut self, name: &str) -> Self {
        self.config.name = Some(name.into());
        self
    }

    pub fn training_tokens(mut self, tokens: u64) -> Self {
        self.config.training_tokens = Some(tokens);
        self
    }

    pub fn batch_tokens(mut self, tokens: usize) -> Self {
        self.config.train_batch_size_tokens = tokens;
        self
    }

    pub fn buffer_tokens(mut self, tokens: usize) -> Self {
        self.config.buffer_tokens = tokens;
        self
    }

    pub fn seed(mut self, seed: u64) -> Self {
        self.config.seed = seed;
        self
    }

    pub fn metrics_every(mut self, steps: u64) -> Self {
        self.config.metrics_every = steps;
        self
    }

    pub fn checkpoint_every(mut self, steps: u64) -> Self {
        self.config.checkpoint_every = steps;
        self
    }

    /// Trains on `cpu` (the default) or `cuda` / `cuda:N` (saekit built with its `cuda` feature).
    pub fn device(mut self, device: impl Into<String>) -> Self {
        self.config.device = device.into();
        self
    }

    /// Threads of the CPU step (0, the default: one per core).
    pub fn threads(mut self, threads: usize) -> Self {
        self.config.threads = threads;
        self
    }

    /// What runs the CPU step's products: `auto` (the default), `gemm`, `openblas` or a library's path.
    pub fn blas(mut self, blas: impl Into<String>) -> Self {
        self.config.blas = blas.into();
        self
    }

    /// What the activation cache holds (hooks aside: they are the SAEs').
    pub fn cache(mut self, cache: CacheParams) -> Self {
        self.config.cache = cache;
        self
    }

    /// The config with every default filled in (names, seeds, k, canonical hooks), checked against the
    /// model, and the activation spec it trains from.
    fn resolve(&self) -> Result<(RunConfig, ActivationSpec)> {
        let mut config = self.config.clone();
        config.tokenization = self.tokenization.name().to_string();
        config.model = self.model.name().to_string();
        if config.saes.is_empty() {
            return Err(Error::InvalidArgument("an SAE run needs at least one SAE".into()));
        }
        if config.train_batch_size_tokens == 0 || config.metrics_every == 0 {
            return Err(Error::InvalidArgument("train_batch_size_tokens and metrics_every must be at least 1".into()));
        }
        let mut hooks: Vec<String> = Vec::new();
        let mut names: Vec<String> = Vec::new();
        for (i, sae) in config.saes.iter_mut().enumerate() {
            let point = self.model.hook(&sae.hook)?;
            sae.hook = point.to_string();
            let arch = sae.architecture()?;
            if let Architecture::TopK { k } = arch {
                sae.k = Some(k);
                if k == 0 || k > sae.d_sae {
                    return Err(Error::InvalidArgument(format!(
                        "SAE {i}: k {k} must be between 1 and d_sae {}",
                        sae.d_sae
                    )));
                }
            }
            if sae.d_sae == 0 {
                return Err(Error::InvalidArgument(format!("SAE {i} at {}: d_sae must be above 0", sae.hook)));
            }
            if !NORMALIZATIONS.contains(&sae.normalize_activations.as_str()) {
                return Err(Error::InvalidArgument(format!(
                    "SAE {i}: normalize_activations `{}`; expected one of {}",
                    sae.normalize_activations,
                    NORMALIZATIONS.join(", ")
                )));
            }
            if !["zeros", "mean"].contains(&sae.b_dec_init.as_str()) {
                return Err(Error::InvalidArgument(format!(
                    "SAE {i}: b_dec_init `{}`; expected zeros or mean",
                    sae.b_dec_init
                )));
            }
            if sae.name.is_empty() {
                sae.name = sae.default_name(arch);
            }
            if sae.name.starts_with('.') || sae.name.contains(['/', '\\']) {
                return Err(Error::InvalidArgument(format!("SAE name `{}` must be a folder name", sae.name)));
            }
            if names.contains(&sae.name) {
                return Err(Error::InvalidArgument(format!("two SAEs are named `{}`: name them apart", sae.name)));
            }
            names.push(sae.name.clone());
            sae.seed = Some(sae.seed.unwrap_or(config.seed.wrapping_add(i as u64)));
            if !hooks.contains(&sae.hook) {
                hooks.push(sae.hook.clone());
            }
        }
        config.cache.hooks = hooks.clone();
        let size = |text: &str, what: &str| {
            crate::units::parse_bytes(text)
                .ok_or_else(|| Error::InvalidArgument(format!("{what} `{text}`: expected a size like 512MiB or 2GiB")))
        };
        let mut spec = ActivationSpec::new(&self.tokenization, &self.model, &hooks);
        spec.cache = CacheParams { shard_tokens: spec.cache.shard_tokens, ..config.cache.clone() };
        spec.store = StoreOptions {
            batch_tokens: config.train_batch_size_tokens,
            buffer_tokens: config.buffer_tokens,
            seed: config.seed,
            epochs: 1,
        };
        spec.memory = size(&config.memory, "memory")?;
        spec.disk = config.disk.as_deref().map(|d| size(d, "disk")).transpose()?;
        Ok((config, spec))
    }
}

/// Steps and passes over the cache for `config` on `cache`.
fn schedule(config: &RunConfig, cache: &ActivationCache) -> Result<(u64, u32)> {
    let have = cache.num_tokens();
    let tokens = config.training_tokens.unwrap_or(have);
    let batch = config.train_batch_size_tokens as u64;
    let steps = tokens / batch;
    if steps == 0 || have == 0 {
        return Err(Error::InvalidArgument(format!(
            "training on {tokens} tokens in batches of {batch} is not one step (the cache `{}` holds {have} tokens)",
            cache.name()
        )));
    }
    // Each pass leaves fewer than a batch over at its end.
    let per_pass = (have / batch).max(1);
    let epochs = steps.div_ceil(per_pass);
    Ok((steps, u32::try_from(epochs).unwrap_or(u32::MAX)))
}

/// What a checkpoint keeps besides each trainer's own: `state.json` (step, seconds) and the history so far
/// (as Parquet, which keeps every f64 exact).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct RunState {
    step: u64,
    seconds: f64,
    #[serde(skip)]
    history: Vec<HistoryRow>,
}

/// One SAE being trained.
struct Slot {
    spec: SaeSpec,
    trainer: Trainer,
    scale: f64,
    last: Option<super::train::StepMetrics>,
}

impl Workspace {
    /// Trains the SAEs `spec` asks for (making the activation cache first, or reusing it), here and now;
    /// a ready run of the same name and config is returned as it is.
    pub fn train_saes(&self, spec: &SaeRunSpec) -> Result<SaeRun> {
        self.make(spec.clone())
    }

    /// [`Workspace::train_saes`] as a background job (progress in steps, with rate and ETA; cancel stops
    /// at a step boundary and keeps the last checkpoint for the next attempt).
    pub fn train_saes_job(&self, spec: &SaeRunSpec) -> Job<SaeRun> {
        self.make_job(spec.clone())
    }

    /// Every ready SAE run, newest first.
    pub fn sae_runs(&self) -> Result<Vec<SaeRun>> {
        let rows = self.catalog().with_conn(|conn| table::sae_runs_in(self.catalog(), conn))?;
        Ok(rows.into_iter().map(|row| SaeRun { row }).collect())
    }

    /// An SAE run by name or id.
    pub fn sae_run(&self, name_or_id: &str) -> Result<SaeRun> {
        let id = self.catalog().artifact_id_named(SAE_RUN_KIND, name_or_id)?;
        let row = self.catalog().with_conn(|conn| table::sae_run_in(self.catalog(), conn, id))?;
        self.note(id, crate::catalog::Touch::Read);
        Ok(SaeRun { row })
    }
}

impl Request for SaeRunSpec {
    type Output = SaeRun;

    fn label(&self) -> String {
        let mut hooks: Vec<&str> = Vec::new();
        for s in &self.config.saes {
            if !hooks.contains(&s.hook.as_str()) {
                hooks.push(&s.hook);
            }
        }
        let n = self.config.saes.len();
        format!("train {n} SAE{} at {}", if n == 1 { "" } else { "s" }, hooks.join(", "))
    }

    fn run(&self, ws: &Workspace, ctx: &JobContext) -> Result<SaeRun> {
        let (mut config, activations) = self.resolve()?;
        let (cache, _) = ws.make_cache(&activations, ctx)?;
        let (total_steps, epochs) = schedule(&config, &cache)?;
        for sae in &mut config.saes {
            sae.train.total_steps = total_steps;
        }
        let mut named = config.clone();
        named.name = None;
        // Where and how the steps run is not what the run is: a run resumes, or is reused, on another device,
        // thread count or BLAS, and runs made before those knobs existed keep their identity.
        let mut named = serde_json::to_value(&named).map_err(|e| Error::InvalidArgument(e.to_string()))?;
        if let Some(fields) = named.as_object_mut() {
            for knob in ["device", "threads", "blas"] {
                fields.remove(knob);
            }
        }
        let key = serde_json::json!({
            "cache": cache.row().params.get("key"),
            "config": named,
            "total_steps": total_steps,
        });
        let digest = Sha256::digest(serde_json::to_string(&key).unwrap_or_default().as_bytes());
        let digest: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
        let name = config.name.clone().unwrap_or_else(|| {
            format!(
                "{}/{}/sae-{digest}",
                self.tokenization.name(),
                crate::activations::short_model_name(self.model.name())
            )
        });
        let model_id = ws.register_model(&self.model)?;
        let plan = ArtifactPlan {
            kind: SAE_RUN_KIND,
            name: name.clone(),
            working: ArtifactStatus::Training,
            params: serde_json::json!({ "key": key, "config": config, "total_steps": total_steps, "epochs": epochs }),
            parents: vec![cache.id(), self.tokenization.id(), model_id],
            dir: Some("sae_runs"),
            if_ready: IfReady::Reuse,
            resumable: true,
        };
        let store = StoreOptions {
            batch_tokens: config.train_batch_size_tokens,
            buffer_tokens: config.buffer_tokens,
            seed: config.seed,
            epochs,
        };
        let produced = ws.produce(plan, ctx, |dir, ctx| {
            let dir = dir.ok_or_else(|| Error::InvalidArgument("an SAE run needs a directory".into()))?.path();
            let mut store = cache.store(&store)?;
            train_in(&name, dir, &config, &self.tokenization, &cache, &mut store, total_steps, ctx)
        })?;
        let run = ws.sae_run(&produced.id().to_string())?;
        if run.row.params.get("key") != Some(&key) {
            return Err(Error::InvalidArgument(format!(
                "an SAE run named `{name}` exists but was trained with another config; name this one apart \
                 or delete that one (ws.delete_artifact)"
            )));
        }
        // A run made before (reused) shows its final dashboard too.
        ctx.publish(run.dashboard());
        Ok(run)
    }
}

/// The run's work, in its (possibly resumed) directory.
#[allow(clippy::too_many_arguments)]
fn train_in(
    name: &str,
    dir: &Path,
    config: &RunConfig,
    tokenization: &Tokenization,
    cache: &ActivationCache,
    store: &mut ActivationStore,
    total_steps: u64,
    ctx: &JobContext,
) -> Result<SaeRunRecord> {
    let config_path = dir.join(CONFIG_FILE);
    let text = config.to_json();
    match std::fs::read_to_string(&config_path) {
        Ok(before) if before != text => {
            return Err(Error::InvalidArgument(format!(
                "the unfinished run in {} was started with another config; delete that folder or name this run apart",
                dir.display()
            )));
        }
        Ok(_) => {}
        Err(_) => crate::files::write_atomically(&config_path, text.as_bytes())?,
    }
    let batch = config.train_batch_size_tokens as u64;
    let (mut slots, mut state) = match latest_checkpoint(dir) {
        Some(checkpoint) => resume(&checkpoint, config, cache)?,
        None => (fresh_slots(config, cache, total_steps)?, RunState { step: 0, seconds: 0.0, history: Vec::new() }),
    };
    if state.step > 0 {
        store.skip(state.step * batch)?;
    }
    ctx.phase("training", "steps", Some(total_steps));
    ctx.set_done(state.step);
    let started = std::time::Instant::now();
    let mut last_view = started;
    let seconds_before = state.seconds;
    let elapsed = || seconds_before + started.elapsed().as_secs_f64();
    while state.step < total_steps {
        ctx.check()?;
        let Some(batch) = store.next_batch()? else { break };
        let step = state.step;
        for slot in slots.iter_mut() {
            let x = batch.get(&slot.spec.hook)?;
            let x = if slot.scale != 1.0 { (x * slot.scale)? } else { x.clone() };
            if step == 0 && slot.spec.b_dec_init == "mean" {
                slot.trainer.init_b_dec_to_mean(&x)?;
            }
            let m = slot.trainer.step(&x)?;
            slot.last = Some(m);
            if (step + 1) % config.metrics_every == 0 || step + 1 == total_steps {
                state.history.push(HistoryRow {
                    sae: slot.spec.name.clone(),
                    tokens: (step + 1) * batch.len() as u64,
                    elapsed_seconds: elapsed(),
                    metrics: m,
                });
            }
        }
        state.step += 1;
        ctx.advance(1);
        if last_view.elapsed() >= VIEW_EVERY || state.step == total_steps {
            last_view = std::time::Instant::now();
            let live = LiveState {
                step: state.step,
                total_steps,
                tokens: state.step * config.train_batch_size_tokens as u64,
                seconds: elapsed(),
                latest: slots.iter().map(|s| (s.spec.name.clone(), s.spec.d_sae, s.last)).collect(),
                history: thin(&state.history, slots.len(), 300),
            };
            ctx.publish(dashboard(
                name,
                &live.latest,
                &live.history,
                live.step,
                total_steps,
                live.tokens,
                live.seconds,
            ));
            if let Ok(text) = serde_json::to_string(&live) {
                let _ = crate::files::write_atomically(&dir.join(LIVE_FILE), text.as_bytes());
            }
        }
        if let Some(m) = slots[0].last {
            ctx.set_detail(format!(
                "{}: mse {:.4}, L0 {:.1}, explained variance {:.3}, dead {}",
                slots[0].spec.name, m.mse, m.l0, m.explained_variance, m.dead
            ));
        }
        if config.checkpoint_every > 0 && state.step % config.checkpoint_every == 0 && state.step < total_steps {
            state.seconds = elapsed();
            write_checkpoint(dir, &slots, &state)?;
        }
    }
    let seconds = seconds_before + started.elapsed().as_secs_f64();
    let mut saes = Vec::new();
    for slot in &slots {
        let mut sae = slot.trainer.sae_with_density()?;
        if slot.scale != 1.0 {
            sae = sae.fold_input_scale(slot.scale)?;
        }
        let meta = &mut sae.config.metadata;
        meta.model_name = Some(config.model.clone());
        meta.hook_name = Some(slot.spec.hook.clone());
        meta.context_size = Some(tokenization.params().max_length);
        meta.prepend_bos = Some(tokenization.params().add_bos);
        meta.dataset_path = Some(tokenization.name().to_string());
        meta.exclude_special_tokens = Some(serde_json::Value::Bool(config.cache.exclude_special_tokens));
        sae.save(&dir.join(SAES_DIR).join(&slot.spec.name))?;
        let last = slot.last.ok_or_else(|| {
            Error::InvalidArgument(format!("the store served no batch: the cache `{}` is empty", cache.name()))
        })?;
        saes.push(SaeSummary {
            name: slot.spec.name.clone(),
            hook: slot.spec.hook.clone(),
            architecture: sae.config.architecture.clone(),
            d_in: sae.config.d_in,
            d_sae: sae.config.d_sae,
            k: sae.config.k,
            input_scale: slot.scale,
            last,
        });
    }
    write_history(&state.history, &dir.join(HISTORY_FILE))?;
    let _ = std::fs::remove_file(dir.join(LIVE_FILE));
    for d in [CHECKPOINT_DIR, OLD_CHECKPOINT_DIR, PARTIAL_CHECKPOINT_DIR] {
        let path = dir.join(d);
        if path.exists() {
            std::fs::remove_dir_all(&path).map_err(|e| Error::io(&path, e))?;
        }
    }
    Ok(SaeRunRecord { steps: state.step, tokens: state.step * batch, seconds, saes })
}

/// The input scale of `spec` on `cache` (1 without normalisation).
fn input_scale(spec: &SaeSpec, cache: &ActivationCache) -> Result<f64> {
    if spec.normalize_activations == "none" {
        return Ok(1.0);
    }
    let hook = cache.stats().hooks.iter().find(|h| h.name == spec.hook).ok_or_else(|| {
        Error::InvalidArgument(format!("the cache `{}` has no statistics for hook {}", cache.name(), spec.hook))
    })?;
    if !(hook.mean_norm > 0.0) {
        return Err(Error::InvalidArgument(format!(
            "hook {} has a mean norm of {} in the cache: it cannot be normalised",
            spec.hook, hook.mean_norm
        )));
    }
    Ok((hook.width as f64).sqrt() / hook.mean_norm)
}

fn fresh_slots(config: &RunConfig, cache: &ActivationCache, total_steps: u64) -> Result<Vec<Slot>> {
    config
        .saes
        .iter()
        .map(|spec| {
            let width = cache.hooks().iter().find(|h| h.name == spec.hook).map(|h| h.width).ok_or_else(|| {
                Error::InvalidArgument(format!("the cache `{}` has no hook {}", cache.name(), spec.hook))
            })?;
            let mut sae_config = SaeConfig::new(width, spec.d_sae, spec.architecture()?);
            sae_config.apply_b_dec_to_input = spec.apply_b_dec_to_input;
            let sae = Sae::new(sae_config, spec.decoder_init_norm, spec.seed.unwrap_or(0))?;
            let train = TrainConfig { total_steps, ..spec.train.clone() };
            Ok(Slot {
                spec: spec.clone(),
                trainer: trainer_on(sae, train, config)?,
                scale: input_scale(spec, cache)?,
                last: None,
            })
        })
        .collect()
}

/// The system BLAS the config asks for, opened.
fn run_blas(config: &RunConfig) -> Result<Option<Arc<Blas>>> {
    Ok(match config.blas.trim() {
        "auto" | "" => Blas::open("openblas").ok().map(Arc::new),
        "gemm" => None,
        name => Some(Arc::new(Blas::open(name)?)),
    })
}

/// A trainer for `sae` on the config's device, threads and BLAS.
fn trainer_on(sae: Sae, train: TrainConfig, config: &RunConfig) -> Result<Trainer> {
    Trainer::new(sae, train)?
        .threads(config.threads)
        .blas(run_blas(config)?)
        .on_device(&training_device(&config.device)?)
}

/// The newest complete checkpoint in `dir`: `checkpoint/`, or the one it was replacing when a crash came
/// between the two renames.
fn latest_checkpoint(dir: &Path) -> Option<PathBuf> {
    [CHECKPOINT_DIR, OLD_CHECKPOINT_DIR].iter().map(|d| dir.join(d)).find(|d| d.join(STATE_FILE).is_file())
}

fn resume(checkpoint: &Path, config: &RunConfig, cache: &ActivationCache) -> Result<(Vec<Slot>, RunState)> {
    let path = checkpoint.join(STATE_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    let mut state: RunState = serde_json::from_str(&text).map_err(|e| Error::format(&path, e))?;
    state.history = read_history(&checkpoint.join(HISTORY_FILE))?;
    let slots = config
        .saes
        .iter()
        .map(|spec| {
            let trainer = Trainer::load_checkpoint(&checkpoint.join(&spec.name))?
                .threads(config.threads)
                .blas(run_blas(config)?)
                .on_device(&training_device(&config.device)?)?;
            if trainer.step != state.step {
                return Err(Error::format(
                    checkpoint,
                    format!("SAE `{}` is at step {}, the run at {}", spec.name, trainer.step, state.step),
                ));
            }
            let last = state.history.iter().rev().find(|r| r.sae == spec.name).map(|r| r.metrics);
            Ok(Slot { spec: spec.clone(), trainer, scale: input_scale(spec, cache)?, last })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((slots, state))
}

/// Writes every SAE's checkpoint and the run's state as one unit: built beside, then renamed into place
/// (the one it replaces moved aside first and removed last), so a crash leaves a whole checkpoint.
fn write_checkpoint(dir: &Path, slots: &[Slot], state: &RunState) -> Result<()> {
    let partial = dir.join(PARTIAL_CHECKPOINT_DIR);
    if partial.exists() {
        std::fs::remove_dir_all(&partial).map_err(|e| Error::io(&partial, e))?;
    }
    std::fs::create_dir_all(&partial).map_err(|e| Error::io(&partial, e))?;
    for slot in slots {
        slot.trainer.save_checkpoint(&partial.join(&slot.spec.name))?;
    }
    write_history(&state.history, &partial.join(HISTORY_FILE))?;
    let text = serde_json::to_string(state).map_err(|e| Error::format(partial.join(STATE_FILE), e))?;
    crate::files::write_atomically(&partial.join(STATE_FILE), text.as_bytes())?;
    let (current, old) = (dir.join(CHECKPOINT_DIR), dir.join(OLD_CHECKPOINT_DIR));
    if old.exists() {
        std::fs::remove_dir_all(&old).map_err(|e| Error::io(&old, e))?;
    }
    if current.exists() {
        std::fs::rename(&current, &old).map_err(|e| Error::io(&old, e))?;
    }
    std::fs::rename(&partial, &current).map_err(|e| Error::io(&current, e))?;
    if old.exists() {
        std::fs::remove_dir_all(&old).map_err(|e| Error::io(&old, e))?;
    }
    let marker = dir.join(RESUMABLE_MARKER);
    if !marker.exists() {
        std::fs::write(&marker, b"").map_err(|e| Error::io(&marker, e))?;
    }
    Ok(())
}

/// A training run in the workspace: its SAEs (SAELens' layout), metrics history and config.
#[derive(Debug, Clone)]
pub struct SaeRun {
    row: SaeRunRow,
}

impl Artifact for SaeRun {
    fn artifact_id(&self) -> i64 {
        self.row.id
    }
}

impl SaeRun {
    pub fn row(&self) -> &SaeRunRow {
        &self.row
    }

    pub fn id(&self) -> i64 {
        self.row.id
    }

    pub fn name(&self) -> &str {
        &self.row.name
    }

    /// The run's folder.
    pub fn path(&self) -> &Path {
        &self.row.path
    }

    pub fn steps(&self) -> u64 {
        self.row.steps
    }

    pub fn tokens(&self) -> u64 {
        self.row.tokens
    }

    /// Each SAE as it ended: name, hook, shape, last metrics.
    pub fn summaries(&self) -> &[SaeSummary] {
        &self.row.saes
    }

    /// The folder of SAE `name`, in SAELens' layout (what `SAE.load_from_disk` opens).
    pub fn sae_path(&self, name: &str) -> Result<PathBuf> {
        if !self.row.saes.iter().any(|s| s.name == name) {
            let names: Vec<&str> = self.row.saes.iter().map(|s| s.name.as_str()).collect();
            return Err(Error::InvalidArgument(format!(
                "run `{}` has no SAE `{name}`; it has {}",
                self.row.name,
                names.join(", ")
            )));
        }
        Ok(self.row.path.join(SAES_DIR).join(name))
    }

    /// SAE `name`, loaded.
    pub fn sae(&self, name: &str) -> Result<Sae> {
        Sae::load(&self.sae_path(name)?)
    }

    /// Every SAE of the run, loaded, in the config's order.
    pub fn saes(&self) -> Result<Vec<Sae>> {
        self.row.saes.iter().map(|s| self.sae(&s.name)).collect()
    }

    /// The run's resolved config.
    pub fn config(&self) -> Result<RunConfig> {
        let path = self.row.path.join(CONFIG_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        RunConfig::from_json(&text)
    }

    /// The metrics history (a row per SAE every `metrics_every` steps).
    pub fn history(&self) -> Result<RunHistory> {
        Ok(RunHistory { run: self.row.name.clone(), rows: read_history(&self.row.path.join(HISTORY_FILE))? })
    }

    pub fn lineage(&self, ws: &Workspace) -> Result<Lineage> {
        ws.lineage(self)
    }

    /// The run's dashboard as it ended (what its training job showed last).
    pub fn dashboard(&self) -> MimeBundle {
        let r = &self.row;
        let latest: Vec<Latest> = r.saes.iter().map(|s| (s.name.clone(), s.d_sae, Some(s.last))).collect();
        let rows = self.history().map(|h| h.rows).unwrap_or_default();
        dashboard(&r.name, &latest, &rows, r.steps, r.steps, r.tokens, r.seconds)
    }

    /// Evaluates every SAE of the run on up to `sequences` held-out sequences of its tokenization (those
    /// after the last one its activation cache read, so never a token it trained on) through `model`
    /// (the run's, loaded): reconstruction (MSE, explained variance, L0, with the tokens the cache left
    /// out left out) and what the model loses with the SAE spliced in (see [`super::eval`]).
    pub fn evaluate(&self, ws: &Workspace, model: &Model, sequences: usize) -> Result<Evaluation> {
        let (held_out, skip) = self.held_out(ws, model, sequences)?;
        let saes = self
            .row
            .saes
            .iter()
            .map(|s| Ok(Evaluated { name: s.name.clone(), hook: s.hook.clone(), sae: Arc::new(self.sae(&s.name)?) }))
            .collect::<Result<Vec<_>>>()?;
        super::eval::evaluate(model, &saes, &held_out, 8, &skip)
    }

    /// What SAE `name`'s latents respond to on up to `sequences` held-out sequences (as for
    /// [`evaluate`](Self::evaluate)): densities, top contexts, activation histograms, logit effects.
    pub fn features(&self, ws: &Workspace, model: &Model, name: &str, sequences: usize) -> Result<FeatureAtlas> {
        let (held_out, skip) = self.held_out(ws, model, sequences)?;
        let hook = self.row.saes.iter().find(|s| s.name == name).map(|s| s.hook.clone());
        let sae = Arc::new(self.sae(name)?);
        FeatureAtlas::build(model, name, &hook.unwrap_or_default(), sae, held_out, 8, &skip)
    }

    /// Up to `sequences` of the tokenization's sequences after the last one the run's cache read, and the
    /// token ids the cache left out.
    fn held_out(&self, ws: &Workspace, model: &Model, sequences: usize) -> Result<(Vec<Vec<u32>>, Vec<u32>)> {
        let config = self.config()?;
        let parents = ws.catalog().with_conn(|c| ws.catalog().parents_in(c, self.row.id))?;
        let parent = |kind: &str| parents.iter().find(|p| p.kind == kind).map(|p| p.id);
        // The model it trained through, by fingerprint (the model's row keeps it in its parameters).
        let fingerprint = match parent("model") {
            Some(id) => {
                ws.catalog().artifact(id)?.params.get("fingerprint").and_then(|f| f.as_str()).map(str::to_string)
            }
            None => None,
        };
        if model.info().fingerprint.is_empty() || fingerprint.is_some_and(|f| f != model.info().fingerprint) {
            return Err(Error::InvalidArgument(format!(
                "run `{}` was trained on the activations of another model than {}",
                self.row.name,
                model.name()
            )));
        }
        let cache = parent(crate::activations::ACTIVATIONS_KIND)
            .and_then(|id| ws.activation_cache_named(&id.to_string()).ok())
            .ok_or_else(|| {
                Error::InvalidArgument(format!("the activation cache of run `{}` is gone", self.row.name))
            })?;
        let tokenization = ws.tokenization(&config.tokenization)?;
        let store = tokenization.store()?;
        let first = cache.stats().sequences as usize;
        let held_out: Vec<Vec<u32>> = (first..store.len()).take(sequences).filter_map(|i| store.get(i)).collect();
        if held_out.is_empty() {
            return Err(Error::InvalidArgument(format!(
                "no held-out sequences: the cache `{}` read all {} sequences of {}; cap it (cache.max_tokens) \
                 to keep some for evaluation",
                cache.name(),
                store.len(),
                tokenization.name()
            )));
        }
        let mut skip = config.cache.exclude_tokens.clone();
        if config.cache.exclude_special_tokens {
            skip.extend(tokenization.tokenizer()?.info().special);
        }
        Ok((held_out, skip))
    }
}

/// A run's metrics over its steps, rendered as small multiples (MSE, L0, explained variance, dead
/// latents; a line per SAE).
#[derive(Debug, Clone)]
pub struct RunHistory {
    pub run: String,
    pub rows: Vec<HistoryRow>,
}

impl RunHistory {
    /// (step, value) of `metric` for SAE `sae`.
    pub fn series(&self, sae: &str, metric: impl Fn(&HistoryRow) -> f64) -> Vec<(f64, f64)> {
        self.rows.iter().filter(|r| r.sae == sae).map(|r| (r.metrics.step as f64, metric(r))).collect()
    }

    fn sae_names(&self) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for r in &self.rows {
            if !names.contains(&r.sae) {
                names.push(r.sae.clone());
            }
        }
        names
    }
}

impl RunHistory {
    /// The curves as small multiples (MSE, sparsity loss, L0, explained variance, dead latents, LR; a
    /// line per SAE), each series downsampled to about `max_points` (spikes kept).
    pub fn charts(&self, max_points: usize) -> ChartGrid {
        type Metric = (&'static str, fn(&HistoryRow) -> f64, bool);
        let metrics: [Metric; 6] = [
            ("MSE", |r| r.metrics.mse, true),
            ("L1 or AuxK loss", |r| r.metrics.sparsity_loss, false),
            ("L0", |r| r.metrics.l0, false),
            ("explained variance", |r| r.metrics.explained_variance, false),
            ("dead latents", |r| r.metrics.dead as f64, false),
            ("learning rate", |r| r.metrics.lr, false),
        ];
        let names = self.sae_names();
        let shown = legend_names(&names);
        let mut grid = ChartGrid::new(format!("SAE run {}", self.run), 2);
        for (label, metric, log) in metrics {
            let mut chart = LineChart::new(label, "step", label).log_y(log);
            for (name, legend) in names.iter().zip(&shown) {
                chart =
                    chart.series(legend.clone(), crate::display::downsample(&self.series(name, metric), max_points));
            }
            grid = grid.chart(&chart);
        }
        grid
    }
}

/// Names short enough for a chart's legend: a default name without its hook (`topk32-3072`), unless that
/// makes two the same.
fn legend_names(names: &[String]) -> Vec<String> {
    let short: Vec<String> = names
        .iter()
        .map(|n| match n.find("hook_").and_then(|i| n[i..].find('-').map(|j| i + j + 1)) {
            Some(at) if at < n.len() => n[at..].to_string(),
            _ => n.clone(),
        })
        .collect();
    let mut unique = short.clone();
    unique.sort();
    unique.dedup();
    if unique.len() == short.len() { short } else { names.to_vec() }
}

impl Render for RunHistory {
    fn bundle(&self) -> MimeBundle {
        self.charts(400).bundle()
    }
}

/// One SAE's line on the dashboard: name, width, latest metrics.
type Latest = (String, usize, Option<super::train::StepMetrics>);

/// The live dashboard a training job publishes: where it is (step, tokens, speed, time left), each SAE's
/// latest metrics, and the curves so far (downsampled to keep each update small).
fn dashboard(
    name: &str,
    latest: &[Latest],
    history: &[HistoryRow],
    step: u64,
    total: u64,
    tokens: u64,
    seconds: f64,
) -> MimeBundle {
    let rate = tokens as f64 / seconds.max(1e-9);
    let left = if step > 0 { seconds / step as f64 * total.saturating_sub(step) as f64 } else { 0.0 };
    let mut table =
        Table::new("latest", &["SAE", "step", "MSE", "sparsity loss", "L0", "explained variance", "dead", "LR"]);
    for (sae, d_sae, last) in latest {
        let Some(m) = last else { continue };
        table.row(vec![
            sae.clone(),
            m.step.to_string(),
            format!("{:.4}", m.mse),
            format!("{:.4}", m.sparsity_loss),
            format!("{:.2}", m.l0),
            format!("{:.4}", m.explained_variance),
            format!("{} ({:.1}%)", m.dead, 100.0 * m.dead as f64 / (*d_sae).max(1) as f64),
            format!("{:.2e}", m.lr),
        ]);
    }
    let history = RunHistory { run: name.to_string(), rows: history.to_vec() };
    Card::new(format!("Training {name}"))
        .badge(if step >= total { "done" } else { "training" })
        .fact("step", format!("{step} of {total}"))
        .fact("tokens", format!("{} ({} tokens/s)", crate::units::count(tokens), crate::units::count(rate as u64)))
        .fact("time", format!("{seconds:.1} s, {left:.0} s left"))
        .section(&table.bundle())
        .section(&history.charts(120).bundle())
        .bundle()
}

/// What a running training writes about itself about once a second (`live.json` in its work directory),
/// for [`Workspace::watch_sae_run`] in another process: the dashboard's inputs, the history thinned.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct LiveState {
    step: u64,
    total_steps: u64,
    tokens: u64,
    seconds: f64,
    latest: Vec<Latest>,
    history: Vec<HistoryRow>,
}

const LIVE_FILE: &str = "live.json";

/// At most about `max` rows per SAE, evenly spaced, the last ones kept (the history holds a row per SAE
/// at each metrics step, in the SAEs' order).
fn thin(history: &[HistoryRow], saes: usize, max: usize) -> Vec<HistoryRow> {
    let saes = saes.max(1);
    let groups = history.len().div_ceil(saes);
    if groups <= max.max(1) {
        return history.to_vec();
    }
    let every = groups.div_ceil(max.max(1));
    let last = groups - 1;
    history
        .iter()
        .enumerate()
        .filter(|(i, _)| i / saes % every == 0 || i / saes == last)
        .map(|(_, r)| r.clone())
        .collect()
}

impl Workspace {
    /// Watches the training run `name` that this process or another (the CLI, another kernel) is making,
    /// from the workspace: a job whose display is the run's live dashboard, read from the catalog's
    /// progress and the run's work directory, and whose result is the run once it is ready. Cancelling
    /// the watch stops watching, not the training.
    pub fn watch_sae_run(&self, name: &str) -> Job<SaeRun> {
        let (ws, name) = (self.clone(), name.to_string());
        Job::spawn(&format!("watch {name}"), move |ctx| watch(&ws, &name, ctx))
    }
}

fn watch(ws: &Workspace, name: &str, ctx: &JobContext) -> Result<SaeRun> {
    let root = std::path::absolute(ws.root()).map_err(|e| Error::io(ws.root(), e))?;
    let live = crate::catalog::resumable_dir(&root, "sae_runs", SAE_RUN_KIND, name).join(LIVE_FILE);
    let (mut phased, mut seen) = (false, None);
    ctx.set_detail(format!("waiting for run `{name}` to start"));
    loop {
        ctx.check()?;
        let catalog = ws.catalog();
        if let Some(id) = catalog.with_conn(|c| catalog.artifact_id_in(c, SAE_RUN_KIND, name))? {
            let row = catalog.artifact(id)?;
            match row.status {
                ArtifactStatus::Ready => {
                    let run = ws.sae_run(&id.to_string())?;
                    ctx.publish(run.dashboard());
                    return Ok(run);
                }
                ArtifactStatus::Failed => {
                    return Err(Error::InvalidArgument(format!(
                        "run `{name}` failed: {}",
                        row.error.unwrap_or_default()
                    )));
                }
                ArtifactStatus::Interrupted => {
                    return Err(Error::InvalidArgument(format!(
                        "the process training run `{name}` is gone; ask for the run again to continue from its \
                         last checkpoint"
                    )));
                }
                _ => {
                    if let Some(p) = row.progress.filter(|p| p.phase == "training") {
                        if !phased {
                            ctx.phase("training", "steps", p.total);
                            phased = true;
                        }
                        ctx.set_detail(p.detail);
                        ctx.set_done(p.done);
                    }
                }
            }
        }
        let modified = std::fs::metadata(&live).and_then(|m| m.modified()).ok();
        if modified.is_some() && modified != seen {
            seen = modified;
            let state = std::fs::read_to_string(&live).ok().and_then(|t| serde_json::from_str::<LiveState>(&t).ok());
            if let Some(s) = state {
                ctx.publish(dashboard(name, &s.latest, &s.history, s.step, s.total_steps, s.tokens, s.seconds));
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
}

impl Render for SaeRun {
    fn bundle(&self) -> MimeBundle {
        let r = &self.row;
        let mut table = Table::new(
            "SAEs (last step)",
            &["name", "hook", "architecture", "d_in", "d_sae", "L0", "explained variance", "MSE", "dead"],
        );
        for s in &r.saes {
            let arch = match s.k {
                Some(k) => format!("{} k={k}", s.architecture),
                None => s.architecture.clone(),
            };
            table.row(vec![
                s.name.clone(),
                s.hook.clone(),
                arch,
                s.d_in.to_string(),
                s.d_sae.to_string(),
                format!("{:.2}", s.last.l0),
                format!("{:.4}", s.last.explained_variance),
                format!("{:.4}", s.last.mse),
                s.last.dead.to_string(),
            ]);
        }
        let mut card = Card::new(format!("SAE run {}", r.name))
            .badge("ready")
            .fact("trained", format!("{} steps, {} tokens", r.steps, crate::units::count(r.tokens)))
            .fact(
                "time",
                format!(
                    "{:.1} s ({} tokens/s per SAE pass)",
                    r.seconds,
                    crate::units::count((r.tokens as f64 / r.seconds.max(1e-9)) as u64)
                ),
            )
            .fact("folder", r.path.display().to_string())
            .section(&table.bundle());
        if let Ok(history) = self.history() {
            card = card.section(&history.bundle());
        }
        card.bundle()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_config_names_an_unknown_knob() {
        let e = RunConfig::from_json(r#"{"saes": [{"hook": "h", "d_sae": 8, "lr_warmup_steps": 5}]}"#).unwrap_err();
        assert!(e.to_string().contains("saes[0]: unknown field `lr_warmup_steps`"), "{e}");
        assert!(e.to_string().contains("lr_warm_up_steps"), "the knobs are listed: {e}");
        let e = RunConfig::from_json(r#"{"training_token": 5}"#).unwrap_err();
        assert!(e.to_string().contains("unknown field `training_token`"), "{e}");
        let c = RunConfig::from_json(
            r#"{"tokenization": "t", "model": "m", "saes": [{"hook": "h", "d_sae": 8, "k": 2, "lr": 0.01}]}"#,
        )
        .unwrap();
        assert_eq!((c.saes[0].train.lr, c.saes[0].k, c.train_batch_size_tokens), (0.01, Some(2), 4096));
        assert_eq!(RunConfig::from_json(&c.to_json()).unwrap(), c);
    }
}
