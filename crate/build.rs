//! Build facts a report names (see `saekit::session::BuildInfo`): the git commit the sources are at and
//! whether they differ from it, the compiler's version, and where the workspace's Cargo.lock is (its hash
//! is taken at run time from the copy compiled in). Nothing here fails a build: outside a git checkout
//! the commit is "unknown".
//!
//! The facts are taken again when saekit's sources change, not when HEAD moves: a commit that leaves the
//! sources as they are would otherwise rebuild saekit everywhere (every kernel's build slot) for nothing.
//! So the commit named is one whose saekit sources (crate/, Cargo.toml, Cargo.lock) are the ones built,
//! "modified" when they differed from it.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let repo = manifest.parent().unwrap_or(&manifest).to_path_buf();
    println!("cargo:rustc-check-cfg=cfg(saekit_cargo_lock)");
    println!("cargo:rerun-if-changed=src");
    println!("cargo:rerun-if-changed=Cargo.toml");

    let lock = repo.join("Cargo.lock");
    if lock.is_file() {
        println!("cargo:rerun-if-changed={}", lock.display());
        println!("cargo:rustc-cfg=saekit_cargo_lock");
        println!("cargo:rustc-env=SAEKIT_CARGO_LOCK={}", lock.display());
    }

    let git = |args: &[&str]| -> Option<String> {
        let out = Command::new("git").arg("-C").arg(&repo).args(args).output().ok()?;
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    let commit = git(&["rev-parse", "HEAD"]).filter(|c| c.len() >= 40);
    let dirty = commit.is_some()
        && git(&["status", "--porcelain", "--untracked-files=normal", "--", "crate", "Cargo.toml", "Cargo.lock"])
            .is_some_and(|s| !s.is_empty());
    println!("cargo:rustc-env=SAEKIT_GIT_COMMIT={}", commit.as_deref().unwrap_or("unknown"));
    println!("cargo:rustc-env=SAEKIT_GIT_DIRTY={}", if dirty { "1" } else { "0" });

    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let version = Command::new(rustc)
        .arg("-V")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=SAEKIT_RUSTC={version}");
    println!("cargo:rustc-env=SAEKIT_PROFILE={}", std::env::var("PROFILE").unwrap_or_default());
    println!("cargo:rustc-env=SAEKIT_TARGET={}", std::env::var("TARGET").unwrap_or_default());
}
