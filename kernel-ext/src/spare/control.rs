//! Starting, finding, replacing and stopping spares, and the `saekit-kernel spare` command.

#[allow(unused_imports)]
use super::*;

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
pub(super) fn spare_running(home: &Path) -> bool {
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
    // Return once it holds its lock (it then writes its pid there), so that a `spare --stop` right after
    // this (scripts/test.sh stops the spare that setup's install starts) finds it. Otherwise the spare,
    // unseen, would go on holding the build slot built for the next kernels, sending them to another slot.
    // (Not `spare_running`: taking the lock to look could make the starting spare think another one runs.)
    let holds_lock = || std::fs::read_to_string(home.join("spare.lock")).is_ok_and(|s| s.trim() == pid.to_string());
    let deadline = Instant::now() + Duration::from_secs(10);
    while !holds_lock() && Instant::now() < deadline && child.try_wait().is_ok_and(|s| s.is_none()) {
        std::thread::sleep(Duration::from_millis(5));
    }
    // Reap it when it exits, so it leaves no zombie while this process lives.
    std::thread::spawn(move || child.wait());
    Ok(Some(pid))
}

/// Asks the running spare for something (`status`, `stop`); `None` if none answers.
pub(super) fn ask(op: &str) -> Option<Value> {
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

pub(super) fn log_path() -> PathBuf {
    crate::kernel_home().join("spare.log")
}
