//! Spare kernels: a kernel that starts in about a second.
//!
//! Most of a kernel's start is spent once per process: evcxr starting (4–6 s) and rust-analyzer loading
//! saekit's crate graph for the preload (15–20 s). So a kernel keeps one *spare* ready: a process that
//! has done all of that and waits, with no Jupyter connection yet, on `$SAEKIT_KERNEL_HOME/spare.sock`.
//!
//! When Jupyter starts `saekit-kernel --connection-file F`, that process (the *launcher*) offers the
//! connection to the spare. The spare checks that it was made for the same kernel binary, the same saekit
//! sources and the same toolchain settings ([`Fingerprint`]); then it takes on the launcher's working
//! directory and environment (in its evcxr child process too), binds the Jupyter sockets and serves.
//! The launcher stays, relays the spare's log to its stderr (Jupyter's log) and exits when the spare
//! does; if the launcher is killed, the spare sees its end of the claim connection close and exits too.
//! If there is no spare, or it does not fit, the launcher is the kernel itself, as before.
//!
//! Every kernel, once its engine is ready and no cell has run for a few seconds, starts the next spare
//! (detached, in its own session, logging to `spare.log`), so the one after starts fast as well.
//! `saekit-kernel install` starts the first. A spare that nobody claims exits after
//! `$SAEKIT_KERNEL_SPARE_IDLE` seconds (default an hour); `SAEKIT_KERNEL_SPARE=0` turns spares off.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use jupyter_protocol::ConnectionInfo;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::server::{self, Prepared};
use crate::slots;

/// `0`, `false`, `no` or `off` turns spare kernels off.
pub const ENABLE_ENV: &str = "SAEKIT_KERNEL_SPARE";
/// Seconds an unclaimed spare waits before it exits.
pub const IDLE_ENV: &str = "SAEKIT_KERNEL_SPARE_IDLE";
const DEFAULT_IDLE: Duration = Duration::from_secs(3600);
/// How long a kernel must have run no cell before it starts the next spare (starting one costs a core for
/// ~20 s; a researcher reading the first output should not pay for it).
const QUIET_BEFORE_REPLACING: Duration = Duration::from_secs(3);
/// Bumped when the claim conversation changes.
const PROTOCOL: u32 = 1;

/// Variables that the kernel sets for itself and its child: never copied from a launcher.
const OWN_VARIABLES: &[&str] = &[crate::child::SOCKET_ENV, "EVCXR_TMPDIR", "LD_LIBRARY_PATH", "EVCXR_IS_RUNTIME"];
/// Variables that change how cells and saekit are built: a spare made under other values cannot serve.
const BUILD_VARIABLES: &[&str] = &[
    "RUSTUP_TOOLCHAIN",
    "RUSTUP_HOME",
    "CARGO_HOME",
    "RUSTFLAGS",
    "CARGO_ENCODED_RUSTFLAGS",
    "RUSTC",
    "RUSTC_WRAPPER",
    "RUSTC_WORKSPACE_WRAPPER",
    "CARGO_TARGET_DIR",
    "LD_LIBRARY_PATH",
];
const BUILD_PREFIXES: &[&str] = &["CARGO_BUILD_", "CARGO_PROFILE_", "EVCXR_"];

pub fn enabled() -> bool {
    !matches!(
        std::env::var(ENABLE_ENV).unwrap_or_default().trim().to_ascii_lowercase().as_str(),
        "0" | "false" | "no" | "off"
    )
}

fn socket_path(home: &Path) -> PathBuf {
    home.join("spare.sock")
}

fn idle_limit() -> Duration {
    std::env::var(IDLE_ENV)
        .ok()
        .and_then(|s| s.trim().parse::<f64>().ok())
        .map_or(DEFAULT_IDLE, |s| Duration::from_secs_f64(s.max(0.0)))
}

// ---------------------------------------------------------------------------------------------------
// The environment a process was started with

/// The environment as the process was started (before the kernel set its own variables), or as the
/// launcher had it once this process was claimed: what a spare started from here inherits.
static STARTED_ENV: Mutex<Option<Vec<(String, String)>>> = Mutex::new(None);

/// Records the environment before the kernel changes it; called first thing.
pub fn remember_started_env() {
    *STARTED_ENV.lock().unwrap() = Some(utf8_env());
}

fn started_env() -> Vec<(String, String)> {
    STARTED_ENV.lock().unwrap().clone().unwrap_or_else(utf8_env)
}

fn utf8_env() -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> =
        std::env::vars_os().filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))).collect();
    env.sort();
    env
}

/// What a spare must share with a launcher to serve it.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Fingerprint {
    protocol: u32,
    /// The kernel binary: path, size and modification time.
    exe: String,
    /// The saekit crate that is preloaded, and the state of its sources.
    saekit: String,
    /// `cargo` and `rustc` as found on `PATH`.
    tools: Vec<String>,
    /// The build-related variables that are set.
    build_env: Vec<(String, String)>,
}

impl Fingerprint {
    pub fn of(env: &[(String, String)]) -> Fingerprint {
        let exe = std::env::current_exe().ok();
        let exe = match exe.as_ref().and_then(|p| Some((p, std::fs::metadata(p).ok()?))) {
            Some((path, meta)) => {
                let modified = meta
                    .modified()
                    .ok()
                    .and_then(|m| m.duration_since(std::time::UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_nanos());
                format!("{} {} {modified}", path.display(), meta.len())
            }
            None => String::new(),
        };
        let get = |key: &str| env.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
        let crate_path = match get("SAEKIT_CRATE_PATH") {
            Some(p) => PathBuf::from(p),
            None => crate::default_crate_path(),
        };
        let crate_path = crate_path.canonicalize().unwrap_or(crate_path);
        let path = get("PATH").unwrap_or("");
        let tools = ["cargo", "rustc"].iter().map(|tool| find_on_path(path, tool)).collect();
        let build_env = env
            .iter()
            .filter(|(k, _)| is_build_variable(k) && k != "EVCXR_TMPDIR" && k != "EVCXR_IS_RUNTIME")
            .cloned()
            .collect();
        Fingerprint { protocol: PROTOCOL, exe, saekit: slots::source_stamp(&crate_path), tools, build_env }
    }

    /// What differs from `theirs`, in words; empty when this spare can serve them.
    pub fn differences(&self, theirs: &Fingerprint) -> Vec<String> {
        let mut why = Vec::new();
        if self.protocol != theirs.protocol {
            why.push(format!("claim protocol {} vs {}", self.protocol, theirs.protocol));
        }
        if self.exe != theirs.exe {
            why.push(format!("kernel binary changed ({} vs {})", self.exe, theirs.exe));
        }
        if self.saekit != theirs.saekit {
            why.push(format!("saekit sources changed ({} vs {})", self.saekit, theirs.saekit));
        }
        if self.tools != theirs.tools {
            why.push(format!("toolchain on PATH {:?} vs {:?}", self.tools, theirs.tools));
        }
        if self.build_env != theirs.build_env {
            let keys = |env: &[(String, String)]| env.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>();
            let mut names: Vec<String> = keys(&self.build_env);
            names.extend(keys(&theirs.build_env));
            names.sort();
            names.dedup();
            names.retain(|n| {
                let a = self.build_env.iter().find(|(k, _)| k == n);
                let b = theirs.build_env.iter().find(|(k, _)| k == n);
                a != b
            });
            why.push(format!("build settings differ: {}", names.join(", ")));
        }
        why
    }
}

fn is_build_variable(key: &str) -> bool {
    BUILD_VARIABLES.contains(&key) || BUILD_PREFIXES.iter().any(|p| key.starts_with(p))
}

fn find_on_path(path: &str, tool: &str) -> String {
    use std::os::unix::fs::PermissionsExt;
    for dir in path.split(':').filter(|d| !d.is_empty()) {
        let candidate = Path::new(dir).join(tool);
        if std::fs::metadata(&candidate).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0) {
            return candidate.canonicalize().unwrap_or(candidate).display().to_string();
        }
    }
    String::new()
}

/// The changes that make a spare's environment the launcher's: variables to set, and to remove.
/// The kernel's own variables are left alone.
pub fn env_changes(ours: &[(String, String)], theirs: &[(String, String)]) -> (Vec<(String, String)>, Vec<String>) {
    let own = |k: &str| OWN_VARIABLES.contains(&k) || k.is_empty() || k.contains('=') || k.contains('\0');
    let set = theirs
        .iter()
        .filter(|(k, v)| !own(k) && !v.contains('\0') && !ours.iter().any(|(ok, ov)| ok == k && ov == v))
        .cloned()
        .collect();
    let unset =
        ours.iter().filter(|(k, _)| !own(k) && !theirs.iter().any(|(tk, _)| tk == k)).map(|(k, _)| k.clone()).collect();
    (set, unset)
}

// ---------------------------------------------------------------------------------------------------
// The launcher's side

/// Offers the Jupyter connection (the connection file's text) to a waiting spare. `Some` is the claim
/// connection of a spare that now serves it; `None` means this process must be the kernel.
pub fn claim(connection: &str) -> Option<UnixStream> {
    if !enabled() {
        return None;
    }
    let path = socket_path(&crate::kernel_home());
    let mut stream = UnixStream::connect(&path).ok()?;
    let env = utf8_env();
    let request = json!({
        "op": "claim",
        "fingerprint": Fingerprint::of(&env),
        "connection": connection,
        "cwd": std::env::current_dir().ok().map(|d| d.display().to_string()),
        "env": env,
    });
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    if stream.write_all(format!("{request}\n").as_bytes()).is_err() {
        return None;
    }
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        eprintln!("saekit-kernel: the spare kernel did not answer; starting a kernel here");
        return None;
    }
    let reply: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
    if reply["ok"].as_bool() == Some(true) {
        eprintln!(
            "saekit-kernel: serving from the spare kernel (pid {}, {}), slot {}",
            reply["pid"],
            if reply["ready"].as_bool() == Some(true) { "ready" } else { "still starting" },
            reply["slot"].as_str().unwrap_or("?"),
        );
        return Some(stream);
    }
    eprintln!(
        "saekit-kernel: not using the spare kernel: {}; starting a kernel here",
        reply["why"].as_str().unwrap_or("it gave no answer")
    );
    // A spare that does not fit exits: wait for that, so its build slot is free for this kernel.
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = reader.read_to_end(&mut Vec::new());
    None
}

/// Relays the serving spare's log to this process's stderr until the spare exits.
pub fn relay(stream: UnixStream) -> Result<()> {
    let _ = stream.set_read_timeout(None);
    let mut stderr = std::io::stderr();
    let mut reader = BufReader::new(stream);
    let mut buf = [0u8; 8192];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => {
                let _ = stderr.write_all(&buf[..n]);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => bail!("lost the connection to the kernel process: {e}"),
        }
    }
}

// ---------------------------------------------------------------------------------------------------
// The log of a claimed spare goes to its launcher

static LOG_COPY: Mutex<Option<UnixStream>> = Mutex::new(None);

/// Passes a line of this process's stderr on to the launcher, once claimed.
pub fn copy_log_line(line: &str) {
    let mut copy = LOG_COPY.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(stream) = copy.as_mut()
        && stream.write_all(format!("{line}\n").as_bytes()).is_err()
    {
        *copy = None;
    }
}

// ---------------------------------------------------------------------------------------------------
// The spare's side

/// Runs a spare kernel in this process: prepares the engine, then waits for a launcher to claim it (and
/// serves that session until shutdown), a `stop`, or the idle limit.
pub fn run() -> Result<()> {
    let home = crate::kernel_home();
    std::fs::create_dir_all(&home).with_context(|| format!("cannot create {}", home.display()))?;
    let lock = File::options().create(true).truncate(false).write(true).open(home.join("spare.lock"))?;
    // SAFETY: flock on a descriptor we own.
    if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        eprintln!("saekit-kernel: a spare kernel is already running for {}", home.display());
        return Ok(());
    }
    // Its pid, for `spare --stop` while it is still preparing (before it listens).
    let _ = lock.set_len(0);
    let _ = (&lock).write_all(std::process::id().to_string().as_bytes());
    let started = Instant::now();
    let fingerprint = Fingerprint::of(&started_env());
    let prepared = server::prepare()?;
    let stopper = prepared.stopper();
    // Listen once the slot is ours (seeding a new slot copies a build): a launcher that finds the socket
    // gets an answer at once.
    let path = socket_path(&home);
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).with_context(|| format!("cannot listen on {}", path.display()))?;
    private_socket(&path);
    eprintln!("saekit-kernel: spare kernel {} waiting on {}", std::process::id(), path.display());

    let claimed = std::sync::Arc::new(AtomicBool::new(false));
    {
        let (claimed, stopper, path) = (claimed.clone(), stopper.clone(), path.clone());
        let limit = idle_limit();
        std::thread::spawn(move || {
            std::thread::sleep(limit);
            if !claimed.load(Ordering::SeqCst) {
                eprintln!("saekit-kernel: spare kernel unclaimed for {} s; exiting", limit.as_secs());
                let _ = std::fs::remove_file(&path);
                stopper.stop();
                server::exit(0);
            }
        });
    }

    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { continue };
        // Whoever claims the spare runs code as this user: only this user may.
        if !same_user(&stream) {
            continue;
        }
        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
        let mut line = String::new();
        let Ok(reader) = stream.try_clone() else { continue };
        if BufReader::new(reader).read_line(&mut line).is_err() {
            continue;
        }
        let request: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
        let answer = |stream: &mut UnixStream, reply: Value| {
            let _ = stream.write_all(format!("{reply}\n").as_bytes());
        };
        match request["op"].as_str() {
            Some("status") => answer(&mut stream, status(&prepared, &fingerprint, started)),
            Some("stop") => {
                answer(&mut stream, json!({"ok": true, "pid": std::process::id()}));
                let _ = std::fs::remove_file(&path);
                stopper.stop();
                server::exit(0);
            }
            Some("claim") => {
                let theirs: Option<Fingerprint> = serde_json::from_value(request["fingerprint"].clone()).ok();
                let why = match &theirs {
                    Some(theirs) => fingerprint.differences(theirs),
                    None => vec!["the launcher sent no fingerprint".to_string()],
                };
                if !why.is_empty() {
                    // Stale for this launcher, and most likely for every later one: make room.
                    let why = why.join("; ");
                    eprintln!("saekit-kernel: spare kernel declined a claim ({why}); exiting");
                    answer(&mut stream, json!({"ok": false, "why": why}));
                    let _ = std::fs::remove_file(&path);
                    stopper.stop();
                    server::exit(0);
                }
                let info = request["connection"].as_str().and_then(|c| serde_json::from_str::<ConnectionInfo>(c).ok());
                let Some(info) = info else {
                    answer(
                        &mut stream,
                        json!({"ok": false, "why": "the connection was not a Jupyter connection file"}),
                    );
                    continue;
                };
                claimed.store(true, Ordering::SeqCst);
                adopt(&request, &prepared);
                answer(
                    &mut stream,
                    json!({
                        "ok": true,
                        "pid": std::process::id(),
                        "ready": prepared.engine.is_ready(),
                        "slot": prepared.slot_dir.display().to_string(),
                    }),
                );
                // The next spare may start now.
                drop(listener);
                let _ = std::fs::remove_file(&path);
                drop(lock);
                return serve_claimed(prepared, info, stream);
            }
            _ => answer(&mut stream, json!({"ok": false, "why": "unknown request"})),
        }
    }
    Ok(())
}

/// Makes a socket file usable by this user only.
pub fn private_socket(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
}

/// Whether the process at the other end of `stream` runs as this process's user.
pub fn same_user(stream: &UnixStream) -> bool {
    let mut cred = libc::ucred { pid: 0, uid: u32::MAX, gid: 0 };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `cred`.
    let got = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    // SAFETY: getuid cannot fail.
    got == 0 && cred.uid == unsafe { libc::getuid() }
}

fn status(prepared: &Prepared, fingerprint: &Fingerprint, started: Instant) -> Value {
    json!({
        "ok": true,
        "pid": std::process::id(),
        "ready": prepared.engine.is_ready(),
        "age_s": started.elapsed().as_secs_f64(),
        "slot": prepared.slot_dir.display().to_string(),
        "fingerprint": fingerprint,
    })
}

/// Takes on the launcher's working directory and environment, here and in evcxr's child process.
fn adopt(request: &Value, prepared: &Prepared) {
    let theirs: Vec<(String, String)> = serde_json::from_value(request["env"].clone()).unwrap_or_default();
    let (set, unset) = env_changes(&started_env(), &theirs);
    let message = json!({
        "op": "env",
        "cwd": request["cwd"],
        "set": set.into_iter().map(|(k, v)| (k, Value::String(v))).collect::<serde_json::Map<String, Value>>(),
        "unset": unset,
    });
    crate::child::apply_env(&message);
    prepared.outputs.set_child_setup(message);
    // The child applies it in order before answering this ping, so the first cell sees it.
    prepared.outputs.sync_with_child(|| false);
    *STARTED_ENV.lock().unwrap() = Some(theirs);
}

fn serve_claimed(prepared: Prepared, info: ConnectionInfo, stream: UnixStream) -> Result<()> {
    let _ = stream.set_read_timeout(None);
    if let Ok(copy) = stream.try_clone() {
        *LOG_COPY.lock().unwrap_or_else(|p| p.into_inner()) = Some(copy);
    }
    // The launcher is Jupyter's handle on this kernel: when it goes, so does this process.
    let stopper = prepared.stopper();
    std::thread::spawn(move || {
        let mut stream = stream;
        let _ = stream.read_to_end(&mut Vec::new());
        eprintln!("saekit-kernel: the launcher process ended; exiting");
        stopper.stop();
        server::exit(0);
    });
    replace_when_idle(&prepared);
    server::serve_prepared(prepared, info)
}

// ---------------------------------------------------------------------------------------------------
// Starting spares

/// Once this kernel's engine is ready and it has run no cell for a few seconds, starts the next spare
/// (if spares are on and none is running).
pub fn replace_when_idle(prepared: &Prepared) {
    if !enabled() {
        return;
    }
    let engine = prepared.engine.clone();
    let outputs = prepared.outputs.clone();
    std::thread::spawn(move || {
        loop {
            std::thread::sleep(Duration::from_millis(500));
            if engine.is_ready() && outputs.idle_for().is_some_and(|d| d >= QUIET_BEFORE_REPLACING) {
                break;
            }
        }
        if let Err(e) = start_detached() {
            eprintln!("saekit-kernel: could not start a spare kernel: {e:#}");
        }
    });
}

/// Whether a spare process is running (it holds `spare.lock`).
fn spare_running(home: &Path) -> bool {
    let Ok(lock) = File::options().create(true).truncate(false).write(true).open(home.join("spare.lock")) else {
        return false;
    };
    // SAFETY: flock on a descriptor we own; released when `lock` closes.
    unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) != 0 }
}

/// Starts a spare in the background, in a session of its own (it outlives this process), with the
/// environment this process was started with, logging to `$SAEKIT_KERNEL_HOME/spare.log`. Returns its pid,
/// or `None` if one is already running.
pub fn start_detached() -> Result<Option<u32>> {
    let home = crate::kernel_home();
    std::fs::create_dir_all(&home)?;
    if spare_running(&home) {
        return Ok(None);
    }
    let log_path = home.join("spare.log");
    if std::fs::metadata(&log_path).is_ok_and(|m| m.len() > 4 << 20) {
        let _ = std::fs::rename(&log_path, home.join("spare.log.1"));
    }
    let log = File::options().create(true).append(true).open(&log_path)?;
    let exe = std::env::current_exe()?;
    let mut command = std::process::Command::new(exe);
    command
        .arg("spare")
        .env_clear()
        .envs(started_env())
        .current_dir(&home)
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        command.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    let mut child = command.spawn().context("cannot start a spare kernel")?;
    let pid = child.id();
    // Reap it when it exits, so it leaves no zombie while this process lives.
    std::thread::spawn(move || child.wait());
    Ok(Some(pid))
}

/// Asks the running spare for something (`status`, `stop`); `None` if none answers.
fn ask(op: &str) -> Option<Value> {
    let mut stream = UnixStream::connect(socket_path(&crate::kernel_home())).ok()?;
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    stream.write_all(format!("{}\n", json!({ "op": op })).as_bytes()).ok()?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).ok()?;
    serde_json::from_str(&line).ok()
}

/// The pid of the running spare if it was made by this binary, from the same saekit sources and build
/// settings as this process would use.
pub fn running_and_current() -> Option<u64> {
    let status = ask("status")?;
    let theirs: Fingerprint = serde_json::from_value(status["fingerprint"].clone()).ok()?;
    Fingerprint::of(&started_env()).differences(&theirs).is_empty().then(|| status["pid"].as_u64()).flatten()
}

/// Stops the running spare, if any, and waits until it has let go of its build slot.
pub fn stop() -> bool {
    let home = crate::kernel_home();
    let mut stopped = ask("stop").is_some();
    if !stopped && spare_running(&home) {
        // Still preparing, so not listening yet: it wrote its pid into its lock file.
        let pid = std::fs::read_to_string(home.join("spare.lock")).ok().and_then(|s| s.trim().parse::<i32>().ok());
        if let Some(pid) = pid.filter(|&p| p > 0) {
            // SAFETY: a plain signal to a process id read from the lock file that process holds.
            stopped = unsafe { libc::kill(pid, libc::SIGTERM) } == 0;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while spare_running(&home) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    stopped
}

/// `saekit-kernel spare [--start | --wait [SECONDS] | --status | --stop]`.
pub fn command(args: &[String]) -> Result<()> {
    match args.first().map(String::as_str) {
        None => run(),
        Some("--start") => {
            match start_detached()? {
                Some(pid) => println!("started a spare kernel (pid {pid}); log: {}", log_path().display()),
                None => println!("a spare kernel is already running"),
            }
            Ok(())
        }
        Some("--wait") => {
            let limit = args.get(1).and_then(|s| s.parse::<f64>().ok()).unwrap_or(600.0);
            let deadline = Instant::now() + Duration::from_secs_f64(limit);
            let mut started = false;
            loop {
                match ask("status") {
                    Some(status) if status["ready"].as_bool() == Some(true) => {
                        println!("{status}");
                        return Ok(());
                    }
                    Some(_) => {}
                    None if !started && !spare_running(&crate::kernel_home()) => {
                        start_detached()?;
                        started = true;
                    }
                    None => {}
                }
                if Instant::now() > deadline {
                    bail!("no spare kernel was ready within {limit} s (log: {})", log_path().display());
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        Some("--status") => {
            match ask("status") {
                Some(status) => println!("{status}"),
                None if spare_running(&crate::kernel_home()) => println!("{}", json!({"ok": true, "ready": false})),
                None => {
                    println!("{}", json!({"ok": false}));
                    std::process::exit(1);
                }
            }
            Ok(())
        }
        Some("--stop") => {
            println!("{}", if stop() { "stopped the spare kernel" } else { "no spare kernel was running" });
            Ok(())
        }
        Some(other) => bail!("unknown option {other:?} for `saekit-kernel spare`"),
    }
}

fn log_path() -> PathBuf {
    crate::kernel_home().join("spare.log")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn the_launchers_environment_replaces_the_spares_except_the_kernels_own_variables() {
        let ours = env(&[
            ("HF_TOKEN", "old"),
            ("KEEP", "same"),
            ("GONE", "x"),
            ("SAEKIT_KERNEL_SOCKET", "/tmp/s.sock"),
            ("EVCXR_TMPDIR", "/slot"),
        ]);
        let theirs = env(&[("HF_TOKEN", "new"), ("KEEP", "same"), ("JPY_SESSION_NAME", "a.ipynb"), ("A=B", "bad")]);
        let (set, unset) = env_changes(&ours, &theirs);
        assert_eq!(set, env(&[("HF_TOKEN", "new"), ("JPY_SESSION_NAME", "a.ipynb")]));
        assert_eq!(unset, vec!["GONE".to_string()]);
    }

    #[test]
    fn build_settings_toolchain_and_sources_must_match() {
        let base = env(&[("PATH", "/usr/bin:/bin"), ("HOME", "/root"), ("RUSTFLAGS", "-Copt-level=1")]);
        let a = Fingerprint::of(&base);
        assert!(a.differences(&Fingerprint::of(&base)).is_empty());
        // Variables that do not affect builds do not matter.
        let mut other_home = base.clone();
        other_home[1].1 = "/home/someone".into();
        other_home.push(("JPY_SESSION_NAME".into(), "x.ipynb".into()));
        assert!(a.differences(&Fingerprint::of(&other_home)).is_empty());
        // Build flags do.
        let mut flags = base.clone();
        flags[2].1 = "-Ctarget-cpu=native".into();
        let why = a.differences(&Fingerprint::of(&flags));
        assert_eq!(why, vec!["build settings differ: RUSTFLAGS".to_string()]);
        let mut evcxr = base.clone();
        evcxr.push(("EVCXR_CONFIG_DIR".into(), "/x".into()));
        assert_eq!(a.differences(&Fingerprint::of(&evcxr)).len(), 1);
        // So does the saekit crate being preloaded.
        let mut elsewhere = base.clone();
        elsewhere.push(("SAEKIT_CRATE_PATH".into(), std::env::temp_dir().display().to_string()));
        assert!(a.differences(&Fingerprint::of(&elsewhere))[0].starts_with("saekit sources changed"));
    }
}
