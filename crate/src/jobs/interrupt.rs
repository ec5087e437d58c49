//! Under saekit-kernel a running job connects to the kernel's socket, so that interrupting the cell that
//! started it cancels it (the work stops at its next check, leaving nothing half-written) instead of the
//! kernel having to stop the process and lose every variable; a job an earlier cell started goes on. A
//! `job.wait()` connects too, so that interrupting the cell it blocks returns at once. The connections
//! close when the job (or the wait) ends.

use std::io::{BufRead, BufReader, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::Shared;
use crate::display::kernel::SOCKET_ENV;

pub(super) struct InterruptWatch {
    stream: UnixStream,
}

impl InterruptWatch {
    /// Connects when running under saekit-kernel; `None` elsewhere (or when the kernel cannot be reached).
    pub(super) fn connect(shared: &Arc<Shared>) -> Option<InterruptWatch> {
        let path = std::env::var_os(SOCKET_ENV)?;
        let mut stream = UnixStream::connect(path).ok()?;
        let hello = serde_json::json!({"op": "job", "name": shared.name});
        stream.write_all(format!("{hello}\n").as_bytes()).ok()?;
        let reader = stream.try_clone().ok()?;
        let shared = shared.clone();
        std::thread::Builder::new()
            .name("saekit job interrupt".into())
            .spawn(move || {
                for line in BufReader::new(reader).lines() {
                    match line {
                        Ok(line) if line.trim() == "cancel" => shared.cancel.store(true, Ordering::Relaxed),
                        Ok(_) => {}
                        Err(_) => break,
                    }
                }
            })
            .ok()?;
        Some(InterruptWatch { stream })
    }
}

impl Drop for InterruptWatch {
    fn drop(&mut self) {
        let _ = self.stream.shutdown(Shutdown::Both);
    }
}

/// A `wait()` under saekit-kernel: `interrupted` turns true when the cell it blocks is interrupted.
pub(super) struct WaitWatch {
    stream: UnixStream,
    pub(super) interrupted: Arc<AtomicBool>,
}

impl WaitWatch {
    /// Connects when running under saekit-kernel; `None` elsewhere.
    pub(super) fn connect(job: &str) -> Option<WaitWatch> {
        let path = std::env::var_os(SOCKET_ENV)?;
        let mut stream = UnixStream::connect(path).ok()?;
        let hello = serde_json::json!({"op": "wait", "name": job});
        stream.write_all(format!("{hello}\n").as_bytes()).ok()?;
        let reader = stream.try_clone().ok()?;
        let interrupted = Arc::new(AtomicBool::new(false));
        let flag = interrupted.clone();
        std::thread::Builder::new()
            .name("saekit wait interrupt".into())
            .spawn(move || {
                for line in BufReader::new(reader).lines() {
                    match line {
                        Ok(line) if line.trim() == "interrupt" => flag.store(true, Ordering::Relaxed),
                        Ok(_) => {}
                        Err(_) => break,
                    }
                }
            })
            .ok()?;
        Some(WaitWatch { stream, interrupted })
    }
}

impl Drop for WaitWatch {
    fn drop(&mut self) {
        let _ = self.stream.shutdown(Shutdown::Both);
    }
}
