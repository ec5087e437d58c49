//! The catalog and artifact protocol across processes: two writers at once, and writers killed with
//! SIGKILL mid-write. The test binary re-runs itself as the child (the ignored test `child_writer`).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use saekit::catalog::{ArtifactWriter, Catalog, DatasetFilter, DatasetUpdate, NewDataset, recover};

const ROLE: &str = "SAEKIT_CHILD_ROLE";
const DIR: &str = "SAEKIT_CHILD_DIR";
const ID: &str = "SAEKIT_CHILD_ID";
const MAGIC: &[u8; 8] = b"SAEKTEST";
const HEADER: usize = 24;

fn catalog_path(root: &Path) -> PathBuf {
    root.join("catalog.sqlite")
}

// ----- verifiable files: magic, payload length, FNV-1a checksum, payload -----

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
}

fn payload(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn write_checked(path: &Path, seed: u64, len: usize) {
    let body = payload(seed, len);
    let mut file = fs::File::create(path).expect("create artifact file");
    file.write_all(MAGIC).unwrap();
    file.write_all(&(len as u64).to_le_bytes()).unwrap();
    file.write_all(&fnv1a(&body).to_le_bytes()).unwrap();
    // Written in pieces so that a kill can land mid-file.
    for chunk in body.chunks(64 * 1024) {
        file.write_all(chunk).unwrap();
    }
}

fn verify_checked(path: &Path) -> Result<Vec<u8>, String> {
    let bytes = fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if bytes.len() < HEADER || &bytes[..8] != MAGIC {
        return Err(format!("{}: bad header ({} bytes)", path.display(), bytes.len()));
    }
    let len = u64::from_le_bytes(bytes[8..16].try_into().unwrap()) as usize;
    let sum = u64::from_le_bytes(bytes[16..24].try_into().unwrap());
    let body = &bytes[HEADER..];
    if body.len() != len || fnv1a(body) != sum {
        return Err(format!("{}: truncated or corrupt ({} of {len} bytes)", path.display(), body.len()));
    }
    Ok(body.to_vec())
}

/// Writes one artifact of `files` checked files and registers it as dataset `name`.
#[allow(clippy::result_large_err)] // saekit::Error is large; the closure returns it
fn write_artifact(root: &Path, catalog: &Catalog, name: &str, seed: u64, files: usize, len: usize) {
    let writer = ArtifactWriter::begin(root, "blob").expect("begin");
    for i in 0..files {
        write_checked(&writer.dir().join(format!("part-{i}.bin")), seed + i as u64, len + i * 1000);
    }
    let name = name.to_string();
    writer
        .commit(catalog, |tx, path| {
            let row = catalog.insert_dataset_in(
                tx,
                &NewDataset {
                    name,
                    source: "test".into(),
                    metadata: serde_json::json!({"seed": seed, "files": files}),
                    ..Default::default()
                },
            )?;
            catalog.update_dataset_in(
                tx,
                row.id,
                &DatasetUpdate { artifact_path: Some(path.to_path_buf()), ..Default::default() },
            )
        })
        .expect("commit");
}

// ----- the child -----

/// The child process's body; does nothing when run as an ordinary test.
#[test]
#[ignore = "run by the other tests as a child process"]
fn child_writer() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    let root = PathBuf::from(std::env::var(DIR).expect("child dir"));
    let id = std::env::var(ID).unwrap_or_default();
    let catalog = Catalog::open(&catalog_path(&root)).expect("child open");
    recover(&root, &catalog).expect("child recover");
    match role.as_str() {
        "writer" => {
            for i in 0..100u64 {
                write_artifact(&root, &catalog, &format!("{id}-{i}"), seed_of(&id, i), 2, 4096);
                if i % 25 == 24 {
                    // As another workspace opening would, while the other child is writing.
                    recover(&root, &catalog).expect("recover while the other writes");
                }
            }
        }
        "looper" => {
            // Runs until killed; the deadline only guards against a parent that died first.
            let deadline = Instant::now() + Duration::from_secs(30);
            let mut i = 0u64;
            while Instant::now() < deadline {
                write_artifact(&root, &catalog, &format!("{id}-{}-{i}", std::process::id()), i * 7919, 3, 200_000);
                i += 1;
            }
        }
        other => panic!("unknown child role {other}"),
    }
}

fn seed_of(id: &str, i: u64) -> u64 {
    fnv1a(id.as_bytes()) ^ (i * 1_000_003)
}

/// Kills the child if the test panics before it exits.
struct ChildGuard {
    child: Child,
    log: PathBuf,
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn_child(root: &Path, role: &str, id: &str) -> ChildGuard {
    let log = root.with_extension(format!("{id}.log"));
    let out = fs::File::create(&log).expect("child log");
    let err = out.try_clone().unwrap();
    let child = Command::new(std::env::current_exe().expect("current_exe"))
        .args(["--exact", "child_writer", "--nocapture", "--include-ignored"])
        .env(ROLE, role)
        .env(DIR, root)
        .env(ID, id)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .expect("spawn child");
    ChildGuard { child, log }
}

fn wait_ok(guard: &mut ChildGuard, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = guard.child.try_wait().expect("try_wait") {
            let log = fs::read_to_string(&guard.log).unwrap_or_default();
            assert!(status.success(), "child failed ({status}):\n{log}");
            return;
        }
        if Instant::now() > deadline {
            let _ = guard.child.kill();
            let log = fs::read_to_string(&guard.log).unwrap_or_default();
            panic!("child did not finish within {limit:?}:\n{log}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn dir_names(dir: &Path) -> Vec<PathBuf> {
    match fs::read_dir(dir) {
        Ok(entries) => entries.map(|e| e.unwrap().path()).collect(),
        Err(_) => Vec::new(),
    }
}

/// Every row's artifact is complete, nothing unreferenced under artifacts/, nothing in tmp/.
fn check_workspace(root: &Path, catalog: &Catalog, files_per_artifact: usize) -> usize {
    let rows = catalog.list_datasets(&DatasetFilter::default()).unwrap();
    for row in &rows {
        let dir = row.artifact_path.as_ref().unwrap_or_else(|| panic!("{} has no artifact", row.name));
        let files = dir_names(dir);
        assert_eq!(files.len(), files_per_artifact, "{}: {files:?}", dir.display());
        for file in files {
            verify_checked(&file).unwrap_or_else(|e| panic!("{}: {e}", row.name));
        }
    }
    let referenced = catalog.referenced_artifacts().unwrap();
    for kind in dir_names(&root.join("artifacts")) {
        for artifact in dir_names(&kind) {
            assert!(referenced.contains(&artifact), "unreferenced artifact {}", artifact.display());
        }
    }
    assert_eq!(dir_names(&root.join("tmp")), Vec::<PathBuf>::new(), "tmp/ is not empty");
    rows.len()
}

#[test]
fn two_processes_write_one_catalog() {
    let base = tempfile::tempdir().unwrap();
    let root = base.path().join("ws");
    // Both children open a catalog that does not exist yet: the first open races too.
    let mut a = spawn_child(&root, "writer", "a");
    let mut b = spawn_child(&root, "writer", "b");
    wait_ok(&mut a, Duration::from_secs(120));
    wait_ok(&mut b, Duration::from_secs(120));

    let catalog = Catalog::open(&catalog_path(&root)).unwrap();
    let report = recover(&root, &catalog).unwrap();
    assert!(report.removed_orphans.is_empty() && report.removed_partials.is_empty(), "{report:?}");
    assert_eq!(check_workspace(&root, &catalog, 2), 200);
    for id in ["a", "b"] {
        for i in [0u64, 57, 99] {
            let row = catalog.dataset(&format!("{id}-{i}")).unwrap();
            let dir = row.artifact_path.unwrap();
            let body = verify_checked(&dir.join("part-0.bin")).unwrap();
            assert_eq!(body, payload(seed_of(id, i), 4096), "{id}-{i} holds another artifact's data");
        }
    }
}

#[test]
fn killed_writers_leave_a_consistent_workspace() {
    let base = tempfile::tempdir().unwrap();
    let root = base.path().join("ws");
    let mut total = 0;
    for (round, delay_ms) in [37u64, 400, 90, 250, 60, 330, 150, 45, 210, 120].into_iter().enumerate() {
        let mut child = spawn_child(&root, "looper", &format!("r{round}"));
        std::thread::sleep(Duration::from_millis(delay_ms));
        child.child.kill().expect("kill"); // SIGKILL on Unix
        child.child.wait().expect("wait");

        let catalog = Catalog::open(&catalog_path(&root)).unwrap();
        let report = recover(&root, &catalog).unwrap();
        let rows = check_workspace(&root, &catalog, 3);
        eprintln!(
            "round {round}: killed after {delay_ms} ms; {rows} artifacts; recovered {} orphans, {} partials",
            report.removed_orphans.len(),
            report.removed_partials.len()
        );
        assert!(rows >= total, "rows disappeared");
        total = rows;
    }
    assert!(total > 0, "no child ever committed an artifact; raise the delays");
}
