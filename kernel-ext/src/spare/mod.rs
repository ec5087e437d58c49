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
use crate::sockets::{private_socket, same_user};

mod control;
mod fingerprint;
mod launcher;
mod serve;

#[allow(unused_imports)]
use control::*;
pub use control::{command, replace_when_idle, running_and_current, start_detached, stop};
#[allow(unused_imports)]
use fingerprint::*;
pub use fingerprint::{Fingerprint, env_changes, remember_started_env};
#[allow(unused_imports)]
use launcher::*;
pub use launcher::{claim, copy_log_line, relay};
pub use serve::run;
#[allow(unused_imports)]
use serve::*;

/// `0`, `false`, `no` or `off` turns spare kernels off.
pub const ENABLE_ENV: &str = "SAEKIT_KERNEL_SPARE";
/// Seconds an unclaimed spare waits before it exits.
pub const IDLE_ENV: &str = "SAEKIT_KERNEL_SPARE_IDLE";
pub(super) const DEFAULT_IDLE: Duration = Duration::from_secs(3600);
/// How long a kernel must have run no cell before it starts the next spare (starting one costs a core for
/// ~20 s; a researcher reading the first output should not pay for it).
pub(super) const QUIET_BEFORE_REPLACING: Duration = Duration::from_secs(3);
/// Bumped when the claim conversation changes.
pub(super) const PROTOCOL: u32 = 1;

/// Variables that the kernel sets for itself and its child: never copied from a launcher.
pub(super) const OWN_VARIABLES: &[&str] = &[
    crate::child::SOCKET_ENV,
    "EVCXR_TMPDIR",
    "LD_LIBRARY_PATH",
    "EVCXR_IS_RUNTIME",
    crate::cell_build::REAL_CARGO_ENV,
    crate::cell_build::REAL_RUSTUP_ENV,
];
/// Variables that change how cells and saekit are built: a spare made under other values cannot serve.
pub(super) const BUILD_VARIABLES: &[&str] = &[
    "SAEKIT_FEATURES",
    crate::cells::LINKER_ENV,
    crate::cell_build::ENABLE_ENV,
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
pub(super) const BUILD_PREFIXES: &[&str] = &["CARGO_BUILD_", "CARGO_PROFILE_", "EVCXR_"];

pub fn enabled() -> bool {
    !crate::switched_off(ENABLE_ENV)
}

pub(super) fn socket_path(home: &Path) -> PathBuf {
    home.join("spare.sock")
}

pub(super) fn idle_limit() -> Duration {
    std::env::var(IDLE_ENV)
        .ok()
        .and_then(|s| s.trim().parse::<f64>().ok())
        .map_or(DEFAULT_IDLE, |s| Duration::from_secs_f64(s.max(0.0)))
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
