//! The artifact lifecycle as a second process sees it. The `saekit` command imports (or adds) a big file;
//! this test process, like a notebook kernel beside it, watches the row (visible at once with its working
//! status, progress growing in the catalog), is refused the same name as busy, then kills the command with
//! SIGKILL and sees the row read as interrupted, its partial cleared by the next `Workspace::open`, and
//! the name taken over by a new attempt. Also: a job shares the workspace it was started from and does
//! not re-run recovery (only `Workspace::open` does).

use std::fs;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use saekit::catalog::{DatasetFilter, DatasetStatus, StoredProgress, Workspace};
use saekit::{Error, Source};
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_saekit");

/// Rows of the big file: 229 MB of JSONL (`{"text":"document N says hello to the world",…}`, ~38 bytes
/// of text, ~76 bytes a line). Measured on the 2-core test machine (dev profile, opt-level 1): writing it
/// takes ~0.4 s, a whole `saekit import` of it 3.7 s and a whole `saekit add` 2.5 s (each fingerprints
/// the file first). The checks made before the kill take ~1.5 s (two progress writes 500 ms apart in the
/// main phase, a 500 ms busy wait): the kill lands at ~30% of the import's bytes, ~45% of the add's.
const ROWS: usize = 3_000_000;

/// The two tests that run the command on the big file take turns: on two cores, side by side they would
/// slow each other down unpredictably.
static HEAVY: Mutex<()> = Mutex::new(());

fn heavy() -> MutexGuard<'static, ()> {
    HEAVY.lock().unwrap_or_else(PoisonError::into_inner)
}

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

fn text_of(i: usize) -> String {
    format!("document {i} says hello to the world")
}

/// Writes rows `0..n` as JSONL objects `{"text", "id", "lang"}` to `path`.
fn write_jsonl(path: &Path, n: usize) -> PathBuf {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut w = BufWriter::with_capacity(1 << 20, fs::File::create(path).unwrap());
    for i in 0..n {
        writeln!(w, r#"{{"text":"{}","id":{i},"lang":"{}"}}"#, text_of(i), if i % 3 == 0 { "de" } else { "en" })
            .unwrap();
    }
    w.flush().unwrap();
    path.to_path_buf()
}

fn file_len(path: &Path) -> u64 {
    fs::metadata(path).unwrap().len()
}

/// A directory's entry names, sorted; none if it does not exist.
fn entries(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = match fs::read_dir(dir) {
        Ok(rd) => rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect(),
        Err(_) => Vec::new(),
    };
    out.sort();
    out
}

/// Every `artifacts/<kind>/<name>` directory of a workspace.
fn artifact_dirs(root: &Path) -> Vec<String> {
    entries(&root.join("artifacts"))
        .into_iter()
        .flat_map(|kind| entries(&root.join("artifacts").join(&kind)).into_iter().map(move |n| format!("{kind}/{n}")))
        .collect()
}

fn docs(source: &Source) -> u64 {
    source.documents().unwrap().map(|b| b.unwrap().num_rows() as u64).sum()
}

/// The `saekit` command, killed (SIGKILL) and reaped if the test ends first; its stderr goes to a file,
/// shown when it exits early.
struct ChildGuard {
    child: Child,
    stderr: PathBuf,
}

impl ChildGuard {
    fn spawn(ws: &Path, args: &[&str], stderr: PathBuf) -> ChildGuard {
        let child = Command::new(BIN)
            .arg("--workspace")
            .arg(ws)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&stderr).unwrap())
            .spawn()
            .expect("spawn saekit");
        ChildGuard { child, stderr }
    }

    /// Panics if the command has already exited: every check here needs it mid-work.
    fn assert_running(&mut self, during: &str) {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!(
                "saekit exited ({status}) before {during}; if it succeeded, the file is too small for this \
                 machine (raise ROWS). stderr:\n{}",
                fs::read_to_string(&self.stderr).unwrap_or_default()
            );
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `f` every 10 ms until it gives a value, for at most `limit`.
fn wait_for<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = f() {
            return value;
        }
        assert!(Instant::now() < deadline, "gave up after {limit:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The status `artifacts` stores for `id` (not the one read through the lifecycle).
#[allow(clippy::result_large_err)] // saekit::Error is large; with_conn's closure returns it
fn stored_status(ws: &Workspace, id: i64) -> String {
    ws.catalog()
        .with_conn(|c| Ok(c.query_row("SELECT status FROM artifacts WHERE id = ?1", [id], |r| r.get(0)).unwrap()))
        .unwrap()
}

/// What the command does and how it shows.
struct Mode {
    command: &'static str,
    working: DatasetStatus,
    /// The phase that reads the whole file after fingerprinting it.
    main_phase: &'static str,
}

const IMPORT: Mode = Mode { command: "import", working: DatasetStatus::Importing, main_phase: "importing" };
const ADD: Mode = Mode { command: "add", working: DatasetStatus::Adding, main_phase: "reading" };

/// Runs `saekit <mode> big FILE`, checks what this process sees while it works, kills it with SIGKILL
/// and checks what is left. Returns the workspace folder (not reopened since), the dead command's pid,
/// the row's id and a small file for the take-over.
fn watch_then_kill(mode: &Mode, dir: &Path) -> (PathBuf, u32, i64, PathBuf) {
    let ws_dir = dir.join("ws");
    let started = Instant::now();
    let big = write_jsonl(&dir.join("big.jsonl"), ROWS);
    let size = file_len(&big);
    let generated = started.elapsed();
    let small = write_jsonl(&dir.join("small.jsonl"), 10);
    // Created here first, so the command does not create the catalog while this process reads it.
    let ws = Workspace::open(&ws_dir).unwrap();

    let mut child = ChildGuard::spawn(&ws_dir, &[mode.command, "big", big.to_str().unwrap()], dir.join("stderr.txt"));
    let spawned = Instant::now();
    let pid = child.child.id();

    // The row is visible as soon as the command has claimed the name, with the working status.
    let row = wait_for("the row to appear", Duration::from_secs(10), || {
        child.assert_running("its row appeared");
        ws.dataset("big").ok()
    });
    let visible_after = spawned.elapsed();
    let id = row.id();
    assert_eq!(row.status(), mode.working);
    assert_eq!(row.row().params["mode"], json!(mode.command));
    assert_eq!(row.row().source, "local", "while it has no record, the source comes from its parameters");
    assert_eq!((row.row().artifact_path.as_ref(), row.row().num_rows), (None, None));
    assert!(row.row().paths.is_empty(), "no record yet");

    // Progress, written by the command about twice a second, in bytes of the file.
    let first = wait_for("progress in the catalog", Duration::from_secs(5), || {
        child.assert_running("it wrote progress");
        ws.dataset("big").unwrap().row().progress.clone()
    });
    assert_eq!(first.unit, "bytes", "{first:?}");
    assert_eq!(first.total, Some(size), "{first:?}");
    assert!(["fingerprinting", mode.main_phase].contains(&first.phase.as_str()), "{first:?}");
    assert!(first.done > 0 && first.done <= size, "{first:?}");
    // Two successive writes of the main phase: the later one has read more.
    let progress_now = || ws.dataset("big").unwrap().row().progress.clone();
    let p1: StoredProgress = wait_for("the main phase's progress", Duration::from_secs(5), || {
        child.assert_running("its main phase began");
        progress_now().filter(|p| p.phase == mode.main_phase && p.done > 0)
    });
    let p2: StoredProgress = wait_for("the next progress write", Duration::from_secs(3), || {
        child.assert_running("it wrote progress again");
        progress_now().filter(|p| p.at != p1.at)
    });
    assert_eq!(p2.phase, mode.main_phase, "{p1:?} then {p2:?}");
    assert!(p2.done > p1.done && p2.done <= size, "progress did not grow: {p1:?} then {p2:?}");
    assert!(p2.elapsed_secs > p1.elapsed_secs && p2.at > p1.at, "{p1:?} then {p2:?}");
    assert_eq!(p2.total, Some(size));

    // The same name from this process is refused while the other still works (not after it finished),
    // and the running attempt's row is untouched.
    let err = ws.add_dataset("big", &Source::open(&small).unwrap()).expect_err("the name is claimed");
    assert!(matches!(err, Error::Busy { .. }), "{err:?}");
    child.assert_running("the refused add");
    let still = ws.dataset("big").unwrap();
    assert_eq!((still.id(), still.status()), (id, mode.working));
    assert_eq!(still.row().params["mode"], json!(mode.command), "the refused add did not take the row");

    // An import works in its own directory under tmp/, which another process's recovery leaves alone.
    let partial = format!("datasets-{pid}-");
    if mode.working == DatasetStatus::Importing {
        let tmp = entries(&ws_dir.join("tmp"));
        assert_eq!(tmp.len(), 2, "{tmp:?}");
        assert!(tmp.iter().all(|e| e.starts_with(&partial)), "{tmp:?}");
        drop(Workspace::open(&ws_dir).unwrap()); // recovers
        assert_eq!(entries(&ws_dir.join("tmp")), tmp, "recovery touched a live writer's work");
        assert_eq!(ws.dataset("big").unwrap().status(), DatasetStatus::Importing);
    } else {
        assert!(entries(&ws_dir.join("tmp")).is_empty(), "an add by reference writes no files");
    }

    child.assert_running("the kill");
    let killed_after = spawned.elapsed();
    child.child.kill().unwrap(); // SIGKILL
    let status = child.child.wait().unwrap();
    assert_eq!(std::os::unix::process::ExitStatusExt::signal(&status), Some(9), "{status}");
    drop(child);

    // Nobody holds the claim now: the row reads as interrupted, though its working status is what is stored.
    let dead = ws.dataset("big").unwrap();
    assert_eq!((dead.id(), dead.status()), (id, DatasetStatus::Interrupted));
    assert_eq!(stored_status(&ws, id), mode.working.as_str(), "interrupted is decided when read, not written");
    assert_eq!((dead.row().artifact_path.as_ref(), dead.row().num_rows), (None, None));
    let listed: Vec<(String, DatasetStatus)> =
        ws.datasets().unwrap().iter().map(|d| (d.name().to_string(), d.status())).collect();
    assert_eq!(listed, [("big".to_string(), DatasetStatus::Interrupted)]);
    let find = |status| ws.find(&DatasetFilter { status: Some(status), ..Default::default() }).unwrap().len();
    assert_eq!((find(DatasetStatus::Interrupted), find(mode.working)), (1, 0));
    assert!(artifact_dirs(&ws_dir).is_empty(), "nothing was committed: {:?}", artifact_dirs(&ws_dir));
    if mode.working == DatasetStatus::Importing {
        // The dead writer's partial stays until a workspace is opened (this handle already was).
        assert!(entries(&ws_dir.join("tmp")).iter().any(|e| e.starts_with(&partial)));
    }
    eprintln!(
        "{}: wrote {:.0} MB in {:.2} s; row visible after {} ms; killed after {} ms at {} of {} \
         ({:.0}%)",
        mode.command,
        size as f64 / 1e6,
        generated.as_secs_f64(),
        visible_after.as_millis(),
        killed_after.as_millis(),
        p2.phase,
        size,
        100.0 * p2.done as f64 / size as f64,
    );
    (ws_dir, pid, id, small)
}

#[test]
fn an_import_killed_mid_work_reads_interrupted_is_cleared_and_taken_over() {
    let _turn = heavy();
    let started = Instant::now();
    let dir = tmp();
    let (ws_dir, pid, id, small) = watch_then_kill(&IMPORT, dir.path());

    let ws = Workspace::open(&ws_dir).unwrap(); // recovers
    assert!(entries(&ws_dir.join("tmp")).is_empty(), "the dead import's partial is cleared");
    assert_eq!(ws.dataset("big").unwrap().status(), DatasetStatus::Interrupted);

    // A new attempt from this process takes the row over (a small file: what matters is the row).
    let d = ws.import_dataset("big", &Source::open(&small).unwrap()).unwrap();
    assert_eq!((d.id(), d.status()), (id, DatasetStatus::Ready));
    assert_eq!((d.row().num_rows, d.row().progress.as_ref(), d.row().error.as_deref()), (Some(10), None, None));
    let dir_of = d.row().artifact_path.clone().expect("an import owns a directory");
    assert!(dir_of.starts_with(ws.root().join("artifacts/datasets")), "{}", dir_of.display());
    let dir_name = dir_of.file_name().unwrap().to_string_lossy().into_owned();
    assert!(dir_name.starts_with(&format!("{}-", std::process::id())), "not this attempt's directory: {dir_name}");
    assert!(!dir_name.starts_with(&format!("{pid}-")), "the dead attempt's directory was committed: {dir_name}");
    assert_eq!(docs(&d.source().unwrap()), 10);
    assert_eq!(stored_status(&ws, id), "ready");
    assert_eq!(artifact_dirs(ws.root()).len(), 1);
    assert!(entries(&ws_dir.join("tmp")).is_empty());
    assert_eq!(ws.datasets().unwrap().len(), 1);
    eprintln!("import kill test took {:.2} s", started.elapsed().as_secs_f64());
}

#[test]
fn an_add_killed_mid_work_reads_interrupted_and_is_taken_over() {
    let _turn = heavy();
    let started = Instant::now();
    let dir = tmp();
    let (ws_dir, _pid, id, small) = watch_then_kill(&ADD, dir.path());

    let ws = Workspace::open(&ws_dir).unwrap();
    let d = ws.add_dataset("big", &Source::open(&small).unwrap()).unwrap();
    assert_eq!((d.id(), d.status()), (id, DatasetStatus::Ready));
    assert_eq!((d.row().num_rows, d.row().progress.as_ref(), d.row().error.as_deref()), (Some(10), None, None));
    assert_eq!(d.row().paths, [small.to_string_lossy().into_owned()]);
    assert_eq!(d.row().artifact_path, None);
    assert_eq!(d.row().num_bytes, Some(file_len(&small)));
    assert!(d.row().fingerprint.is_some());
    eprintln!("add kill test took {:.2} s", started.elapsed().as_secs_f64());
}

/// Recovery is `Workspace::open`'s: a job (or a plain call) on an open workspace leaves a dead
/// writer's partial and an unreferenced artifact directory alone, even while it writes its own
/// artifact; the next open clears both.
#[test]
fn a_job_does_not_rerun_recovery() {
    let dir = tmp();
    let ws_dir = dir.path().join("ws");
    let ws = Workspace::open(&ws_dir).unwrap();
    let dead = ws.root().join("tmp/tokens-1-1-1");
    fs::create_dir_all(&dead).unwrap();
    fs::write(dead.join("tokens.bin"), b"left by a writer that died").unwrap();
    let orphan = ws.root().join("artifacts/tokens/1-1-2");
    fs::create_dir_all(&orphan).unwrap();
    fs::write(orphan.join("tokens.bin"), b"no row owns this").unwrap();
    let file = write_jsonl(&dir.path().join("f.jsonl"), 50);

    let added = ws.add_dataset_job("added", &Source::open(&file).unwrap()).wait().unwrap();
    assert_eq!((added.status(), added.row().num_rows), (DatasetStatus::Ready, Some(50)));
    assert!(dead.join("tokens.bin").is_file(), "an add job re-ran recovery");
    assert!(orphan.join("tokens.bin").is_file(), "an add job re-ran recovery");

    let imported = ws.import_dataset_job("imported", &Source::open(&file).unwrap()).wait().unwrap();
    assert_eq!((imported.status(), imported.row().num_rows), (DatasetStatus::Ready, Some(50)));
    assert!(dead.join("tokens.bin").is_file(), "an import job re-ran recovery");
    assert!(orphan.join("tokens.bin").is_file(), "an import job re-ran recovery");
    ws.add_dataset("plain", &Source::open(&file).unwrap()).unwrap();
    assert!(dead.is_dir() && orphan.is_dir(), "a plain add re-ran recovery");
    assert_eq!(entries(&ws.root().join("tmp")), ["tokens-1-1-1"], "the import left nothing of its own in tmp/");

    let reopened = Workspace::open(&ws_dir).unwrap();
    assert!(!dead.exists(), "Workspace::open clears the dead partial");
    assert!(!orphan.exists(), "Workspace::open clears the unreferenced directory");
    assert!(entries(&ws.root().join("tmp")).is_empty());
    let imported_dir = imported.row().artifact_path.clone().unwrap();
    assert!(imported_dir.join("part-00000.parquet").is_file(), "a referenced artifact is kept");
    assert_eq!(reopened.datasets().unwrap().names(), ["added", "imported", "plain"]);
}

/// A job started from a clone runs on the same workspace (one catalog, shared), outlives the clone, and
/// while it runs this process sees its row as working (its claim is held here), never interrupted.
#[test]
fn a_job_from_a_cloned_workspace_shares_it() {
    let dir = tmp();
    let ws = Workspace::open(dir.path().join("ws")).unwrap();
    // ~0.2 s of work here, so the row is seen while the job runs.
    let file = write_jsonl(&dir.path().join("f.jsonl"), 200_000);
    let clone = ws.clone();
    assert!(std::ptr::eq(ws.catalog(), clone.catalog()), "a clone has the same catalog");
    assert_eq!(clone.root(), ws.root());

    let job = clone.add_dataset_job("shared", &Source::open(&file).unwrap());
    drop(clone);
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !job.status().is_finished() {
        assert!(Instant::now() < deadline, "the job did not finish in 10 s");
        if let Ok(d) = ws.dataset("shared")
            && seen.last() != Some(&d.status())
        {
            seen.push(d.status());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let made = job.wait().unwrap();
    assert!(std::ptr::eq(made.workspace().catalog(), ws.catalog()), "the job used the workspace it was given");
    assert_eq!((made.status(), made.row().num_rows), (DatasetStatus::Ready, Some(200_000)));
    assert!(seen.contains(&DatasetStatus::Adding), "the row was never seen while the job ran: {seen:?}");
    assert!(
        seen.iter().all(|s| matches!(s, DatasetStatus::Adding | DatasetStatus::Ready)),
        "a running job's row read {seen:?}"
    );
    let row = ws.dataset("shared").unwrap();
    assert_eq!((row.id(), row.status(), row.row().progress.as_ref()), (made.id(), DatasetStatus::Ready, None));
}
