//! The one way an artifact is made. A stage describes what it makes (an [`ArtifactPlan`]: kind, name,
//! parameters, parents, whether it writes files) and writes only its work (`|dir, ctx| -> Result<Record>`);
//! [`Workspace::produce`] does the rest, the same for every stage:
//!
//! 1. **claim** the name: a lock file under `locks/` held for the whole attempt, so a second process (or
//!    kernel) making the same artifact is told at once ([`Error::Busy`]), not after its work;
//! 2. a **row** visible at once in `artifacts` with the stage's working status (`importing`,
//!    `downloading`, `tokenizing`, …) and its lineage, taking over a failed or interrupted earlier row of
//!    that name; while the work runs, its **progress** is written there about twice a second on a
//!    connection of its own, so another process can read it;
//! 3. the work, in a private directory under `tmp/` ([`ArtifactWriter`]) when it writes files;
//! 4. **commit**: the directory's rename and the final typed record, in one transaction; or on failure the
//!    row says `failed` with the error, and on cancel a row this attempt created is removed. Only what
//!    is meant to resume (a marked partial, the Hub cache) is left.
//!
//! A row whose owner died reads as `interrupted`: its working status is stored, but nobody holds its
//! claim ([`claim_is_held`], decided when it is read). The plain call, its job form and its
//! with-a-context form all come from here: a stage's [`Request`] runs through [`Workspace::make`],
//! [`Workspace::make_job`] or [`Workspace::make_with`].

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use rusqlite::Transaction;
use serde_json::Value;

use super::Workspace;
use super::artifact::ArtifactWriter;
use super::artifacts::{ArtifactStatus, ArtifactUpdate, NewArtifact, StoredProgress, write_progress};
use super::db::{Catalog, now_rfc3339, open_connection};
use super::sessions::Touch;
use crate::error::{Error, Result};
use crate::jobs::{Job, JobContext};

/// How often a running artifact's progress is written to the catalog.
const PROGRESS_EVERY: Duration = Duration::from_millis(500);

/// A stage's typed record, written in its own table under the artifact's id when the artifact commits.
pub trait StageRecord {
    /// Writes (or replaces) the record of artifact `id` inside the commit's transaction.
    fn write_in(&self, catalog: &Catalog, tx: &Transaction, id: i64) -> Result<()>;
}

/// What to do when a ready artifact of the plan's name exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IfReady {
    /// [`Error::AlreadyExists`].
    Refuse,
    /// Return it without doing the work (the name says everything that determines it).
    Reuse,
}

/// What a stage is about to make.
#[derive(Debug, Clone)]
pub struct ArtifactPlan {
    /// The artifact kind, e.g. `dataset`.
    pub kind: &'static str,
    /// Unique among artifacts of its kind.
    pub name: String,
    /// The status while the work runs.
    pub working: ArtifactStatus,
    /// What was asked for: the stage's typed parameters, serialized.
    pub params: Value,
    /// The artifacts it is made from.
    pub parents: Vec<i64>,
    /// `Some(folder)`: the work writes files, into a new directory that becomes `artifacts/<folder>/…`.
    pub dir: Option<&'static str>,
    pub if_ready: IfReady,
    /// The work can continue an earlier attempt: its directory is the same for every attempt at this
    /// name (`tmp/<folder>-r<hash of kind and name>`), and when the work has marked it
    /// [`RESUMABLE_MARKER`](super::artifact::RESUMABLE_MARKER) a failed, cancelled or killed attempt
    /// leaves it (and the row, as failed) for the next one to find.
    pub resumable: bool,
}

/// Where the work writes its files: `path()` now, at `final_path()` once committed.
#[derive(Debug)]
pub struct WorkDir {
    path: PathBuf,
    final_path: PathBuf,
}

impl WorkDir {
    /// The directory to write into (under `tmp/`).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where the directory will be once committed (under `artifacts/`), for records that name their files.
    pub fn final_path(&self) -> &Path {
        &self.final_path
    }

    /// The paths, relative to the workspace `root` (so the workspace can move; see `Dataset::source`),
    /// that `files` written in this directory will have once committed.
    pub fn committed_paths(&self, root: &Path, files: &[PathBuf]) -> Vec<String> {
        let relative = self.final_path.strip_prefix(root).unwrap_or(&self.final_path);
        files.iter().map(|f| relative.join(f.file_name().unwrap_or_default()).to_string_lossy().into_owned()).collect()
    }
}

/// What [`Workspace::produce`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Produced {
    /// The work ran and committed artifact `id`.
    Made(i64),
    /// A ready artifact `id` of that name was there already ([`IfReady::Reuse`]).
    Existing(i64),
}

impl Produced {
    pub fn id(self) -> i64 {
        match self {
            Produced::Made(id) | Produced::Existing(id) => id,
        }
    }
}

/// A request for one artifact: plain data (so it can be kept in a notebook variable and sent to a job's
/// thread) that a stage knows how to run through [`Workspace::produce`].
pub trait Request: Clone + Send + 'static {
    /// What the caller gets back (a `Dataset`, a `Tokenization`).
    type Output: Send + 'static;
    /// The job's name, e.g. `tokenize austen`.
    fn label(&self) -> String;
    /// Validates, plans and does the work through the lifecycle, reporting to `ctx`.
    fn run(&self, ws: &Workspace, ctx: &JobContext) -> Result<Self::Output>;
}

impl Workspace {
    /// Makes what `request` asks for, here and now.
    pub fn make<R: Request>(&self, request: R) -> Result<R::Output> {
        request.run(self, &JobContext::detached(&request.label()))
    }

    /// Makes what `request` asks for as a background job: returns at once, with progress and
    /// cancellation; the job shares this workspace (its catalog connection and all).
    pub fn make_job<R: Request>(&self, request: R) -> Job<R::Output> {
        let ws = self.clone();
        Job::spawn(&request.label(), move |ctx| request.run(&ws, ctx))
    }

    /// Makes what `request` asks for, reporting progress to (and stopping when cancelled through) `ctx`.
    pub fn make_with<R: Request>(&self, request: R, ctx: &JobContext) -> Result<R::Output> {
        request.run(self, ctx)
    }

    /// Makes one artifact through the lifecycle (see the module documentation): claims the name, shows
    /// the row with its status and progress, runs `work` (in a fresh directory when the plan asks for
    /// one), and commits the record `work` returns, or records the failure.
    pub fn produce<R: StageRecord>(
        &self,
        plan: ArtifactPlan,
        ctx: &JobContext,
        work: impl FnOnce(Option<&WorkDir>, &JobContext) -> Result<R>,
    ) -> Result<Produced> {
        let catalog = self.catalog();
        let _claim = NameLock::acquire(self.root(), plan.kind, &plan.name)?;
        let started = catalog.with_write_tx(|tx| {
            let Some(id) = catalog.artifact_id_in(tx, plan.kind, &plan.name)? else {
                let new = NewArtifact {
                    kind: plan.kind,
                    name: plan.name.clone(),
                    status: plan.working,
                    params: plan.params.clone(),
                    path: None,
                    parents: plan.parents.clone(),
                };
                return Ok(Started::Created(catalog.insert_artifact_in(tx, &new)?.id));
            };
            // We hold the claim, so a working status here is a dead attempt's: take it over, like a failed one.
            let row = catalog.artifact_in(tx, id)?;
            if row.status == ArtifactStatus::Ready {
                return match plan.if_ready {
                    IfReady::Reuse => Ok(Started::Existing(id)),
                    IfReady::Refuse => Err(catalog.already_exists(plan.kind, plan.name.clone())),
                };
            }
            let update = ArtifactUpdate {
                status: Some(plan.working),
                params: Some(plan.params.clone()),
                progress: Some(None),
                error: Some(None),
                ..Default::default()
            };
            catalog.update_artifact_in(tx, id, &update)?;
            // Nothing of the dead attempt is kept: its directory (if any) becomes an orphan that the next
            // `recover` removes, and this saekit is the one making it now.
            tx.execute(
                "UPDATE artifacts SET path = NULL, saekit_version = ?1 WHERE id = ?2",
                rusqlite::params![crate::VERSION, id],
            )
            .map_err(|source| Error::Catalog { path: catalog.path().to_path_buf(), source })?;
            catalog.set_parents_in(tx, id, &plan.parents)?;
            Ok(Started::TookOver(id))
        })?;
        let (id, created) = match started {
            Started::Existing(id) => {
                self.note(id, Touch::Reused);
                return Ok(Produced::Existing(id));
            }
            Started::Created(id) => (id, true),
            Started::TookOver(id) => (id, false),
        };

        let resumable = plan.resumable.then(|| resumable_unique(plan.kind, &plan.name));
        let result = (|| -> Result<()> {
            let writer = match (plan.dir, &resumable) {
                (Some(folder), Some(unique)) => Some(ArtifactWriter::resume(self.root(), folder, unique)?),
                (Some(folder), None) => Some(ArtifactWriter::begin(self.root(), folder)?),
                (None, _) => None,
            };
            let dir = writer.as_ref().map(|w| WorkDir { path: w.dir().to_path_buf(), final_path: w.final_path() });
            let record = {
                let _progress = ProgressWriter::start(catalog.path(), id, ctx);
                work(dir.as_ref(), ctx)?
            };
            let ready = |tx: &Transaction, path: Option<&Path>| -> Result<()> {
                record.write_in(catalog, tx, id)?;
                let update = ArtifactUpdate {
                    status: Some(ArtifactStatus::Ready),
                    path: path.map(Path::to_path_buf),
                    progress: Some(None),
                    error: Some(None),
                    ..Default::default()
                };
                catalog.update_artifact_in(tx, id, &update).map(|_| ())
            };
            match writer {
                Some(writer) => writer.commit(catalog, |tx, path| ready(tx, Some(path))),
                None => catalog.with_write_tx(|tx| ready(tx, None)),
            }
        })();
        match result {
            Ok(()) => {
                for &parent in &plan.parents {
                    self.note(parent, Touch::Read);
                }
                self.note(id, Touch::Made);
                Ok(Produced::Made(id))
            }
            Err(e) => {
                // A resumable attempt's row stays (failed, or "cancelled") and names the partial it left, so
                // deleting the row removes that too.
                let partial = match (plan.dir, plan.resumable) {
                    (Some(folder), true) => std::path::absolute(self.root())
                        .ok()
                        .map(|root| resumable_dir(&root, folder, plan.kind, &plan.name))
                        .filter(|dir| dir.join(super::RESUMABLE_MARKER).exists()),
                    _ => None,
                };
                self.abandon(id, created && !plan.resumable, &e, partial);
                Err(e)
            }
        }
    }

    /// After a failed attempt the row says `failed` with the error, so the catalog tells what went
    /// wrong; after a cancelled one, a row this attempt created is removed (one it took over stays failed).
    fn abandon(&self, id: i64, created: bool, error: &Error, partial: Option<PathBuf>) {
        let catalog = self.catalog();
        let _ = catalog.with_write_tx(|tx| {
            if matches!(error, Error::Cancelled) && created {
                return catalog.delete_artifact_in(tx, id, false).map(|_| ());
            }
            let update = ArtifactUpdate {
                status: Some(ArtifactStatus::Failed),
                error: Some(Some(error.to_string())),
                path: partial,
                ..Default::default()
            };
            catalog.update_artifact_in(tx, id, &update).map(|_| ())
        });
    }
}

enum Started {
    Created(i64),
    TookOver(i64),
    Existing(i64),
}

/// Writes a running artifact's progress to the catalog every [`PROGRESS_EVERY`], from a thread with a
/// connection of its own (short busy timeout: progress is skipped, never waited for); stops when dropped.
struct ProgressWriter {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ProgressWriter {
    fn start(catalog_path: &Path, id: i64, ctx: &JobContext) -> ProgressWriter {
        let (stop, stopped) = mpsc::channel::<()>();
        let (path, ctx) = (catalog_path.to_path_buf(), ctx.clone());
        let thread = std::thread::Builder::new().name(format!("saekit progress {id}")).spawn(move || {
            let Ok(conn) = open_connection(&path, Duration::from_millis(100)) else { return };
            let mut last: Option<(String, u64, String)> = None;
            while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(PROGRESS_EVERY) {
                let p = ctx.progress();
                let key = (p.phase.clone(), p.done, p.detail.clone());
                if last.as_ref() == Some(&key) {
                    continue;
                }
                let stored = StoredProgress {
                    phase: p.phase,
                    unit: p.unit,
                    done: p.done,
                    total: p.total,
                    detail: p.detail,
                    elapsed_secs: p.elapsed.as_secs_f64(),
                    at: now_rfc3339(),
                };
                if write_progress(&conn, id, &stored).is_ok() {
                    last = Some(key);
                }
            }
        });
        ProgressWriter { stop: Some(stop), thread: thread.ok() }
    }
}

impl Drop for ProgressWriter {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The claim lock file of artifact (`kind`, `name`).
fn claim_path(root: &Path, kind: &str, name: &str) -> PathBuf {
    // Names may hold `/`: keep the readable characters and add a hash against collisions.
    let readable: String = name.chars().map(|c| if c.is_alphanumeric() || c == '-' { c } else { '_' }).collect();
    let hash = fnv1a(name.bytes());
    root.join("locks").join(format!("{kind}-{}-{hash:016x}.lock", readable.chars().take(80).collect::<String>()))
}

fn fnv1a(bytes: impl Iterator<Item = u8>) -> u64 {
    bytes.fold(0xcbf29ce484222325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100000001b3))
}

/// A stable hash of artifact (`kind`, `name`): the name of a resumable attempt's directory.
fn name_hash(kind: &str, name: &str) -> u64 {
    fnv1a(kind.bytes().chain([0]).chain(name.bytes()))
}

fn resumable_unique(kind: &str, name: &str) -> String {
    format!("r{:016x}", name_hash(kind, name))
}

/// Where a resumable attempt at artifact (`kind`, `name`) works (its plan's `dir` being `folder`), so
/// another process can look in while it runs.
pub(crate) fn resumable_dir(root: &Path, folder: &str, kind: &str, name: &str) -> PathBuf {
    root.join(super::TMP_DIR).join(format!("{folder}-{}", resumable_unique(kind, name)))
}

/// Whether a live process (this one included) holds the claim on artifact (`kind`, `name`).
pub(crate) fn claim_is_held(root: &Path, kind: &str, name: &str) -> bool {
    let path = claim_path(root, kind, name);
    let file = match OpenOptions::new().read(true).write(true).open(&path) {
        Ok(file) => file,
        Err(_) => return false,
    };
    match file.try_lock() {
        Ok(()) => {
            let _ = file.unlock();
            false
        }
        Err(TryLockError::WouldBlock) => true,
        // Unknown: say held, so a live attempt is never shown as interrupted.
        Err(TryLockError::Error(_)) => true,
    }
}

/// An exclusive claim on an artifact name, held by one process while it makes the artifact: a locked
/// file under `locks/`, released when dropped or when the process dies.
pub(crate) struct NameLock {
    file: File,
}

impl NameLock {
    pub(crate) fn acquire(root: &Path, kind: &str, name: &str) -> Result<NameLock> {
        let path = claim_path(root, kind, name);
        let dir = root.join("locks");
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let file =
            OpenOptions::new().create(true).truncate(false).write(true).open(&path).map_err(|e| Error::io(&path, e))?;
        // A child process forked by another thread can briefly share our lock's open file (until it
        // execs), so a lock just released may look held for a moment: retry a little before saying busy.
        let deadline = std::time::Instant::now() + Duration::from_millis(500);
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(NameLock { file }),
                Err(TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(TryLockError::WouldBlock) => return Err(Error::Busy { what: format!("{kind} `{name}`") }),
                Err(TryLockError::Error(e)) => return Err(Error::io(&path, e)),
            }
        }
    }
}

impl Drop for NameLock {
    fn drop(&mut self) {
        // Unlock explicitly: closing our descriptor would not release a lock that a forked child still shares.
        let _ = self.file.unlock();
    }
}
