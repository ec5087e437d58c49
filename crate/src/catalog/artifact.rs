//! Writing workspace artifacts atomically. Work in progress lives in `tmp/<kind>-<unique>/`, guarded by a
//! locked `tmp/<kind>-<unique>.lock`; committing moves it to `artifacts/<kind>/<unique>/` inside the same
//! catalog transaction that records it, and [`recover`] clears what crashed writers left behind.

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::Transaction;
use serde::Serialize;

use super::db::Catalog;
use crate::error::{Error, Result};

/// The directory under the workspace root that holds committed artifacts.
pub const ARTIFACTS_DIR: &str = "artifacts";
/// The directory under the workspace root that holds work in progress.
pub const TMP_DIR: &str = "tmp";
/// A file that, inside a writer's directory, marks it as a resumable partial: neither dropping the
/// writer nor [`recover`] deletes it. It is removed when the writer commits.
pub const RESUMABLE_MARKER: &str = "RESUMABLE";

const LOCK_SUFFIX: &str = ".lock";

/// An artifact being written: a private directory under `tmp/` that becomes
/// `artifacts/<kind>/<unique>/` on [`commit`](Self::commit). Dropped without committing, it removes its
/// directory (unless marked [`RESUMABLE_MARKER`]) and its lock file.
#[derive(Debug)]
pub struct ArtifactWriter {
    root: PathBuf,
    kind: String,
    unique: String,
    dir: PathBuf,
    lock_path: PathBuf,
    /// Held locked for the writer's whole life, so [`recover`] knows it is alive.
    _lock: File,
    committed: bool,
}

impl ArtifactWriter {
    /// Starts an artifact of `kind` (ASCII letters, digits, `_` and `-`) in the workspace at `root`.
    pub fn begin(root: &Path, kind: &str) -> Result<ArtifactWriter> {
        validate_kind(kind)?;
        let root = std::path::absolute(root).map_err(|e| Error::io(root, e))?;
        let tmp = root.join(TMP_DIR);
        fs::create_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
        // `recover` may delete a lock file that it found unlocked between our creating and locking it;
        // then the file we locked is no longer at `lock_path`, and we start again under a new name.
        for _ in 0..16 {
            let unique = unique_name();
            let lock_path = tmp.join(format!("{kind}-{unique}{LOCK_SUFFIX}"));
            let lock = match OpenOptions::new().read(true).write(true).create_new(true).open(&lock_path) {
                Ok(file) => file,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(Error::io(&lock_path, e)),
            };
            lock.lock().map_err(|e| Error::io(&lock_path, e))?;
            if !still_at(&lock, &lock_path) {
                continue;
            }
            let writer = ArtifactWriter {
                dir: tmp.join(format!("{kind}-{unique}")),
                root,
                kind: kind.to_string(),
                unique,
                lock_path,
                _lock: lock,
                committed: false,
            };
            // On failure, dropping the writer removes the lock file.
            fs::create_dir(&writer.dir).map_err(|e| Error::io(&writer.dir, e))?;
            return Ok(writer);
        }
        Err(Error::io(&tmp, io::Error::other("could not create a unique work directory")))
    }

    /// Starts (or continues) an artifact of `kind` in `tmp/<kind>-<unique>/`, a name the caller keeps the
    /// same across attempts: a directory there marked [`RESUMABLE_MARKER`] (an earlier attempt's partial)
    /// is kept for the work to continue; one without the marker is a dead attempt's and starts empty. The
    /// caller must hold the artifact's claim, so no other live writer uses `unique`.
    pub fn resume(root: &Path, kind: &str, unique: &str) -> Result<ArtifactWriter> {
        validate_kind(kind)?;
        if unique.is_empty() || !unique.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            return Err(Error::InvalidArgument(format!("`{unique}` is not a work directory name")));
        }
        let root = std::path::absolute(root).map_err(|e| Error::io(root, e))?;
        let tmp = root.join(TMP_DIR);
        fs::create_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
        let lock_path = tmp.join(format!("{kind}-{unique}{LOCK_SUFFIX}"));
        let dir = tmp.join(format!("{kind}-{unique}"));
        // `recover` in another process may hold (and then delete) a dead attempt's lock file: wait for it.
        for _ in 0..200 {
            let lock = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&lock_path)
                .map_err(|e| Error::io(&lock_path, e))?;
            match lock.try_lock() {
                Ok(()) => {}
                Err(TryLockError::WouldBlock) => {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                    continue;
                }
                Err(TryLockError::Error(e)) => return Err(Error::io(&lock_path, e)),
            }
            if !still_at(&lock, &lock_path) {
                continue;
            }
            if dir.exists() && !dir.join(RESUMABLE_MARKER).exists() {
                remove_any(&dir)?;
            }
            if !dir.exists() {
                fs::create_dir(&dir).map_err(|e| Error::io(&dir, e))?;
            }
            return Ok(ArtifactWriter {
                dir,
                root,
                kind: kind.to_string(),
                unique: unique.to_string(),
                lock_path,
                _lock: lock,
                committed: false,
            });
        }
        Err(Error::Busy { what: format!("the work directory {}", dir.display()) })
    }

    /// The directory to write the artifact's files into.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where [`commit`](Self::commit) will move the directory: `artifacts/<kind>/<unique>`.
    pub fn final_path(&self) -> PathBuf {
        self.root.join(ARTIFACTS_DIR).join(&self.kind).join(&self.unique)
    }

    /// The artifact kind, e.g. `dataset` or `tokens`.
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// Makes the artifact durable and visible: fsyncs every file, then, inside one catalog write
    /// transaction, moves the directory to `artifacts/<kind>/<unique>` and calls `register` with the
    /// transaction and that final path to record the rows that own it. If `register` (or the commit)
    /// fails, the directory is moved back and removed, and the error returned.
    ///
    /// `register` runs while the catalog is locked: use the catalog's `*_in` methods with the
    /// transaction it is given.
    pub fn commit<T>(
        mut self,
        catalog: &Catalog,
        register: impl FnOnce(&Transaction, &Path) -> Result<T>,
    ) -> Result<T> {
        let marker = self.dir.join(RESUMABLE_MARKER);
        match fs::remove_file(&marker) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(&marker, e)),
        }
        sync_tree(&self.dir)?;
        let kind_dir = self.root.join(ARTIFACTS_DIR).join(&self.kind);
        fs::create_dir_all(&kind_dir).map_err(|e| Error::io(&kind_dir, e))?;
        let final_path = self.final_path();
        let mut moved = false;
        let result = catalog.with_write_tx(|tx| {
            fs::rename(&self.dir, &final_path).map_err(|e| Error::io(&final_path, e))?;
            moved = true;
            sync_dir(&kind_dir)?;
            sync_dir(&self.root.join(TMP_DIR))?;
            register(tx, &final_path)
        });
        match result {
            Ok(value) => {
                self.committed = true;
                Ok(value)
            }
            Err(e) => {
                if moved && fs::rename(&final_path, &self.dir).is_err() {
                    let _ = fs::remove_dir_all(&final_path);
                }
                Err(e)
            }
        }
    }
}

impl Drop for ArtifactWriter {
    fn drop(&mut self) {
        if !self.committed && !self.dir.join(RESUMABLE_MARKER).exists() {
            let _ = fs::remove_dir_all(&self.dir);
        }
        // Removed while still locked; the lock itself is released when the file closes.
        let _ = fs::remove_file(&self.lock_path);
    }
}

/// What [`recover`] found and did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RecoveryReport {
    /// Directories under `artifacts/` that no catalog row referenced (a writer died between moving
    /// its directory and committing), now removed.
    pub removed_orphans: Vec<PathBuf>,
    /// Entries under `tmp/` whose writer is dead, now removed.
    pub removed_partials: Vec<PathBuf>,
    /// Entries under `tmp/` whose writer is dead but that are marked [`RESUMABLE_MARKER`]; kept.
    pub resumable: Vec<PathBuf>,
}

/// Cleans up after writers that died: removes unreferenced entries of `artifacts/<kind>/` and the
/// `tmp/` entries whose lock nobody holds, keeping those marked resumable. Runs inside a catalog write
/// transaction, so it never races a commit in another process; writers alive elsewhere are untouched.
/// `root` must be the directory holding `catalog`.
pub fn recover(root: &Path, catalog: &Catalog) -> Result<RecoveryReport> {
    let canonical = |p: &Path| fs::canonicalize(p).map_err(|e| Error::io(p, e));
    if canonical(root)? != canonical(catalog.root())? {
        return Err(Error::InvalidArgument(format!(
            "recover: the catalog {} is not the one of the workspace {}",
            catalog.path().display(),
            root.display()
        )));
    }
    let root = catalog.root();
    catalog.with_write_tx(|tx| {
        let mut report = RecoveryReport::default();
        let referenced: std::collections::HashSet<PathBuf> = catalog
            .referenced_artifacts_in(tx)?
            .iter()
            .filter_map(|p| catalog.relative_to_root(p))
            .filter_map(|rel| artifact_key(&rel))
            .collect();
        let artifacts = root.join(ARTIFACTS_DIR);
        for kind in read_dir_names(&artifacts)? {
            let kind_dir = artifacts.join(&kind);
            if !kind_dir.is_dir() {
                continue;
            }
            for name in read_dir_names(&kind_dir)? {
                let key = Path::new(ARTIFACTS_DIR).join(&kind).join(&name);
                if !referenced.contains(&key) {
                    let path = kind_dir.join(&name);
                    remove_any(&path)?;
                    report.removed_orphans.push(path);
                }
            }
        }

        let tmp = root.join(TMP_DIR);
        let names = read_dir_names(&tmp)?;
        let is_lock = |name: &OsString| name.to_str().is_some_and(|n| n.ends_with(LOCK_SUFFIX));
        for name in names.iter().filter(|n| !is_lock(n)) {
            let entry = tmp.join(name);
            let mut lock_name = name.clone();
            lock_name.push(LOCK_SUFFIX);
            let lock_path = tmp.join(lock_name);
            // `None`: no lock file, so no live writer (writers create it before their directory).
            let Some(lock) = try_lock_dead(&lock_path)? else {
                if lock_path.exists() {
                    continue; // held by a live writer
                }
                clear_partial(&entry, &mut report)?;
                continue;
            };
            clear_partial(&entry, &mut report)?;
            remove_any(&lock_path)?;
            drop(lock);
        }
        // Lock files left without a directory (a writer died after committing or while dropping).
        for name in names.iter().filter(|n| is_lock(n)) {
            let lock_path = tmp.join(name);
            if let Some(lock) = try_lock_dead(&lock_path)? {
                let owner = lock_path.with_extension("");
                if !owner.exists() {
                    remove_any(&lock_path)?;
                }
                drop(lock);
            }
        }
        Ok(report)
    })
}

/// Removes a committed artifact directory (or file); a path already gone is not an error.
pub fn remove_artifact(path: &Path) -> Result<()> {
    remove_any(path)
}

/// Removes a dead writer's `tmp/` entry, or keeps it when it is marked resumable.
fn clear_partial(entry: &Path, report: &mut RecoveryReport) -> Result<()> {
    if entry.join(RESUMABLE_MARKER).exists() {
        report.resumable.push(entry.to_path_buf());
    } else if fs::symlink_metadata(entry).is_ok() {
        remove_any(entry)?;
        report.removed_partials.push(entry.to_path_buf());
    }
    Ok(())
}

/// Opens and try-locks `lock_path`. `Some(file)` (locked) when its writer is dead, `None` when the file
/// does not exist or a live writer holds it.
fn try_lock_dead(lock_path: &Path) -> Result<Option<File>> {
    let file = match OpenOptions::new().read(true).write(true).open(lock_path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(lock_path, e)),
    };
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(TryLockError::WouldBlock) => Ok(None),
        Err(TryLockError::Error(e)) => Err(Error::io(lock_path, e)),
    }
}

/// The `artifacts/<kind>/<name>` prefix of a root-relative path, if it has one.
fn artifact_key(rel: &Path) -> Option<PathBuf> {
    let mut parts = rel.components().filter(|c| !matches!(c, Component::CurDir));
    match (parts.next(), parts.next(), parts.next()) {
        (Some(Component::Normal(a)), Some(Component::Normal(kind)), Some(Component::Normal(name)))
            if a == ARTIFACTS_DIR =>
        {
            Some(Path::new(ARTIFACTS_DIR).join(kind).join(name))
        }
        _ => None,
    }
}

fn read_dir_names(dir: &Path) -> Result<Vec<OsString>> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(dir, e)),
    };
    let mut names = Vec::new();
    for entry in entries {
        names.push(entry.map_err(|e| Error::io(dir, e))?.file_name());
    }
    names.sort();
    Ok(names)
}

fn remove_any(path: &Path) -> Result<()> {
    let result = match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) => Err(e),
    };
    match result {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(Error::io(path, e)),
        _ => Ok(()),
    }
}

fn validate_kind(kind: &str) -> Result<()> {
    if kind.is_empty() || !kind.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
        return Err(Error::InvalidArgument(format!(
            "artifact kind `{kind}` must be non-empty ASCII letters, digits, `_` or `-`"
        )));
    }
    Ok(())
}

/// pid, time and a per-process counter: unique across processes and calls.
fn unique_name() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos();
    format!("{}-{nanos:x}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// Whether the file we hold is still the one at `path` (not unlinked or replaced meanwhile).
fn still_at(file: &File, path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        match (file.metadata(), fs::metadata(path)) {
            (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
            _ => false,
        }
    }
    #[cfg(not(unix))]
    {
        // Elsewhere an open file cannot be deleted, so it is still there.
        let _ = file;
        path.exists()
    }
}

/// fsyncs every file and directory under `dir`, and `dir` itself.
fn sync_tree(dir: &Path) -> Result<()> {
    for name in read_dir_names(dir)? {
        let path = dir.join(name);
        let meta = fs::symlink_metadata(&path).map_err(|e| Error::io(&path, e))?;
        if meta.is_dir() {
            sync_tree(&path)?;
        } else if meta.is_file() {
            File::open(&path).and_then(|f| f.sync_all()).map_err(|e| Error::io(&path, e))?;
        }
    }
    sync_dir(dir)
}

/// fsyncs a directory so that renames and creations in it are durable (a no-op where directories
/// cannot be opened).
fn sync_dir(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    File::open(dir).and_then(|f| f.sync_all()).map_err(|e| Error::io(dir, e))?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{DatasetFilter, NewDataset};

    fn workspace() -> (tempfile::TempDir, Catalog) {
        let dir = tempfile::tempdir().expect("tempdir");
        let catalog = Catalog::open(&dir.path().join("catalog.sqlite")).expect("open");
        (dir, catalog)
    }

    fn entries(dir: &Path) -> Vec<String> {
        read_dir_names(dir).unwrap().into_iter().map(|n| n.to_string_lossy().into_owned()).collect()
    }

    fn register_dataset(
        catalog: &Catalog,
        name: &str,
    ) -> impl FnOnce(&Transaction, &Path) -> Result<crate::catalog::DatasetRow> {
        move |tx, path| {
            let row = catalog.insert_dataset_in(
                tx,
                &NewDataset { name: name.into(), source: "local".into(), ..Default::default() },
            )?;
            catalog.update_dataset_in(
                tx,
                row.id,
                &crate::catalog::DatasetUpdate { artifact_path: Some(path.to_path_buf()), ..Default::default() },
            )
        }
    }

    #[test]
    fn commit_moves_files_and_registers() {
        let (dir, catalog) = workspace();
        let writer = ArtifactWriter::begin(dir.path(), "dataset").unwrap();
        assert!(writer.dir().starts_with(dir.path().join(TMP_DIR)));
        fs::write(writer.dir().join("data.bin"), b"hello").unwrap();
        fs::create_dir(writer.dir().join("sub")).unwrap();
        fs::write(writer.dir().join("sub/more.bin"), b"world").unwrap();
        let row = writer.commit(&catalog, register_dataset(&catalog, "d")).unwrap();
        let path = row.artifact_path.unwrap();
        assert_eq!(path.parent().unwrap(), dir.path().join("artifacts/dataset"));
        assert_eq!(fs::read(path.join("data.bin")).unwrap(), b"hello");
        assert_eq!(fs::read(path.join("sub/more.bin")).unwrap(), b"world");
        assert!(entries(&dir.path().join(TMP_DIR)).is_empty());
        assert_eq!(catalog.dataset("d").unwrap().artifact_path.unwrap(), path);
        // Nothing for recover to do.
        let report = recover(dir.path(), &catalog).unwrap();
        assert!(report.removed_orphans.is_empty() && report.removed_partials.is_empty());
        assert!(path.join("data.bin").exists());
    }

    #[test]
    fn register_error_leaves_nothing() {
        let (dir, catalog) = workspace();
        catalog
            .insert_dataset(&NewDataset { name: "taken".into(), source: "local".into(), ..Default::default() })
            .unwrap();
        let writer = ArtifactWriter::begin(dir.path(), "dataset").unwrap();
        fs::write(writer.dir().join("data.bin"), b"x").unwrap();
        let err = writer.commit(&catalog, register_dataset(&catalog, "taken")).unwrap_err();
        assert!(matches!(err, Error::AlreadyExists { .. }));
        // A row inserted before the failure is rolled back too.
        let err = ArtifactWriter::begin(dir.path(), "dataset")
            .unwrap()
            .commit(&catalog, |tx, path| {
                register_dataset(&catalog, "new")(tx, path)?;
                Err::<(), _>(Error::InvalidArgument("late failure".into()))
            })
            .unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)));
        assert!(entries(&dir.path().join("artifacts/dataset")).is_empty());
        assert!(entries(&dir.path().join(TMP_DIR)).is_empty());
        let names: Vec<_> =
            catalog.list_datasets(&DatasetFilter::default()).unwrap().into_iter().map(|d| d.name).collect();
        assert_eq!(names, ["taken"]);
    }

    #[test]
    fn drop_without_commit_leaves_nothing() {
        let (dir, _catalog) = workspace();
        let writer = ArtifactWriter::begin(dir.path(), "tokens").unwrap();
        fs::write(writer.dir().join("a"), b"x").unwrap();
        assert_eq!(entries(&dir.path().join(TMP_DIR)).len(), 2);
        drop(writer);
        assert!(entries(&dir.path().join(TMP_DIR)).is_empty());
        assert!(!dir.path().join(ARTIFACTS_DIR).exists());
    }

    #[test]
    fn drop_keeps_resumable_and_commit_drops_marker() {
        let (dir, catalog) = workspace();
        let writer = ArtifactWriter::begin(dir.path(), "download").unwrap();
        fs::write(writer.dir().join(RESUMABLE_MARKER), b"").unwrap();
        let kept = writer.dir().to_path_buf();
        drop(writer);
        assert_eq!(entries(&dir.path().join(TMP_DIR)), [kept.file_name().unwrap().to_string_lossy()]);

        let writer = ArtifactWriter::begin(dir.path(), "download").unwrap();
        fs::write(writer.dir().join(RESUMABLE_MARKER), b"").unwrap();
        let row = writer.commit(&catalog, register_dataset(&catalog, "d")).unwrap();
        assert!(!row.artifact_path.unwrap().join(RESUMABLE_MARKER).exists());
    }

    #[test]
    fn bad_kind_is_refused() {
        let (dir, _catalog) = workspace();
        for kind in ["", "a/b", "..", "x y"] {
            assert!(matches!(ArtifactWriter::begin(dir.path(), kind), Err(Error::InvalidArgument(_))), "{kind}");
        }
    }

    #[test]
    fn recover_removes_orphans_and_dead_partials_keeps_live_and_resumable() {
        let (dir, catalog) = workspace();
        let root = dir.path();
        // A committed, referenced artifact.
        let w = ArtifactWriter::begin(root, "dataset").unwrap();
        fs::write(w.dir().join("f"), b"ok").unwrap();
        let kept = w.commit(&catalog, register_dataset(&catalog, "kept")).unwrap().artifact_path.unwrap();
        // An orphan: moved into artifacts/ but never registered.
        let orphan = root.join("artifacts/dataset/123-abc-0");
        fs::create_dir_all(&orphan).unwrap();
        fs::write(orphan.join("f"), b"x").unwrap();
        // A dead partial with an unlocked lock file, one with no lock file, and a stray lock file.
        let dead = root.join("tmp/dataset-1-1-1");
        fs::create_dir_all(&dead).unwrap();
        fs::write(dead.join("f"), b"x").unwrap();
        fs::write(root.join("tmp/dataset-1-1-1.lock"), b"").unwrap();
        let lockless = root.join("tmp/dataset-2-2-2");
        fs::create_dir_all(&lockless).unwrap();
        fs::write(root.join("tmp/dataset-3-3-3.lock"), b"").unwrap();
        // A dead resumable partial.
        let resumable = root.join("tmp/download-4-4-4");
        fs::create_dir_all(&resumable).unwrap();
        fs::write(resumable.join(RESUMABLE_MARKER), b"").unwrap();
        fs::write(root.join("tmp/download-4-4-4.lock"), b"").unwrap();
        // A live writer (its lock is held through another open file description).
        let live = ArtifactWriter::begin(root, "tokens").unwrap();
        fs::write(live.dir().join("f"), b"in progress").unwrap();

        let report = recover(root, &catalog).unwrap();
        assert_eq!(report.removed_orphans, std::slice::from_ref(&orphan));
        let mut partials = report.removed_partials.clone();
        partials.sort();
        assert_eq!(partials, [dead.clone(), lockless.clone()]);
        assert_eq!(report.resumable, std::slice::from_ref(&resumable));

        assert!(!orphan.exists() && !dead.exists() && !lockless.exists());
        assert!(kept.join("f").exists());
        assert!(resumable.join(RESUMABLE_MARKER).exists());
        assert!(live.dir().join("f").exists());
        let mut left = entries(&root.join(TMP_DIR));
        left.sort();
        let live_name = live.dir().file_name().unwrap().to_string_lossy().into_owned();
        let mut expected = vec!["download-4-4-4".to_string(), live_name.clone(), format!("{live_name}.lock")];
        expected.sort();
        assert_eq!(left, expected);

        // The live writer still commits fine afterwards.
        let row = live.commit(&catalog, register_dataset(&catalog, "live")).unwrap();
        assert_eq!(fs::read(row.artifact_path.unwrap().join("f")).unwrap(), b"in progress");
    }

    #[test]
    fn recover_refuses_another_workspace() {
        let (_dir, catalog) = workspace();
        let other = tempfile::tempdir().unwrap();
        assert!(matches!(recover(other.path(), &catalog), Err(Error::InvalidArgument(_))));
    }

    #[test]
    fn remove_artifact_is_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("artifacts/x/1");
        fs::create_dir_all(&a).unwrap();
        fs::write(a.join("f"), b"x").unwrap();
        remove_artifact(&a).unwrap();
        assert!(!a.exists());
        remove_artifact(&a).unwrap();
    }

    #[test]
    fn artifact_keys() {
        assert_eq!(artifact_key(Path::new("artifacts/k/n/sub")), Some(PathBuf::from("artifacts/k/n")));
        assert_eq!(artifact_key(Path::new("artifacts/k")), None);
        assert_eq!(artifact_key(Path::new("other/k/n")), None);
    }
}
