//! The kernel's side of evcxr's child process (the process that runs compiled cells).
//!
//! evcxr reads the child's stdout only while a cell runs, line by line, and treats it as its control
//! channel. So output printed by a background thread after a cell has returned waits for the next cell,
//! and `\r` progress without a newline never shows. Here, before evcxr's runtime loop starts, fd 1 is
//! replaced by a pipe read by a thread of ours, which sorts what the cell prints:
//! - evcxr's own control lines (`EVCXR_...`, content blocks) go on to evcxr unchanged;
//! - saekit's display messages (lines that start with [`MARKER`]) and everything else the user prints go
//!   to the kernel over the channel socket (`SAEKIT_KERNEL_SOCKET`), at once, busy or idle, partial lines
//!   included.
//!
//! Before a cell's completion line reaches evcxr, everything printed before it has been written to the
//! socket, and the kernel's `ping` is answered in order on the same socket: that is how the kernel knows
//! it has every output of a cell before it reports the cell finished.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::FromRawFd;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};

use serde_json::json;

/// Environment variable holding the kernel channel's socket path; the child inherits it.
pub const SOCKET_ENV: &str = "SAEKIT_KERNEL_SOCKET";
/// Prefix of a line that carries a saekit display message (JSON) rather than text.
pub const MARKER: &str = "\u{1e}saekit-kernel ";

const PANIC_NOTIFICATION: &str = "EVCXR_PANIC_NOTIFICATION";

/// Sets up the interposition when this process is evcxr's child under saekit-kernel; otherwise does nothing.
pub fn interpose() {
    if std::env::var_os("EVCXR_IS_RUNTIME").is_none() {
        return;
    }
    let Some(path) = std::env::var_os(SOCKET_ENV) else { return };
    let Ok(stream) = UnixStream::connect(&path) else { return };
    let Ok(reader) = stream.try_clone() else { return };
    let writer = Arc::new(Mutex::new(stream));
    if send(&writer, &json!({"op": "hello", "pid": std::process::id()})).is_err() {
        return;
    }
    let Some((pipe_read, real_stdout)) = divert(1, Direction::Out) else { return };
    let out = writer.clone();
    std::thread::spawn(move || Sorter::new(out, real_stdout).run(pipe_read));
    // Likewise stdin, where evcxr's commands arrive: the kernel hears when a cell's code starts running
    // (output before that, while the cell compiles, comes from threads of earlier cells).
    let stdin_pipe = divert(0, Direction::In).map(|(pipe_write, real)| (real, pipe_write));
    if let Some((real_stdin, mut pipe_write)) = stdin_pipe {
        let out = writer.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(real_stdin).lines() {
                let Ok(line) = line else { break };
                if line.starts_with("LOAD_AND_RUN ") {
                    let _ = send(&out, &json!({"op": "run"}));
                }
                if pipe_write.write_all(format!("{line}\n").as_bytes()).is_err() {
                    break;
                }
            }
        });
    }
    std::thread::spawn(move || answer_pings(reader, writer));
}

/// Which way data flows through a diverted descriptor.
pub enum Direction {
    /// The process writes to the descriptor (stdout, stderr); we read the pipe.
    Out,
    /// The process reads the descriptor (stdin); we write the pipe.
    In,
}

/// Replaces descriptor `fd` with one end of a new pipe. Returns our end of the pipe and a duplicate of
/// the original descriptor (to pass data on to), or `None` (nothing changed) if a call fails.
pub fn divert(fd: i32, direction: Direction) -> Option<(File, File)> {
    // SAFETY: descriptor calls on descriptors we create, each result checked; done before other threads
    // use `fd`.
    unsafe {
        let mut fds = [0; 2];
        if libc::pipe(fds.as_mut_ptr()) != 0 {
            return None;
        }
        let (ours, theirs) = match direction {
            Direction::Out => (fds[0], fds[1]),
            Direction::In => (fds[1], fds[0]),
        };
        let original = libc::dup(fd);
        if original < 0 || libc::dup2(theirs, fd) < 0 {
            libc::close(fds[0]);
            libc::close(fds[1]);
            if original >= 0 {
                libc::close(original);
            }
            return None;
        }
        libc::close(theirs);
        Some((File::from_raw_fd(ours), File::from_raw_fd(original)))
    }
}

fn send(writer: &Mutex<UnixStream>, message: &serde_json::Value) -> std::io::Result<()> {
    let mut line = message.to_string();
    line.push('\n');
    writer.lock().unwrap_or_else(|p| p.into_inner()).write_all(line.as_bytes())
}

/// Answers the kernel's pings in order with everything already sent.
fn answer_pings(reader: UnixStream, writer: Arc<Mutex<UnixStream>>) {
    for line in BufReader::new(reader).lines() {
        let Ok(line) = line else { break };
        let Ok(message) = serde_json::from_str::<serde_json::Value>(&line) else { continue };
        if message["op"] == "ping" {
            let _ = send(&writer, &json!({"op": "pong", "n": message["n"]}));
        } else if message["op"] == "env" {
            apply_env(&message);
        }
    }
}

/// Applies an "env" message: `cwd`, then `set` (an object) and `unset` (a list) of environment variables.
/// A spare kernel's processes adopt the Jupyter session they are handed to this way.
pub fn apply_env(message: &serde_json::Value) {
    if let Some(cwd) = message["cwd"].as_str() {
        if let Err(e) = std::env::set_current_dir(cwd) {
            eprintln!("saekit-kernel: cannot change to the notebook's directory {cwd}: {e}");
        }
    }
    // SAFETY: environment changes race with C code reading the environment on other threads; when this
    // runs, no cell is running and the kernel's own threads are waiting on sockets (std's own accesses
    // are locked).
    if let Some(set) = message["set"].as_object() {
        for (key, value) in set {
            if let Some(value) = value.as_str() {
                unsafe { std::env::set_var(key, value) };
            }
        }
    }
    if let Some(unset) = message["unset"].as_array() {
        for key in unset.iter().filter_map(|k| k.as_str()) {
            unsafe { std::env::remove_var(key) };
        }
    }
}

struct Sorter {
    socket: Arc<Mutex<UnixStream>>,
    evcxr: File,
    /// Bytes read but not yet sorted (an incomplete line that may still turn out to be a control line).
    pending: Vec<u8>,
    /// User text to send as one stream message.
    text: String,
    /// Inside an `EVCXR_BEGIN_CONTENT` block, which goes to evcxr whole.
    in_content: bool,
    socket_ok: bool,
}

impl Sorter {
    fn new(socket: Arc<Mutex<UnixStream>>, evcxr: File) -> Sorter {
        Sorter { socket, evcxr, pending: Vec::new(), text: String::new(), in_content: false, socket_ok: true }
    }

    fn run(mut self, mut pipe: File) {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match pipe.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            self.pending.extend_from_slice(&buf[..n]);
            self.sort();
            // A partial line that cannot be a control line is user text: send it now (`\r` progress).
            if !self.in_content && !self.pending.is_empty() && !could_be_control(&self.pending) {
                let partial = std::mem::take(&mut self.pending);
                self.text.push_str(&String::from_utf8_lossy(&partial));
            }
            self.flush_text();
        }
        self.flush_text();
    }

    fn sort(&mut self) {
        while let Some(end) = self.pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line[..line.len() - 1]).into_owned();
            self.line(line);
        }
    }

    fn line(&mut self, line: String) {
        if self.in_content {
            if line == "EVCXR_END_CONTENT" || line == PANIC_NOTIFICATION {
                self.in_content = false;
            }
            self.to_evcxr(&line);
        } else if let Some(message) = line.strip_prefix(MARKER) {
            self.flush_text();
            self.to_socket(message);
        } else if line.contains("EVCXR_BEGIN_CONTENT") {
            self.flush_text();
            self.in_content = true;
            self.to_evcxr(&line);
        } else if line.starts_with("EVCXR_") {
            self.flush_text();
            if line == PANIC_NOTIFICATION {
                self.to_socket(r#"{"op":"panic"}"#);
            } else if line == "EVCXR_ERROR_OCCURRED" {
                // `?` returned an error from the cell; evcxr printed it on stderr.
                self.to_socket(r#"{"op":"user_error"}"#);
            }
            self.to_evcxr(&line);
        } else {
            self.text.push_str(&line);
            self.text.push('\n');
        }
    }

    fn flush_text(&mut self) {
        if self.text.is_empty() {
            return;
        }
        let text = std::mem::take(&mut self.text);
        if self.socket_ok {
            let message = json!({"op": "stream", "name": "stdout", "text": text});
            if send(&self.socket, &message).is_ok() {
                return;
            }
            self.socket_ok = false;
        }
        // The kernel went away: give the text to evcxr as before.
        let _ = self.evcxr.write_all(text.as_bytes());
    }

    fn to_socket(&mut self, json_line: &str) {
        if self.socket_ok {
            let mut line = json_line.to_string();
            line.push('\n');
            if self.socket.lock().unwrap_or_else(|p| p.into_inner()).write_all(line.as_bytes()).is_ok() {
                return;
            }
            self.socket_ok = false;
        }
    }

    fn to_evcxr(&mut self, line: &str) {
        let _ = self.evcxr.write_all(line.as_bytes());
        let _ = self.evcxr.write_all(b"\n");
        let _ = self.evcxr.flush();
    }
}

/// Whether an incomplete line may still become a control or marker line (so it must wait for its end).
fn could_be_control(partial: &[u8]) -> bool {
    let starts = |prefix: &[u8]| {
        let n = partial.len().min(prefix.len());
        partial[..n] == prefix[..n]
    };
    starts(b"EVCXR_") || starts(MARKER.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// saekit writes these on its side of the wire (`crate/src/display/kernel.rs`); a tiny shared crate
    /// would cost more than this check that the two spell them alike.
    #[test]
    fn wire_constants_match_saekits() {
        let saekit = include_str!("../../crate/src/display/kernel.rs");
        for line in
            [format!("pub const SOCKET_ENV: &str = {SOCKET_ENV:?};"), format!("pub const MARKER: &str = {MARKER:?};")]
        {
            assert!(saekit.contains(&line), "saekit's display/kernel.rs lacks `{line}`");
        }
    }

    #[test]
    fn partial_lines_that_may_be_control_lines_wait() {
        assert!(could_be_control(b"EVC"));
        assert!(could_be_control(b"EVCXR_EXECUTION"));
        assert!(could_be_control("\u{1e}saek".as_bytes()));
        assert!(!could_be_control(b"\rprogress 20%"));
        assert!(!could_be_control(b"EVX"));
    }
}
