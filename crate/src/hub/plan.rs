//! What a repository holds ([`DatasetRepo`]: commit, files with sizes and checksums, configs and splits)
//! and what a download will fetch ([`DownloadPlan`]: the selected files, what is cached already, and the
//! disk space needed and free), both computed before a byte of data moves.

use std::path::PathBuf;

use serde::Serialize;
use serde_json::Value;

use super::layout::{self, ConfigInfo, RepoFile};
use super::{HubRepo, RepoKind, client, yaml};
use crate::error::{Error, Result};
use crate::jobs::JobContext;
use crate::sources::TextField;

/// The revision of the Hub's automatic Parquet conversion of a dataset.
pub const PARQUET_CONVERSION: &str = "refs/convert/parquet";

/// A repository at a commit: files, and for datasets the configs and splits (also when read from the cache
/// in offline mode).
#[derive(Debug, Clone, Serialize)]
pub struct DatasetRepo {
    pub id: String,
    pub kind: RepoKind,
    pub revision: String,
    pub commit: String,
    /// `false`, `"auto"` or `"manual"` as the Hub says; `None` when unknown (offline).
    pub gated: Option<String>,
    pub files: Vec<RepoFile>,
    pub configs: Vec<ConfigInfo>,
    /// Configs of the Hub's automatic Parquet conversion (`refs/convert/parquet`), when there is one.
    pub parquet_conversion: Vec<ConfigInfo>,
    /// True when this came from the cache (offline mode).
    pub from_cache: bool,
    #[serde(skip)]
    pub(super) repo: HubRepo,
}

pub(super) fn info(repo: &HubRepo) -> Result<DatasetRepo> {
    let hub = &repo.hub;
    if hub.offline {
        return offline_info(repo);
    }
    let ctx = JobContext::detached("hub info");
    let listing = fetch_listing(repo, &repo.revision, &ctx)?;
    let commit = listing.get("sha").and_then(|s| s.as_str()).unwrap_or(&repo.revision).to_string();
    let files = siblings(&listing);
    let gated = match listing.get("gated") {
        Some(Value::Bool(b)) => Some(b.to_string()),
        Some(Value::String(s)) => Some(s.clone()),
        _ => None,
    };
    let mut configs = Vec::new();
    let mut parquet_conversion = Vec::new();
    if repo.kind == RepoKind::Dataset {
        let card = match listing.pointer("/cardData/configs") {
            Some(configs) => Some(serde_json::json!({ "configs": configs })),
            None if files.iter().any(|f| f.path == "README.md") => {
                // The card of a gated repo is normally public; if this Hub refuses it, the layout is
                // inferred from the file names instead.
                match repo.clone().revision(&commit).file_with("README.md", &ctx) {
                    Ok(readme) => {
                        let text = std::fs::read_to_string(&readme).map_err(|e| Error::io(&readme, e))?;
                        yaml::card_header(&readme, &text)?
                    }
                    Err(Error::NeedsToken { .. }) => None,
                    Err(e) => return Err(e),
                }
            }
            None => None,
        };
        configs = layout::configs(&files, card.as_ref());
        if repo.revision != PARQUET_CONVERSION
            && let Ok(converted) = fetch_listing(repo, PARQUET_CONVERSION, &ctx)
        {
            parquet_conversion = layout::configs(&siblings(&converted), None);
        }
    }
    Ok(DatasetRepo {
        id: repo.id.clone(),
        kind: repo.kind,
        revision: repo.revision.clone(),
        commit,
        gated,
        files,
        configs,
        parquet_conversion,
        from_cache: false,
        repo: repo.clone(),
    })
}

/// `GET /api/{datasets|models}/{id}/revision/{revision}?blobs=true`.
fn fetch_listing(repo: &HubRepo, revision: &str, ctx: &JobContext) -> Result<Value> {
    let url = format!("{}?blobs=true", repo.api_url(revision));
    let response = client::send(&repo.hub, false, &url, None, ctx)?;
    if !response.status().is_success() {
        return Err(client::status_error(&response, repo, revision, None));
    }
    let mut body = response.into_body();
    let text = body
        .with_config()
        .limit(256 << 20)
        .read_to_string()
        .map_err(|e| Error::Network { url: url.clone(), message: format!("reading the repository listing: {e}") })?;
    serde_json::from_str(&text)
        .map_err(|e| Error::Network { url, message: format!("the repository listing is not the JSON expected: {e}") })
}

fn siblings(listing: &Value) -> Vec<RepoFile> {
    let items = listing.get("siblings").and_then(|s| s.as_array()).cloned().unwrap_or_default();
    let mut files: Vec<RepoFile> = items
        .iter()
        .filter_map(|s| {
            let path = s.get("rfilename")?.as_str()?.to_string();
            let lfs = s.get("lfs");
            let size = s.get("size").and_then(|v| v.as_u64()).or_else(|| lfs?.get("size")?.as_u64());
            let sha256 = lfs.and_then(|l| l.get("sha256").or(l.get("oid"))).and_then(|v| v.as_str()).map(String::from);
            let blob_id = s.get("blobId").and_then(|v| v.as_str()).map(String::from);
            Some(RepoFile { path, size, sha256, blob_id })
        })
        .collect();
    files.sort_by(|a, b| a.path.cmp(&b.path));
    files
}

fn offline_info(repo: &HubRepo) -> Result<DatasetRepo> {
    let cache = &repo.hub.cache;
    let commit = cache.cached_commit(repo).ok_or_else(|| Error::Offline {
        what: format!("{} `{}` at revision {}", repo.kind.as_str(), repo.id, repo.revision),
        cache: cache.root().to_path_buf(),
    })?;
    let files: Vec<RepoFile> = cache
        .snapshot_files(repo, &commit)
        .into_iter()
        .map(|(path, size)| RepoFile { path, size: Some(size), sha256: None, blob_id: None })
        .collect();
    let card = match cache.snapshot_path(repo, &commit, "README.md").ok() {
        Some(path) => match std::fs::read_to_string(&path) {
            Ok(text) => yaml::card_header(&path, &text)?,
            Err(_) => None,
        },
        None => None,
    };
    let configs = if repo.kind == RepoKind::Dataset { layout::configs(&files, card.as_ref()) } else { Vec::new() };
    Ok(DatasetRepo {
        id: repo.id.clone(),
        kind: repo.kind,
        revision: repo.revision.clone(),
        commit,
        gated: None,
        files,
        configs,
        parquet_conversion: Vec::new(),
        from_cache: true,
        repo: repo.clone(),
    })
}

/// Which part of a dataset to download. The default: the default config, every split, every file.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Selection {
    pub config: Option<String>,
    pub split: Option<String>,
    /// Only these files (repository paths or glob patterns); empty for all.
    pub files: Vec<String>,
    /// Stop once this many rows are in: files are fetched in order until they hold that many, and the
    /// dataset registered holds exactly the first `max_rows`.
    pub max_rows: Option<u64>,
}

impl Selection {
    pub fn new() -> Selection {
        Selection::default()
    }

    pub fn config(mut self, config: &str) -> Selection {
        self.config = Some(config.to_string());
        self
    }

    pub fn split(mut self, split: &str) -> Selection {
        self.split = Some(split.to_string());
        self
    }

    pub fn files<S: AsRef<str>>(mut self, files: impl IntoIterator<Item = S>) -> Selection {
        self.files = files.into_iter().map(|f| f.as_ref().to_string()).collect();
        self
    }

    pub fn max_rows(mut self, rows: u64) -> Selection {
        self.max_rows = Some(rows);
        self
    }
}

impl DatasetRepo {
    pub fn config(&self, name: &str) -> Option<&ConfigInfo> {
        self.configs.iter().find(|c| c.name == name)
    }

    pub fn config_names(&self) -> Vec<String> {
        self.configs.iter().map(|c| c.name.clone()).collect()
    }

    /// The default config (the one marked default, else the first).
    pub fn default_config(&self) -> Option<&ConfigInfo> {
        self.configs.iter().find(|c| c.default).or(self.configs.first())
    }

    /// The download of `selection`: files, sizes, what the cache already has, and disk space.
    pub fn plan(&self, selection: &Selection) -> Result<DownloadPlan> {
        let config = match &selection.config {
            Some(name) => self.config(name).ok_or_else(|| Error::NoSuchConfig {
                repo: self.id.clone(),
                config: name.clone(),
                available: self.config_names(),
            })?,
            None => self.default_config().ok_or_else(|| {
                let listed: Vec<&str> = self.files.iter().take(20).map(|f| f.path.as_str()).collect();
                Error::Source(format!(
                    "{} `{}` has no data files saekit reads (Parquet, JSONL, CSV); its files: {}",
                    self.kind.as_str(),
                    self.id,
                    if listed.is_empty() { "none".to_string() } else { listed.join(", ") }
                ))
            })?,
        };
        let splits: Vec<&layout::SplitInfo> = match &selection.split {
            Some(name) => vec![config.split(name).ok_or_else(|| Error::NoSuchSplit {
                repo: self.id.clone(),
                config: config.name.clone(),
                split: name.clone(),
                available: config.split_names(),
            })?],
            None => config.splits.iter().collect(),
        };
        let mut chosen: Vec<(String, &RepoFile)> =
            splits.iter().flat_map(|s| s.files.iter().map(|f| (s.name.clone(), f))).collect();
        if !selection.files.is_empty() {
            let wanted: Vec<glob::Pattern> =
                selection.files.iter().filter_map(|p| glob::Pattern::new(p).ok()).collect();
            let available: Vec<String> = chosen.iter().map(|(_, f)| f.path.clone()).collect();
            chosen.retain(|(_, f)| selection.files.contains(&f.path) || wanted.iter().any(|p| p.matches(&f.path)));
            if chosen.is_empty() {
                return Err(Error::InvalidArgument(format!(
                    "no file of config `{}` matches {}; its files: {}",
                    config.name,
                    selection.files.join(", "),
                    available.join(", ")
                )));
            }
        }
        let files = chosen.into_iter().map(|(split, f)| PlanFile::new(&self.repo, &self.commit, f, &split)).collect();
        let mut plan = DownloadPlan::new(self.repo.clone().revision(&self.revision), Some(self.commit.clone()), files)?;
        plan.config = Some(config.name.clone());
        plan.splits = splits.iter().map(|s| s.name.clone()).collect();
        plan.max_rows = selection.max_rows;
        Ok(plan)
    }
}

/// One file of a plan.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlanFile {
    pub path: String,
    pub split: String,
    pub size: Option<u64>,
    pub sha256: Option<String>,
    pub blob_id: Option<String>,
    /// Complete in the cache already: nothing to fetch.
    pub cached: bool,
    /// Bytes of an interrupted earlier download, which the download resumes after.
    pub partial: u64,
}

impl PlanFile {
    fn new(repo: &HubRepo, commit: &str, file: &RepoFile, split: &str) -> PlanFile {
        let cache = &repo.hub.cache;
        let cached = cache
            .snapshot_path(repo, commit, &file.path)
            .ok()
            .and_then(|p| std::fs::metadata(p).ok())
            .is_some_and(|m| m.is_file() && file.size.is_none_or(|s| s == m.len()));
        let partial = match file.etag() {
            Some(etag) if !cached => cache.partial_len(repo, etag),
            _ => 0,
        };
        PlanFile {
            path: file.path.clone(),
            split: split.to_string(),
            size: file.size,
            sha256: file.sha256.clone(),
            blob_id: file.blob_id.clone(),
            cached,
            partial,
        }
    }
}

/// A download, shown before it starts: the files, their sizes, what is cached or half-fetched, and the
/// disk space needed and free.
#[derive(Debug, Clone, Serialize)]
pub struct DownloadPlan {
    pub repo_id: String,
    pub kind: RepoKind,
    pub revision: String,
    /// The commit the files come from (all from one commit); `None` until the Hub names it.
    pub commit: Option<String>,
    pub config: Option<String>,
    pub splits: Vec<String>,
    pub files: Vec<PlanFile>,
    pub max_rows: Option<u64>,
    /// Free bytes on the cache's disk when the plan was made.
    pub free_bytes: u64,
    pub cache_dir: PathBuf,
    pub offline: bool,
    /// Where each document's text comes from once downloaded (default: the `text` column).
    pub text: TextField,
    #[serde(skip)]
    pub(super) repo: HubRepo,
}

impl DownloadPlan {
    fn new(repo: HubRepo, commit: Option<String>, files: Vec<PlanFile>) -> Result<DownloadPlan> {
        let hub = &repo.hub;
        Ok(DownloadPlan {
            repo_id: repo.id.clone(),
            kind: repo.kind,
            revision: repo.revision.clone(),
            commit,
            config: None,
            splits: Vec::new(),
            files,
            max_rows: None,
            free_bytes: hub.free_space()?,
            cache_dir: hub.cache.root().to_path_buf(),
            offline: hub.offline,
            text: TextField::default(),
            repo,
        })
    }

    /// A plan for one file, whose size and commit the Hub tells when asked.
    pub(super) fn single(repo: &HubRepo, path: &str) -> Result<DownloadPlan> {
        let file = PlanFile {
            path: path.to_string(),
            split: String::new(),
            size: None,
            sha256: None,
            blob_id: None,
            cached: false,
            partial: 0,
        };
        DownloadPlan::new(repo.clone(), None, vec![file])
    }

    /// Takes each document's text from `column` once downloaded.
    pub fn text_column(mut self, column: &str) -> DownloadPlan {
        self.text = TextField::Column(column.to_string());
        self
    }

    /// Builds each document's text from a template over the columns, e.g. `"{question}\n\n{answer}"`.
    pub fn text_template(mut self, template: &str) -> DownloadPlan {
        self.text = TextField::Template(template.to_string());
        self
    }

    /// Bytes of every file of the plan (those with known sizes).
    pub fn total_bytes(&self) -> u64 {
        self.files.iter().filter_map(|f| f.size).sum()
    }

    /// Bytes still to fetch: files not cached, less what interrupted downloads already hold.
    pub fn bytes_to_fetch(&self) -> u64 {
        self.files.iter().filter(|f| !f.cached).map(|f| f.size.unwrap_or(0).saturating_sub(f.partial)).sum()
    }

    /// Files already complete in the cache.
    pub fn cached_files(&self) -> usize {
        self.files.iter().filter(|f| f.cached).count()
    }

    /// An error if the cache's disk has less free space than the download needs.
    pub fn check_space(&self) -> Result<()> {
        let needed = self.bytes_to_fetch();
        if needed > self.free_bytes {
            return Err(Error::DiskFull { path: self.cache_dir.clone(), needed, free: self.free_bytes });
        }
        Ok(())
    }

    /// The repository this plan downloads from.
    pub fn repo(&self) -> &HubRepo {
        &self.repo
    }
}
