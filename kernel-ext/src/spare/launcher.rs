//! The launcher's side: offer Jupyter's connection to a waiting spare, then relay its log until it ends.

#[allow(unused_imports)]
use super::*;

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

pub(super) static LOG_COPY: Mutex<Option<UnixStream>> = Mutex::new(None);

/// Passes a line of this process's stderr on to the launcher, once claimed.
pub fn copy_log_line(line: &str) {
    let mut copy = LOG_COPY.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(stream) = copy.as_mut()
        && stream.write_all(format!("{line}\n").as_bytes()).is_err()
    {
        *copy = None;
    }
}
