//! Build slots: persistent evcxr build directories, one kernel per slot at a time.
//!
//! evcxr rebuilds every dependency on each start unless its build directory persists, and two kernels
//! cannot share one directory. So each kernel takes a free slot under `$SAEKIT_KERNEL_HOME/slots`, holding an
//! exclusive `flock` on it for its whole life: the first one built from the kernel's saekit sources, else the
//! first free one, which gets a copy of a build from those sources when another slot has one (or of any
//! build when it was never built), so a second kernel does not spend minutes building saekit.

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

/// Takes a free slot for sources in the state `stamp` ([`source_stamp`]) describes: the first free one last
/// built from them, else the first free one. A slot taken that was not built from them gets the build of
/// one that was, when there is one (copying a build takes seconds; cargo rebuilding saekit, and the
/// dependencies it resolves anew when its path changed, takes minutes and prints into the user's first
/// cell); a slot never built gets any built slot's build.
pub fn acquire(home: &Path, stamp: &str) -> Result<Slot> {
    let root = home.join("slots");
    std::fs::create_dir_all(&root).with_context(|| format!("cannot create {}", root.display()))?;
    let dir = |n: usize| root.join(format!("slot-{n}"));
    let built_from = |dir: &Path| std::fs::read_to_string(dir.join(BUILT_MARK)).ok();
    for n in 0..MAX_SLOTS {
        if built_from(&dir(n)).as_deref() == Some(stamp) {
            if let Some(slot) = try_lock(dir(n))? {
                return Ok(slot);
            }
        }
    }
    for n in 0..MAX_SLOTS {
        let Some(slot) = try_lock(dir(n))? else { continue };
        let matching = (0..MAX_SLOTS).map(dir).find(|d| *d != slot.dir && built_from(d).as_deref() == Some(stamp));
        match matching {
            Some(source) => seed(&source, &slot.dir),
            None if !slot.is_built() => {
                let any = (0..MAX_SLOTS).map(dir).find(|d| *d != slot.dir && d.join(BUILT_MARK).exists());
                if let Some(source) = any {
                    seed(&source, &slot.dir);
                }
            }
            None => {}
        }
        return Ok(slot);
    }
    bail!("all {MAX_SLOTS} build slots under {} are in use by running kernels", root.display())
}

fn try_lock(dir: PathBuf) -> Result<Option<Slot>> {
    std::fs::create_dir_all(&dir)?;
    let lock = File::options().create(true).truncate(false).write(true).open(dir.join("lock"))?;
    // SAFETY: flock on a descriptor we own.
    if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return Ok(None);
    }
    Ok(Some(Slot { dir, _lock: lock }))
}

/// Gives `dir` a copy of `source`'s build: its target directory, its lockfile (so cargo resolves the same
/// versions) and its mark. Best effort, and never worse than before: the copy is made beside the old
/// build and swapped in only when complete, so a failed copy only means a slower start.
fn seed(source: &Path, dir: &Path) {
    let target = source.join("target");
    if !target.exists() {
        return;
    }
    let fresh = dir.join("target.seeding");
    let old = dir.join("target.old");
    for leftover in [&fresh, &old] {
        let _ = std::fs::remove_dir_all(leftover);
    }
    let copied = std::process::Command::new("cp")
        .arg("-a")
        .arg("--reflink=auto")
        .arg(&target)
        .arg(&fresh)
        .status()
        .is_ok_and(|s| s.success());
    if !copied {
        let _ = std::fs::remove_dir_all(&fresh);
        return;
    }
    let _ = std::fs::rename(dir.join("target"), &old);
    if std::fs::rename(&fresh, dir.join("target")).is_err() {
        let _ = std::fs::rename(&old, dir.join("target"));
        let _ = std::fs::remove_dir_all(&fresh);
        return;
    }
    let _ = std::fs::remove_dir_all(&old);
    match std::fs::read(source.join("Cargo.lock")) {
        Ok(lock) => {
            let _ = std::fs::write(dir.join("Cargo.lock"), lock);
        }
        Err(_) => {
            let _ = std::fs::remove_file(dir.join("Cargo.lock"));
        }
    }
    let mark = std::fs::read_to_string(source.join(BUILT_MARK)).unwrap_or_else(|_| "seeded".into());
    let _ = std::fs::write(dir.join(BUILT_MARK), mark);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(slot: &Slot, contents: &[u8], stamp: &str) {
        std::fs::create_dir_all(slot.dir.join("target/debug")).unwrap();
        std::fs::write(slot.dir.join("target/debug/libsaekit.rlib"), contents).unwrap();
        std::fs::write(slot.dir.join("Cargo.lock"), [b"# lock of ", contents].concat()).unwrap();
        slot.mark_built(stamp).unwrap();
    }

    fn built(slot: &Slot) -> Vec<u8> {
        std::fs::read(slot.dir.join("target/debug/libsaekit.rlib")).unwrap()
    }

    #[test]
    fn a_held_slot_is_not_given_twice_and_new_slots_are_seeded() {
        let home = tempfile_dir("seeded");
        let first = acquire(&home, "stamp").unwrap();
        build(&first, b"built", "stamp");
        let second = acquire(&home, "stamp").unwrap();
        assert_ne!(first.dir, second.dir);
        assert_eq!(second.built_stamp().as_deref(), Some("stamp"));
        assert_eq!(built(&second), b"built");
        assert_eq!(std::fs::read(second.dir.join("Cargo.lock")).unwrap(), b"# lock of built");
        let first_dir = first.dir.clone();
        drop(first);
        let again = acquire(&home, "stamp").unwrap();
        assert_eq!(again.dir, first_dir);
        std::fs::remove_dir_all(&home).unwrap();
    }

    #[test]
    fn a_kernel_takes_the_slot_built_from_its_sources_or_gets_a_copy_of_its_build() {
        let home = tempfile_dir("matching");
        let (zero, one) = (acquire(&home, "old").unwrap(), acquire(&home, "new").unwrap());
        build(&zero, b"old sources", "old");
        build(&one, b"new sources", "new");
        let (zero_dir, one_dir) = (zero.dir.clone(), one.dir.clone());
        drop((zero, one));

        // Both free: the one built from these sources, though it is not the first.
        let taken = acquire(&home, "new").unwrap();
        assert_eq!(taken.dir, one_dir);
        // It is held: the first free slot, given a copy of its build in place of the stale one.
        let other = acquire(&home, "new").unwrap();
        assert_eq!(other.dir, zero_dir);
        assert_eq!(built(&other), b"new sources");
        assert_eq!(std::fs::read(other.dir.join("Cargo.lock")).unwrap(), b"# lock of new sources");
        assert_eq!(other.built_stamp().as_deref(), Some("new"));
        assert!(!other.dir.join("target.old").exists() && !other.dir.join("target.seeding").exists());
        drop((taken, other));

        // Sources no slot was built from: the first free slot, as it is (cargo brings it up to date).
        std::fs::write(zero_dir.join("target/debug/libsaekit.rlib"), b"edited").unwrap();
        let first = acquire(&home, "newer").unwrap();
        assert_eq!(first.dir, zero_dir);
        assert_eq!(built(&first), b"edited");
        std::fs::remove_dir_all(&home).unwrap();
    }

    fn tempfile_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("saekit-kernel-slots-{name}-{}", std::process::id()));
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
