//! The activation store: a tokenization's tokens through a model, the activations at one or several hooks
//! cached on disk, then served as shuffled f32 training batches from a buffer of stated size, with the
//! memory and disk it will use said (and a budget it cannot keep refused) before it starts.
//!
//! - [`ActivationSpec`]: what to cache and how to serve it (plain data: keep it in a notebook variable).
//!   [`Workspace::plan_activations`] says what it will use; [`Workspace::activation_store`] (or its job
//!   form) makes the cache, or reuses the one made for the same model, hooks, tokenization, dtype and
//!   exclusions, and opens an [`ActivationStore`] on it.
//! - The cache ([`ActivationCache`]) is an artifact of kind `activations` made through the catalog's
//!   lifecycle, with lineage to the tokenization and the model; its shards are `.npy` files numpy reads
//!   ([`shards`]). Filling it: [`fill`]. Serving: [`store`]. What it will use: [`plan`].
//!
//! Rooms: `shards` (files and index), `fill` (forward passes into shards), `store` (the shuffle buffer),
//! `plan` (memory and disk), `table` (the catalog record), `render` (cards and charts), `rng`.

pub mod fill;
pub mod plan;
mod render;
pub(crate) mod rng;
pub mod shards;
pub mod store;
pub mod table;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use fill::{CacheStats, HookStats, NormHistogram};
pub use plan::ActivationPlan;
pub use render::NormHistograms;
pub use shards::{CacheDtype, CacheIndex};
pub use store::{ActivationBatch, StoreOptions};
pub use table::{ACTIVATIONS_KIND, ActivationCacheRow, CachedHook};

use crate::catalog::{Artifact, ArtifactPlan, ArtifactStatus, IfReady, Lineage, Request, Workspace};
use crate::error::{Error, Result};
use crate::jobs::{Job, JobContext};
use crate::models::{HookPoint, Model};
use crate::tokenize::Tokenization;

/// What decides a cache's contents: the same again reuses it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheParams {
    pub hooks: Vec<String>,
    pub dtype: CacheDtype,
    /// Leave out the tokenizer's special tokens (BOS, EOS, padding, `[CLS]`, `[SEP]`…).
    pub exclude_special_tokens: bool,
    /// Leave out these token ids too.
    pub exclude_tokens: Vec<u32>,
    /// Drop tokens whose norm at any hook is above this many times that hook's median (`None`: keep all).
    pub outlier_factor: Option<f32>,
    /// Cache at most this many tokens (the first ones kept, in sequence order).
    pub max_tokens: Option<u64>,
    /// Rows per shard file (layout only: it does not change what is served).
    #[serde(skip)]
    pub shard_tokens: usize,
}

impl Default for CacheParams {
    fn default() -> Self {
        CacheParams {
            hooks: Vec::new(),
            dtype: CacheDtype::F32,
            exclude_special_tokens: true,
            exclude_tokens: Vec::new(),
            outlier_factor: Some(10.0),
            max_tokens: None,
            shard_tokens: 65536,
        }
    }
}

/// An activation store to make: the tokens, the model, the hooks, how to cache and how to serve, and the
/// budgets. Cheap to clone (the model's weights are shared).
#[derive(Debug, Clone)]
pub struct ActivationSpec {
    pub tokenization: Tokenization,
    pub model: Model,
    pub cache: CacheParams,
    pub store: StoreOptions,
    /// Anonymous memory the whole store may use (see [`plan`]); default 4 GiB.
    pub memory: u64,
    /// Disk the cache may take (default: what is free).
    pub disk: Option<u64>,
}

impl ActivationSpec {
    /// Caches `model`'s activations at `hooks` over `tokenization`'s tokens, with the defaults: f32,
    /// special tokens left out, outliers over 10× the median dropped, batches of 4,096 tokens from a
    /// 65,536-token buffer, seed 0, a 4 GiB memory budget.
    pub fn new<S: std::fmt::Display>(
        tokenization: &Tokenization,
        model: &Model,
        hooks: impl IntoIterator<Item = S>,
    ) -> ActivationSpec {
        ActivationSpec {
            tokenization: tokenization.clone(),
            model: model.clone(),
            cache: CacheParams { hooks: hooks.into_iter().map(|h| h.to_string()).collect(), ..Default::default() },
            store: StoreOptions::default(),
            memory: 4 << 30,
            disk: None,
        }
    }

    pub fn dtype(mut self, dtype: CacheDtype) -> Self {
        self.cache.dtype = dtype;
        self
    }

    pub fn exclude_special_tokens(mut self, exclude: bool) -> Self {
        self.cache.exclude_special_tokens = exclude;
        self
    }

    pub fn exclude_tokens(mut self, ids: impl IntoIterator<Item = u32>) -> Self {
        self.cache.exclude_tokens = ids.into_iter().collect();
        self
    }

    /// Drop tokens whose norm is above `factor` × the median (`None` keeps every token).
    pub fn outlier_factor(mut self, factor: Option<f32>) -> Self {
        self.cache.outlier_factor = factor;
        self
    }

    pub fn max_tokens(mut self, tokens: u64) -> Self {
        self.cache.max_tokens = Some(tokens);
        self
    }

    pub fn shard_tokens(mut self, tokens: usize) -> Self {
        self.cache.shard_tokens = tokens;
        self
    }

    pub fn batch_tokens(mut self, tokens: usize) -> Self {
        self.store.batch_tokens = tokens;
        self
    }

    pub fn buffer_tokens(mut self, tokens: usize) -> Self {
        self.store.buffer_tokens = tokens;
        self
    }

    pub fn seed(mut self, seed: u64) -> Self {
        self.store.seed = seed;
        self
    }

    pub fn epochs(mut self, epochs: u32) -> Self {
        self.store.epochs = epochs;
        self
    }

    /// The memory budget in bytes.
    pub fn memory(mut self, bytes: u64) -> Self {
        self.memory = bytes;
        self
    }

    /// The disk budget in bytes.
    pub fn disk(mut self, bytes: u64) -> Self {
        self.disk = Some(bytes);
        self
    }

    /// The hook points, checked against the model, in the order given, each once.
    fn hook_points(&self) -> Result<Vec<HookPoint>> {
        if self.cache.hooks.is_empty() {
            return Err(Error::InvalidArgument("an activation store needs at least one hook".into()));
        }
        let mut points: Vec<HookPoint> = Vec::new();
        for h in &self.cache.hooks {
            let p = self.model.hook(h)?;
            if !points.contains(&p) {
                points.push(p);
            }
        }
        Ok(points)
    }

    /// What decides the cache's contents: the tokenization, the model's identity (its fingerprint, not
    /// its name or folder) and the contents' parameters, normalised (listed ids sorted, a cap at or past
    /// the tokenization's size is no cap).
    fn key(&self, hooks: &[HookPoint]) -> serde_json::Value {
        let mut cache = self.cache.clone();
        cache.hooks = hooks.iter().map(HookPoint::to_string).collect();
        cache.exclude_tokens.sort_unstable();
        cache.exclude_tokens.dedup();
        if cache.max_tokens.is_some_and(|m| m >= self.tokenization.row().num_tokens) {
            cache.max_tokens = None;
        }
        serde_json::json!({
            "tokenization_id": self.tokenization.id(),
            "model_fingerprint": self.model.info().fingerprint,
            "cache": cache,
        })
    }

    /// `<tokenization>/<model>/<16 hex digits of the key>`.
    fn cache_name(&self, key: &serde_json::Value) -> String {
        let digest = Sha256::digest(serde_json::to_string(key).unwrap_or_default().as_bytes());
        let digest: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
        format!("{}/{}/{digest}", self.tokenization.name(), short_model_name(self.model.name()))
    }
}

/// A model's name short enough for an artifact name: a repo id as it is, a folder by its last component
/// (its parent's too when the last is a generic `model`).
pub(crate) fn short_model_name(name: &str) -> String {
    let parts: Vec<&str> = name.trim_end_matches('/').rsplit('/').take(2).collect();
    match parts.as_slice() {
        [last, parent] if ["model", "models", "weights"].contains(last) => format!("{parent}-{last}"),
        [last, ..] if Path::new(name).is_absolute() => last.to_string(),
        _ => name.to_string(),
    }
}

/// Free bytes on the filesystem holding `path`.
fn free_disk(path: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: a valid NUL-terminated path and a zeroed struct for the kernel to fill.
    (unsafe { libc::statvfs(c.as_ptr(), &mut stat) } == 0).then(|| stat.f_bavail as u64 * stat.f_frsize as u64)
}

/// A prepared request: checked hooks, the cache's name and key, the plan.
struct Prepared {
    hooks: Vec<HookPoint>,
    name: String,
    key: serde_json::Value,
    plan: ActivationPlan,
    existing: Option<ActivationCache>,
}

impl Workspace {
    fn prepare_activations(&self, spec: &ActivationSpec) -> Result<Prepared> {
        spec.store.validate()?;
        if spec.cache.outlier_factor.is_some_and(|f| f.is_nan() || f <= 1.0) {
            return Err(Error::InvalidArgument(
                "outlier_factor must be above 1 (None in Rust, 0 on the command line, keeps every token)".into(),
            ));
        }
        spec.model.check_tokens(&spec.tokenization)?;
        let hooks = spec.hook_points()?;
        let key = spec.key(&hooks);
        let name = spec.cache_name(&key);
        // Made before under another name (the model loaded from another folder) counts too.
        let existing = self.activation_caches()?.into_iter().find(|c| c.row.params.get("key") == Some(&key));
        let reuses = existing.as_ref().map(|c| c.name().to_string());
        let info = spec.model.info();
        let width: usize = hooks.iter().map(|&h| info.hook_width(h)).sum();
        let t = spec.tokenization.row();
        let seq = spec.tokenization.params().max_length.max(1);
        let tokens = spec.cache.max_tokens.map_or(t.num_tokens, |m| m.min(t.num_tokens));
        let plan = ActivationPlan::new(
            info,
            seq,
            width,
            spec.cache.dtype.width(),
            (tokens, spec.cache.shard_tokens.max(1) as u64, hooks.len()),
            reuses,
            &spec.store,
            spec.memory,
            spec.disk,
            free_disk(self.root()),
        );
        Ok(Prepared { hooks, name, key, plan, existing })
    }

    /// What `spec` will use (memory by part, disk) and whether its budgets allow it; nothing is made.
    pub fn plan_activations(&self, spec: &ActivationSpec) -> Result<ActivationPlan> {
        Ok(self.prepare_activations(spec)?.plan)
    }

    /// The cache `spec` asks for: made now (refused first if over budget), or the one already made.
    pub fn activation_cache(&self, spec: &ActivationSpec) -> Result<ActivationCache> {
        self.make_cache(spec, &JobContext::detached("activations")).map(|(c, _)| c)
    }

    pub(crate) fn make_cache(
        &self,
        spec: &ActivationSpec,
        ctx: &JobContext,
    ) -> Result<(ActivationCache, ActivationPlan)> {
        let prepared = self.prepare_activations(spec)?;
        prepared.plan.check()?;
        if let Some(existing) = prepared.existing {
            return Ok((existing, prepared.plan));
        }
        let model_id = self.register_model(&spec.model)?;
        let params = serde_json::json!({
            "key": prepared.key,
            "tokenization": spec.tokenization.name(),
            "model": spec.model.name(),
            "shard_tokens": spec.cache.shard_tokens,
            "sequences_per_batch": prepared.plan.sequences_per_batch,
        });
        let plan = ArtifactPlan {
            kind: ACTIVATIONS_KIND,
            name: prepared.name.clone(),
            working: ArtifactStatus::Caching,
            params,
            parents: vec![spec.tokenization.id(), model_id],
            dir: Some("activations"),
            if_ready: IfReady::Reuse,
            resumable: false,
        };
        let (hooks, s) = (&prepared.hooks, prepared.plan.sequences_per_batch);
        ctx.set_detail(format!(
            "planned: {} peak memory of {}, {} disk",
            crate::units::bytes(prepared.plan.peak_memory),
            crate::units::bytes(prepared.plan.memory_budget),
            crate::units::bytes(prepared.plan.disk)
        ));
        let produced = self.produce(plan, ctx, |dir, ctx| {
            let dir = dir.ok_or_else(|| Error::InvalidArgument("a cache needs a directory".into()))?.path();
            let (_, cached, statistics) = fill::fill(dir, &spec.tokenization, &spec.model, hooks, &spec.cache, s, ctx)?;
            Ok(table::ActivationCacheRecord {
                model: spec.model.name().to_string(),
                hooks: cached,
                dtype: spec.cache.dtype,
                num_tokens: statistics.kept,
                num_bytes: dir_bytes(dir),
                statistics,
            })
        })?;
        let cache = self.activation_cache_by_id(produced.id())?;
        if cache.row.params.get("key") != Some(&prepared.key) {
            return Err(Error::InvalidArgument(format!(
                "activation cache `{}` exists but was made from other parameters (or by an older saekit); \
                 delete it (ws.delete_artifact) to make this one",
                cache.name()
            )));
        }
        Ok((cache, prepared.plan))
    }

    /// The store `spec` asks for, here and now: the cache made (or reused), then opened for serving.
    pub fn activation_store(&self, spec: &ActivationSpec) -> Result<ActivationStore> {
        self.make(spec.clone())
    }

    /// [`Workspace::activation_store`] as a background job (progress in tokens, with rate and ETA).
    pub fn activation_store_job(&self, spec: &ActivationSpec) -> Job<ActivationStore> {
        self.make_job(spec.clone())
    }

    /// Every ready activation cache, newest first.
    pub fn activation_caches(&self) -> Result<Vec<ActivationCache>> {
        let rows = self.catalog().with_conn(|conn| table::activation_caches_in(self.catalog(), conn))?;
        Ok(rows.into_iter().map(|row| ActivationCache { row }).collect())
    }

    /// An activation cache by name or id.
    pub fn activation_cache_named(&self, name_or_id: &str) -> Result<ActivationCache> {
        let id = self.catalog().artifact_id_named(ACTIVATIONS_KIND, name_or_id)?;
        let cache = self.activation_cache_by_id(id)?;
        self.note(id, crate::catalog::Touch::Read);
        Ok(cache)
    }

    fn activation_cache_by_id(&self, id: i64) -> Result<ActivationCache> {
        let row = self.catalog().with_conn(|conn| table::activation_cache_in(self.catalog(), conn, id))?;
        Ok(ActivationCache { row })
    }
}

impl Request for ActivationSpec {
    type Output = ActivationStore;

    fn label(&self) -> String {
        format!("activations {} × {}", self.tokenization.name(), short_model_name(self.model.name()))
    }

    fn run(&self, ws: &Workspace, ctx: &JobContext) -> Result<ActivationStore> {
        let (cache, plan) = ws.make_cache(self, ctx)?;
        let mut store = cache.store(&self.store)?;
        store.plan = Some(plan);
        Ok(store)
    }
}

/// Bytes of the files under `dir`.
pub(crate) fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_bytes(&e.path()),
            Ok(_) => e.metadata().map(|m| m.len()).unwrap_or(0),
            Err(_) => 0,
        })
        .sum()
}

/// A cache of activations in the workspace.
#[derive(Debug, Clone)]
pub struct ActivationCache {
    row: ActivationCacheRow,
}

impl Artifact for ActivationCache {
    fn artifact_id(&self) -> i64 {
        self.row.id
    }
}

impl ActivationCache {
    pub fn row(&self) -> &ActivationCacheRow {
        &self.row
    }

    pub fn id(&self) -> i64 {
        self.row.id
    }

    pub fn name(&self) -> &str {
        &self.row.name
    }

    /// The folder of the shards and `index.json`.
    pub fn path(&self) -> &Path {
        &self.row.path
    }

    pub fn num_tokens(&self) -> u64 {
        self.row.num_tokens
    }

    pub fn hooks(&self) -> &[CachedHook] {
        &self.row.hooks
    }

    pub fn stats(&self) -> &CacheStats {
        &self.row.statistics
    }

    /// `index.json`.
    pub fn index(&self) -> Result<CacheIndex> {
        CacheIndex::read(&self.row.path)
    }

    /// The norm histogram of each hook, as a chart.
    pub fn norm_histograms(&self) -> NormHistograms {
        NormHistograms { cache: self.row.name.clone(), hooks: self.row.statistics.hooks.clone() }
    }

    /// Opens a store serving this cache.
    pub fn store(&self, options: &StoreOptions) -> Result<ActivationStore> {
        let reader = Arc::new(shards::CacheReader::open(&self.row.path)?);
        let hooks = reader.index.hooks.iter().map(|h| h.name.clone()).collect();
        Ok(ActivationStore {
            cache: self.clone(),
            buffer: store::Buffer::new(reader, options.clone())?,
            hooks,
            plan: None,
        })
    }

    pub fn lineage(&self, ws: &Workspace) -> Result<Lineage> {
        ws.lineage(self)
    }
}

/// Shuffled training batches from an activation cache (see [`store`] for the order and what skipping
/// costs). Call [`next_batch`](Self::next_batch), or iterate [`batches`](Self::batches).
pub struct ActivationStore {
    cache: ActivationCache,
    buffer: store::Buffer,
    hooks: Vec<String>,
    plan: Option<ActivationPlan>,
}

impl std::fmt::Debug for ActivationStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ActivationStore({}, {} tokens served)", self.cache.name(), self.buffer.served_tokens)
    }
}

impl ActivationStore {
    /// The next batch, or `None` once every epoch is served.
    pub fn next_batch(&mut self) -> Result<Option<ActivationBatch>> {
        self.buffer.next_batch(&self.hooks)
    }

    /// Moves on by `tokens` (a multiple of the batch size) as if they had been served, reading none of
    /// them: the batches that follow are the ones a store that served them would give. Returns the tokens
    /// skipped (fewer at the end of the cache).
    pub fn skip(&mut self, tokens: u64) -> Result<u64> {
        self.buffer.skip(tokens)
    }

    pub fn cache(&self) -> &ActivationCache {
        &self.cache
    }

    pub fn hooks(&self) -> &[String] {
        &self.hooks
    }

    pub fn options(&self) -> &StoreOptions {
        &self.buffer.options
    }

    /// What the store said it would use, when it was made from a spec.
    pub fn plan(&self) -> Option<&ActivationPlan> {
        self.plan.as_ref()
    }

    pub fn served_tokens(&self) -> u64 {
        self.buffer.served_tokens
    }

    pub fn served_batches(&self) -> u64 {
        self.buffer.served_batches
    }

    /// Rows left over at the end (fewer than a batch), once the store is done.
    pub fn left_over(&self) -> u64 {
        self.buffer.left_over
    }

    /// (sequence in the tokenization, position in it, token id) of cache row `row`.
    pub fn token_of(&self, row: u64) -> Result<(u32, u32, u32)> {
        let reader = self.buffer.reader();
        if row >= reader.num_rows() {
            return Err(Error::InvalidArgument(format!("row {row} is past the cache's {} rows", reader.num_rows())));
        }
        let [s, p, t] = reader.token_of(row);
        Ok((s, p, t))
    }

    /// The cache's folder.
    pub fn path(&self) -> PathBuf {
        self.cache.path().to_path_buf()
    }
}

/// The batches of a store, as an iterator ([`ActivationStore::batches`]).
pub struct Batches<'a> {
    store: &'a mut ActivationStore,
}

impl Iterator for Batches<'_> {
    type Item = Result<ActivationBatch>;

    fn next(&mut self) -> Option<Self::Item> {
        self.store.next_batch().transpose()
    }
}

impl ActivationStore {
    /// The remaining batches as an iterator: `for batch in store.batches() { let batch = batch?; … }`.
    pub fn batches(&mut self) -> Batches<'_> {
        Batches { store: self }
    }
}

impl Workspace {
    /// Removes the activation caches nothing was made from (no SAE trained on them), with their shards.
    pub fn remove_unused_caches(&self) -> Result<crate::catalog::CleanUp> {
        self.remove_unused(ACTIVATIONS_KIND, false)
    }
}

/// The store's generator, for other modules' tests.
#[cfg(test)]
pub(crate) fn rng_for_tests(seed: u64) -> rng::Rng {
    rng::Rng::new(seed, 0)
}
