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

/// A connection to the kernel's socket, closed when dropped.
struct KernelLink {
    stream: UnixStream,
}

impl KernelLink {
    /// Connects as `op` for job `name` when running under saekit-kernel (`None` elsewhere, or when the
    /// kernel cannot be reached), and calls `on` each time the kernel sends the line `word`.
    fn connect(op: &str, name: &str, word: &'static str, on: impl Fn() + Send + 'static) -> Option<KernelLink> {
        let path = std::env::var_os(SOCKET_ENV)?;
        let mut stream = UnixStream::connect(path).ok()?;
        let hello = serde_json::json!({"op": op, "name": name});
        stream.write_all(format!("{hello}\n").as_bytes()).ok()?;
        let reader = stream.try_clone().ok()?;
        std::thread::Builder::new()
            .name(format!("saekit {op} interrupt"))
            .spawn(move || {
                for line in BufReader::new(reader).lines() {
                    match line {
                        Ok(line) if line.trim() == word => on(),
                        Ok(_) => {}
                        Err(_) => break,
                    }
                }
            })
            .ok()?;
        Some(KernelLink { stream })
    }
}

impl Drop for KernelLink {
    fn drop(&mut self) {
        let _ = self.stream.shutdown(Shutdown::Both);
    }
}

/// A running job's link: the kernel's `cancel` cancels it.
pub(super) struct InterruptWatch {
    _link: KernelLink,
}

impl InterruptWatch {
    pub(super) fn connect(shared: &Arc<Shared>) -> Option<InterruptWatch> {
        let job = shared.clone();
        let link =
            KernelLink::connect("job", &shared.name, "cancel", move || job.cancel.store(true, Ordering::Relaxed))?;
        Some(InterruptWatch { _link: link })
    }
}

/// A `wait()` under saekit-kernel: `interrupted` turns true when the cell it blocks is interrupted.
pub(super) struct WaitWatch {
    _link: KernelLink,
    pub(super) interrupted: Arc<AtomicBool>,
}

impl WaitWatch {
    pub(super) fn connect(job: &str) -> Option<WaitWatch> {
        let interrupted = Arc::new(AtomicBool::new(false));
        let flag = interrupted.clone();
        let link = KernelLink::connect("wait", job, "interrupt", move || flag.store(true, Ordering::Relaxed))?;
        Some(WaitWatch { _link: link, interrupted })
    }
}
