//! The standard Hugging Face cache, as `huggingface_hub` and `hf-hub` lay it out, so files fetched by one
//! are found by the others: `<cache>/datasets--owner--name/blobs/<etag>` holds the bytes,
//! `snapshots/<commit>/<path>` links to them, `refs/<revision>` names the commit of a branch, and
//! `<cache>/.locks/<repo folder>/<etag>.lock` guards a blob while it is written.

use std::path::{Path, PathBuf};

use super::{HubRepo, safe_relative};
use crate::error::{Error, Result};

/// A Hub cache folder (`HF_HUB_CACHE`).
#[derive(Debug, Clone, PartialEq)]
pub struct HubCache {
    root: PathBuf,
}

/// `$HF_HOME`, else `$XDG_CACHE_HOME/huggingface`, else `~/.cache/huggingface`.
pub fn hf_home() -> Result<PathBuf> {
    if let Some(home) = std::env::var_os("HF_HOME").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(home));
    }
    if let Some(xdg) = std::env::var_os("XDG_CACHE_HOME").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(xdg).join("huggingface"));
    }
    let home = std::env::var_os("HOME").filter(|p| !p.is_empty()).ok_or_else(|| {
        Error::InvalidArgument("none of HF_HUB_CACHE, HF_HOME and HOME is set: give a cache folder".into())
    })?;
    Ok(PathBuf::from(home).join(".cache").join("huggingface"))
}

impl HubCache {
    /// Bytes an interrupted download of blob `etag` left behind (ours `.part`, `huggingface_hub`'s
    /// `.incomplete`).
    pub(super) fn partial_len(&self, repo: &HubRepo, etag: &str) -> u64 {
        let blob = self.blob_path(repo, etag);
        ["part", "incomplete"]
            .iter()
            .filter_map(|ext| std::fs::metadata(with_suffix(&blob, ext)).ok())
            .map(|m| m.len())
            .max()
            .unwrap_or(0)
    }

    pub fn new(root: impl Into<PathBuf>) -> HubCache {
        HubCache { root: root.into() }
    }

    /// `$HF_HUB_CACHE`, else `$HF_HOME/hub`, else `~/.cache/huggingface/hub`.
    pub fn from_env() -> Result<HubCache> {
        if let Some(dir) = std::env::var_os("HF_HUB_CACHE").filter(|p| !p.is_empty()) {
            return Ok(HubCache::new(dir));
        }
        Ok(HubCache::new(hf_home()?.join("hub")))
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn hf(&self, repo: &HubRepo) -> hf_hub::CacheRepo {
        hf_hub::Cache::new(self.root.clone()).repo(repo.folder())
    }

    /// `<cache>/datasets--owner--name`.
    pub fn repo_dir(&self, repo: &HubRepo) -> PathBuf {
        self.root.join(repo.folder().folder_name())
    }

    pub fn blob_path(&self, repo: &HubRepo, etag: &str) -> PathBuf {
        self.hf(repo).blob_path(etag)
    }

    /// Where `file` of `commit` appears in the snapshot.
    pub fn snapshot_path(&self, repo: &HubRepo, commit: &str, file: &str) -> Result<PathBuf> {
        Ok(self.hf(repo).pointer_path(commit).join(safe_relative(file)?))
    }

    pub fn lock_path(&self, repo: &HubRepo, etag: &str) -> PathBuf {
        self.root.join(".locks").join(repo.folder().folder_name()).join(format!("{etag}.lock"))
    }

    /// The commit the repo's revision points at in the cache: `refs/<revision>`, or the revision itself
    /// when it is a commit with a snapshot.
    pub fn cached_commit(&self, repo: &HubRepo) -> Option<String> {
        let revision = repo.current_revision();
        let dir = self.repo_dir(repo);
        if let Ok(commit) = std::fs::read_to_string(dir.join("refs").join(revision)) {
            return Some(commit.trim().to_string());
        }
        let is_commit = revision.len() == 40 && revision.bytes().all(|b| b.is_ascii_hexdigit());
        (is_commit && dir.join("snapshots").join(revision).is_dir()).then(|| revision.to_string())
    }

    /// `file` at the repo's revision, if the cache has it.
    pub fn cached_file(&self, repo: &HubRepo, file: &str) -> Option<PathBuf> {
        let commit = self.cached_commit(repo)?;
        let path = self.snapshot_path(repo, &commit, file).ok()?;
        path.is_file().then_some(path)
    }

    /// Every file of the cached snapshot of `commit`, as (repo path, size), sorted by path.
    pub fn snapshot_files(&self, repo: &HubRepo, commit: &str) -> Vec<(String, u64)> {
        let dir = self.hf(repo).pointer_path(commit);
        let mut found = Vec::new();
        walk(&dir, &dir, &mut found);
        found.sort();
        found
    }

    /// Records that `revision` of the repo is at `commit` (not needed when the revision is the commit).
    pub fn write_ref(&self, repo: &HubRepo, revision: &str, commit: &str) -> Result<()> {
        if revision == commit {
            return Ok(());
        }
        let path = self.repo_dir(repo).join("refs").join(revision);
        crate::files::write_atomically(&path, commit.as_bytes())
    }

    /// Links `snapshots/<commit>/<file>` to the blob (a relative symlink, as `huggingface_hub` makes).
    pub fn link_snapshot(&self, repo: &HubRepo, commit: &str, file: &str, blob: &Path) -> Result<PathBuf> {
        let pointer = self.snapshot_path(repo, commit, file)?;
        let parent = pointer.parent().unwrap_or(&self.root);
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        if pointer.is_file() {
            return Ok(pointer);
        }
        let _ = std::fs::remove_file(&pointer); // a dangling link
        let link_result = {
            #[cfg(unix)]
            {
                let depth = Path::new(file).components().count() + 1; // up to <commit>, then to the repo folder
                let mut target = PathBuf::new();
                for _ in 0..depth {
                    target.push("..");
                }
                target.push("blobs");
                target.push(blob.file_name().unwrap_or_default());
                std::os::unix::fs::symlink(&target, &pointer)
            }
            #[cfg(not(unix))]
            {
                std::fs::copy(blob, &pointer).map(|_| ())
            }
        };
        match link_result {
            Ok(()) => Ok(pointer),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(pointer),
            Err(e) => Err(Error::io(&pointer, e)),
        }
    }
}

fn walk(root: &Path, dir: &Path, found: &mut Vec<(String, u64)>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        // Follows the snapshot's links to their blobs; a dangling link is not a cached file.
        match std::fs::metadata(&path) {
            Ok(meta) if meta.is_dir() => walk(root, &path, found),
            Ok(meta) => {
                if let Ok(rel) = path.strip_prefix(root) {
                    let rel: Vec<String> =
                        rel.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
                    found.push((rel.join("/"), meta.len()));
                }
            }
            Err(_) => {}
        }
    }
}

/// Free bytes for an unprivileged user on the disk holding `path` (or its nearest existing ancestor).
pub fn free_space(path: &Path) -> Result<u64> {
    let mut probe = path.to_path_buf();
    while !probe.exists() {
        if !probe.pop() {
            return Err(Error::InvalidArgument(format!("no existing folder above {}", path.display())));
        }
    }
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        let c_path = std::ffi::CString::new(probe.as_os_str().as_bytes())
            .map_err(|_| Error::InvalidArgument(format!("{}: a path with a NUL byte", probe.display())))?;
        let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
        // SAFETY: c_path is a valid NUL-terminated string and stat a properly sized, writable struct.
        let rc = unsafe { libc::statvfs(c_path.as_ptr(), &mut stat) };
        if rc != 0 {
            return Err(Error::io(&probe, std::io::Error::last_os_error()));
        }
        Ok(stat.f_bavail as u64 * stat.f_frsize as u64)
    }
    #[cfg(not(unix))]
    {
        Ok(u64::MAX)
    }
}

/// `path` with `.suffix` added to its file name (a blob's `.part` or `.incomplete` sibling).
pub(super) fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".");
    name.push(suffix);
    path.with_file_name(name)
}
