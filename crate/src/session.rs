//! The process saekit runs in, as a report names it: which session this is, what built this saekit, and
//! the machine.
//!
//! A *session* is one process: a notebook kernel's (every cell runs in it), a CLI command's, a test's.
//! Its id is derived from the process itself (pid and start time), not kept in a static: under evcxr each
//! cell carries its own copy of saekit's statics, and every copy must name the same session. Whatever the
//! session touches is recorded in the workspace it touches (`sessions`, `session_artifacts` in the
//! catalog), and the workspaces it opened are listed in a small file under the temporary directory, so
//! [`crate::report::Provenance::current`] can find them from any cell.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Set this to name the session yourself (letters, digits, `-`, `_`, `.`; at most 64 characters).
pub const SESSION_ENV: &str = "SAEKIT_SESSION";

/// This process's session id: `$SAEKIT_SESSION` when set to a valid name, else `p<pid>-<start>` from the
/// process's start time (the same in every copy of saekit loaded into the process).
pub fn session_id() -> String {
    if let Ok(name) = std::env::var(SESSION_ENV)
        && valid_name(&name)
    {
        return name;
    }
    let pid = std::process::id();
    match process_start() {
        Some(start) => format!("p{pid}-{}", start.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis()),
        None => {
            // No /proc: one id per copy of saekit is the best a process can do here.
            static STARTED: std::sync::OnceLock<u128> = std::sync::OnceLock::new();
            let at =
                STARTED.get_or_init(|| SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_millis());
            format!("p{pid}-{at}")
        }
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !name.starts_with('.')
}

/// When this process started (Linux: from `/proc`), to the clock tick.
pub fn process_start() -> Option<SystemTime> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may hold spaces and parentheses: the fields after it follow the last `)`.
    let after = &stat[stat.rfind(')')? + 2..];
    let start_ticks: u64 = after.split(' ').nth(19)?.parse().ok()?;
    let boot: u64 = std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime ").and_then(|v| v.trim().parse().ok()))?;
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let ticks = if ticks > 0 { ticks as u64 } else { 100 };
    let since_boot = Duration::from_millis(start_ticks * 1000 / ticks);
    Some(UNIX_EPOCH + Duration::from_secs(boot) + since_boot)
}

/// What kind of process this is: `kernel` under evcxr, else the executable's name (`saekit`, a test binary, …).
pub fn process_kind() -> String {
    if std::env::var_os("EVCXR_IS_RUNTIME").is_some() || std::env::var_os("EVCXR_TMPDIR").is_some() {
        return "kernel".to_string();
    }
    std::env::current_exe()
        .ok()
        .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "process".to_string())
}

/// What built this saekit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildInfo {
    pub version: String,
    /// The git commit of the sources it was built from, or `unknown`.
    pub commit: String,
    /// The sources differed from that commit (crate/, Cargo.toml, Cargo.lock) when it was built.
    pub dirty: bool,
    /// sha256 of the workspace's Cargo.lock it was built with, or `unknown`.
    pub cargo_lock_sha256: String,
    pub features: Vec<String>,
    pub rustc: String,
    /// Cargo's profile (`debug` or `release`: cargo's own names for unoptimised and optimised builds).
    pub profile: String,
    pub target: String,
}

impl BuildInfo {
    pub fn current() -> BuildInfo {
        let mut features = Vec::new();
        if cfg!(feature = "polars") {
            features.push("polars".to_string());
        }
        if cfg!(feature = "cuda") {
            features.push("cuda".to_string());
        }
        BuildInfo {
            version: crate::VERSION.to_string(),
            commit: env!("SAEKIT_GIT_COMMIT").to_string(),
            dirty: env!("SAEKIT_GIT_DIRTY") == "1",
            cargo_lock_sha256: cargo_lock_sha256(),
            features,
            rustc: env!("SAEKIT_RUSTC").to_string(),
            profile: env!("SAEKIT_PROFILE").to_string(),
            target: env!("SAEKIT_TARGET").to_string(),
        }
    }

    /// `0.1.0 (abc123def456, modified)`.
    pub fn summary(&self) -> String {
        let commit = if self.commit == "unknown" { "commit unknown".to_string() } else { short(&self.commit, 12) };
        format!("{} ({commit}{})", self.version, if self.dirty { ", modified" } else { "" })
    }
}

#[cfg(saekit_cargo_lock)]
fn cargo_lock_sha256() -> String {
    hex(&Sha256::digest(include_bytes!(env!("SAEKIT_CARGO_LOCK"))))
}

#[cfg(not(saekit_cargo_lock))]
fn cargo_lock_sha256() -> String {
    "unknown".to_string()
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn short(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

/// The machine the session runs on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    pub os: String,
    pub arch: String,
    /// Logical cores this process may use.
    pub cores: usize,
    pub memory_bytes: Option<u64>,
    /// The threads saekit's parallel stages use (one per core unless `RAYON_NUM_THREADS` says otherwise).
    pub threads: usize,
    pub cpu: Option<String>,
    /// The GPU saekit can use, or why none.
    pub gpu: String,
}

impl Machine {
    pub fn current() -> Machine {
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        let threads = std::env::var("RAYON_NUM_THREADS")
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
            .filter(|&n| n > 0)
            .unwrap_or(cores);
        let memory_bytes = std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                .map(|kb| kb * 1024)
        });
        let cpu = std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|c| {
            c.lines().find_map(|l| {
                l.strip_prefix("model name").map(|v| v.trim_start_matches([' ', '\t', ':']).trim().to_string())
            })
        });
        Machine {
            os: std::env::consts::OS.to_string(),
            arch: std::env::consts::ARCH.to_string(),
            cores,
            memory_bytes,
            threads,
            cpu,
            gpu: gpu(),
        }
    }
}

fn gpu() -> String {
    let driver = Path::new("/proc/driver/nvidia/gpus");
    let cards = std::fs::read_dir(driver).map(|d| d.count()).unwrap_or(0);
    if cfg!(feature = "cuda") {
        if cards > 0 { format!("{cards} NVIDIA GPU(s), CUDA enabled") } else { "none found (CUDA build)".to_string() }
    } else if cards > 0 {
        format!("{cards} NVIDIA GPU(s) present, unused: saekit built without the cuda feature")
    } else {
        "none".to_string()
    }
}

/// The file listing the workspaces session `id` opened, one canonical path per line.
fn registry(id: &str) -> PathBuf {
    std::env::temp_dir().join("saekit-sessions").join(id)
}

/// Notes that this session opened the workspace at `root` (idempotent; best effort).
pub(crate) fn note_workspace(root: &Path) {
    let path = registry(&session_id());
    let line = root.to_string_lossy().replace('\n', " ");
    if workspaces_of(&path).iter().any(|w| w.to_string_lossy() == line) {
        return;
    }
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    // One short write with O_APPEND: lines from several threads never interleave.
    if let Ok(mut file) = std::fs::OpenOptions::new().create(true).append(true).open(&path) {
        let _ = file.write_all(format!("{line}\n").as_bytes());
    }
}

/// The workspaces this session opened, in the order it first opened them.
pub fn workspaces() -> Vec<PathBuf> {
    workspaces_of(&registry(&session_id()))
}

fn workspaces_of(path: &Path) -> Vec<PathBuf> {
    let mut seen = Vec::new();
    for line in std::fs::read_to_string(path).unwrap_or_default().lines() {
        let p = PathBuf::from(line);
        if !line.is_empty() && !seen.contains(&p) {
            seen.push(p);
        }
    }
    seen
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_is_the_process() {
        let a = session_id();
        assert_eq!(a, session_id());
        assert!(a.starts_with(&format!("p{}-", std::process::id())) || std::env::var(SESSION_ENV).is_ok());
        let start = process_start().expect("Linux has /proc");
        let age = SystemTime::now().duration_since(start).unwrap();
        assert!(age < Duration::from_secs(24 * 3600), "started {age:?} ago");
        assert!(!valid_name("../x") && !valid_name("") && valid_name("report-1.a_b"));
    }

    #[test]
    fn build_facts_are_known() {
        let b = BuildInfo::current();
        assert_eq!(b.version, crate::VERSION);
        assert!(b.rustc.starts_with("rustc "), "{}", b.rustc);
        assert_eq!(b.cargo_lock_sha256.len(), 64);
        let m = Machine::current();
        assert!(m.cores >= 1 && m.threads >= 1);
        assert!(m.memory_bytes.unwrap_or(0) > 0);
    }
}
