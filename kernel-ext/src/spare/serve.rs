//! The spare's side: get ready, wait on the spare socket, check a claim, adopt the launcher's directory and
//! environment, and serve the notebook.

#[allow(unused_imports)]
use super::*;

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

pub(super) fn status(prepared: &Prepared, fingerprint: &Fingerprint, started: Instant) -> Value {
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
pub(super) fn adopt(request: &Value, prepared: &Prepared) {
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

pub(super) fn serve_claimed(prepared: Prepared, info: ConnectionInfo, stream: UnixStream) -> Result<()> {
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
