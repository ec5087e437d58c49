//! A small Hugging Face Hub-compatible HTTP server on 127.0.0.1 for tests and the download benchmark.
//! It serves repositories the caller builds in memory with the endpoints and headers real clients use:
//! `GET /api/{datasets|models}/{id}[/revision/{rev}][?blobs=true]`, `HEAD|GET /{datasets/}{id}/resolve/{rev}/{path}`
//! (LFS files answer 302 to a relative `/cdn/{sha256}` with `X-Linked-Etag`/`X-Linked-Size`, git files
//! answer 200 with `ETag`), Range requests (206 + `Content-Range`), `X-Repo-Commit`, gated repositories
//! (401/403 without the right token), and injected faults: a status (500, 429 with `Retry-After`), a
//! connection dropped or stalled after N body bytes, a corrupted body. Every request is logged with the
//! body bytes actually sent.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::{Digest, Sha256};

/// A file of a mock repository.
#[derive(Clone)]
pub struct MockFile {
    pub path: String,
    pub data: Arc<Vec<u8>>,
    /// Stored with LFS: served through a redirect, ETag = SHA-256.
    pub lfs: bool,
    pub sha256: String,
    /// A 40-hex stand-in for the git blob id (the ETag of git-stored files).
    pub blob_id: String,
}

impl MockFile {
    pub fn new(path: &str, data: Vec<u8>, lfs: bool) -> MockFile {
        let sha256 = hex(&Sha256::digest(&data));
        let blob_id = hex(&Sha256::digest([b"blob ".as_slice(), &data].concat()))[..40].to_string();
        MockFile { path: path.to_string(), data: Arc::new(data), lfs, sha256, blob_id }
    }

    /// An LFS file (Parquet shards, large JSONL).
    pub fn lfs(path: &str, data: Vec<u8>) -> MockFile {
        MockFile::new(path, data, true)
    }

    /// A file stored in git (README.md, small text).
    pub fn git(path: &str, data: impl Into<Vec<u8>>) -> MockFile {
        MockFile::new(path, data.into(), false)
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

struct Repo {
    /// revision name → (commit, files)
    revisions: HashMap<String, (String, Vec<MockFile>)>,
    gated_token: Option<String>,
}

/// A fault injected into the next `times` requests whose path contains `path_contains`.
#[derive(Debug, Clone)]
pub struct Fault {
    pub path_contains: String,
    pub kind: FaultKind,
    pub times: u32,
}

#[derive(Debug, Clone)]
pub enum FaultKind {
    /// Answer with this status (and an empty body).
    Status(u16),
    /// Answer 429 with `Retry-After: seconds`.
    TooMany { retry_after: u64 },
    /// Send headers and this many body bytes, then close the connection.
    DropAfter(u64),
    /// Send this many body bytes, then stop sending (until the server shuts down or the duration passes).
    StallAfter(u64, Duration),
    /// Flip a byte in the middle of the body.
    Corrupt,
    /// Answer as if the `Range` header were not there (200 and the whole file), as some servers do.
    IgnoreRange,
}

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Logged {
    pub method: String,
    pub path: String,
    pub range: Option<String>,
    pub authorization: Option<String>,
    pub status: u16,
    /// Body bytes written to the socket.
    pub body_bytes: u64,
}

struct State {
    repos: Mutex<HashMap<String, Repo>>,
    faults: Mutex<Vec<Fault>>,
    log: Mutex<Vec<Logged>>,
    stopping: AtomicBool,
}

/// The server; it stops when dropped.
pub struct MockHub {
    port: u16,
    state: Arc<State>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl MockHub {
    /// Starts on a free port of 127.0.0.1.
    pub fn start() -> MockHub {
        MockHub::start_on(0)
    }

    pub fn start_on(port: u16) -> MockHub {
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind the mock hub");
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(State {
            repos: Mutex::new(HashMap::new()),
            faults: Mutex::new(Vec::new()),
            log: Mutex::new(Vec::new()),
            stopping: AtomicBool::new(false),
        });
        let shared = state.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if shared.stopping.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let state = shared.clone();
                std::thread::spawn(move || serve(stream, &state));
            }
        });
        MockHub { port, state }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Adds (or replaces) a revision of a repository; `kind` is "datasets" or "models". Returns the commit.
    pub fn add_repo(&self, kind: &str, id: &str, revision: &str, files: Vec<MockFile>) -> String {
        let mut hasher = Sha256::new();
        hasher.update(format!("{kind}/{id}@{revision}"));
        for f in &files {
            hasher.update(&f.path);
            hasher.update(&f.sha256);
        }
        let commit = hex(&hasher.finalize())[..40].to_string();
        let mut repos = lock(&self.state.repos);
        let repo = repos
            .entry(format!("{kind}/{id}"))
            .or_insert_with(|| Repo { revisions: HashMap::new(), gated_token: None });
        repo.revisions.insert(revision.to_string(), (commit.clone(), files.clone()));
        repo.revisions.insert(commit.clone(), (commit.clone(), files));
        commit
    }

    pub fn add_dataset(&self, id: &str, files: Vec<MockFile>) -> String {
        self.add_repo("datasets", id, "main", files)
    }

    /// Makes a repository's files require `Authorization: Bearer {token}`.
    pub fn gate(&self, kind: &str, id: &str, token: &str) {
        if let Some(repo) = lock(&self.state.repos).get_mut(&format!("{kind}/{id}")) {
            repo.gated_token = Some(token.to_string());
        }
    }

    pub fn fault(&self, path_contains: &str, kind: FaultKind, times: u32) {
        lock(&self.state.faults).push(Fault { path_contains: path_contains.to_string(), kind, times });
    }

    pub fn clear_faults(&self) {
        lock(&self.state.faults).clear();
    }

    pub fn requests(&self) -> Vec<Logged> {
        lock(&self.state.log).clone()
    }

    pub fn clear_log(&self) {
        lock(&self.state.log).clear();
    }

    /// Body bytes sent for requests whose path contains `part`.
    pub fn body_bytes(&self, part: &str) -> u64 {
        self.requests().iter().filter(|r| r.path.contains(part)).map(|r| r.body_bytes).sum()
    }

    /// GET requests whose path contains `part`.
    pub fn gets(&self, part: &str) -> Vec<Logged> {
        self.requests().into_iter().filter(|r| r.method == "GET" && r.path.contains(part)).collect()
    }
}

impl Drop for MockHub {
    fn drop(&mut self) {
        self.state.stopping.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(("127.0.0.1", self.port)); // wake the accept loop
    }
}

struct Request {
    method: String,
    target: String,
    headers: HashMap<String, String>,
}

fn read_request(reader: &mut BufReader<TcpStream>) -> Option<Request> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let target = parts.next()?.to_string();
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).ok()? == 0 {
            return None;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    if let Some(len) = headers.get("content-length").and_then(|l| l.parse::<usize>().ok()) {
        let mut body = vec![0; len];
        reader.read_exact(&mut body).ok()?;
    }
    Some(Request { method, target, headers })
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&text[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What to send back.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Body,
}

enum Body {
    Empty,
    Bytes(Vec<u8>),
    /// A slice of a file's data.
    File(Arc<Vec<u8>>, usize, usize),
}

impl Answer {
    fn status(status: u16) -> Answer {
        Answer { status, headers: Vec::new(), body: Body::Empty }
    }

    fn header(mut self, k: &str, v: impl Into<String>) -> Answer {
        self.headers.push((k.to_string(), v.into()));
        self
    }

    fn json(value: serde_json::Value) -> Answer {
        Answer {
            status: 200,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: Body::Bytes(value.to_string().into_bytes()),
        }
    }

    fn error(status: u16, code: &str) -> Answer {
        let body = serde_json::json!({"error": code}).to_string().into_bytes();
        Answer { status, headers: vec![("X-Error-Code".into(), code.into())], body: Body::Bytes(body) }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        206 => "Partial Content",
        302 => "Found",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        416 => "Range Not Satisfiable",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        _ => "Status",
    }
}

fn serve(stream: TcpStream, state: &State) {
    let _ = stream.set_nodelay(true);
    let Ok(read_half) = stream.try_clone() else { return };
    let mut reader = BufReader::new(read_half);
    let mut stream = stream;
    while let Some(request) = read_request(&mut reader) {
        if state.stopping.load(Ordering::Relaxed) {
            return;
        }
        let path = request.target.split('?').next().unwrap_or_default().to_string();
        let fault = {
            let mut faults = lock(&state.faults);
            let hit = faults.iter_mut().find(|f| f.times > 0 && path.contains(&f.path_contains));
            hit.map(|f| {
                f.times -= 1;
                f.kind.clone()
            })
        };
        let answer = match &fault {
            Some(FaultKind::Status(s)) => Answer::status(*s),
            Some(FaultKind::TooMany { retry_after }) => {
                Answer::status(429).header("Retry-After", retry_after.to_string())
            }
            Some(FaultKind::IgnoreRange) => {
                let mut whole = Request {
                    method: request.method.clone(),
                    target: request.target.clone(),
                    headers: request.headers.clone(),
                };
                whole.headers.remove("range");
                route(&whole, &path, state)
            }
            _ => route(&request, &path, state),
        };
        let head = request.method == "HEAD";
        let mut entry = Logged {
            method: request.method.clone(),
            path: request.target.clone(),
            range: request.headers.get("range").cloned(),
            authorization: request.headers.get("authorization").cloned(),
            status: answer.status,
            body_bytes: 0,
        };
        let keep = send(&mut stream, answer, head, fault.as_ref(), state, &mut entry);
        if !entry.method.is_empty() {
            lock(&state.log).push(entry);
        }
        if !keep {
            let _ = stream.shutdown(Shutdown::Both);
            return;
        }
    }
}

/// Writes the answer; false when the connection must close (a fault, or a write error).
fn send(
    stream: &mut TcpStream,
    answer: Answer,
    head: bool,
    fault: Option<&FaultKind>,
    state: &State,
    entry: &mut Logged,
) -> bool {
    let (data, start, end): (&[u8], usize, usize) = match &answer.body {
        Body::Empty => (&[], 0, 0),
        Body::Bytes(b) => (b.as_slice(), 0, b.len()),
        Body::File(d, s, e) => (d.as_slice(), *s, *e),
    };
    let mut head_text = format!("HTTP/1.1 {} {}\r\n", answer.status, reason(answer.status));
    for (k, v) in &answer.headers {
        head_text.push_str(&format!("{k}: {v}\r\n"));
    }
    if !answer.headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("content-length")) {
        head_text.push_str(&format!("Content-Length: {}\r\n", end - start));
    }
    head_text.push_str("\r\n");
    if stream.write_all(head_text.as_bytes()).is_err() {
        return false;
    }
    if head {
        return true;
    }
    let limit = match fault {
        Some(FaultKind::DropAfter(n)) | Some(FaultKind::StallAfter(n, _)) => Some(*n as usize),
        _ => None,
    };
    let stop_at = limit.map_or(end, |n| (start + n).min(end));
    let corrupt_at = matches!(fault, Some(FaultKind::Corrupt)).then(|| start + (end - start) / 2);
    let mut pos = start;
    while pos < stop_at {
        let next = (pos + (1 << 20)).min(stop_at);
        let ok = match corrupt_at {
            Some(at) if at >= pos && at < next => {
                let mut chunk = data[pos..next].to_vec();
                chunk[at - pos] ^= 0xff;
                stream.write_all(&chunk).is_ok()
            }
            _ => stream.write_all(&data[pos..next]).is_ok(),
        };
        if !ok {
            return false;
        }
        entry.body_bytes += (next - pos) as u64;
        pos = next;
    }
    match fault {
        Some(FaultKind::DropAfter(_)) => false,
        Some(FaultKind::StallAfter(_, duration)) => {
            let _ = stream.flush();
            // Logged now, so a test sees the request while the connection hangs.
            lock(&state.log).push(std::mem::replace(entry, Logged { method: String::new(), ..entry.clone() }));
            let until = std::time::Instant::now() + *duration;
            while std::time::Instant::now() < until && !state.stopping.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(20));
            }
            false
        }
        _ => true,
    }
}

fn route(request: &Request, path: &str, state: &State) -> Answer {
    let query = request.target.split_once('?').map(|(_, q)| q).unwrap_or("");
    if let Some(rest) = path.strip_prefix("/cdn/") {
        let sha = rest.trim_matches('/');
        let repos = lock(&state.repos);
        let file = repos
            .values()
            .flat_map(|r| r.revisions.values())
            .flat_map(|(_, files)| files.iter())
            .find(|f| f.sha256 == sha)
            .cloned();
        drop(repos);
        // Clients that follow the redirect for metadata (huggingface_hub does, for relative ones) find
        // the commit here too.
        let commit = query.split('&').find_map(|q| q.strip_prefix("commit=")).unwrap_or_default().to_string();
        return match file {
            Some(f) => body_answer(request, &f, format!("\"{}\"", f.sha256))
                .header("X-Repo-Commit", commit)
                .header("X-Linked-Size", f.data.len().to_string()),
            None => Answer::error(404, "EntryNotFound"),
        };
    }
    if let Some(rest) = path.strip_prefix("/api/") {
        let (kind, rest) = rest.split_once('/').unwrap_or((rest, ""));
        let (id, revision) = match rest.split_once("/revision/") {
            Some((id, rev)) => (id.to_string(), percent_decode(rev)),
            None => (rest.to_string(), "main".to_string()),
        };
        let blobs = query.split('&').any(|q| q == "blobs=true");
        return api(request, kind, &id, &revision, blobs, state);
    }
    let (kind, rest) = match path.strip_prefix("/datasets/") {
        Some(rest) => ("datasets", rest),
        None => ("models", path.trim_start_matches('/')),
    };
    if let Some((id, tail)) = rest.split_once("/resolve/") {
        let (revision, file) = tail.split_once('/').unwrap_or((tail, ""));
        return resolve(request, kind, id, &percent_decode(revision), &percent_decode(file), state);
    }
    Answer::error(404, "NotFound")
}

fn api(request: &Request, kind: &str, id: &str, revision: &str, blobs: bool, state: &State) -> Answer {
    let repos = lock(&state.repos);
    let Some(repo) = repos.get(&format!("{kind}/{id}")) else {
        // As the Hub does: an unknown repository looks like a private one to an anonymous client.
        let status = if request.headers.contains_key("authorization") { 404 } else { 401 };
        return Answer::error(status, "RepoNotFound");
    };
    let Some((commit, files)) = repo.revisions.get(revision) else {
        return Answer::error(404, "RevisionNotFound");
    };
    let siblings: Vec<serde_json::Value> = files
        .iter()
        .map(|f| {
            let mut s = serde_json::json!({ "rfilename": f.path });
            if blobs {
                s["size"] = serde_json::json!(f.data.len());
                s["blobId"] = serde_json::json!(f.blob_id);
                if f.lfs {
                    s["lfs"] = serde_json::json!({"sha256": f.sha256, "size": f.data.len(), "pointerSize": 134});
                }
            }
            s
        })
        .collect();
    let gated = if repo.gated_token.is_some() { serde_json::json!("auto") } else { serde_json::json!(false) };
    Answer::json(serde_json::json!({
        "_id": commit, "id": id, "sha": commit, "private": false, "gated": gated, "siblings": siblings,
    }))
}

fn resolve(request: &Request, kind: &str, id: &str, revision: &str, file: &str, state: &State) -> Answer {
    let repos = lock(&state.repos);
    let Some(repo) = repos.get(&format!("{kind}/{id}")) else {
        let status = if request.headers.contains_key("authorization") { 404 } else { 401 };
        return Answer::error(status, "RepoNotFound");
    };
    // As on the Hub, the dataset card stays readable so the gate can be shown.
    let card = file == "README.md" || file == ".gitattributes";
    if let Some(token) = repo.gated_token.as_ref().filter(|_| !card) {
        match request.headers.get("authorization") {
            None => return Answer::error(401, "GatedRepo"),
            Some(given) if *given != format!("Bearer {token}") => return Answer::error(403, "GatedRepo"),
            _ => {}
        }
    }
    let Some((commit, files)) = repo.revisions.get(revision) else {
        return Answer::error(404, "RevisionNotFound");
    };
    let Some(f) = files.iter().find(|f| f.path == file).cloned() else {
        return Answer::error(404, "EntryNotFound").header("X-Repo-Commit", commit.clone());
    };
    let commit = commit.clone();
    drop(repos);
    if f.lfs {
        return Answer::status(302)
            .header("Location", format!("/cdn/{}?repo={id}&commit={commit}", f.sha256))
            .header("X-Repo-Commit", commit)
            .header("X-Linked-Etag", format!("\"{}\"", f.sha256))
            .header("X-Linked-Size", f.data.len().to_string())
            .header("ETag", format!("\"{}\"", f.blob_id))
            .header("Content-Length", "0");
    }
    body_answer(request, &f, format!("\"{}\"", f.blob_id)).header("X-Repo-Commit", commit)
}

/// The file's bytes, or the range asked for.
fn body_answer(request: &Request, f: &MockFile, etag: String) -> Answer {
    let len = f.data.len();
    let range = request.headers.get("range").and_then(|r| r.strip_prefix("bytes=")).and_then(|r| {
        let (a, b) = r.split_once('-')?;
        let start: usize = a.trim().parse().ok()?;
        let end: usize =
            if b.trim().is_empty() { len.saturating_sub(1) } else { b.trim().parse::<usize>().ok()?.min(len - 1) };
        Some((start, end))
    });
    match range {
        Some((start, _)) if start >= len && len > 0 => {
            Answer::status(416).header("Content-Range", format!("bytes */{len}"))
        }
        Some((start, end)) => {
            Answer { status: 206, headers: Vec::new(), body: Body::File(f.data.clone(), start, end + 1) }
                .header("Content-Range", format!("bytes {start}-{end}/{len}"))
                .header("ETag", etag)
                .header("Accept-Ranges", "bytes")
        }
        None => Answer { status: 200, headers: Vec::new(), body: Body::File(f.data.clone(), 0, len) }
            .header("ETag", etag)
            .header("Accept-Ranges", "bytes"),
    }
}
