//! Integration tests of the [`Workspace`] and the `saekit` command: registering by reference, importing
//! (and surviving the originals' deletion and the workspace's move), filtering, deleting, failure and
//! take-over, SIGKILL during an import, two processes adding at once, and the file commands.

use std::collections::HashSet;
use std::fs;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Instant;

use saekit::catalog::{ArtifactWriter, DatasetFilter, DatasetStatus, NewDataset, Workspace};
use saekit::display::Render;
use saekit::jobs::JobStatus;
use saekit::tokenize::NewTokenization;
use saekit::tokenize::table::insert_tokenization_in;
use saekit::{Error, Source};
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_saekit");

// ---------------------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------------------

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

/// The text of row `i`.
fn text_of(i: usize) -> String {
    format!("document {i} says hello to the world")
}

fn lang_of(i: usize) -> &'static str {
    if i.is_multiple_of(3) { "de" } else { "en" }
}

/// Writes rows `start..start + n` as JSONL objects `{"text", "id", "lang"}` to `path`.
fn write_jsonl(path: &Path, start: usize, n: usize) -> PathBuf {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut w = BufWriter::new(fs::File::create(path).unwrap());
    for i in start..start + n {
        writeln!(w, r#"{{"text":"{}","id":{i},"lang":"{}"}}"#, text_of(i), lang_of(i)).unwrap();
    }
    w.flush().unwrap();
    path.to_path_buf()
}

/// UTF-8 bytes of the texts of rows `start..start + n`.
fn text_bytes(start: usize, n: usize) -> u64 {
    (start..start + n).map(|i| text_of(i).len() as u64).sum()
}

fn file_len(path: &Path) -> u64 {
    fs::metadata(path).unwrap().len()
}

/// Documents in a source, read in full.
fn count_docs(source: &Source) -> u64 {
    source.documents().unwrap().map(|b| b.unwrap().num_rows() as u64).sum()
}

/// The texts of a source's documents, in order.
fn texts(source: &Source) -> Vec<String> {
    use arrow::array::AsArray;
    let mut out = Vec::new();
    for batch in source.documents().unwrap() {
        let batch = batch.unwrap();
        out.extend(batch.column(0).as_string::<i32>().iter().map(|t| t.unwrap().to_string()));
    }
    out
}

/// A directory's entries, sorted; none if it does not exist.
fn entries(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = match fs::read_dir(dir) {
        Ok(rd) => rd.map(|e| e.unwrap().path()).collect(),
        Err(_) => Vec::new(),
    };
    out.sort();
    out
}

/// Every `artifacts/<kind>/<name>` directory of a workspace.
fn artifact_dirs(root: &Path) -> Vec<PathBuf> {
    entries(&root.join("artifacts")).iter().flat_map(|kind| entries(kind)).collect()
}

fn part_files(dir: &Path) -> Vec<PathBuf> {
    entries(dir)
        .into_iter()
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.starts_with("part-") && name.ends_with(".parquet")
        })
        .collect()
}

/// Rows of a Parquet file, from its footer (which a truncated file lacks).
fn parquet_rows(path: &Path) -> Result<u64, String> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let file = fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let reader = SerializedFileReader::new(file).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(reader.metadata().file_metadata().num_rows() as u64)
}

fn saekit_cmd(ws: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.arg("--workspace").arg(ws).stdin(Stdio::null());
    cmd
}

fn run(ws: &Path, args: &[&str]) -> Output {
    saekit_cmd(ws).args(args).output().expect("run saekit")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The value of fact `key` in a card's plain text (`  key   value`).
fn fact(plain: &str, key: &str) -> Option<String> {
    plain.lines().find_map(|line| {
        let rest = line.strip_prefix("  ")?.strip_prefix(key)?;
        rest.starts_with("  ").then(|| rest.trim().to_string())
    })
}

fn new_tokenization(dataset_id: i64, artifact_path: &Path) -> NewTokenization {
    NewTokenization {
        dataset_id,
        tokenizer: "gpt2".into(),
        tokenizer_hash: "h".into(),
        params: json!({"seq_len": 16}),
        num_documents: 3,
        num_sequences: 2,
        num_tokens: 32,
        artifact_path: artifact_path.to_path_buf(),
        ..Default::default()
    }
}

/// Records a tokenization of `dataset` whose tokens file is written through an [`ArtifactWriter`];
/// returns its artifact directory.
#[allow(clippy::result_large_err)] // saekit::Error is large; the commit closure returns it
fn add_tokenization(ws: &Workspace, dataset: &str) -> PathBuf {
    let id = ws.dataset(dataset).unwrap().id();
    let writer = ArtifactWriter::begin(ws.root(), "tokens").unwrap();
    fs::write(writer.dir().join("tokens.bin"), [7u8; 64]).unwrap();
    let row = writer
        .commit(ws.catalog(), |tx, dir| insert_tokenization_in(ws.catalog(), tx, &new_tokenization(id, dir)))
        .unwrap();
    assert!(row.artifact_path.join("tokens.bin").is_file());
    row.artifact_path
}

// ---------------------------------------------------------------------------------------------------------
// 1. add_dataset: by reference
// ---------------------------------------------------------------------------------------------------------

#[test]
fn add_dataset_registers_by_reference() {
    let dir = tmp();
    let file = write_jsonl(&dir.path().join("data/small.jsonl"), 0, 25);
    let original = fs::read(&file).unwrap();
    let ws = Workspace::open(dir.path().join("ws")).unwrap();

    let d = ws.add_dataset("small", &Source::open(&file).unwrap()).unwrap();
    assert_eq!(d.name(), "small");
    assert_eq!(d.status(), DatasetStatus::Ready);
    let row = d.row();
    assert_eq!(row.num_rows, Some(25));
    assert_eq!(row.num_bytes, Some(file_len(&file)));
    assert_eq!(row.source, "local");
    assert_eq!(row.error, None);
    assert_eq!(row.artifact_path, None);
    assert_eq!(row.paths, [file.to_string_lossy().into_owned()]);
    let stats = d.stats().expect("stats stored");
    assert_eq!(stats.documents, 25);
    assert_eq!(stats.bytes, text_bytes(0, 25));
    assert_eq!(stats.skipped, 0);
    assert_eq!(stats.columns.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["id", "lang"]);
    let lang = &stats.columns[1];
    assert_eq!(lang.distinct, Some(2));
    assert_eq!(lang.top_values, [("en".to_string(), 16), ("de".to_string(), 9)]);
    assert_eq!(
        d.columns(),
        [("text".into(), "Utf8".into()), ("id".into(), "Int64".into()), ("lang".into(), "Utf8".into())]
    );
    assert_eq!(d.row().metadata["format"], "jsonl");
    assert_eq!(d.row().metadata["files"], 1);

    // Tags: sorted, duplicates dropped, replaced as a whole.
    assert_eq!(ws.tag("small", &["web", "en", "web"]).unwrap().row().tags, ["en", "web"]);
    assert_eq!(ws.tag("small", &["final"]).unwrap().row().tags, ["final"]);

    // By name and by id.
    let by_name = ws.dataset("small").unwrap();
    let by_id = ws.dataset(&d.id().to_string()).unwrap();
    assert_eq!(by_name.id(), d.id());
    assert_eq!(by_id.name(), "small");
    assert_eq!(by_id.row().tags, ["final"]);
    assert!(matches!(ws.dataset("nope"), Err(Error::NotFound { kind: "dataset", .. })));

    // The data is read from where it lies; nothing was copied.
    assert_eq!(count_docs(&by_name.source().unwrap()), 25);
    assert_eq!(artifact_dirs(ws.root()), Vec::<PathBuf>::new());
    assert_eq!(entries(&ws.root().join("tmp")), Vec::<PathBuf>::new());
    assert_eq!(fs::read(&file).unwrap(), original);

    // The card says what it is.
    let card = by_name.bundle().plain().to_string();
    assert!(card.starts_with("Dataset small [ready]"), "{card}");
    assert_eq!(fact(&card, "rows").as_deref(), Some("25"), "{card}");
    assert_eq!(fact(&card, "tags").as_deref(), Some("final"), "{card}");

    // Names that could be taken for ids, or that hold odd characters, are refused.
    assert!(matches!(ws.add_dataset("123", &Source::open(&file).unwrap()), Err(Error::InvalidArgument(_))));
    assert!(matches!(ws.add_dataset("a b", &Source::open(&file).unwrap()), Err(Error::InvalidArgument(_))));
    assert_eq!(ws.datasets().unwrap().len(), 1);
}

// ---------------------------------------------------------------------------------------------------------
// 2. import_dataset: a copy that survives the originals and a move of the workspace
// ---------------------------------------------------------------------------------------------------------

#[test]
fn import_dataset_copies_into_the_workspace() {
    let dir = tmp();
    // Two files in a folder; more rows than one shard holds.
    let a = write_jsonl(&dir.path().join("src/a.jsonl"), 0, 70_000);
    let b = write_jsonl(&dir.path().join("src/b.jsonl"), 70_000, 40_000);
    const ROWS: u64 = 110_000;
    let ws_dir = dir.path().join("ws");
    let ws = Workspace::open(&ws_dir).unwrap();

    let started = Instant::now();
    let d = ws.import_dataset("imported", &Source::open(dir.path().join("src")).unwrap()).unwrap();
    eprintln!("import of {ROWS} rows took {:.2} s", started.elapsed().as_secs_f64());
    assert_eq!(d.status(), DatasetStatus::Ready);
    assert_eq!(d.row().num_rows, Some(ROWS));
    let stats = d.stats().unwrap();
    assert_eq!(stats.documents, ROWS);
    assert_eq!(stats.bytes, text_bytes(0, ROWS as usize));
    assert_eq!(d.row().metadata["imported_from"], json!([a.to_string_lossy(), b.to_string_lossy()]));

    // The artifact: part-*.parquet files holding every row, and nothing else.
    let art = d.row().artifact_path.clone().expect("an imported dataset owns an artifact");
    assert_eq!(art.parent().unwrap(), ws.root().join("artifacts/datasets"));
    assert_eq!(artifact_dirs(ws.root()), std::slice::from_ref(&art));
    let parts = part_files(&art);
    assert_eq!(entries(&art), parts);
    assert_eq!(
        parts.iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect::<Vec<_>>(),
        ["part-00000.parquet", "part-00001.parquet"]
    );
    assert_eq!(parts.iter().map(|p| parquet_rows(p).unwrap()).sum::<u64>(), ROWS);
    assert_eq!(d.row().num_bytes, Some(parts.iter().map(|p| file_len(p)).sum()));
    assert_eq!(d.row().paths.len(), 2);
    assert_eq!(entries(&ws.root().join("tmp")), Vec::<PathBuf>::new());

    // The originals go; the dataset still reads, in order, with its metadata columns.
    fs::remove_dir_all(dir.path().join("src")).unwrap();
    let source = ws.dataset("imported").unwrap().source().unwrap();
    assert_eq!(source.format(), saekit::sources::Format::Parquet);
    let all = texts(&source);
    assert_eq!(all.len() as u64, ROWS);
    assert_eq!(all[0], text_of(0));
    assert_eq!(all[69_999], text_of(69_999));
    assert_eq!(all[70_000], text_of(70_000));
    assert_eq!(all[109_999], text_of(109_999));
    let doc_schema = source.documents().unwrap().schema();
    let names: Vec<&str> = doc_schema.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(names, ["text", "id", "lang"]);

    // The whole workspace moves; reopened, the dataset reads from the new place.
    drop(ws);
    let moved = dir.path().join("moved-ws");
    fs::rename(&ws_dir, &moved).unwrap();
    let ws = Workspace::open(&moved).unwrap();
    let d = ws.dataset("imported").unwrap();
    let art = d.row().artifact_path.clone().unwrap();
    assert!(art.starts_with(ws.root()), "{} is not under {}", art.display(), ws.root().display());
    assert_eq!(part_files(&art).len(), 2);
    assert_eq!(count_docs(&d.source().unwrap()), ROWS);
    // recover on reopening must not have taken the (relative) artifact for an orphan.
    assert_eq!(artifact_dirs(ws.root()), [art]);
}

// ---------------------------------------------------------------------------------------------------------
// 3. find()
// ---------------------------------------------------------------------------------------------------------

#[test]
fn find_filters_by_name_status_tag_and_source() {
    let dir = tmp();
    let ws = Workspace::open(dir.path().join("ws")).unwrap();
    let f1 = write_jsonl(&dir.path().join("1.jsonl"), 0, 3);
    let f2 = write_jsonl(&dir.path().join("2.jsonl"), 0, 4);
    let bad = dir.path().join("bad.jsonl");
    fs::write(&bad, "{\"text\": \"ok\"}\n{not json\n").unwrap();

    ws.add_dataset("Wiki-EN", &Source::open(&f1).unwrap()).unwrap();
    ws.import_dataset("wiki-de", &Source::open(&f2).unwrap()).unwrap();
    ws.add_dataset("code", &Source::open(&f2).unwrap()).unwrap();
    ws.add_dataset("broken", &Source::open(&bad).unwrap()).unwrap_err();
    ws.catalog()
        .insert_dataset(&NewDataset {
            name: "hub-wiki".into(),
            source: "hub".into(),
            repo_id: Some("org/wiki".into()),
            ..Default::default()
        })
        .unwrap();
    ws.tag("Wiki-EN", &["wiki", "en"]).unwrap();
    ws.tag("wiki-de", &["wiki", "de"]).unwrap();
    ws.tag("hub-wiki", &["wiki"]).unwrap();

    let names = |filter: DatasetFilter| -> Vec<String> {
        ws.find(&filter).unwrap().names().into_iter().map(String::from).collect()
    };
    assert_eq!(names(DatasetFilter::default()), ["Wiki-EN", "wiki-de", "code", "broken", "hub-wiki"]);
    assert_eq!(
        names(DatasetFilter { name_contains: Some("WIKI".into()), ..Default::default() }),
        ["Wiki-EN", "wiki-de", "hub-wiki"]
    );
    assert_eq!(names(DatasetFilter { name_contains: Some("-de".into()), ..Default::default() }), ["wiki-de"]);
    assert_eq!(
        names(DatasetFilter { status: Some(DatasetStatus::Ready), ..Default::default() }),
        ["Wiki-EN", "wiki-de", "code"]
    );
    assert_eq!(names(DatasetFilter { status: Some(DatasetStatus::Failed), ..Default::default() }), ["broken"]);
    // A row left pending by nobody alive reads as interrupted.
    assert_eq!(names(DatasetFilter { status: Some(DatasetStatus::Interrupted), ..Default::default() }), ["hub-wiki"]);
    assert!(names(DatasetFilter { status: Some(DatasetStatus::Pending), ..Default::default() }).is_empty());
    assert_eq!(
        names(DatasetFilter { tag: Some("wiki".into()), ..Default::default() }),
        ["Wiki-EN", "wiki-de", "hub-wiki"]
    );
    assert_eq!(names(DatasetFilter { tag: Some("de".into()), ..Default::default() }), ["wiki-de"]);
    assert!(names(DatasetFilter { tag: Some("wik".into()), ..Default::default() }).is_empty());
    assert_eq!(names(DatasetFilter { source: Some("hub".into()), ..Default::default() }), ["hub-wiki"]);
    assert_eq!(
        names(DatasetFilter { source: Some("local".into()), ..Default::default() }),
        ["Wiki-EN", "wiki-de", "code", "broken"]
    );
    // Every field must match.
    assert_eq!(
        names(DatasetFilter {
            tag: Some("wiki".into()),
            source: Some("local".into()),
            status: Some(DatasetStatus::Ready),
            name_contains: Some("en".into()),
        }),
        ["Wiki-EN"]
    );
    assert!(
        names(DatasetFilter {
            tag: Some("wiki".into()),
            source: Some("hub".into()),
            status: Some(DatasetStatus::Ready),
            ..Default::default()
        })
        .is_empty()
    );
    // The listing renders one line per dataset under its caption.
    let listing = ws.datasets().unwrap().bundle().plain().to_string();
    assert!(listing.starts_with("5 datasets"), "{listing}");
}

// ---------------------------------------------------------------------------------------------------------
// 4. delete_dataset
// ---------------------------------------------------------------------------------------------------------

#[test]
fn delete_dataset_removes_rows_tokenizations_and_owned_files_only() {
    let dir = tmp();
    let ws = Workspace::open(dir.path().join("ws")).unwrap();
    let by_ref = write_jsonl(&dir.path().join("ref.jsonl"), 0, 5);
    let to_import = write_jsonl(&dir.path().join("imp.jsonl"), 0, 6);
    let ref_bytes = fs::read(&by_ref).unwrap();

    let r = ws.add_dataset("ref", &Source::open(&by_ref).unwrap()).unwrap();
    let imp = ws.import_dataset("imp", &Source::open(&to_import).unwrap()).unwrap();
    let keep = ws.add_dataset("keep", &Source::open(&by_ref).unwrap()).unwrap();
    ws.tag("ref", &["x"]).unwrap();
    let ref_tokens = [add_tokenization(&ws, "ref"), add_tokenization(&ws, "ref")];
    let imp_tokens = add_tokenization(&ws, "imp");
    let keep_tokens = add_tokenization(&ws, "keep");
    let imp_dir = imp.row().artifact_path.clone().unwrap();
    assert_eq!(ws.tokenizations("ref").unwrap().len(), 2);
    assert_eq!(ws.tokenizations("imp").unwrap()[0].artifact_path, imp_tokens);
    assert_eq!(artifact_dirs(ws.root()).len(), 5);

    // A dataset that was tokenized is not deleted alone: the error names what was made from it, and
    // nothing is touched.
    let err = ws.delete_dataset("ref").unwrap_err();
    assert!(matches!(err, Error::InUse { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.starts_with("dataset `ref` is used by tokenization `ref/gpt2/1`, tokenization `ref/gpt2/2`"),
        "{message}"
    );
    assert!(message.contains("--cascade"), "{message}");
    assert_eq!(ws.tokenizations("ref").unwrap().len(), 2);
    assert!(ref_tokens.iter().all(|t| t.exists()));

    // With cascade, a by-reference dataset: its row and tokenizations go, its original file stays.
    ws.delete_dataset_cascade("ref").unwrap();
    assert!(matches!(ws.dataset("ref"), Err(Error::NotFound { .. })));
    assert!(matches!(ws.tokenizations("ref"), Err(Error::NotFound { .. })));
    assert!(matches!(ws.catalog().artifact(r.id()), Err(Error::NotFound { .. })));
    for t in &ref_tokens {
        assert!(!t.exists(), "{} survived", t.display());
    }
    assert_eq!(fs::read(&by_ref).unwrap(), ref_bytes);
    assert!(ws.find(&DatasetFilter { tag: Some("x".into()), ..Default::default() }).unwrap().is_empty());

    // An imported dataset, by id: its Parquet copy goes too; the original it came from stays.
    ws.delete_dataset_cascade(&imp.id().to_string()).unwrap();
    assert!(matches!(ws.dataset("imp"), Err(Error::NotFound { .. })));
    assert!(!imp_dir.exists());
    assert!(!imp_tokens.exists());
    assert!(to_import.is_file());

    // The other dataset and its tokenization are untouched.
    assert_eq!(ws.datasets().unwrap().names(), ["keep"]);
    assert_eq!(ws.tokenizations("keep").unwrap().len(), 1);
    assert!(keep_tokens.join("tokens.bin").is_file());
    assert_eq!(artifact_dirs(ws.root()), [keep_tokens]);
    assert_eq!(count_docs(&keep.source().unwrap()), 5);

    assert!(matches!(ws.delete_dataset("ref"), Err(Error::NotFound { .. })));
    // Reopening finds nothing to clean up.
    drop(ws);
    let ws = Workspace::open(dir.path().join("ws")).unwrap();
    assert_eq!(artifact_dirs(ws.root()).len(), 1);
}

// ---------------------------------------------------------------------------------------------------------
// 5. a failed add, taken over
// ---------------------------------------------------------------------------------------------------------

#[test]
fn failed_add_is_recorded_then_taken_over_and_a_ready_name_is_refused() {
    let dir = tmp();
    let ws = Workspace::open(dir.path().join("ws")).unwrap();
    let file = dir.path().join("bad.jsonl");
    fs::write(&file, "{\"text\": \"one\"}\n{\"text\": \"two two\"}\n{\"text\": \"thr\n{\"text\": \"four\"}\n").unwrap();

    let err = ws.add_dataset("bad", &Source::open(&file).unwrap()).unwrap_err();
    match &err {
        Error::Json { path, line, .. } => {
            assert_eq!(path, &file);
            assert_eq!(*line, 3);
        }
        other => panic!("expected a JSON error, got {other:?}"),
    }
    let failed = ws.dataset("bad").unwrap();
    assert_eq!(failed.status(), DatasetStatus::Failed);
    let message = failed.row().error.clone().expect("the error is recorded");
    assert_eq!(message, err.to_string());
    assert!(message.contains(&*file.to_string_lossy()) && message.contains("line 3"), "{message}");
    assert_eq!(failed.row().num_rows, None);
    assert!(failed.stats().is_none());
    let card = failed.bundle().plain().to_string();
    assert!(card.starts_with("Dataset bad [failed]"), "{card}");
    assert_eq!(fact(&card, "error"), Some(message.clone()));

    // Again, skipping bad records: the same row is taken over.
    let fixed = ws.add_dataset("bad", &Source::open(&file).unwrap().skip_bad_records()).unwrap();
    assert_eq!(fixed.id(), failed.id());
    assert_eq!(fixed.status(), DatasetStatus::Ready);
    assert_eq!(fixed.row().error, None);
    assert_eq!(fixed.row().num_rows, Some(3));
    let stats = fixed.stats().unwrap();
    assert_eq!(stats.documents, 3);
    assert_eq!(stats.bytes, ("one".len() + "two two".len() + "four".len()) as u64);
    assert_eq!(stats.skipped, 1);
    assert_eq!(ws.datasets().unwrap().len(), 1);
    assert_eq!(ws.dataset("bad").unwrap().row().error, None);

    // A third time: the name is taken by a ready dataset.
    let other = write_jsonl(&dir.path().join("good.jsonl"), 0, 2);
    match ws.add_dataset("bad", &Source::open(&other).unwrap()) {
        Err(Error::AlreadyExists { kind: "dataset", name, .. }) => assert_eq!(name, "bad"),
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    match ws.import_dataset("bad", &Source::open(&other).unwrap()) {
        Err(Error::AlreadyExists { .. }) => {}
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    let still = ws.dataset("bad").unwrap();
    assert_eq!((still.id(), still.status(), still.row().num_rows), (failed.id(), DatasetStatus::Ready, Some(3)));
    assert_eq!(artifact_dirs(ws.root()), Vec::<PathBuf>::new());
    assert_eq!(entries(&ws.root().join("tmp")), Vec::<PathBuf>::new());
}

// ---------------------------------------------------------------------------------------------------------
// 6. SIGKILL during an import
// ---------------------------------------------------------------------------------------------------------

/// Kills the child if the test panics before it exits.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// After recovery: every ready import holds complete Parquet files with `rows` rows, pending rows own
/// nothing, tmp/ is empty and every artifact directory is referenced. Returns (ready, pending) names.
fn check_after_kill(ws: &Workspace, rows: u64) -> (Vec<String>, Vec<String>) {
    let (mut ready, mut pending) = (Vec::new(), Vec::new());
    for d in ws.datasets().unwrap().datasets {
        match d.status() {
            DatasetStatus::Ready => {
                let dir = d.row().artifact_path.clone().unwrap_or_else(|| panic!("{} has no artifact", d.name()));
                let parts = part_files(&dir);
                assert!(!parts.is_empty(), "{}: no part files in {}", d.name(), dir.display());
                assert_eq!(entries(&dir), parts, "{}: stray files", d.name());
                let total: u64 =
                    parts.iter().map(|p| parquet_rows(p).unwrap_or_else(|e| panic!("{}: {e}", d.name()))).sum();
                assert_eq!(total, rows, "{}", d.name());
                assert_eq!(d.row().num_rows, Some(rows), "{}", d.name());
                assert_eq!(d.stats().map(|s| s.documents), Some(rows), "{}", d.name());
                ready.push(d.name().to_string());
            }
            DatasetStatus::Interrupted => {
                assert_eq!(d.row().artifact_path, None, "{}", d.name());
                assert_eq!(d.row().num_rows, None, "{}", d.name());
                pending.push(d.name().to_string());
            }
            other => panic!("{} is {other} after a kill", d.name()),
        }
    }
    assert_eq!(entries(&ws.root().join("tmp")), Vec::<PathBuf>::new(), "tmp/ is not empty");
    let referenced: HashSet<PathBuf> = ws.catalog().referenced_artifacts().unwrap();
    for dir in artifact_dirs(ws.root()) {
        assert!(referenced.contains(&dir), "unreferenced artifact {}", dir.display());
    }
    (ready, pending)
}

#[test]
fn killed_imports_leave_a_consistent_workspace() {
    let test_started = Instant::now();
    let dir = tmp();
    let ws_dir = dir.path().join("ws");
    const ROWS: usize = 450_000;
    let file = write_jsonl(&dir.path().join("big.jsonl"), 0, ROWS);
    let file_str = file.to_str().unwrap();
    let ws_str = ws_dir.to_str().unwrap();

    // A whole import, timed, gives the span over which to spread the kills. Meanwhile this process
    // opens the workspace again and again, as a notebook would: its recovery must leave the live
    // writer's work alone.
    let started = Instant::now();
    let mut child = saekit_cmd(&ws_dir)
        .args(["import", "whole", file_str])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut opens = 0;
    while child.try_wait().unwrap().is_none() {
        let ws = Workspace::open(&ws_dir).unwrap();
        opens += 1;
        if let Ok(d) = ws.dataset("whole") {
            assert!(matches!(d.status(), DatasetStatus::Importing | DatasetStatus::Ready), "{:?}", d.status());
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let whole = started.elapsed();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(opens >= 5, "only {opens} opens during the import");
    let ws = Workspace::open(&ws_dir).unwrap();
    assert_eq!(check_after_kill(&ws, ROWS as u64), (vec!["whole".to_string()], vec![]));
    drop(ws);
    eprintln!(
        "generated {:.1} MB in {:.2} s; a whole CLI import took {:.2} s ({opens} opens meanwhile)",
        file_len(&file) as f64 / 1e6,
        started.duration_since(test_started).as_secs_f64(),
        whole.as_secs_f64()
    );

    let mut pendings = Vec::new();
    for (round, fraction) in [0.03, 0.15, 0.3, 0.45, 0.6, 0.75, 0.9, 0.99].into_iter().enumerate() {
        let name = format!("big-{round}");
        let mut child = ChildGuard(
            Command::new(BIN)
                .args(["--workspace", ws_str, "import", &name, file_str])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let delay = whole.mul_f64(fraction);
        std::thread::sleep(delay);
        let finished = child.0.try_wait().unwrap().is_some();
        child.0.kill().unwrap(); // SIGKILL
        child.0.wait().unwrap();
        drop(child);

        let ws = Workspace::open(&ws_dir).unwrap(); // recovers
        let (ready, pending) = check_after_kill(&ws, ROWS as u64);
        assert!(ready.contains(&"whole".to_string()));
        let state = ws.dataset(&name).map(|d| d.status().to_string()).unwrap_or_else(|_| "absent".into());
        eprintln!(
            "round {round}: killed after {:4} ms{}: {name} {state}",
            delay.as_millis(),
            if finished { " (already exited)" } else { "" }
        );
        if state == "interrupted" {
            pendings.push(name);
        }
        assert_eq!(pending.len(), pendings.len());
    }
    assert!(!pendings.is_empty(), "no kill landed mid-import; the import is too fast for the delays");

    // A dataset left interrupted is imported again: the row is taken over and ends ready.
    let ws = Workspace::open(&ws_dir).unwrap();
    let name = &pendings[0];
    let id = ws.dataset(name).unwrap().id();
    let d = ws.import_dataset(name, &Source::open(&file).unwrap()).unwrap();
    assert_eq!(d.id(), id);
    assert_eq!(d.status(), DatasetStatus::Ready);
    assert_eq!(d.row().num_rows, Some(ROWS as u64));
    assert_eq!(count_docs(&d.source().unwrap()), ROWS as u64);
    check_after_kill(&ws, ROWS as u64);
    eprintln!("kill test took {:.1} s in all", test_started.elapsed().as_secs_f64());
}

// ---------------------------------------------------------------------------------------------------------
// 7. two processes at once
// ---------------------------------------------------------------------------------------------------------

#[test]
fn two_processes_add_to_one_workspace() {
    let dir = tmp();
    let ws_dir = dir.path().join("ws");
    for p in ["a", "b"] {
        for i in 0..20 {
            write_jsonl(&dir.path().join(format!("in/{p}-{i}.jsonl")), i, i + 1);
        }
    }
    // Each process adds its 20 datasets one after the other; the two run side by side on a workspace
    // that does not exist yet.
    let script =
        r#"set -e; for i in $(seq 0 19); do "$BIN" --workspace "$WS" add "$P-$i" "$IN/$P-$i.jsonl" >/dev/null; done"#;
    let spawn = |p: &str| {
        Command::new("sh")
            .args(["-c", script])
            .env("BIN", BIN)
            .env("WS", &ws_dir)
            .env("IN", dir.path().join("in"))
            .env("P", p)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn("a"), spawn("b"));
    for (p, child) in [("a", a), ("b", b)] {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "process {p} failed: {}", stderr(&out));
    }

    let ws = Workspace::open(&ws_dir).unwrap();
    let all = ws.datasets().unwrap();
    assert_eq!(all.len(), 40);
    let ready = ws.find(&DatasetFilter { status: Some(DatasetStatus::Ready), ..Default::default() }).unwrap();
    assert_eq!(ready.len(), 40);
    for p in ["a", "b"] {
        for i in 0..20 {
            let d = ws.dataset(&format!("{p}-{i}")).unwrap();
            assert_eq!(d.row().num_rows, Some(i as u64 + 1), "{p}-{i}");
        }
    }

    let out = run(&ws_dir, &["list"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let listing = stdout(&out);
    assert!(listing.starts_with("40 datasets"), "{listing}");
    let listed: HashSet<String> = listing
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter(|n| n.starts_with("a-") || n.starts_with("b-"))
        .map(String::from)
        .collect();
    assert_eq!(listed.len(), 40, "{listing}");
    assert_eq!(listing.lines().filter(|l| l.contains(" ready ")).count(), 40, "{listing}");
    let out = run(&ws_dir, &["list", "--name", "a-1"]);
    // a-1 and a-10 … a-19
    assert!(stdout(&out).starts_with("11 datasets"), "{}", stdout(&out));
}

// ---------------------------------------------------------------------------------------------------------
// 8. the CLI
// ---------------------------------------------------------------------------------------------------------

#[test]
fn cli_file_commands_and_errors() {
    let dir = tmp();
    let ws_dir = dir.path().join("ws");
    let file = write_jsonl(&dir.path().join("f.jsonl"), 0, 1234);
    let file_str = file.to_str().unwrap();

    let out = run(&ws_dir, &["schema", file_str]);
    assert!(out.status.success(), "{}", stderr(&out));
    let schema = stdout(&out);
    assert!(schema.starts_with("3 columns · 1 jsonl file · null counts over the first 1,000 rows"), "{schema}");
    let rows: Vec<Vec<&str>> = schema.lines().map(|l| l.split_whitespace().collect()).collect();
    assert!(rows.contains(&vec!["text", "Utf8", "0", "text"]), "{schema}");
    assert!(rows.contains(&vec!["id", "Int64", "0", "metadata"]), "{schema}");
    assert!(rows.contains(&vec!["lang", "Utf8", "0", "metadata"]), "{schema}");

    let out = run(&ws_dir, &["stats", file_str]);
    assert!(out.status.success(), "{}", stderr(&out));
    let stats = stdout(&out);
    assert!(stats.starts_with("Dataset statistics"), "{stats}");
    assert_eq!(fact(&stats, "documents").as_deref(), Some("1,234"), "{stats}");
    assert_eq!(fact(&stats, "empty documents").as_deref(), Some("0"), "{stats}");

    // A path that does not exist: a failure naming it, for every command that takes files.
    let missing = dir.path().join("no-such-file.jsonl");
    let missing_str = missing.to_str().unwrap();
    for args in [
        vec!["schema", missing_str],
        vec!["stats", missing_str],
        vec!["add", "m", missing_str],
        vec!["import", "m", missing_str],
    ] {
        let out = run(&ws_dir, &args);
        assert!(!out.status.success(), "{args:?} succeeded");
        let err = stderr(&out);
        assert!(err.starts_with("error: ") && err.contains(missing_str), "{args:?}: {err}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }

    let out = run(&ws_dir, &["show", "NOPE"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("no dataset `NOPE`"), "{}", stderr(&out));
    let out = run(&ws_dir, &["delete", "NOPE"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("no dataset `NOPE`"), "{}", stderr(&out));

    // add, tag, show, delete round trip.
    let out = run(&ws_dir, &["add", "f", file_str]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).starts_with("Dataset f [ready]"), "{}", stdout(&out));
    let out = run(&ws_dir, &["tag", "f", "web", "en"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run(&ws_dir, &["show", "f"]);
    let card = stdout(&out);
    assert_eq!(fact(&card, "rows").as_deref(), Some("1,234"), "{card}");
    assert_eq!(fact(&card, "tags").as_deref(), Some("en, web"), "{card}");
    assert_eq!(fact(&card, "format").as_deref(), Some("jsonl"), "{card}");
    let out = run(&ws_dir, &["add", "f", file_str]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("already exists"), "{}", stderr(&out));
    let out = run(&ws_dir, &["list", "--tag", "web"]);
    assert!(stdout(&out).starts_with("1 datasets"), "{}", stdout(&out));
    let out = run(&ws_dir, &["delete", "f"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "deleted f");
    assert!(file.is_file());
    let out = run(&ws_dir, &["list"]);
    assert!(stdout(&out).starts_with("0 datasets"), "{}", stdout(&out));

    // Unknown commands and options fail with the usage.
    let out = run(&ws_dir, &["frobnicate"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("unrecognized subcommand 'frobnicate'") && stderr(&out).contains("Usage:"),
        "{}",
        stderr(&out)
    );
    let out = run(&ws_dir, &["add", "x", file_str, "--bogus"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("unexpected argument '--bogus'") && stderr(&out).contains("Usage:"),
        "{}",
        stderr(&out)
    );
}

// ---------------------------------------------------------------------------------------------------------
// Ownership: what saekit may delete, where imported data lives, and who may write an entry.
// ---------------------------------------------------------------------------------------------------------

/// `delete_dataset` removes only artifacts inside the workspace, never a directory elsewhere that a row names.
#[test]
fn delete_dataset_leaves_paths_outside_the_workspace() {
    let dir = tmp();
    let ws = Workspace::open(dir.path().join("ws")).unwrap();
    let file = write_jsonl(&dir.path().join("f.jsonl"), 0, 3);
    let d = ws.add_dataset("d", &Source::open(&file).unwrap()).unwrap();
    let outside = dir.path().join("my-tokens");
    fs::create_dir_all(&outside).unwrap();
    fs::write(outside.join("precious.bin"), b"x").unwrap();
    ws.catalog()
        .with_write_tx(|tx| insert_tokenization_in(ws.catalog(), tx, &new_tokenization(d.id(), &outside)))
        .unwrap();
    ws.delete_dataset_cascade("d").unwrap();
    assert!(outside.join("precious.bin").exists(), "a directory outside the workspace was deleted");
}

/// An imported dataset's `paths` are stored relative to the workspace, so they still name its files
/// after the workspace moves.
#[test]
fn imported_paths_follow_the_workspace() {
    let dir = tmp();
    let file = write_jsonl(&dir.path().join("f.jsonl"), 0, 3);
    let ws = Workspace::open(dir.path().join("ws")).unwrap();
    ws.import_dataset("d", &Source::open(&file).unwrap()).unwrap();
    drop(ws);
    fs::rename(dir.path().join("ws"), dir.path().join("moved")).unwrap();
    let ws = Workspace::open(dir.path().join("moved")).unwrap();
    let d = ws.dataset("d").unwrap();
    for p in &d.row().paths {
        assert!(Path::new(p).is_file(), "stale path {p}");
    }
}

/// A pending row is only taken over when its writer is gone: an add while an import of the same name
/// is running is refused as busy.
#[test]
fn a_running_import_is_not_taken_over() {
    let dir = tmp();
    let ws_dir = dir.path().join("ws");
    // Big enough that the import outlasts the add's half-second wait for the claim (~1 s here).
    let big = write_jsonl(&dir.path().join("big.jsonl"), 0, 1_500_000);
    let small = write_jsonl(&dir.path().join("small.jsonl"), 0, 3);
    let mut child = ChildGuard(
        saekit_cmd(&ws_dir)
            .args(["import", "x", big.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let ws = Workspace::open(&ws_dir).unwrap();
    while ws.dataset("x").is_err() {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(ws.dataset("x").unwrap().status(), DatasetStatus::Importing);
    let added = ws.add_dataset("x", &Source::open(&small).unwrap());
    let err = added.expect_err("an add over a running import must be refused");
    assert!(matches!(err, Error::Busy { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "dataset `x` is being written by another process (or notebook kernel); wait for it to finish"
    );
    assert!(child.0.wait().unwrap().success());
    let now = ws.dataset("x").unwrap();
    assert_eq!((now.status(), now.row().num_rows), (DatasetStatus::Ready, Some(1_500_000)));
}

// ---------------------------------------------------------------------------------------------------------
// Adding and importing as background jobs.
// ---------------------------------------------------------------------------------------------------------

#[test]
fn an_add_job_reports_bytes_and_returns_the_dataset() {
    let dir = tmp();
    let ws = Workspace::open(dir.path().join("ws")).unwrap();
    let file = write_jsonl(&dir.path().join("f.jsonl"), 0, 5_000);
    let job = ws.add_dataset_job("f", &Source::open(&file).unwrap());
    let dataset = job.wait().unwrap();
    assert_eq!(job.status(), JobStatus::Done);
    assert_eq!(dataset.row().num_rows, Some(5_000));
    let progress = job.progress();
    assert_eq!(
        (progress.unit.as_str(), progress.done, progress.total),
        ("bytes", file_len(&file), Some(file_len(&file)))
    );
    assert!(job.bundle().plain().starts_with("add f [done] ████████████████████ 100%"), "{}", job.bundle().plain());
}

#[test]
fn a_cancelled_import_job_stops_within_500ms_and_leaves_nothing_behind() {
    let dir = tmp();
    let ws = Workspace::open(dir.path().join("ws")).unwrap();
    let big = write_jsonl(&dir.path().join("big.jsonl"), 0, 400_000);
    let job = ws.import_dataset_job("big", &Source::open(&big).unwrap());
    while job.progress().done == 0 {
        assert!(!job.status().is_finished(), "the import ended before it could be cancelled");
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    let asked = Instant::now();
    job.cancel();
    assert_eq!(job.wait_timeout(std::time::Duration::from_millis(500)), JobStatus::Cancelled);
    assert!(asked.elapsed() < std::time::Duration::from_millis(500));
    assert!(matches!(job.wait(), Err(Error::Cancelled)));
    assert!(matches!(ws.dataset("big"), Err(Error::NotFound { .. })), "no row is left");
    assert!(artifact_dirs(ws.root()).is_empty(), "no artifact is left");
    assert!(entries(&ws.root().join("tmp")).is_empty(), "no partial is left");
    // The name is free again.
    assert_eq!(ws.import_dataset("big", &Source::open(&big).unwrap()).unwrap().row().num_rows, Some(400_000));
}

/// A stage's record that writes nothing (the tests' own stage, made through the lifecycle).
struct NoRecord;

impl saekit::catalog::StageRecord for NoRecord {
    fn write_in(&self, _: &saekit::catalog::Catalog, _: &rusqlite::Transaction, _: i64) -> saekit::Result<()> {
        Ok(())
    }
}

/// Nothing that a live attempt is making is deleted, even by a cascade from its parent: the victims'
/// claims are taken first. Deterministic: the work waits for the test to let it finish.
#[test]
fn nothing_a_live_attempt_is_making_is_deleted() {
    use saekit::catalog::{ArtifactPlan, IfReady};
    let dir = tmp();
    let ws = Workspace::open(dir.path().join("ws")).unwrap();
    let file = write_jsonl(&dir.path().join("f.jsonl"), 0, 3);
    let d = ws.add_dataset("d", &Source::open(&file).unwrap()).unwrap();
    let (started_tx, started) = std::sync::mpsc::channel();
    let (go, go_rx) = std::sync::mpsc::channel::<()>();
    let (ws2, parent) = (ws.clone(), d.id());
    let attempt = std::thread::spawn(move || {
        let plan = ArtifactPlan {
            kind: "mix",
            name: "m".into(),
            working: DatasetStatus::Pending,
            params: json!({"weights": [1]}),
            parents: vec![parent],
            dir: None,
            if_ready: IfReady::Refuse,
            resumable: false,
        };
        ws2.produce(plan, &saekit::jobs::JobContext::detached("mix"), |_, _| {
            started_tx.send(()).unwrap();
            go_rx.recv().unwrap();
            Ok(NoRecord)
        })
    });
    started.recv().unwrap();
    let err = ws.delete_dataset_cascade("d").unwrap_err();
    assert!(matches!(err, Error::Busy { .. }), "{err:?}");
    assert!(err.to_string().starts_with("mix `m` is being written by another process"), "{err}");
    let err = ws.delete_dataset("d").unwrap_err();
    assert!(matches!(err, Error::InUse { .. }) && err.to_string().contains("mix `m`"), "{err}");
    assert_eq!(ws.dataset("d").unwrap().status(), DatasetStatus::Ready);
    go.send(()).unwrap();
    let made = attempt.join().unwrap().unwrap();
    assert_eq!(ws.catalog().artifact(made.id()).unwrap().status, DatasetStatus::Ready);
    // Once no one is making it, the cascade goes through.
    ws.delete_dataset_cascade("d").unwrap();
    assert!(ws.catalog().artifact(made.id()).is_err() && ws.datasets().unwrap().is_empty());
}
