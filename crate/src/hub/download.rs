//! Fetching a plan's files into the cache: one file at a time, each into `blobs/<etag>.part` under the
//! blob's lock, resumed with a `Range` request after a crash, a cancel or a dropped connection, checked
//! against the size and (for LFS files, whose ETag is their SHA-256) the checksum the Hub gives, then
//! renamed into place and linked from the snapshot.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::cache::with_suffix;
use super::plan::{DownloadPlan, PlanFile};
use super::{HubRepo, client};
use crate::display::bytes;
use crate::error::{Error, Result};
use crate::jobs::JobContext;

const CHUNK: usize = 1 << 20;

/// Downloads every file of the plan; returns their snapshot paths in plan order.
pub(super) fn run(plan: &DownloadPlan, ctx: &JobContext) -> Result<Vec<PathBuf>> {
    run_until(plan, ctx, |_| Ok(false))
}

/// Downloads the plan's files in order until `enough` says so (after each file); returns the snapshot
/// paths fetched.
pub(super) fn run_until(
    plan: &DownloadPlan,
    ctx: &JobContext,
    mut enough: impl FnMut(&Path) -> Result<bool>,
) -> Result<Vec<PathBuf>> {
    let repo = &plan.repo;
    let hub = &repo.hub;
    if plan.offline {
        let mut paths = Vec::new();
        let mut missing = Vec::new();
        for file in &plan.files {
            let commit = plan.commit.clone().or_else(|| hub.cache.cached_commit(repo));
            let found = commit.and_then(|c| hub.cache.snapshot_path(repo, &c, &file.path).ok()).filter(|p| p.is_file());
            match found {
                Some(path) => paths.push(path),
                None => missing.push(file.path.clone()),
            }
        }
        if !missing.is_empty() {
            return Err(Error::Offline {
                what: format!("{} `{}`: {}", repo.kind.as_str(), repo.id, missing.join(", ")),
                cache: hub.cache.root().to_path_buf(),
            });
        }
        return Ok(paths);
    }
    let needed = plan.bytes_to_fetch();
    let free = hub.free_space()?;
    if needed > free {
        return Err(Error::DiskFull { path: hub.cache.root().to_path_buf(), needed, free });
    }
    let known = plan.files.iter().all(|f| f.size.is_some());
    ctx.phase("downloading", "bytes", known.then_some(needed));
    let mut paths = Vec::new();
    for (i, file) in plan.files.iter().enumerate() {
        ctx.check()?;
        let path = fetch_file(plan, file, (i + 1, plan.files.len()), ctx, !known)?;
        let stop = enough(&path)?;
        paths.push(path);
        if stop {
            break;
        }
    }
    Ok(paths)
}

/// What the Hub says of a file before its bytes: blob name, size, commit, and where to GET it.
struct Meta {
    etag: String,
    size: u64,
    commit: String,
    url: String,
}

fn normalize_etag(etag: &str) -> String {
    etag.trim().trim_start_matches("W/").trim_matches('"').to_string()
}

fn metadata(repo: &HubRepo, revision: &str, file: &PlanFile, ctx: &JobContext) -> Result<Meta> {
    let url = repo.resolve_url(revision, &file.path);
    let response = client::send(&repo.hub, true, &url, None, ctx)?;
    let status = response.status();
    if status.is_client_error() {
        return Err(client::status_error(&response, repo, revision, Some(&file.path)));
    }
    if !status.is_success() && !status.is_redirection() {
        return Err(Error::Network { url, message: format!("the Hub answered {status}") });
    }
    let get = |name: &str| client::header(&response, name).map(str::to_string);
    let etag = get("x-linked-etag")
        .or(get("etag"))
        .map(|e| normalize_etag(&e))
        .or(file.sha256.clone())
        .or(file.blob_id.clone());
    let size = get("x-linked-size").or(get("content-length")).and_then(|s| s.trim().parse::<u64>().ok()).or(file.size);
    let commit = get("x-repo-commit").unwrap_or_else(|| revision.to_string());
    let target = match get("location") {
        Some(location) if status.is_redirection() => client::join_location(&url, &location),
        _ => url.clone(),
    };
    let missing =
        |what: &str| Error::Network { url: url.clone(), message: format!("the Hub did not give the file's {what}") };
    let etag = etag.filter(|e| !e.is_empty() && !e.contains(['/', '\\'])).ok_or_else(|| missing("ETag"))?;
    Ok(Meta { etag, size: size.ok_or_else(|| missing("size"))?, commit, url: target })
}

/// Fetches one file (or finds it in the cache) and returns its snapshot path.
fn fetch_file(
    plan: &DownloadPlan,
    file: &PlanFile,
    (number, of): (usize, usize),
    ctx: &JobContext,
    set_total: bool,
) -> Result<PathBuf> {
    let repo = &plan.repo;
    let cache = &repo.hub.cache;
    let complete = |path: &Path, size: Option<u64>| {
        std::fs::metadata(path).is_ok_and(|m| m.is_file() && size.is_none_or(|s| s == m.len()))
    };
    if let Some(commit) = &plan.commit {
        let snapshot = cache.snapshot_path(repo, commit, &file.path)?;
        if complete(&snapshot, file.size) {
            return Ok(snapshot);
        }
    }
    let revision = plan.commit.as_deref().unwrap_or(&plan.revision);
    let meta = metadata(repo, revision, file, ctx)?;
    if let Some(listed) = file.size
        && listed != meta.size
    {
        return Err(Error::Network {
            url: meta.url.clone(),
            message: format!(
                "the repository lists {} as {listed} bytes but its download has {}; the repository may have \
                 changed while planning: make the plan again",
                file.path, meta.size
            ),
        });
    }
    if set_total {
        ctx.phase("downloading", "bytes", Some(meta.size));
    }
    let blob = cache.blob_path(repo, &meta.etag);
    let snapshot_done = |blob: &Path| -> Result<PathBuf> {
        let path = cache.link_snapshot(repo, &meta.commit, &file.path, blob)?;
        cache.write_ref(repo, &plan.revision, &meta.commit)?;
        Ok(path)
    };
    if complete(&blob, Some(meta.size)) {
        return snapshot_done(&blob);
    }
    let _lock = lock_blob(&cache.lock_path(repo, &meta.etag), ctx)?;
    if !complete(&blob, Some(meta.size)) {
        let expected_sha = file.sha256.clone().or_else(|| is_sha256(&meta.etag).then(|| meta.etag.clone()));
        let expected_sha = expected_sha.filter(|_| repo.hub.checksums);
        let label = format!("file {number}/{of} {}", file.path);
        fetch_blob(repo, &meta, &blob, expected_sha.as_deref(), &label, &file.path, ctx)?;
    }
    snapshot_done(&blob)
}

fn is_sha256(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Waits for the blob's lock (another process may be fetching it), checking for cancellation.
fn lock_blob(path: &Path, ctx: &JobContext) -> Result<File> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let file =
        OpenOptions::new().create(true).truncate(false).write(true).open(path).map_err(|e| Error::io(path, e))?;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(std::fs::TryLockError::WouldBlock) => client::sleep(Duration::from_millis(100), ctx)?,
            Err(std::fs::TryLockError::Error(e)) => return Err(Error::io(path, e)),
        }
    }
}

fn write_error(path: &Path, e: std::io::Error, needed: u64) -> Error {
    if e.raw_os_error() == Some(28) || e.kind() == std::io::ErrorKind::StorageFull {
        let free = super::cache::free_space(path).unwrap_or(0);
        return Error::DiskFull { path: path.parent().unwrap_or(path).to_path_buf(), needed, free };
    }
    Error::io(path, e)
}

/// Fills `blob` from `meta.url`: appends to `<blob>.part` from where it stops, retrying dropped
/// connections, then verifies and renames it.
fn fetch_blob(
    repo: &HubRepo,
    meta: &Meta,
    blob: &Path,
    expected_sha: Option<&str>,
    label: &str,
    file_name: &str,
    ctx: &JobContext,
) -> Result<()> {
    let hub = &repo.hub;
    let part = with_suffix(blob, "part");
    let blobs = blob.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(blobs).map_err(|e| Error::io(blobs, e))?;
    let theirs = with_suffix(blob, "incomplete");
    if !part.exists() && theirs.exists() {
        let _ = std::fs::rename(&theirs, &part); // resume what huggingface_hub started
    }
    let mut out = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&part)
        .map_err(|e| Error::io(&part, e))?;
    let mut pos = out.metadata().map_err(|e| Error::io(&part, e))?.len();
    if pos > meta.size {
        out.set_len(0).map_err(|e| Error::io(&part, e))?;
        pos = 0;
    }
    let pool = Pool::default();
    let mut hasher = match expected_sha {
        Some(_) => {
            let mut prefix = Sha256::new();
            hash_prefix(&mut out, pos, &mut prefix).map_err(|e| Error::io(&part, e))?;
            Some(Hashing::start(prefix, pool.clone()))
        }
        None => None,
    };
    out.seek(SeekFrom::Start(pos)).map_err(|e| Error::io(&part, e))?;
    let mut url = meta.url.clone();
    let mut failures = 0u32;
    let mut redirects = 0;
    let mut last_detail = Instant::now() - Duration::from_secs(1);
    let detail = |pos: u64, failures: u32| {
        let retry = if failures > 0 { format!(" · retry {failures}") } else { String::new() };
        ctx.set_detail(format!("{label} · {} / {}{retry}", bytes(pos), bytes(meta.size)));
    };
    detail(pos, 0);
    while pos < meta.size {
        let response = client::send(hub, false, &url, (pos > 0).then_some(pos), ctx)?;
        let status = response.status().as_u16();
        match status {
            206 => {
                let range = client::header(&response, "content-range").unwrap_or_default();
                let start =
                    range.trim_start_matches("bytes ").split('-').next().and_then(|s| s.trim().parse::<u64>().ok());
                if start != Some(pos) {
                    return Err(Error::Network {
                        url,
                        message: format!("asked for bytes from {pos} but got the range {range:?}"),
                    });
                }
            }
            // The server ignored the Range header (or could not satisfy it): start the file again.
            200 | 416 if pos > 0 => {
                out.set_len(0).map_err(|e| Error::io(&part, e))?;
                out.seek(SeekFrom::Start(0)).map_err(|e| Error::io(&part, e))?;
                pos = 0;
                if let Some(h) = hasher.as_mut() {
                    *h = Hashing::start(Sha256::new(), pool.clone());
                }
                if status == 416 {
                    continue;
                }
            }
            200 => {}
            301 | 302 | 303 | 307 | 308 if redirects < 10 => {
                redirects += 1;
                let location = client::header(&response, "location").unwrap_or_default().to_string();
                url = client::join_location(&url, &location);
                continue;
            }
            _ => return Err(client::status_error(&response, repo, &meta.commit, Some(file_name))),
        }
        let chunks = Chunks::spawn(response.into_body().into_reader(), pool.clone());
        let dropped = loop {
            if ctx.is_cancelled() {
                let _ = out.flush();
                return Err(Error::Cancelled);
            }
            match chunks.next() {
                Chunk::Wait => {}
                Chunk::End => break pos < meta.size,
                Chunk::Failed => break true,
                Chunk::Data(data, filled) => {
                    let n = filled.min((meta.size - pos) as usize);
                    out.write_all(&data[..n]).map_err(|e| write_error(&part, e, meta.size - pos))?;
                    match hasher.as_ref() {
                        Some(h) => h.feed(data, n),
                        None => pool.give(data),
                    }
                    pos += n as u64;
                    failures = 0;
                    ctx.advance(n as u64);
                    if last_detail.elapsed() >= Duration::from_millis(200) {
                        last_detail = Instant::now();
                        detail(pos, failures);
                    }
                    if pos >= meta.size {
                        break false;
                    }
                }
            }
        };
        if dropped {
            failures += 1;
            if failures > hub.retry.max_retries {
                return Err(Error::Network {
                    url,
                    message: format!(
                        "the connection dropped at {} of {} ({failures} times in a row); run the download again to \
                         resume from there",
                        bytes(pos),
                        bytes(meta.size)
                    ),
                });
            }
            detail(pos, failures);
            client::sleep(client::backoff(&hub.retry, failures - 1), ctx)?;
        }
    }
    out.flush().map_err(|e| Error::io(&part, e))?;
    drop(out);
    if let (Some(h), Some(expected)) = (hasher, expected_sha) {
        let actual = hex(&h.finish().finalize());
        if !actual.eq_ignore_ascii_case(expected) {
            let _ = std::fs::remove_file(&part);
            return Err(Error::Checksum {
                file: file_name.to_string(),
                what: "SHA-256",
                expected: expected.to_string(),
                actual,
            });
        }
    }
    std::fs::rename(&part, blob).map_err(|e| Error::io(blob, e))?;
    detail(pos, 0);
    Ok(())
}

fn hash_prefix(file: &mut File, len: u64, hasher: &mut Sha256) -> std::io::Result<()> {
    file.seek(SeekFrom::Start(0))?;
    let mut left = len;
    let mut buf = vec![0u8; CHUNK];
    while left > 0 {
        let want = (left as usize).min(buf.len());
        file.read_exact(&mut buf[..want])?;
        hasher.update(&buf[..want]);
        left -= want as u64;
    }
    Ok(())
}

fn hex(digest: &[u8]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Spare buffers, `CHUNK` long, passed around the download's threads instead of allocating.
#[derive(Clone, Default)]
struct Pool(std::sync::Arc<std::sync::Mutex<Vec<Vec<u8>>>>);

impl Pool {
    fn take(&self) -> Vec<u8> {
        let spare = self.0.lock().ok().and_then(|mut p| p.pop());
        spare.unwrap_or_else(|| vec![0u8; CHUNK])
    }

    fn give(&self, buf: Vec<u8>) {
        if let Ok(mut p) = self.0.lock()
            && p.len() < 8
        {
            p.push(buf);
        }
    }
}

/// SHA-256 on its own thread: the bytes are hashed after they are written, while the next ones arrive,
/// so verification costs (nearly) no time where a core is free.
struct Hashing {
    feed: std::sync::mpsc::Sender<(Vec<u8>, usize)>,
    thread: std::thread::JoinHandle<Sha256>,
}

impl Hashing {
    fn start(mut hasher: Sha256, pool: Pool) -> Hashing {
        let (feed, chunks) = std::sync::mpsc::channel::<(Vec<u8>, usize)>();
        let thread = std::thread::spawn(move || {
            for (buf, n) in chunks {
                hasher.update(&buf[..n]);
                pool.give(buf);
            }
            hasher
        });
        Hashing { feed, thread }
    }

    fn feed(&self, buf: Vec<u8>, n: usize) {
        let _ = self.feed.send((buf, n));
    }

    /// The hash of everything fed.
    fn finish(self) -> Sha256 {
        drop(self.feed);
        self.thread.join().unwrap_or_default()
    }
}

/// A response body read on its own thread, so that the downloading thread sees a cancel within a
/// fraction of a second even while the connection stalls, and network reads overlap disk writes.
/// Buffers (always `CHUNK` long, sent with the count filled) come from and go back to a [`Pool`].
struct Chunks {
    data: std::sync::mpsc::Receiver<std::io::Result<(Vec<u8>, usize)>>,
}

enum Chunk {
    Data(Vec<u8>, usize),
    /// Nothing yet: check for cancellation and ask again.
    Wait,
    End,
    Failed,
}

impl Chunks {
    fn spawn(mut reader: impl Read + Send + 'static, pool: Pool) -> Chunks {
        let (data_tx, data) = std::sync::mpsc::sync_channel::<std::io::Result<(Vec<u8>, usize)>>(4);
        std::thread::spawn(move || {
            loop {
                let mut buf = pool.take();
                let sent = match reader.read(&mut buf) {
                    Ok(0) => {
                        let _ = data_tx.send(Ok((Vec::new(), 0)));
                        return;
                    }
                    Ok(n) => data_tx.send(Ok((buf, n))),
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {
                        pool.give(buf);
                        continue;
                    }
                    Err(e) => {
                        let _ = data_tx.send(Err(e));
                        return;
                    }
                };
                if sent.is_err() {
                    return; // the download stopped (cancelled)
                }
            }
        });
        Chunks { data }
    }

    fn next(&self) -> Chunk {
        match self.data.recv_timeout(Duration::from_millis(100)) {
            Ok(Ok((_, 0))) => Chunk::End,
            Ok(Ok((buf, n))) => Chunk::Data(buf, n),
            Ok(Err(_)) => Chunk::Failed,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => Chunk::Wait,
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => Chunk::Failed,
        }
    }
}
