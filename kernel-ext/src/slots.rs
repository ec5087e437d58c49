//! Build slots: persistent evcxr build directories, one kernel per slot at a time.
//!
//! evcxr rebuilds every dependency on each start unless its build directory persists, and two kernels
//! cannot share one directory. So each kernel takes the first free slot under
//! `$SAEKIT_KERNEL_HOME/slots`, holding an exclusive `flock` on it for its whole life. A slot that has never
//! been built is seeded by copying a built one, so a second kernel does not spend minutes building saekit.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

const MAX_SLOTS: usize = 16;
/// Written into a slot once saekit has been built in it.
pub const BUILT_MARK: &str = "saekit-built";

pub struct Slot {
    pub dir: PathBuf,
    /// Holds the lock while the slot is in use.
    _lock: File,
}

impl Slot {
    pub fn is_built(&self) -> bool {
        self.dir.join(BUILT_MARK).exists()
    }

    /// Records that saekit was built here from sources in the state `stamp` describes.
    pub fn mark_built(&self, stamp: &str) -> Result<()> {
        std::fs::write(self.dir.join(BUILT_MARK), stamp)?;
        Ok(())
    }

    /// The stamp of the sources last built here.
    pub fn built_stamp(&self) -> Option<String> {
        std::fs::read_to_string(self.dir.join(BUILT_MARK)).ok()
    }
}

/// Takes the first free slot, seeding it from a built one when it is new.
pub fn acquire(home: &Path) -> Result<Slot> {
    let root = home.join("slots");
    std::fs::create_dir_all(&root).with_context(|| format!("cannot create {}", root.display()))?;
    for n in 0..MAX_SLOTS {
        let dir = root.join(format!("slot-{n}"));
        std::fs::create_dir_all(&dir)?;
        let lock = File::options().create(true).truncate(false).write(true).open(dir.join("lock"))?;
        // SAFETY: flock on a descriptor we own.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            continue;
        }
        let slot = Slot { dir, _lock: lock };
        if !slot.is_built() {
            seed(&root, &slot.dir);
        }
        return Ok(slot);
    }
    bail!("all {MAX_SLOTS} build slots under {} are in use by running kernels", root.display())
}

/// Copies the build of a built slot into a fresh one (best effort: a failed copy only means a slower start).
fn seed(root: &Path, dir: &Path) {
    let Ok(entries) = std::fs::read_dir(root) else { return };
    for entry in entries.flatten() {
        let source = entry.path();
        if source == dir || !source.join(BUILT_MARK).exists() {
            continue;
        }
        let target = source.join("target");
        if !target.exists() {
            continue;
        }
        let ok = std::process::Command::new("cp")
            .arg("-a")
            .arg("--reflink=auto")
            .arg(&target)
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            let _ = std::fs::write(dir.join(BUILT_MARK), "seeded");
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_slot_is_not_given_twice_and_new_slots_are_seeded() {
        let home = tempfile_dir();
        let first = acquire(&home).unwrap();
        std::fs::create_dir_all(first.dir.join("target/debug")).unwrap();
        std::fs::write(first.dir.join("target/debug/libsaekit.rlib"), b"built").unwrap();
        first.mark_built("stamp").unwrap();
        let second = acquire(&home).unwrap();
        assert_ne!(first.dir, second.dir);
        assert!(second.is_built());
        assert_eq!(std::fs::read(second.dir.join("target/debug/libsaekit.rlib")).unwrap(), b"built");
        let first_dir = first.dir.clone();
        drop(first);
        let again = acquire(&home).unwrap();
        assert_eq!(again.dir, first_dir);
        std::fs::remove_dir_all(&home).unwrap();
    }

    fn tempfile_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("saekit-kernel-slots-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }
}

/// Describes a crate's sources cheaply: its path and the newest modification time of its manifest,
/// lockfile and `src/` files. Equal stamps mean a build would find nothing to do.
pub fn source_stamp(crate_path: &Path) -> String {
    fn newest(path: &Path, best: &mut u128) {
        let Ok(meta) = std::fs::metadata(path) else { return };
        if meta.is_dir() {
            if let Ok(entries) = std::fs::read_dir(path) {
                for entry in entries.flatten() {
                    newest(&entry.path(), best);
                }
            }
        } else if let Ok(modified) = meta.modified() {
            let ns = modified.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
            *best = (*best).max(ns);
        }
    }
    let mut best = 0;
    for part in ["Cargo.toml", "src", "data", "../Cargo.lock"] {
        newest(&crate_path.join(part), &mut best);
    }
    // The features are part of what was built: a slot built without `cuda` does not serve a kernel with it.
    format!(
        "{} {} {best} features [{}]",
        env!("CARGO_PKG_VERSION"),
        crate_path.display(),
        crate::saekit_features().join(",")
    )
}
