//! Opening a workspace that saekit wrote with catalog schema v1: the catalog is upgraded to v2 in place
//! and everything v1 recorded is still there and usable (ids, names, statuses, errors, tags,
//! tokenizations with their lineage and files, imported data), `recover` does not take the migrated
//! artifacts for orphans, and a second open changes nothing. The v1 workspace is built by hand with
//! rusqlite (a dependency of saekit, so usable here) from the released v1 schema.

use std::fs;
use std::path::{Path, PathBuf};

use rusqlite::Connection;
use rusqlite::types::ValueRef;
use saekit::catalog::{DatasetFilter, DatasetStatus, SCHEMA_VERSION, Workspace};
use saekit::stats::DatasetStats;
use saekit::tokenize::{Packing, TokenizeParams};
use saekit::{Error, Source};
use serde_json::{Value, json};

/// The released v1 schema, exactly as saekit created it (`MIGRATIONS[0]` in crate/src/catalog/db.rs).
/// A fixture: never edit it, even if that migration is (wrongly) edited.
const V1_SCHEMA: &str = "CREATE TABLE datasets (
        id            INTEGER PRIMARY KEY,
        name          TEXT NOT NULL UNIQUE,
        source        TEXT NOT NULL,
        repo_id       TEXT,
        spec          TEXT NOT NULL DEFAULT '{}',
        paths         TEXT NOT NULL DEFAULT '[]',
        artifact_path TEXT,
        status        TEXT NOT NULL CHECK (status IN ('pending', 'downloading', 'ready', 'failed')),
        metadata      TEXT NOT NULL DEFAULT '{}',
        num_rows      INTEGER,
        num_bytes     INTEGER,
        error         TEXT,
        created_at    TEXT NOT NULL,
        updated_at    TEXT NOT NULL
    );
    CREATE INDEX datasets_source ON datasets(source);
    CREATE INDEX datasets_status ON datasets(status);
    CREATE TABLE dataset_tags (
        dataset_id INTEGER NOT NULL REFERENCES datasets(id) ON DELETE CASCADE,
        tag        TEXT NOT NULL,
        PRIMARY KEY (dataset_id, tag)
    ) WITHOUT ROWID;
    CREATE INDEX dataset_tags_tag ON dataset_tags(tag);
    CREATE TABLE tokenizations (
        id             INTEGER PRIMARY KEY,
        dataset_id     INTEGER NOT NULL REFERENCES datasets(id) ON DELETE CASCADE,
        tokenizer      TEXT NOT NULL,
        tokenizer_hash TEXT NOT NULL,
        params         TEXT NOT NULL DEFAULT '{}',
        num_documents  INTEGER NOT NULL,
        num_sequences  INTEGER NOT NULL,
        num_tokens     INTEGER NOT NULL,
        artifact_path  TEXT NOT NULL,
        statistics     TEXT NOT NULL DEFAULT '{}',
        saekit_version TEXT NOT NULL,
        created_at     TEXT NOT NULL
    );
    CREATE INDEX tokenizations_dataset ON tokenizations(dataset_id);
    CREATE TABLE recipes (
        id         INTEGER PRIMARY KEY,
        name       TEXT NOT NULL UNIQUE,
        body       TEXT NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE TABLE training_runs (
        id              INTEGER PRIMARY KEY,
        name            TEXT NOT NULL,
        tokenization_id INTEGER REFERENCES tokenizations(id) ON DELETE SET NULL,
        config          TEXT NOT NULL DEFAULT '{}',
        status          TEXT NOT NULL,
        artifact_path   TEXT,
        metrics         TEXT NOT NULL DEFAULT '{}',
        created_at      TEXT NOT NULL,
        updated_at      TEXT NOT NULL
    );
    CREATE INDEX training_runs_tokenization ON training_runs(tokenization_id);";

/// Times as v1 wrote them (RFC 3339 UTC with milliseconds).
const CREATED: &str = "2026-11-01T10:00:00.000Z";
const UPDATED: &str = "2026-11-02T11:30:00.250Z";
const HASH: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

// Dataset ids with gaps (v1 rows deleted in between), to show ids are kept, not renumbered.
const REF_ID: i64 = 1;
const FAILED_ID: i64 = 3;
const IMPORTED_ID: i64 = 7;
const PENDING_ID: i64 = 8;
// v1 tokenization ids, also with a gap; v2 numbers them after the largest dataset id.
const TOK_A: i64 = 2;
const TOK_B: i64 = 5;

const IMPORTED_DIR: &str = "artifacts/datasets/4242-18f0c2a1b3d4e5f6-0";
const TOKENS_A: &str = "artifacts/tokens/4242-18f0c2a1b3d4e5f7-1";
const TOKENS_B: &str = "artifacts/tokens/4242-18f0c2a1b3d4e5f8-2";

fn text_of(i: usize) -> String {
    format!("document {i} says hello to the world")
}

fn write_jsonl(path: &Path, n: usize) -> PathBuf {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    let lines: String =
        (0..n).map(|i| format!("{{\"text\":\"{}\",\"id\":{i},\"lang\":\"en\"}}\n", text_of(i))).collect();
    fs::write(path, lines).unwrap();
    path.to_path_buf()
}

/// The texts of a source's documents, in order.
fn texts(source: &Source) -> Vec<String> {
    use arrow::array::AsArray;
    let mut out = Vec::new();
    for batch in source.documents().unwrap() {
        out.extend(batch.unwrap().column(0).as_string::<i32>().iter().map(|t| t.unwrap().to_string()));
    }
    out
}

/// What v1 stored as a dataset's metadata (`dataset_metadata`: format, files, schema, stats, version).
fn v1_metadata(source: &Source, version: &str) -> Value {
    let stats = DatasetStats::compute(source.documents().unwrap()).unwrap();
    json!({
        "format": source.format().as_str(),
        "files": source.files().len(),
        "schema": source.schema().unwrap(),
        "stats": stats,
        "saekit_version": version,
    })
}

/// v1's serialized `TokenizeParams` (every field, as serde wrote the struct).
fn v1_params(max_length: usize, packing: bool) -> Value {
    let mut params = TokenizeParams { max_length, stride: max_length / 2, add_eos: true, ..Default::default() };
    if packing {
        params.packing = Some(Packing::default());
    }
    serde_json::to_value(params).unwrap()
}

struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
    /// The JSONL the by-reference dataset points at (outside the workspace).
    ref_file: PathBuf,
}

/// A v1 workspace as saekit 0.1 left it: a ready dataset by reference (tokenized twice), a failed Hub
/// dataset, an imported one (its Parquet under `artifacts/datasets/`), one left pending by a process that
/// died, tags on them, a recipe; plus an orphan artifact directory and a dead `tmp/` partial.
fn v1_workspace() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("ws");
    fs::create_dir_all(&root).unwrap();
    let ref_file = write_jsonl(&dir.path().join("data/wiki.jsonl"), 5);
    let ref_source = Source::open(&ref_file).unwrap();

    // The imported dataset's Parquet, made by saekit's importer in a scratch workspace (v1 and v2 write
    // the same files) and put where v1 kept it.
    let import_file = write_jsonl(&dir.path().join("data/books.jsonl"), 4);
    let import_source = Source::open(&import_file).unwrap();
    let scratch = Workspace::open(dir.path().join("scratch")).unwrap();
    let made = scratch.import_dataset("books", &import_source).unwrap();
    let part = made.row().artifact_path.clone().unwrap().join("part-00000.parquet");
    fs::create_dir_all(root.join(IMPORTED_DIR)).unwrap();
    fs::copy(&part, root.join(IMPORTED_DIR).join("part-00000.parquet")).unwrap();
    drop(scratch);
    let part_rel = format!("{IMPORTED_DIR}/part-00000.parquet");
    let part_len = fs::metadata(root.join(&part_rel)).unwrap().len();

    for (tokens, len) in [(TOKENS_A, 64usize), (TOKENS_B, 32)] {
        fs::create_dir_all(root.join(tokens)).unwrap();
        fs::write(root.join(tokens).join("tokens.bin"), vec![7u8; len]).unwrap();
    }
    // What recover is for: a directory no row owns, and a dead writer's partial (no lock file).
    fs::create_dir_all(root.join("artifacts/tokens/4242-dead-9")).unwrap();
    fs::write(root.join("artifacts/tokens/4242-dead-9/tokens.bin"), b"orphan").unwrap();
    fs::create_dir_all(root.join("tmp/tokens-4242-dead-10")).unwrap();
    fs::write(root.join("tmp/tokens-4242-dead-10/tokens.bin"), b"partial").unwrap();

    let conn = Connection::open(root.join("catalog.sqlite")).unwrap();
    conn.pragma_update(None, "foreign_keys", "ON").unwrap();
    conn.execute_batch(V1_SCHEMA).unwrap();
    conn.pragma_update(None, "user_version", 1).unwrap();

    let insert = "INSERT INTO datasets (id, name, source, repo_id, spec, paths, artifact_path, status, metadata,
                                        num_rows, num_bytes, error, created_at, updated_at)
                  VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)";
    let ref_path = ref_file.to_string_lossy().into_owned();
    conn.execute(
        insert,
        rusqlite::params![
            REF_ID,
            "wiki-ref",
            "local",
            None::<String>,
            serde_json::to_string(ref_source.spec()).unwrap(),
            json!([ref_path]).to_string(),
            None::<String>,
            "ready",
            v1_metadata(&ref_source, "0.1.0").to_string(),
            5,
            fs::metadata(&ref_file).unwrap().len() as i64,
            None::<String>,
            CREATED,
            UPDATED,
        ],
    )
    .unwrap();
    conn.execute(
        insert,
        rusqlite::params![
            FAILED_ID,
            "hub-failed",
            "hub",
            "org/wiki",
            r#"{"paths":[],"format":"parquet","text":{"column":"text"},"on_error":"fail","infer_rows":1000,"batch_rows":4096}"#,
            "[]",
            None::<String>,
            "failed",
            "{}",
            None::<i64>,
            None::<i64>,
            "hub: GET https://huggingface.co/api/datasets/org/wiki: connection reset",
            CREATED,
            UPDATED,
        ],
    )
    .unwrap();
    let mut imported_metadata = v1_metadata(&import_source, "0.1.0");
    imported_metadata["imported_from"] = json!([import_file.to_string_lossy()]);
    let imported_spec = json!({
        "paths": [part_rel],
        "format": "parquet",
        "text": {"column": "text"},
        "on_error": "fail",
        "infer_rows": 1000,
        "batch_rows": 4096,
    });
    conn.execute(
        insert,
        rusqlite::params![
            IMPORTED_ID,
            "books",
            "local",
            None::<String>,
            imported_spec.to_string(),
            json!([part_rel]).to_string(),
            IMPORTED_DIR,
            "ready",
            imported_metadata.to_string(),
            4,
            part_len as i64,
            None::<String>,
            CREATED,
            UPDATED,
        ],
    )
    .unwrap();
    conn.execute(
        insert,
        rusqlite::params![
            PENDING_ID,
            "half",
            "local",
            None::<String>,
            serde_json::to_string(ref_source.spec()).unwrap(),
            json!([ref_path]).to_string(),
            None::<String>,
            "pending",
            "{}",
            None::<i64>,
            None::<i64>,
            None::<String>,
            CREATED,
            CREATED,
        ],
    )
    .unwrap();
    for (id, tag) in [(REF_ID, "wiki"), (REF_ID, "en"), (FAILED_ID, "hub"), (IMPORTED_ID, "imported")] {
        conn.execute("INSERT INTO dataset_tags (dataset_id, tag) VALUES (?1, ?2)", rusqlite::params![id, tag]).unwrap();
    }
    let insert_tokens = "INSERT INTO tokenizations (id, dataset_id, tokenizer, tokenizer_hash, params, num_documents,
                             num_sequences, num_tokens, artifact_path, statistics, saekit_version, created_at)
                         VALUES (?1, ?2, 'gpt2', ?3, ?4, ?5, ?6, ?7, ?8, ?9, '0.1.0', ?10)";
    conn.execute(
        insert_tokens,
        rusqlite::params![
            TOK_A,
            REF_ID,
            HASH,
            v1_params(16, false).to_string(),
            5,
            7,
            100,
            TOKENS_A,
            json!({"documents": 5, "tokens": 100}).to_string(),
            CREATED
        ],
    )
    .unwrap();
    conn.execute(
        insert_tokens,
        rusqlite::params![
            TOK_B,
            REF_ID,
            HASH,
            v1_params(32, true).to_string(),
            5,
            3,
            96,
            TOKENS_B,
            json!({"documents": 5, "tokens": 96}).to_string(),
            UPDATED
        ],
    )
    .unwrap();
    conn.execute(
        "INSERT INTO recipes (name, body, created_at, updated_at) VALUES ('mix-a', '{\"parts\":[]}', ?1, ?1)",
        [CREATED],
    )
    .unwrap();
    drop(conn);
    Fixture { _dir: dir, root, ref_file }
}

fn user_version(conn: &Connection) -> i64 {
    conn.pragma_query_value(None, "user_version", |r| r.get(0)).unwrap()
}

fn names(conn: &Connection, kind: &str) -> Vec<String> {
    let mut stmt = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = ?1 AND name NOT LIKE 'sqlite_%' ORDER BY name")
        .unwrap();
    stmt.query_map([kind], |r| r.get(0)).unwrap().map(|r| r.unwrap()).collect()
}

/// Every row of every table, as text: what a no-op reopen must leave exactly as it was.
fn dump(conn: &Connection) -> Vec<String> {
    let mut out = Vec::new();
    let mut tables = names(conn, "table");
    let sequence: i64 =
        conn.query_row("SELECT count(*) FROM sqlite_master WHERE name = 'sqlite_sequence'", [], |r| r.get(0)).unwrap();
    if sequence == 1 {
        tables.push("sqlite_sequence".into()); // AUTOINCREMENT's high-water marks
    }
    for table in tables {
        let mut stmt = conn.prepare(&format!("SELECT * FROM \"{table}\" ORDER BY 1, 2")).unwrap();
        let columns = stmt.column_count();
        let mut rows = stmt.query([]).unwrap();
        while let Some(row) = rows.next().unwrap() {
            let cells: Vec<String> = (0..columns)
                .map(|i| match row.get_ref(i).unwrap() {
                    ValueRef::Null => "NULL".to_string(),
                    ValueRef::Integer(n) => n.to_string(),
                    ValueRef::Real(x) => x.to_string(),
                    ValueRef::Text(t) => format!("{:?}", String::from_utf8_lossy(t)),
                    ValueRef::Blob(b) => format!("blob {b:?}"),
                })
                .collect();
            out.push(format!("{table}: {}", cells.join(" | ")));
        }
    }
    out
}

/// Every file under `dir`, relative to it, sorted.
fn files_under(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(entries) = fs::read_dir(dir) else { return };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(base, &path, out);
            } else {
                out.push(path.strip_prefix(base).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// A pragma's value on the workspace's own connection (the one that ran the migration).
#[allow(clippy::result_large_err)] // saekit::Error is large; with_conn's closure returns it
fn workspace_pragma(ws: &Workspace, name: &str) -> i64 {
    ws.catalog().with_conn(|c| Ok(c.pragma_query_value(None, name, |r| r.get(0)).unwrap())).unwrap()
}

#[test]
fn a_v1_workspace_is_upgraded_in_place_and_keeps_everything() {
    let started = std::time::Instant::now();
    let fx = v1_workspace();
    let root = &fx.root;
    assert_eq!(
        SCHEMA_VERSION, 7,
        "this test upgrades v1 to v7 (v3 to v7 add empty tables); add the next version's checks"
    );

    let ws = Workspace::open(root).unwrap();
    let root = ws.root().to_path_buf(); // canonical

    // --- the schema ---
    let conn = Connection::open(root.join("catalog.sqlite")).unwrap();
    assert_eq!(user_version(&conn), SCHEMA_VERSION);
    assert_eq!(
        names(&conn, "table"),
        [
            "activation_caches",
            "artifact_hashes",
            "artifact_tags",
            "artifacts",
            "datasets",
            "export_checkpoints",
            "lineage",
            "mix_recipes",
            "mixes",
            "models",
            "sae_runs",
            "session_artifacts",
            "sessions",
            "tokenizations",
            "version_pointers"
        ]
    );
    assert_eq!(
        names(&conn, "index"),
        ["artifact_tags_tag", "artifacts_status", "datasets_source", "lineage_parent", "version_pointers_name"],
        "v1's indexes went with its tables; v2's and v6's are all there"
    );
    let check: Vec<String> = conn
        .prepare("PRAGMA foreign_key_check")
        .unwrap()
        .query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    assert!(check.is_empty(), "dangling references after the upgrade: {check:?}");
    let integrity: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(integrity, "ok");
    // The migration turns foreign keys off on the workspace's own connection; they are on again.
    assert_eq!(workspace_pragma(&ws, "foreign_keys"), 1, "foreign keys are on again on the connection that migrated");

    // --- datasets: ids, names, statuses, errors, tags, records ---
    let all = ws.datasets().unwrap();
    let listed: Vec<(i64, &str, DatasetStatus)> = all.iter().map(|d| (d.id(), d.name(), d.status())).collect();
    assert_eq!(
        listed,
        [
            (REF_ID, "wiki-ref", DatasetStatus::Ready),
            (FAILED_ID, "hub-failed", DatasetStatus::Failed),
            (IMPORTED_ID, "books", DatasetStatus::Ready),
            // v1's `pending` row of a process that died: nobody holds its claim.
            (PENDING_ID, "half", DatasetStatus::Interrupted),
        ]
    );
    let stored_pending: String =
        conn.query_row("SELECT status FROM artifacts WHERE id = ?1", [PENDING_ID], |r| r.get(0)).unwrap();
    assert_eq!(stored_pending, "pending", "v1 statuses are carried over as stored");

    let wiki = ws.dataset("wiki-ref").unwrap();
    let r = wiki.row();
    assert_eq!(r.tags, ["en", "wiki"]);
    assert_eq!((r.source.as_str(), r.repo_id.as_deref()), ("local", None));
    assert_eq!(r.paths, [fx.ref_file.to_string_lossy().into_owned()]);
    assert_eq!(r.artifact_path, None);
    assert_eq!((r.num_rows, r.num_bytes), (Some(5), Some(fs::metadata(&fx.ref_file).unwrap().len())));
    assert_eq!((r.error.as_deref(), r.progress.as_ref()), (None, None));
    assert_eq!((r.created_at.as_str(), r.updated_at.as_str()), (CREATED, UPDATED));
    // What was asked for, recovered from v1's spec for a dataset added by reference.
    assert_eq!(r.params["origin"], "local");
    assert_eq!(r.params["mode"], "add");
    assert_eq!(r.params["source"], r.spec);
    assert_eq!(r.fingerprint, None, "v1 recorded no fingerprint");
    // Re-running a notebook's ensure_dataset over the unchanged (and tokenized) v1 dataset returns it,
    // rather than trying to register it again (which its tokenizations would refuse).
    let source = wiki.source().unwrap();
    let ensured = ws.ensure_dataset("wiki-ref", &source).unwrap();
    assert_eq!((ensured.id(), &ensured.row().updated_at), (wiki.id(), &r.updated_at));
    assert_eq!(wiki.stats().map(|s| s.documents), Some(5), "v1's statistics are readable");
    assert_eq!(wiki.columns().iter().map(|c| c.0.as_str()).collect::<Vec<_>>(), ["text", "id", "lang"]);
    assert_eq!(texts(&wiki.source().unwrap()), (0..5).map(text_of).collect::<Vec<_>>());
    assert_eq!(ws.catalog().artifact(REF_ID).unwrap().saekit_version, "0.1.0", "from v1's metadata");

    let failed = ws.dataset("hub-failed").unwrap();
    assert_eq!(failed.id(), FAILED_ID);
    assert_eq!(failed.status(), DatasetStatus::Failed);
    assert_eq!(
        failed.row().error.as_deref(),
        Some("hub: GET https://huggingface.co/api/datasets/org/wiki: connection reset")
    );
    assert_eq!((failed.row().source.as_str(), failed.row().repo_id.as_deref()), ("hub", Some("org/wiki")));
    assert_eq!(failed.row().tags, ["hub"]);
    assert_eq!(ws.catalog().artifact(FAILED_ID).unwrap().saekit_version, "unknown", "v1 metadata had none");

    let books = ws.dataset("books").unwrap();
    assert_eq!(books.row().artifact_path.as_deref(), Some(root.join(IMPORTED_DIR).as_path()));
    assert!(root.join(IMPORTED_DIR).join("part-00000.parquet").is_file(), "recover kept the imported data");
    assert_eq!(books.row().tags, ["imported"]);
    assert_eq!(books.row().num_rows, Some(4));
    assert_eq!(texts(&books.source().unwrap()), (0..4).map(text_of).collect::<Vec<_>>());

    let by_tag = |tag: &str| -> Vec<String> {
        let filter = DatasetFilter { tag: Some(tag.into()), ..Default::default() };
        ws.find(&filter).unwrap().names().iter().map(|n| n.to_string()).collect()
    };
    assert_eq!(by_tag("wiki"), ["wiki-ref"]);
    assert_eq!(by_tag("hub"), ["hub-failed"]);
    let filter = DatasetFilter { status: Some(DatasetStatus::Interrupted), ..Default::default() };
    assert_eq!(ws.find(&filter).unwrap().names(), ["half"]);

    // --- tokenizations: numbered after the datasets, newest first, files kept ---
    let (id_a, id_b) = (TOK_A + PENDING_ID, TOK_B + PENDING_ID);
    let tokenizations = ws.tokenizations("wiki-ref").unwrap();
    let summary: Vec<(i64, &str, u64, u64, u64)> =
        tokenizations.iter().map(|t| (t.id, t.name.as_str(), t.num_documents, t.num_sequences, t.num_tokens)).collect();
    assert_eq!(summary, [(id_b, "wiki-ref/gpt2/v1-5", 5, 3, 96), (id_a, "wiki-ref/gpt2/v1-2", 5, 7, 100)]);
    for (t, dir, max_length, packing, created, tokens) in
        [(&tokenizations[1], TOKENS_A, 16, false, CREATED, 100), (&tokenizations[0], TOKENS_B, 32, true, UPDATED, 96)]
    {
        assert_eq!(t.dataset_id, REF_ID);
        assert_eq!((t.tokenizer.as_str(), t.tokenizer_hash.as_str()), ("gpt2", HASH));
        let expected: TokenizeParams = serde_json::from_value(v1_params(max_length, packing)).unwrap();
        assert_eq!(t.params, expected, "{}", t.name);
        assert_eq!(t.params.packing.is_some(), packing);
        assert_eq!(t.artifact_path, root.join(dir));
        assert!(t.artifact_path.join("tokens.bin").is_file(), "recover kept {}", t.artifact_path.display());
        assert_eq!(t.statistics, json!({"documents": 5, "tokens": tokens}));
        assert_eq!((t.saekit_version.as_str(), t.created_at.as_str()), ("0.1.0", created));
    }
    let by_name = ws.tokenization("wiki-ref/gpt2/v1-2").unwrap();
    assert_eq!((by_name.id(), by_name.row().num_tokens), (id_a, 100));
    // The artifact row says what was asked, in v2's form.
    let params = &ws.catalog().artifact(id_a).unwrap().params;
    assert_eq!(params["tokenizer"], json!({"name": "gpt2", "hash": HASH}));
    assert_eq!(params["params"]["max_length"], 16);
    let stored: Vec<String> = conn
        .prepare("SELECT path FROM artifacts WHERE path IS NOT NULL ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(stored, [IMPORTED_DIR, TOKENS_A, TOKENS_B], "paths stay relative to the workspace root");
    let high: i64 =
        conn.query_row("SELECT seq FROM sqlite_sequence WHERE name = 'artifacts'", [], |r| r.get(0)).unwrap();
    assert_eq!(high, id_b, "the migrated ids are the high-water mark new ids start after");

    // --- lineage ---
    let lineage = wiki.lineage().unwrap();
    assert!(lineage.ancestors().is_empty());
    let made: Vec<(i64, &str, DatasetStatus)> =
        lineage.descendants().iter().map(|a| (a.id, a.kind.as_str(), a.status)).collect();
    assert_eq!(made, [(id_a, "tokenization", DatasetStatus::Ready), (id_b, "tokenization", DatasetStatus::Ready)]);
    let up: Vec<i64> = ws.lineage(&id_b).unwrap().ancestors().iter().map(|a| a.id).collect();
    assert_eq!(up, [REF_ID]);
    assert!(books.lineage().unwrap().descendants().is_empty());

    // --- recover ran on the upgraded catalog: orphan and dead partial gone, owned files kept ---
    assert!(!root.join("artifacts/tokens/4242-dead-9").exists(), "the unreferenced directory is removed");
    assert!(!root.join("tmp/tokens-4242-dead-10").exists(), "the dead partial is removed");
    assert_eq!(
        files_under(&root.join("artifacts")),
        [
            format!("{}/part-00000.parquet", IMPORTED_DIR.trim_start_matches("artifacts/")),
            format!("{}/tokens.bin", TOKENS_A.trim_start_matches("artifacts/")),
            format!("{}/tokens.bin", TOKENS_B.trim_start_matches("artifacts/")),
        ]
    );

    // --- a second open is a no-op ---
    let before = dump(&conn);
    let files_before = files_under(&root);
    drop(ws);
    let ws = Workspace::open(&root).unwrap();
    assert_eq!(user_version(&conn), SCHEMA_VERSION);
    assert_eq!(dump(&conn), before, "reopening changed the catalog");
    assert_eq!(files_under(&root), files_before, "reopening changed the files");
    assert_eq!(ws.tokenizations("wiki-ref").unwrap().len(), 2);

    // --- v2 work on the upgraded catalog ---
    // The failed v1 row is taken over by a new attempt: same id, tags kept, error cleared.
    let small = write_jsonl(&root.parent().unwrap().join("data/small.jsonl"), 3);
    let retried = ws.add_dataset("hub-failed", &Source::open(&small).unwrap()).unwrap();
    assert_eq!((retried.id(), retried.status()), (FAILED_ID, DatasetStatus::Ready));
    assert_eq!((retried.row().num_rows, retried.row().error.as_deref()), (Some(3), None));
    assert_eq!(retried.row().tags, ["hub"]);
    // New artifacts are numbered after everything migrated.
    let fresh = ws.add_dataset("fresh", &Source::open(&small).unwrap()).unwrap();
    assert_eq!(fresh.id(), id_b + 1);

    // --- deleting: refused while tokenized, then with cascade the token stores go too ---
    let err = ws.delete_dataset("wiki-ref").unwrap_err();
    match &err {
        Error::InUse { what, dependents } => {
            assert_eq!(what, "dataset `wiki-ref`");
            let mut dependents = dependents.clone();
            dependents.sort();
            assert_eq!(dependents, ["tokenization `wiki-ref/gpt2/v1-2`", "tokenization `wiki-ref/gpt2/v1-5`"]);
        }
        other => panic!("expected InUse, got {other:?}"),
    }
    assert_eq!(ws.tokenizations("wiki-ref").unwrap().len(), 2, "a refused delete leaves everything");
    assert!(root.join(TOKENS_A).is_dir() && root.join(TOKENS_B).is_dir());

    ws.delete_dataset_cascade("wiki-ref").unwrap();
    assert!(matches!(ws.dataset("wiki-ref"), Err(Error::NotFound { .. })));
    assert!(matches!(ws.tokenization("wiki-ref/gpt2/v1-2"), Err(Error::NotFound { .. })));
    assert!(!root.join(TOKENS_A).exists() && !root.join(TOKENS_B).exists(), "token stores removed");
    assert!(fx.ref_file.is_file(), "files registered by reference are not saekit's to delete");
    let left: i64 = conn.query_row("SELECT count(*) FROM lineage", [], |r| r.get(0)).unwrap();
    assert_eq!(left, 0);
    let left: i64 = conn.query_row("SELECT count(*) FROM tokenizations", [], |r| r.get(0)).unwrap();
    assert_eq!(left, 0);
    let left: i64 =
        conn.query_row("SELECT count(*) FROM artifact_tags WHERE artifact_id = ?1", [REF_ID], |r| r.get(0)).unwrap();
    assert_eq!(left, 0, "its tags went with it");

    ws.delete_dataset("books").unwrap();
    assert!(!root.join(IMPORTED_DIR).exists(), "the imported data is saekit's and is removed");
    assert_eq!(ws.datasets().unwrap().names(), ["hub-failed", "half", "fresh"]);
    // Ids are never reused, migrated ones included: not 13 (the deleted tokenization), not 14 again.
    let after = ws.add_dataset("after", &Source::open(&small).unwrap()).unwrap();
    assert_eq!(after.id(), fresh.id() + 1);
    eprintln!("upgrade test took {:.2} s", started.elapsed().as_secs_f64());
}

/// A v1 catalog holding a reference v2 cannot carry over (a tokenization of a dataset that is gone, left
/// by a tool that wrote with foreign keys off) is refused, and left exactly as it was, still v1.
#[test]
fn an_upgrade_that_would_leave_a_dangling_reference_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("ws");
    fs::create_dir_all(root.join("artifacts/tokens/1-a-0")).unwrap();
    fs::write(root.join("artifacts/tokens/1-a-0/tokens.bin"), b"x").unwrap();
    let conn = Connection::open(root.join("catalog.sqlite")).unwrap();
    conn.execute_batch(V1_SCHEMA).unwrap();
    conn.pragma_update(None, "user_version", 1).unwrap();
    conn.execute(
        "INSERT INTO datasets (id, name, source, status, created_at, updated_at)
         VALUES (1, 'kept', 'local', 'ready', ?1, ?1)",
        [CREATED],
    )
    .unwrap();
    // With foreign keys off (bundled SQLite turns them on by default), the dangling row goes in.
    conn.pragma_update(None, "foreign_keys", "OFF").unwrap();
    conn.execute(
        "INSERT INTO tokenizations (id, dataset_id, tokenizer, tokenizer_hash, num_documents, num_sequences,
                                    num_tokens, artifact_path, saekit_version, created_at)
         VALUES (1, 99, 'gpt2', 'h', 1, 1, 1, 'artifacts/tokens/1-a-0', '0.1.0', ?1)",
        [CREATED],
    )
    .unwrap();
    let before = dump(&conn);

    let err = Workspace::open(&root).unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
    assert!(message.contains("schema v2") && message.contains("nothing was changed"), "{message}");
    assert_eq!(user_version(&conn), 1, "still v1");
    assert_eq!(dump(&conn), before, "the v1 tables are untouched");
    assert_eq!(names(&conn, "table"), ["dataset_tags", "datasets", "recipes", "tokenizations", "training_runs"]);
    assert!(root.join("artifacts/tokens/1-a-0/tokens.bin").is_file(), "no recovery ran on a refused catalog");
}
