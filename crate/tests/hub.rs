//! Hub datasets and tokenizers against a local Hub-compatible server (tests/support/mock_hub.rs): listing,
//! plans, downloads into the HF cache layout, retries, resume after cancel and after kill -9, checksums,
//! gated repositories and tokens, errors, offline mode, and catalog registration.

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use saekit::display::Render;
use saekit::hub::{Hub, HubCache, RetryPolicy, Selection};
use saekit::jobs::JobStatus;
use saekit::tokenize::Tokenizer;
use saekit::{Error, Source, Workspace};
use support::mock_hub::{FaultKind, MockFile, MockHub};
use support::{jsonl_bytes, noise, parquet_bytes};

const TOKEN: &str = "hf_SAEKITtestTOKEN_do_not_leak_4f9a2c";

fn quick_retry() -> RetryPolicy {
    RetryPolicy {
        max_retries: 4,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(200),
        read_timeout: Duration::from_secs(2),
    }
}

/// A Hub client for the mock server, with a private cache.
fn client(server: &MockHub, cache: &Path) -> Hub {
    Hub::new(&server.url(), HubCache::new(cache)).with_retry(quick_retry())
}

/// A dataset repo laid out as `datasets` pushes it: `data/{split}-0000N-of-0000M.parquet` and a card.
fn tiny_repo(server: &MockHub, id: &str) -> String {
    server.add_dataset(
        id,
        vec![
            MockFile::git(".gitattributes", "*.parquet filter=lfs diff=lfs merge=lfs -text\n"),
            MockFile::git("README.md", "---\nlicense: mit\n---\n# Tiny\n"),
            MockFile::lfs("data/train-00000-of-00002.parquet", parquet_bytes("train", 0..100)),
            MockFile::lfs("data/train-00001-of-00002.parquet", parquet_bytes("train", 100..250)),
            MockFile::lfs("data/test-00000-of-00001.parquet", parquet_bytes("test", 0..40)),
        ],
    )
}

/// A Parquet file of about 2.5 MB (for interrupting mid-file).
fn big_parquet() -> Vec<u8> {
    use std::sync::Arc;

    use arrow::array::{RecordBatch, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    let schema = Arc::new(Schema::new(vec![Field::new("text", DataType::Utf8, false)]));
    let bytes = noise(2_400_000, 7);
    let texts: Vec<String> = bytes.chunks(120).map(|c| c.iter().map(|b| (b'a' + b % 26) as char).collect()).collect();
    let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(StringArray::from(texts))]).unwrap();
    let mut out = Vec::new();
    let props = parquet::file::properties::WriterProperties::builder()
        .set_compression(parquet::basic::Compression::UNCOMPRESSED)
        .set_dictionary_enabled(false)
        .build();
    let mut w = parquet::arrow::ArrowWriter::try_new(&mut out, schema, Some(props)).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    out
}

fn texts(source: &Source) -> Vec<String> {
    use arrow::array::AsArray;
    let mut out = Vec::new();
    for batch in source.documents().unwrap() {
        let batch = batch.unwrap();
        out.extend(batch.column(0).as_string::<i32>().iter().map(|t| t.unwrap().to_string()));
    }
    out
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Every file under `dir`, recursively (not following links).
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                stack.push(e.path());
            } else {
                out.push(e.path());
            }
        }
    }
    out
}

fn repo_dir(cache: &Path, id: &str) -> PathBuf {
    cache.join(format!("datasets--{}", id.replace('/', "--")))
}

#[test]
fn lists_configs_splits_and_files_as_the_hub_lays_them_out() {
    let server = MockHub::start();
    let cache = tempfile::tempdir().unwrap();
    let hub = client(&server, cache.path());

    // data/{split}-* shards, and the Hub's automatic Parquet conversion beside them.
    let commit = tiny_repo(&server, "acme/tiny");
    server.add_repo(
        "datasets",
        "acme/tiny",
        "refs/convert/parquet",
        vec![
            MockFile::lfs("default/train/0000.parquet", parquet_bytes("train", 0..250)),
            MockFile::lfs("default/test/0000.parquet", parquet_bytes("test", 0..40)),
        ],
    );
    let info = hub.dataset("acme/tiny").info().unwrap();
    assert_eq!(info.commit, commit);
    assert_eq!(info.config_names(), ["default"]);
    let config = info.config("default").unwrap();
    assert_eq!(config.split_names(), ["train", "test"]);
    let train = config.split("train").unwrap();
    assert_eq!(train.files.len(), 2);
    assert!(train.files.iter().all(|f| f.size.is_some() && f.sha256.is_some()), "sizes and sha256 from blobs=true");
    let readme = info.files.iter().find(|f| f.path == "README.md").unwrap();
    assert!(readme.sha256.is_none() && readme.blob_id.is_some(), "git files have a blob id, not a sha256");
    assert_eq!(info.parquet_conversion.len(), 1);
    assert_eq!(info.parquet_conversion[0].split_names(), ["train", "test"]);
    let plain = info.bundle().plain().to_string();
    assert!(plain.contains("data/train-00001-of-00002.parquet"), "{plain}");
    assert!(plain.contains("refs/convert/parquet: default"), "{plain}");

    // The conversion branch itself: the folder is the config, the subfolder the split.
    let converted = hub.dataset("acme/tiny").revision("refs/convert/parquet").info().unwrap();
    assert_eq!(converted.config_names(), ["default"]);
    assert_eq!(converted.configs[0].split_names(), ["train", "test"]);

    // The dataset card's `configs:` section decides, with data_files as a list of splits or a pattern.
    let card = "---\nlicense: cc-by-4.0\nconfigs:\n- config_name: en\n  data_files:\n  - split: train\n    path: \
                \"en/train-*.jsonl\"\n  - split: validation\n    path: en/valid.jsonl\n- config_name: fr\n  data_files: \
                fr/*.jsonl\n  default: true\n---\n# Card\n";
    server.add_dataset(
        "acme/cards",
        vec![
            MockFile::git("README.md", card),
            MockFile::lfs("en/train-0.jsonl", jsonl_bytes("en", 5)),
            MockFile::lfs("en/train-1.jsonl", jsonl_bytes("en1", 5)),
            MockFile::lfs("en/valid.jsonl", jsonl_bytes("env", 3)),
            MockFile::lfs("fr/a.jsonl", jsonl_bytes("fr", 4)),
        ],
    );
    let info = hub.dataset("acme/cards").info().unwrap();
    assert_eq!(info.config_names(), ["en", "fr"]);
    assert_eq!(info.default_config().unwrap().name, "fr");
    assert_eq!(info.config("en").unwrap().split_names(), ["train", "validation"]);
    assert_eq!(info.config("en").unwrap().split("train").unwrap().files.len(), 2);
    assert_eq!(info.config("fr").unwrap().split_names(), ["train"]);

    // Per-config folders without a card.
    server.add_dataset(
        "acme/folders",
        vec![
            MockFile::lfs("en/train.csv", b"text,n\nhello,1\nworld,2\n".to_vec()),
            MockFile::lfs("en/test.csv", b"text,n\nbye,3\n".to_vec()),
            MockFile::lfs("de/train.csv", b"text,n\nhallo,1\n".to_vec()),
        ],
    );
    let info = hub.dataset("acme/folders").info().unwrap();
    assert_eq!(info.config_names(), ["de", "en"]);
    assert_eq!(info.config("en").unwrap().split_names(), ["train", "test"]);
}

#[test]
fn plan_shows_files_sizes_and_disk_space_and_escapes_repo_text() {
    let server = MockHub::start();
    let cache = tempfile::tempdir().unwrap();
    let hub = client(&server, cache.path());
    let card = "---\nconfigs:\n- config_name: \"<script>alert(1)</script>\"\n  data_files: data/*.jsonl\n---\n";
    server.add_dataset(
        "acme/odd",
        vec![MockFile::git("README.md", card), MockFile::lfs("data/x.jsonl", jsonl_bytes("x", 10))],
    );
    let info = hub.dataset("acme/odd").info().unwrap();
    let html = info.bundle().get("text/html").unwrap().to_string();
    assert!(!html.contains("<script>alert"), "repo text is escaped");
    assert!(html.contains("&lt;script&gt;"));

    tiny_repo(&server, "acme/tiny");
    let info = hub.dataset("acme/tiny").info().unwrap();
    let plan = info.plan(&Selection::new().split("train")).unwrap();
    assert_eq!(plan.files.len(), 2);
    let sizes: u64 = info.config("default").unwrap().split("train").unwrap().num_bytes();
    assert_eq!(plan.total_bytes(), sizes);
    assert_eq!(plan.bytes_to_fetch(), sizes);
    assert!(plan.free_bytes > 0);
    let bundle = plan.bundle();
    let plain = bundle.plain();
    for needle in ["data/train-00000-of-00002.parquet", "to download", "free disk", "enough", "train"] {
        assert!(plain.contains(needle), "{needle} in {plain}");
    }
    assert!(plain.contains(&saekit::display::bytes(sizes)), "{plain}");
    assert!(bundle.get("text/html").unwrap().contains("free disk"));
    // Subset of files by glob.
    let one = info.plan(&Selection::new().files(["data/train-00001-*"])).unwrap();
    assert_eq!(one.files.iter().map(|f| f.path.as_str()).collect::<Vec<_>>(), ["data/train-00001-of-00002.parquet"]);
    let none = info.plan(&Selection::new().files(["nothing*"])).unwrap_err().to_string();
    assert!(none.contains("data/test-00000-of-00001.parquet"), "{none}");
}

#[test]
fn downloads_into_the_cache_layout_registers_and_reads_back() {
    let server = MockHub::start();
    let cache = tempfile::tempdir().unwrap();
    let ws_dir = tempfile::tempdir().unwrap();
    let hub = client(&server, cache.path());
    let commit = tiny_repo(&server, "acme/tiny");
    let ws = Workspace::open(ws_dir.path()).unwrap();
    let plan = hub.dataset("acme/tiny").info().unwrap().plan(&Selection::new().split("train")).unwrap();
    let job = ws.download_dataset_job("tiny-train", &plan);
    let dataset = job.wait().unwrap();
    assert_eq!(job.status(), JobStatus::Done);
    assert_eq!(dataset.row().num_rows, Some(250));
    assert_eq!(dataset.row().source, "hub");
    assert_eq!(dataset.row().repo_id.as_deref(), Some("acme/tiny"));
    let hubmeta = &dataset.row().metadata["hub"];
    assert_eq!(hubmeta["commit"], commit.as_str());
    assert_eq!(hubmeta["revision"], "main");
    assert_eq!(hubmeta["config"], "default");
    assert_eq!(hubmeta["splits"][0], "train");
    // Reads through the same Source readers as local files, in order.
    let got = texts(&ws.dataset("tiny-train").unwrap().source().unwrap());
    assert_eq!(got.len(), 250);
    assert_eq!(got[0], "train row 0");
    assert_eq!(got[249], "train row 249");
    let card = dataset.bundle().plain().to_string();
    assert!(card.contains("hub (acme/tiny)"), "{card}");

    // The standard layout: blobs named by sha256, snapshot links, refs/main = commit.
    let repo = repo_dir(cache.path(), "acme/tiny");
    assert_eq!(std::fs::read_to_string(repo.join("refs/main")).unwrap(), commit);
    let sha = plan.files[0].sha256.clone().unwrap();
    assert!(repo.join("blobs").join(&sha).is_file());
    let link = repo.join("snapshots").join(&commit).join("data/train-00000-of-00002.parquet");
    assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
    assert_eq!(std::fs::read_link(&link).unwrap(), Path::new("../../../blobs").join(&sha));
    assert!(!files_under(&repo).iter().any(|p| p.to_string_lossy().ends_with(".part")));

    // A second plan sees everything cached; downloading it again fetches no file bytes.
    server.clear_log();
    let plan = hub.dataset("acme/tiny").info().unwrap().plan(&Selection::new().split("train")).unwrap();
    assert_eq!(plan.cached_files(), 2);
    assert_eq!(plan.bytes_to_fetch(), 0);
    ws.download_dataset("tiny-again", &plan).unwrap();
    assert_eq!(server.body_bytes("/cdn/"), 0);
    assert!(server.gets("/resolve/").is_empty());
    // A ready dataset of that name is not replaced.
    assert!(matches!(ws.download_dataset("tiny-train", &plan), Err(Error::AlreadyExists { .. })));
}

#[test]
fn retries_server_errors_rate_limits_and_dropped_connections() {
    let server = MockHub::start();
    let cache = tempfile::tempdir().unwrap();
    let ws_dir = tempfile::tempdir().unwrap();
    let hub = client(&server, cache.path());
    tiny_repo(&server, "acme/tiny");
    let info = hub.dataset("acme/tiny").info().unwrap();
    let plan = info.plan(&Selection::new().split("test")).unwrap();
    let size = plan.files[0].size.unwrap();
    let sha = plan.files[0].sha256.clone().unwrap();
    server.clear_log();
    server.fault("/resolve/", FaultKind::Status(500), 2);
    server.fault("/cdn/", FaultKind::TooMany { retry_after: 0 }, 1);
    server.fault("/cdn/", FaultKind::Status(503), 1);
    server.fault("/cdn/", FaultKind::DropAfter(1000), 1);
    let ws = Workspace::open(ws_dir.path()).unwrap();
    let dataset = ws.download_dataset("t", &plan).unwrap();
    assert_eq!(dataset.row().num_rows, Some(40));
    let statuses: Vec<u16> = server.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses.iter().filter(|s| **s == 500).count(), 2, "{statuses:?}");
    assert!(statuses.contains(&429) && statuses.contains(&503), "{statuses:?}");
    // After the drop, only the rest was asked for and sent.
    let gets = server.gets("/cdn/");
    let last = gets.last().unwrap();
    assert_eq!(last.range.as_deref(), Some("bytes=1000-"));
    assert_eq!(last.body_bytes, size - 1000);
    assert_eq!(server.body_bytes("/cdn/"), size, "no byte fetched twice");
    let blob = repo_dir(cache.path(), "acme/tiny").join("blobs").join(&sha);
    assert_eq!(std::fs::metadata(blob).unwrap().len(), size);

    // Past the retry budget: a clear error, and the partial file stays for the next attempt.
    server.fault("/cdn/", FaultKind::Status(500), 100);
    let plan = info.plan(&Selection::new().split("train")).unwrap();
    let err = ws.download_dataset("t2", &plan).unwrap_err().to_string();
    assert!(err.contains("500") && err.contains("try again"), "{err}");
    // The catalog says what went wrong; nothing half-registered.
    let failed = ws.dataset("t2").unwrap();
    assert_eq!(failed.status(), saekit::DatasetStatus::Failed);
    assert!(failed.row().error.as_deref().is_some_and(|e| e.contains("500")), "{:?}", failed.row().error);
    assert_eq!((failed.row().num_rows, failed.row().paths.len()), (None, 0));
}

#[test]
fn a_stalled_connection_times_out_and_resumes_where_it_stopped() {
    let server = MockHub::start();
    let cache = tempfile::tempdir().unwrap();
    let hub = client(&server, cache.path())
        .with_retry(RetryPolicy { read_timeout: Duration::from_millis(500), ..quick_retry() });
    let data = big_parquet();
    let size = data.len() as u64;
    server.add_dataset("acme/big", vec![MockFile::lfs("data/train-00000-of-00001.parquet", data)]);
    server.fault("/cdn/", FaultKind::StallAfter(300_000, Duration::from_secs(30)), 1);
    let path = hub.dataset("acme/big").file("data/train-00000-of-00001.parquet").unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().len(), size);
    let gets = server.gets("/cdn/");
    assert_eq!(gets.len(), 2);
    assert_eq!(gets[1].range.as_deref(), Some("bytes=300000-"));
    assert_eq!(server.body_bytes("/cdn/"), size);
}

#[test]
fn a_server_that_ignores_range_gets_the_file_fetched_again_whole() {
    let server = MockHub::start();
    let cache = tempfile::tempdir().unwrap();
    let hub = client(&server, cache.path());
    tiny_repo(&server, "acme/tiny");
    let path = "data/train-00001-of-00002.parquet";
    let size = hub.dataset("acme/tiny").info().unwrap().files.iter().find(|f| f.path == path).unwrap().size.unwrap();
    server.fault("/cdn/", FaultKind::DropAfter(1000), 1);
    server.fault("/cdn/", FaultKind::IgnoreRange, 1);
    let local = hub.dataset("acme/tiny").file(path).unwrap();
    assert_eq!(std::fs::read(&local).unwrap(), parquet_bytes("train", 100..250), "verified, not appended twice");
    let gets = server.gets("/cdn/");
    assert_eq!(gets[1].range.as_deref(), Some("bytes=1000-"));
    assert_eq!(gets[1].status, 200);
    assert_eq!(server.body_bytes("/cdn/"), 1000 + size);
}

#[test]
fn resumes_after_cancel_fetching_only_the_missing_bytes() {
    let server = MockHub::start();
    let cache = tempfile::tempdir().unwrap();
    let ws_dir = tempfile::tempdir().unwrap();
    let hub = client(&server, cache.path())
        .with_retry(RetryPolicy { read_timeout: Duration::from_secs(30), ..quick_retry() });
    let data = big_parquet();
    let size = data.len() as u64;
    server.add_dataset("acme/big", vec![MockFile::lfs("data/train-00000-of-00001.parquet", data)]);
    let plan = hub.dataset("acme/big").info().unwrap().plan(&Selection::new()).unwrap();
    let sha = plan.files[0].sha256.clone().unwrap();
    let part = repo_dir(cache.path(), "acme/big").join("blobs").join(format!("{sha}.part"));
    let cut = 700_000u64;
    server.fault("/cdn/", FaultKind::StallAfter(cut, Duration::from_secs(20)), 1);
    let ws = Workspace::open(ws_dir.path()).unwrap();
    let job = ws.download_dataset_job("big", &plan);
    wait_for("the first bytes on disk", || std::fs::metadata(&part).map(|m| m.len() == cut).unwrap_or(false));
    let progress = job.progress();
    assert_eq!(progress.phase, "downloading");
    assert_eq!(progress.total, Some(size));
    assert!(progress.detail.contains("file 1/1 data/train-00000-of-00001.parquet"), "{}", progress.detail);
    job.cancel();
    // The stalled read ends at the read timeout at the latest; cancel is seen at the next check.
    assert!(matches!(job.wait(), Err(Error::Cancelled)));
    assert_eq!(job.status(), JobStatus::Cancelled);
    assert!(ws.dataset("big").is_err(), "nothing half-registered");
    assert!(ws.datasets().unwrap().is_empty());
    assert_eq!(std::fs::metadata(&part).unwrap().len(), cut, "the partial file stays");

    // The plan sees the partial; the next download asks only for the rest.
    let plan = hub.dataset("acme/big").info().unwrap().plan(&Selection::new()).unwrap();
    assert_eq!(plan.files[0].partial, cut);
    assert_eq!(plan.bytes_to_fetch(), size - cut);
    assert!(plan.bundle().plain().contains("resume after"));
    server.clear_log();
    let dataset = ws.download_dataset("big", &plan).unwrap();
    assert_eq!(dataset.row().num_rows, Some(20_000));
    let gets = server.gets("/cdn/");
    assert_eq!(gets.len(), 1);
    assert_eq!(gets[0].range.as_deref(), Some(format!("bytes={cut}-").as_str()));
    assert_eq!(gets[0].body_bytes, size - cut);
    assert!(!part.exists());
}

#[test]
fn resumes_after_kill_9_of_the_cli_mid_file() {
    let server = MockHub::start();
    let home = tempfile::tempdir().unwrap();
    let ws_dir = tempfile::tempdir().unwrap();
    let data = big_parquet();
    let size = data.len() as u64;
    let sha = MockFile::lfs("x", data.clone()).sha256;
    server.add_dataset("acme/big", vec![MockFile::lfs("data/train-00000-of-00001.parquet", data)]);
    let cut = 900_000u64;
    server.fault("/cdn/", FaultKind::StallAfter(cut, Duration::from_secs(30)), 1);
    let cli = |args: &[&str]| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_saekit"));
        cmd.arg("--workspace").arg(ws_dir.path()).args(args);
        cmd.env("HF_ENDPOINT", server.url()).env("HF_HOME", home.path()).env_remove("HF_HUB_CACHE");
        cmd.env_remove("HF_TOKEN").env_remove("HF_TOKEN_PATH").env_remove("HF_HUB_OFFLINE");
        cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
        cmd
    };
    let mut child = cli(&["hub", "download", "acme/big", "--name", "big"]).spawn().unwrap();
    let part = home.path().join("hub/datasets--acme--big/blobs").join(format!("{sha}.part"));
    wait_for("the child to write the first bytes", || {
        std::fs::metadata(&part).map(|m| m.len() == cut).unwrap_or(false)
    });
    // kill -9: no chance to clean up.
    let killed = std::process::Command::new("kill").arg("-9").arg(child.id().to_string()).status().unwrap();
    assert!(killed.success());
    let _ = child.wait();
    let ws = Workspace::open(ws_dir.path()).unwrap();
    // The killed download's row reads as interrupted (its owner is gone), with where it had got to.
    let interrupted = ws.dataset("big").unwrap();
    assert_eq!(interrupted.status(), saekit::DatasetStatus::Interrupted);
    assert_eq!((interrupted.row().num_rows, interrupted.row().paths.len()), (None, 0));
    assert_eq!(std::fs::metadata(&part).unwrap().len(), cut);

    server.clear_log();
    let out = cli(&["hub", "download", "acme/big", "--name", "big"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("resume after"), "the plan shows the partial file: {stdout}");
    let gets = server.gets("/cdn/");
    assert_eq!(gets.len(), 1);
    assert_eq!(gets[0].range.as_deref(), Some(format!("bytes={cut}-").as_str()));
    assert_eq!(gets[0].body_bytes, size - cut, "only the missing bytes were fetched");
    let ws = Workspace::open(ws_dir.path()).unwrap();
    assert_eq!(ws.dataset("big").unwrap().row().num_rows, Some(20_000));
    let blob = home.path().join("hub/datasets--acme--big/blobs").join(&sha);
    let got = std::fs::read(&blob).unwrap();
    assert_eq!(support::mock_hub::hex(&<sha2::Sha256 as sha2::Digest>::digest(&got)), sha);
}

#[test]
fn a_corrupted_download_is_caught_by_its_sha256() {
    let server = MockHub::start();
    let cache = tempfile::tempdir().unwrap();
    let hub = client(&server, cache.path());
    tiny_repo(&server, "acme/tiny");
    let plan = hub.dataset("acme/tiny").info().unwrap().plan(&Selection::new().split("test")).unwrap();
    server.fault("/cdn/", FaultKind::Corrupt, 1);
    let ws_dir = tempfile::tempdir().unwrap();
    let ws = Workspace::open(ws_dir.path()).unwrap();
    let err = ws.download_dataset("t", &plan).unwrap_err();
    assert!(matches!(err, Error::Checksum { .. }), "{err}");
    assert!(err.to_string().contains("SHA-256") && err.to_string().contains("download again"), "{err}");
    let blobs = repo_dir(cache.path(), "acme/tiny").join("blobs");
    let sha = plan.files[0].sha256.clone().unwrap();
    let left: Vec<PathBuf> = files_under(&blobs).into_iter().filter(|p| p.to_string_lossy().contains(&sha)).collect();
    assert!(left.is_empty(), "neither a blob nor a part is left: {left:?}");
    assert_eq!(ws.dataset("t").unwrap().status(), saekit::DatasetStatus::Failed);
    // The next attempt takes the failed row over, fetches the file whole and succeeds.
    let failed_id = ws.dataset("t").unwrap().id();
    let dataset = ws.download_dataset("t", &plan).unwrap();
    assert_eq!(
        (dataset.status(), dataset.id(), dataset.row().error.clone()),
        (saekit::DatasetStatus::Ready, failed_id, None)
    );
}

#[test]
fn gated_repos_need_a_token_which_never_shows() {
    let server = MockHub::start();
    let cache = tempfile::tempdir().unwrap();
    let ws_dir = tempfile::tempdir().unwrap();
    tiny_repo(&server, "acme/gated");
    server.gate("datasets", "acme/gated", TOKEN);

    // Without a token: listing works (as on the Hub), the files say how to give a token.
    let anonymous = client(&server, cache.path());
    let info = anonymous.dataset("acme/gated").info().unwrap();
    assert_eq!(info.gated.as_deref(), Some("auto"));
    let plan = info.plan(&Selection::new().split("test")).unwrap();
    let ws = Workspace::open(ws_dir.path()).unwrap();
    let err = ws.download_dataset("g", &plan).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::NeedsToken { token_given: false, .. }), "{text}");
    for needle in ["needs a Hugging Face token", "HF_TOKEN", "~/.cache/huggingface/token", "Hub::with_token"] {
        assert!(text.contains(needle), "{needle} in {text}");
    }
    // A wrong token: no access.
    let wrong = client(&server, cache.path()).with_token(Some("hf_wrong"));
    let err = ws.download_dataset("g", &wrong.dataset("acme/gated").info().unwrap().plan(&Selection::new()).unwrap());
    let text = err.unwrap_err().to_string();
    assert!(text.contains("has no access"), "{text}");

    // With the token: it downloads; the token went only in Authorization headers.
    let hub = client(&server, cache.path()).with_token(Some(TOKEN));
    let info = hub.dataset("acme/gated").info().unwrap();
    let plan = info.plan(&Selection::new()).unwrap();
    let job = ws.download_dataset_job("gated", &plan);
    let dataset = job.wait().unwrap();
    assert_eq!(dataset.row().num_rows, Some(290));
    assert!(server.requests().iter().any(|r| r.authorization.as_deref() == Some(&format!("Bearer {TOKEN}"))));

    // The token appears in no display, debug output, error or workspace file.
    let mut shown: Vec<String> = Vec::new();
    for bundle in
        [hub.bundle(), info.bundle(), plan.bundle(), job.bundle(), dataset.bundle(), ws.datasets().unwrap().bundle()]
    {
        shown.extend(bundle.entries().iter().map(|(_, content)| content.clone()));
    }
    shown.push(format!("{hub:?} {info:?} {plan:?} {:?}", hub.dataset("acme/gated")));
    shown.push(serde_json::to_string(&plan).unwrap());
    shown.push(serde_json::to_string(&info).unwrap());
    shown.push(dataset.row().metadata.to_string());
    shown.push(format!("{:?}", job.progress()));
    let missing = hub.dataset("acme/gated").info().unwrap().plan(&Selection::new().split("nope")).unwrap_err();
    shown.push(missing.to_string());
    shown.push(format!("{missing:?}"));
    server.fault("/cdn/", FaultKind::Status(500), 100);
    let fresh = tempfile::tempdir().unwrap();
    let failing = client(&server, fresh.path()).with_token(Some(TOKEN));
    let plan2 = failing.dataset("acme/gated").info().unwrap().plan(&Selection::new()).unwrap();
    let failed = ws.download_dataset_job("failing", &plan2);
    let err = failed.wait().unwrap_err();
    shown.push(err.to_string());
    shown.push(format!("{err:?}"));
    shown.extend(failed.bundle().entries().iter().map(|(_, c)| c.clone()));
    server.clear_faults();
    assert!(hub.bundle().plain().contains("set (given as an argument)"));
    for text in &shown {
        assert!(!text.contains(TOKEN) && !text.contains("SAEKITtestTOKEN"), "token leaked into: {text}");
    }
    drop(ws);
    for file in files_under(ws_dir.path()).into_iter().chain(files_under(cache.path())) {
        let bytes = std::fs::read(&file).unwrap_or_default();
        assert!(!bytes.windows(TOKEN.len()).any(|w| w == TOKEN.as_bytes()), "token found in {}", file.display());
    }
}

#[test]
fn the_cli_reads_the_token_from_the_environment_or_token_file_and_never_prints_it() {
    let server = MockHub::start();
    let home = tempfile::tempdir().unwrap();
    let ws_dir = tempfile::tempdir().unwrap();
    tiny_repo(&server, "acme/gated");
    server.gate("datasets", "acme/gated", TOKEN);
    let token_file = home.path().join("my-token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let run = |extra: &[(&str, &str)], args: &[&str]| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_saekit"));
        cmd.arg("--workspace").arg(ws_dir.path()).args(args);
        cmd.env("HF_ENDPOINT", server.url()).env("HF_HOME", home.path());
        for var in ["HF_TOKEN", "HF_TOKEN_PATH", "HF_HUB_CACHE", "HF_HUB_OFFLINE"] {
            cmd.env_remove(var);
        }
        for (k, v) in extra {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(!text.contains(TOKEN), "token printed: {text}");
        (out.status.success(), text)
    };
    let (ok, text) = run(&[], &["hub", "download", "acme/gated", "--split", "test", "--name", "g"]);
    assert!(!ok && text.contains("HF_TOKEN"), "{text}");
    let (ok, text) = run(&[("HF_TOKEN", TOKEN)], &["hub", "download", "acme/gated", "--split", "test", "--name", "g"]);
    assert!(ok, "{text}");
    assert!(text.contains("Dataset g"), "{text}");
    let path = token_file.to_str().unwrap();
    let (ok, text) =
        run(&[("HF_TOKEN_PATH", path)], &["hub", "download", "acme/gated", "--split", "train", "--name", "g2"]);
    assert!(ok, "{text}");
    // $HF_HOME/token, as `huggingface-cli login` writes it.
    std::fs::write(home.path().join("token"), TOKEN).unwrap();
    let (ok, text) = run(&[], &["hub", "download", "acme/gated", "--split", "train", "--name", "g3"]);
    assert!(ok, "{text}");
    // No HF_HOME: ~/.cache/huggingface/token and ~/.cache/huggingface/hub.
    let user = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(user.path().join(".cache/huggingface")).unwrap();
    std::fs::write(user.path().join(".cache/huggingface/token"), TOKEN).unwrap();
    let home = user.path().to_str().unwrap();
    let no_hf_home = [("HF_HOME", ""), ("XDG_CACHE_HOME", ""), ("HOME", home)];
    let (ok, text) = run(&no_hf_home, &["hub", "download", "acme/gated", "--split", "test", "--name", "g4"]);
    assert!(ok, "{text}");
    assert!(user.path().join(".cache/huggingface/hub/datasets--acme--gated/refs/main").is_file());
    let (ok, text) = run(&[], &["hub", "info", "acme/gated"]);
    assert!(ok && text.contains("gated") && text.contains("train"), "{text}");
    let (_, text) = run(&[], &["list"]);
    assert!(text.contains("g3"), "{text}");
    let catalog = std::fs::read(ws_dir.path().join("catalog.sqlite")).unwrap();
    assert!(!catalog.windows(TOKEN.len()).any(|w| w == TOKEN.as_bytes()));
}

#[test]
fn clear_errors_for_missing_repo_config_split_and_refused_connections() {
    let server = MockHub::start();
    let cache = tempfile::tempdir().unwrap();
    let hub = client(&server, cache.path());
    let err = hub.dataset("acme/nope").info().unwrap_err();
    assert!(matches!(err, Error::RepoNotFound { .. }), "{err}");
    let text = err.to_string();
    assert!(text.contains("dataset repository `acme/nope` was not found") && text.contains("HF_TOKEN"), "{text}");
    let with_token = hub.clone().with_token(Some(TOKEN));
    let text = with_token.dataset("acme/nope").info().unwrap_err().to_string();
    assert!(text.contains("not found") && !text.contains(TOKEN), "{text}");

    tiny_repo(&server, "acme/tiny");
    let text = hub.dataset("acme/tiny").revision("v9").info().unwrap_err().to_string();
    assert!(text.contains("no revision `v9`"), "{text}");
    let info = hub.dataset("acme/tiny").info().unwrap();
    let err = info.plan(&Selection::new().config("fr")).unwrap_err();
    assert_eq!(err.to_string(), "dataset `acme/tiny` has no config `fr`; its configs are: default");
    let err = info.plan(&Selection::new().split("validation")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "config `default` of dataset `acme/tiny` has no split `validation`; its splits are: train, test"
    );

    // Nothing listens on this port.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let down = Hub::new(&format!("http://127.0.0.1:{port}"), HubCache::new(cache.path())).with_retry(quick_retry());
    let err = down.dataset("acme/tiny").info().unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::Network { .. }), "{text}");
    assert!(
        text.contains("connection refused") && text.contains("HF_ENDPOINT") && text.contains("HF_HUB_OFFLINE"),
        "{text}"
    );
}

#[test]
fn a_full_disk_is_refused_before_downloading() {
    let server = MockHub::start();
    let cache = tempfile::tempdir().unwrap();
    tiny_repo(&server, "acme/tiny");
    let hub = client(&server, cache.path()).with_free_space_limit(Some(1000));
    let plan = hub.dataset("acme/tiny").info().unwrap().plan(&Selection::new()).unwrap();
    assert_eq!(plan.free_bytes, 1000);
    assert!(plan.bundle().plain().contains("NOT enough"), "{}", plan.bundle().plain());
    let err = plan.check_space().unwrap_err();
    assert!(matches!(err, Error::DiskFull { .. }));
    server.clear_log();
    let ws_dir = tempfile::tempdir().unwrap();
    let ws = Workspace::open(ws_dir.path()).unwrap();
    let text = ws.download_dataset("t", &plan).unwrap_err().to_string();
    assert!(text.contains("not enough disk space") && text.contains("HF_HUB_CACHE"), "{text}");
    assert!(server.gets("/cdn/").is_empty() && server.gets("/resolve/").is_empty(), "nothing fetched");
}

#[test]
fn offline_mode_serves_the_cache_and_names_what_is_missing() {
    let server = MockHub::start();
    let cache = tempfile::tempdir().unwrap();
    let ws_dir = tempfile::tempdir().unwrap();
    tiny_repo(&server, "acme/tiny");
    let online = client(&server, cache.path());
    let ws = Workspace::open(ws_dir.path()).unwrap();
    let plan = online.dataset("acme/tiny").info().unwrap().plan(&Selection::new().split("train")).unwrap();
    ws.download_dataset("first", &plan).unwrap();
    server.clear_log();

    let offline = client(&server, cache.path()).with_offline(true);
    let info = offline.dataset("acme/tiny").info().unwrap();
    assert!(info.from_cache);
    assert_eq!(info.config("default").unwrap().split_names(), ["train"], "only what is cached");
    let plan = info.plan(&Selection::new().split("train")).unwrap();
    let dataset = ws.download_dataset("second", &plan).unwrap();
    assert_eq!(dataset.row().num_rows, Some(250));
    assert!(server.requests().is_empty(), "offline asks nothing of the network");
    let err = offline.dataset("acme/other").info().unwrap_err();
    assert!(matches!(err, Error::Offline { .. }));
    assert!(err.to_string().contains("HF_HUB_OFFLINE"), "{err}");
    let err = offline.model("acme/model").file("tokenizer.json").unwrap_err().to_string();
    assert!(err.contains("tokenizer.json") && err.contains("not in the Hub cache"), "{err}");
}

#[test]
fn a_cache_filled_by_another_tool_is_reused_without_fetching() {
    // Lay out a cache as huggingface_hub does, by hand: blobs, a relative snapshot link, refs/main.
    let server = MockHub::start();
    let cache = tempfile::tempdir().unwrap();
    let commit = tiny_repo(&server, "acme/tiny");
    let file = MockFile::lfs("data/test-00000-of-00001.parquet", parquet_bytes("test", 0..40));
    let repo = repo_dir(cache.path(), "acme/tiny");
    std::fs::create_dir_all(repo.join("blobs")).unwrap();
    std::fs::write(repo.join("blobs").join(&file.sha256), file.data.as_slice()).unwrap();
    let snap = repo.join("snapshots").join(&commit).join("data");
    std::fs::create_dir_all(&snap).unwrap();
    std::os::unix::fs::symlink(format!("../../../blobs/{}", file.sha256), snap.join("test-00000-of-00001.parquet"))
        .unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), &commit).unwrap();

    let ws_dir = tempfile::tempdir().unwrap();
    let ws = Workspace::open(ws_dir.path()).unwrap();
    // Offline: straight from the cache.
    let offline = client(&server, cache.path()).with_offline(true);
    let plan = offline.dataset("acme/tiny").info().unwrap().plan(&Selection::new().split("test")).unwrap();
    assert_eq!(ws.download_dataset("off", &plan).unwrap().row().num_rows, Some(40));
    assert!(server.requests().is_empty());
    // Online: the listing is asked for, the file is not.
    let online = client(&server, cache.path());
    let plan = online.dataset("acme/tiny").info().unwrap().plan(&Selection::new().split("test")).unwrap();
    assert_eq!(plan.cached_files(), 1);
    ws.download_dataset("on", &plan).unwrap();
    assert!(server.gets("/cdn/").is_empty());
    assert!(server.gets("data/test-00000").is_empty());
}

#[test]
fn a_row_cap_fetches_only_the_files_needed_and_registers_exactly_that_many_rows() {
    let server = MockHub::start();
    let cache = tempfile::tempdir().unwrap();
    let hub = client(&server, cache.path());
    server.add_dataset(
        "acme/shards",
        (0..3)
            .map(|i| {
                MockFile::lfs(
                    &format!("data/train-0000{i}-of-00003.parquet"),
                    parquet_bytes("s", i * 100..(i + 1) * 100),
                )
            })
            .collect(),
    );
    let plan = hub.dataset("acme/shards").info().unwrap().plan(&Selection::new().max_rows(150)).unwrap();
    assert!(plan.bundle().plain().contains("150 rows"));
    let ws_dir = tempfile::tempdir().unwrap();
    let ws = Workspace::open(ws_dir.path()).unwrap();
    let dataset = ws.download_dataset_job("capped", &plan).wait().unwrap();
    assert_eq!(dataset.row().num_rows, Some(150));
    assert_eq!(server.gets("/cdn/").len(), 2, "the third shard is not fetched");
    let got = texts(&ws.dataset("capped").unwrap().source().unwrap());
    assert_eq!(got.len(), 150);
    assert_eq!(got[149], "s row 149");
    assert_eq!(dataset.row().metadata["hub"]["max_rows"], 150);
    // The imported rows live in the workspace and go with the dataset.
    let artifact = dataset.row().artifact_path.clone().unwrap();
    assert!(artifact.starts_with(ws.root()));
    ws.delete_dataset("capped").unwrap();
    assert!(!artifact.exists());
}

#[test]
fn jsonl_and_a_text_template_from_a_card_config() {
    let server = MockHub::start();
    let cache = tempfile::tempdir().unwrap();
    let hub = client(&server, cache.path());
    let card = "---\nconfigs:\n- config_name: qa\n  data_files:\n  - split: train\n    path: qa/*.jsonl\n---\n";
    let rows = "{\"q\": \"why?\", \"a\": \"because\"}\n{\"q\": \"how?\", \"a\": \"so\"}\n";
    server.add_dataset(
        "acme/qa",
        vec![MockFile::git("README.md", card), MockFile::lfs("qa/part-0.jsonl", rows.as_bytes().to_vec())],
    );
    let plan = hub
        .dataset("acme/qa")
        .info()
        .unwrap()
        .plan(&Selection::new().config("qa").split("train"))
        .unwrap()
        .text_template("Q: {q}\nA: {a}");
    let ws_dir = tempfile::tempdir().unwrap();
    let ws = Workspace::open(ws_dir.path()).unwrap();
    ws.download_dataset("qa", &plan).unwrap();
    assert_eq!(texts(&ws.dataset("qa").unwrap().source().unwrap()), ["Q: why?\nA: because", "Q: how?\nA: so"]);
}

#[test]
fn tokenizers_by_model_repo_id() {
    let server = MockHub::start();
    let cache = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let gpt2 = Tokenizer::gpt2().unwrap();
    gpt2.save(&dir.path().join("tokenizer.json")).unwrap();
    let json = std::fs::read(dir.path().join("tokenizer.json")).unwrap();
    server.add_repo(
        "models",
        "gpt2",
        "main",
        vec![MockFile::lfs("tokenizer.json", json), MockFile::git("config.json", "{}")],
    );
    let hub = client(&server, cache.path());
    let tokenizer = Tokenizer::from_hub_with(&hub, "gpt2").unwrap();
    assert_eq!(tokenizer.name(), "gpt2");
    let text = "Sparse autoencoders, explained.";
    assert_eq!(tokenizer.encode(text).unwrap(), gpt2.encode(text).unwrap());
    assert!(cache.path().join("models--gpt2/refs/main").is_file());
    assert!(
        server.gets("/gpt2/resolve/main/tokenizer.json").is_empty(),
        "resolve is asked with HEAD, the bytes come from the CDN"
    );
    // Then offline, from the cache.
    server.clear_log();
    let offline = client(&server, cache.path()).with_offline(true);
    let again = Tokenizer::from_hub_with(&offline, "gpt2").unwrap();
    assert_eq!(again.hash(), tokenizer.hash());
    assert!(server.requests().is_empty());
    // A missing model says so.
    let err = Tokenizer::from_hub_with(&hub, "acme/none").unwrap_err().to_string();
    assert!(err.contains("model repository `acme/none` was not found"), "{err}");
}
