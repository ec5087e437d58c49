//! The Hugging Face Hub: dataset and model repositories by id. Lists a dataset's configs, splits and data
//! files as the Hub lays them out, plans a download (files, sizes, disk needed and free), fetches files
//! into the standard HF cache (`blobs/`, `snapshots/`, `refs/`, shared with Python's `huggingface_hub`)
//! with retries, resume and checksum verification, and registers the result in a workspace catalog.
//!
//! The cache layout comes from `hf-hub`; the HTTP is saekit's own (on `ureq`, as `hf-hub` uses), because
//! a download here must report every byte, stop when cancelled, back off on 429 and 5xx, and keep the
//! token out of every message.

mod cache;
mod client;
mod download;
mod layout;
mod plan;
mod register;
pub use register::{Download, DownloadParams};
mod render;
mod token;
mod yaml;

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use cache::HubCache;
pub use layout::{ConfigInfo, RepoFile, SplitInfo};
pub use plan::{DatasetRepo, DownloadPlan, PlanFile, Selection};
pub use token::{Token, TokenOrigin};

use crate::error::{Error, Result};
use crate::jobs::JobContext;

/// The Hub's address when `HF_ENDPOINT` is not set.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// The kinds of Hub repository saekit reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RepoKind {
    Dataset,
    Model,
}

impl RepoKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RepoKind::Dataset => "dataset",
            RepoKind::Model => "model",
        }
    }

    fn hf(self) -> hf_hub::RepoType {
        match self {
            RepoKind::Dataset => hf_hub::RepoType::Dataset,
            RepoKind::Model => hf_hub::RepoType::Model,
        }
    }

    /// The URL path prefix of the repo's files (`datasets/` or nothing) and of its API (`datasets`, `models`).
    fn url_prefix(self) -> &'static str {
        match self {
            RepoKind::Dataset => "datasets/",
            RepoKind::Model => "",
        }
    }

    fn api_prefix(self) -> &'static str {
        match self {
            RepoKind::Dataset => "datasets",
            RepoKind::Model => "models",
        }
    }
}

/// How often and how patiently failed requests are retried: 5xx, 429 (honouring `Retry-After`), refused
/// or dropped connections and stalled reads. A retry after bytes arrived resumes where they stopped, and
/// progress resets the count.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// The first wait; each further wait doubles it.
    pub base_delay: Duration,
    /// The longest wait (also caps `Retry-After`).
    pub max_delay: Duration,
    /// A read that waits longer than this for bytes counts as a dropped connection.
    pub read_timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 5,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            read_timeout: Duration::from_secs(30),
        }
    }
}

/// A connection to a Hub (the real one or any compatible server) and a local cache.
#[derive(Clone)]
pub struct Hub {
    endpoint: String,
    token: Option<Token>,
    cache: HubCache,
    offline: bool,
    retry: RetryPolicy,
    free_space_limit: Option<u64>,
    checksums: bool,
    agent: ureq::Agent,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("endpoint", &self.endpoint)
            .field("token", &self.token)
            .field("cache", &self.cache.root())
            .field("offline", &self.offline)
            .finish_non_exhaustive()
    }
}

fn truthy(var: &str) -> bool {
    std::env::var(var)
        .map(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on"))
        .unwrap_or(false)
}

impl Hub {
    /// A Hub configured as `huggingface_hub` would be: `HF_ENDPOINT` (else huggingface.co), the token
    /// from `HF_TOKEN` or the token file, the cache at `HF_HUB_CACHE` (else `$HF_HOME/hub`, else
    /// `~/.cache/huggingface/hub`), and offline when `HF_HUB_OFFLINE` is set to 1.
    pub fn from_env() -> Result<Hub> {
        let endpoint = std::env::var("HF_ENDPOINT").ok().filter(|e| !e.trim().is_empty());
        let hub = Hub::new(endpoint.as_deref().unwrap_or(DEFAULT_ENDPOINT), HubCache::from_env()?);
        Ok(Hub { token: Token::from_env()?, offline: truthy("HF_HUB_OFFLINE"), ..hub })
    }

    /// A Hub at `endpoint` with the cache at `cache`, no token, online.
    pub fn new(endpoint: &str, cache: HubCache) -> Hub {
        let retry = RetryPolicy::default();
        Hub {
            endpoint: endpoint.trim_end_matches('/').to_string(),
            token: None,
            cache,
            offline: false,
            agent: client::agent(&retry),
            retry,
            free_space_limit: None,
            checksums: true,
        }
    }

    /// Uses this token (instead of the one from the environment), or none.
    pub fn with_token(mut self, token: Option<&str>) -> Hub {
        self.token = token.and_then(|t| Token::new(t, TokenOrigin::Argument));
        self
    }

    pub fn with_endpoint(mut self, endpoint: &str) -> Hub {
        self.endpoint = endpoint.trim_end_matches('/').to_string();
        self
    }

    pub fn with_cache(mut self, cache: HubCache) -> Hub {
        self.cache = cache;
        self
    }

    /// Offline: only what is cached is served, and nothing is asked of the network.
    pub fn with_offline(mut self, offline: bool) -> Hub {
        self.offline = offline;
        self
    }

    pub fn with_retry(mut self, retry: RetryPolicy) -> Hub {
        self.agent = client::agent(&retry);
        self.retry = retry;
        self
    }

    /// Pretends the cache's disk has at most `bytes` free (for tests and for keeping headroom).
    pub fn with_free_space_limit(mut self, bytes: Option<u64>) -> Hub {
        self.free_space_limit = bytes;
        self
    }

    /// Whether downloads of LFS files are checked against their SHA-256 (the default; sizes are always
    /// checked). Hashing runs beside the download on its own thread, but on a busy machine it costs CPU.
    pub fn with_checksums(mut self, verify: bool) -> Hub {
        self.checksums = verify;
        self
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    pub fn cache(&self) -> &HubCache {
        &self.cache
    }

    pub fn is_offline(&self) -> bool {
        self.offline
    }

    /// Where the token came from, if there is one (never the token itself).
    pub fn token_origin(&self) -> Option<&TokenOrigin> {
        self.token.as_ref().map(|t| t.origin())
    }

    /// Free bytes on the cache's disk (capped by [`Hub::with_free_space_limit`]).
    pub fn free_space(&self) -> Result<u64> {
        let free = cache::free_space(self.cache.root())?;
        Ok(self.free_space_limit.map_or(free, |limit| limit.min(free)))
    }

    /// A dataset repository by id (`owner/name`), at its `main` revision.
    pub fn dataset(&self, id: &str) -> HubRepo {
        HubRepo {
            hub: self.clone(),
            kind: RepoKind::Dataset,
            id: id.trim_matches('/').to_string(),
            revision: "main".into(),
        }
    }

    /// A model repository by id (`owner/name`, or a bare name such as `gpt2`), at `main`.
    pub fn model(&self, id: &str) -> HubRepo {
        HubRepo {
            hub: self.clone(),
            kind: RepoKind::Model,
            id: id.trim_matches('/').to_string(),
            revision: "main".into(),
        }
    }
}

/// One repository at one revision (a branch, a tag, a commit, or `refs/convert/parquet`).
#[derive(Debug, Clone)]
pub struct HubRepo {
    hub: Hub,
    kind: RepoKind,
    id: String,
    revision: String,
}

impl HubRepo {
    /// The same repository at another revision.
    pub fn revision(mut self, revision: &str) -> HubRepo {
        self.revision = revision.to_string();
        self
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn kind(&self) -> RepoKind {
        self.kind
    }

    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    pub fn current_revision(&self) -> &str {
        &self.revision
    }

    /// The repository's commit, files with sizes and checksums, and (for datasets) its configs and splits.
    pub fn info(&self) -> Result<DatasetRepo> {
        plan::info(self)
    }

    /// Fetches one file into the cache (or finds it there) and returns its path in the snapshot.
    pub fn file(&self, path: &str) -> Result<PathBuf> {
        self.file_with(path, &JobContext::detached("download"))
    }

    /// [`HubRepo::file`], reporting progress to (and stopping when cancelled through) `ctx`.
    pub fn file_with(&self, path: &str, ctx: &JobContext) -> Result<PathBuf> {
        safe_relative(path)?;
        if self.hub.offline {
            return self.hub.cache.cached_file(self, path).ok_or_else(|| Error::Offline {
                what: format!("{} `{}` file `{path}` at revision {}", self.kind.as_str(), self.id, self.revision),
                cache: self.hub.cache.root().to_path_buf(),
            });
        }
        let plan = DownloadPlan::single(self, path)?;
        download::run(&plan, ctx).map(|mut paths| paths.remove(0))
    }

    fn folder(&self) -> hf_hub::Repo {
        hf_hub::Repo::with_revision(self.id.clone(), self.kind.hf(), self.revision.clone())
    }

    /// `{endpoint}/api/{datasets|models}/{id}/revision/{revision}`.
    fn api_url(&self, revision: &str) -> String {
        format!(
            "{}/api/{}/{}/revision/{}",
            self.hub.endpoint,
            self.kind.api_prefix(),
            self.id,
            client::escape_path(revision, true)
        )
    }

    /// `{endpoint}/{datasets/}{id}/resolve/{revision}/{path}`.
    fn resolve_url(&self, revision: &str, path: &str) -> String {
        format!(
            "{}/{}{}/resolve/{}/{}",
            self.hub.endpoint,
            self.kind.url_prefix(),
            self.id,
            client::escape_path(revision, true),
            client::escape_path(path, false)
        )
    }
}

/// The path of `file` inside a repository, checked: relative, no `..`, so it cannot leave the snapshot.
fn safe_relative(file: &str) -> Result<&Path> {
    let path = Path::new(file);
    let ok = !file.is_empty() && path.components().all(|c| matches!(c, std::path::Component::Normal(_)));
    if ok { Ok(path) } else { Err(Error::InvalidArgument(format!("unsafe file path in a Hub repository: {file:?}"))) }
}
