//! Under saekit-kernel a running job connects to the kernel's socket, so that interrupting the kernel
//! cancels it (the work stops at its next check, leaving nothing half-written) instead of the kernel having
//! to stop the process and lose every variable. The connection closes when the job ends.

use std::io::{BufRead, BufReader, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::Ordering;

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
