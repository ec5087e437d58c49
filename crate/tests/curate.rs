//! Curation end to end on planted files: reading JSONL/CSV/Parquet into the user's record shape,
//! validation that finds exactly the planted problems (and nothing else), exact and reproducible splits
//! (stratified, no input in two splits), and exports that read back the same.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use saekit::curate::validate::{FieldKind, FieldRule};
use saekit::curate::{ExportFormat, ExportSpec, ReadSpec, Records, SplitSpec, ValidateSpec};
use saekit::display::Render;
use serde_json::{Map, Value, json};

/// A little generator so good examples are different texts (no two share long runs of words).
struct Words(u64);

impl Words {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 33
    }

    fn text(&mut self, n: usize) -> String {
        const SYL: [&str; 16] =
            ["ka", "lo", "mi", "ne", "ru", "sa", "te", "vo", "zi", "pa", "do", "fe", "gu", "hi", "jo", "be"];
        (0..n)
            .map(|_| {
                let len = 2 + self.next() % 3;
                (0..len).map(|_| SYL[(self.next() % 16) as usize]).collect::<String>()
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

fn object(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => unreachable!(),
    }
}

/// 48 good examples and planted problems; returns the file and the planted lines by problem.
fn planted(dir: &Path) -> (std::path::PathBuf, BTreeMap<&'static str, Vec<u64>>) {
    let mut w = Words(7);
    let tasks = ["qa", "summarize", "translate"];
    let mut lines: Vec<Value> = Vec::new();
    for i in 0..48 {
        let task = tasks[i % 3];
        let mut v = json!({
            "input": w.text(12),
            "output": w.text(60),
            "task": task,
            "split": if i % 4 == 0 { "test" } else { "train" },
        });
        if task == "translate" {
            v["source_lang"] = json!("en");
            v["target_lang"] = json!(if i % 2 == 0 { "fr" } else { "de" });
        }
        lines.push(v);
    }
    let mut planted: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    let mut add = |lines: &mut Vec<Value>, kind: &'static str, v: Value| {
        lines.push(v);
        planted.entry(kind).or_default().push(lines.len() as u64);
    };
    add(&mut lines, "schema", json!({"input": w.text(12), "task": "qa", "split": "train"}));
    add(&mut lines, "schema", json!({"input": 42, "output": w.text(30), "task": "qa", "split": "train"}));
    add(
        &mut lines,
        "schema",
        json!({"input": w.text(12), "output": w.text(40), "task": "translate", "source_lang": "en", "split": "train"}),
    );
    add(
        &mut lines,
        "quality",
        json!({"input": "buy now ".repeat(30), "output": "buy now buy now buy now", "task": "qa", "split": "train"}),
    );
    add(
        &mut lines,
        "quality",
        json!({"input": "$$$ ### 123 !!! %%% 456 &&& *** 789 ((( )))", "output": "+++ --- === 000 ~~~", "task": "summarize", "split": "train"}),
    );
    add(
        &mut lines,
        "quality",
        json!({"input": format!("{} \u{7} bell", w.text(10)), "output": w.text(40), "task": "qa", "split": "train"}),
    );
    // An exact duplicate of line 2 (other case and spacing) and a near duplicate of line 3.
    let mut dup = lines[1].clone();
    dup["input"] = json!(format!("  {}  ", dup["input"].as_str().unwrap().to_uppercase().replace(' ', "   ")));
    add(&mut lines, "exact", dup);
    let mut near = lines[2].clone();
    let out = near["output"].as_str().unwrap().to_string();
    near["output"] = json!(format!("{} zonk", &out[..out.rfind(' ').unwrap()]));
    near["split"] = json!("train");
    add(&mut lines, "near", near);
    add(&mut lines, "balance", json!({"input": w.text(12), "output": w.text(60), "task": "rare", "split": "train"}));
    // The input of line 1 (a test example) again in train, with another output.
    let leak = json!({"input": lines[0]["input"].clone(), "output": w.text(60), "task": "qa", "split": "train"});
    add(&mut lines, "leak", leak);
    let path = dir.join("sft.jsonl");
    std::fs::write(&path, lines.iter().map(|v| v.to_string() + "\n").collect::<String>()).unwrap();
    (path, planted)
}

fn spec() -> ValidateSpec {
    let mut spec = ValidateSpec { split: Some("split".into()), ..Default::default() };
    spec.per_task.insert("translate".into(), vec![FieldRule::new("target_lang", FieldKind::String)]);
    spec
}

fn lines_of(report: &saekit::curate::ValidationReport, check: &str) -> Vec<String> {
    report.check(check).unwrap().findings.iter().map(|f| f.location.clone()).collect()
}

#[test]
fn validation_finds_exactly_the_planted_problems() {
    let dir = tempfile::tempdir().unwrap();
    let (path, planted) = planted(dir.path());
    let records = Records::read(&path, &ReadSpec::new()).unwrap();
    assert_eq!(records.len(), 58);
    let report = records.validate(&spec()).unwrap();
    let at = |k: &str| planted[k].iter().map(|l| format!("line {l}")).collect::<Vec<_>>();

    let schema = report.check("schema").unwrap();
    assert!(!schema.passed);
    assert_eq!(lines_of(&report, "schema"), at("schema"));
    let details: Vec<&str> = schema.findings.iter().map(|f| f.detail.as_str()).collect();
    assert_eq!(
        details,
        [
            "`output` is missing",
            "`input` is a number, expected a string",
            "`target_lang` is missing (required for task `translate`)"
        ]
    );

    let quality = report.check("quality").unwrap();
    assert!(!quality.passed);
    let mut low = lines_of(&report, "quality");
    low.sort_by_key(|l| l[5..].parse::<u64>().unwrap());
    assert_eq!(low, at("quality"));
    let why: Vec<&str> = quality.findings.iter().map(|f| f.detail.as_str()).collect();
    assert!(why.iter().any(|w| w.contains("word 3-grams repeated")), "{why:?}");
    assert!(why.iter().any(|w| w.contains("letters <")), "{why:?}");
    assert!(why.iter().any(|w| w.contains("control or replacement")), "{why:?}");

    let dups = report.check("duplicates").unwrap();
    assert!(!dups.passed);
    let found: Vec<(String, String)> = dups.findings.iter().map(|f| (f.location.clone(), f.detail.clone())).collect();
    assert_eq!(
        found,
        [
            (at("exact")[0].clone(), "duplicate of line 2".to_string()),
            (at("near")[0].clone(), "near-duplicate of line 3".to_string()),
        ]
    );
    assert_eq!((report.statistics.exact_duplicates, report.statistics.near_duplicates), (1, 1));

    let balance = report.check("balance").unwrap();
    assert!(!balance.passed && balance.summary.contains("rare (1,"), "{}", balance.summary);
    let readiness = report.check("readiness").unwrap();
    assert!(!readiness.passed);
    assert_eq!(lines_of(&report, "readiness"), at("leak"));
    assert!(readiness.findings[0].detail.contains("also in split `test` at line 1"));

    // Statistics.
    let s = &report.statistics;
    assert_eq!(s.examples, 58);
    assert_eq!(s.tasks[0], ("qa".to_string(), 21));
    assert_eq!(s.language_pairs, [("en→de".to_string(), 8), ("en→fr".to_string(), 9)]);
    assert_eq!(s.splits, [("train".to_string(), 46), ("test".to_string(), 12)]);
    assert_eq!(s.quality.iter().map(|q| q.1).sum::<u64>(), 58);
    assert!(s.vocabulary > 1000);
    assert_eq!(report.scores.len(), 58);

    // Clean data passes every check; thresholds decide.
    let bad: HashSet<u64> = planted.values().flatten().copied().collect();
    let keep: Vec<usize> = (0..records.len()).filter(|i| !bad.contains(&records.lines[*i])).collect();
    let clean = records.subset(&keep);
    let ok = clean.validate(&spec()).unwrap();
    assert!(ok.passed(), "{}", ok.checks_table().plain());
    let mut loose = spec();
    loose.thresholds.max_low_quality = 0.06;
    loose.thresholds.max_duplicates = 0.04;
    let r = records.validate(&loose).unwrap();
    assert!(r.check("quality").unwrap().passed && r.check("duplicates").unwrap().passed);

    // Renders: badge, escaped text, charts as SVG; exports as HTML and JSON.
    let html = report.with_records(&records).get("text/html").unwrap().to_string();
    assert!(html.contains("FAIL: schema, quality, duplicates, balance, readiness"));
    assert!(html.contains("<svg"));
    let page = dir.path().join("report.html");
    report.write_html(Some(&records), &page).unwrap();
    let page = std::fs::read_to_string(&page).unwrap();
    assert!(page.contains("validation of") && !page.contains("<script"));
    let json_path = dir.path().join("report.json");
    report.write_json(&json_path).unwrap();
    let back: Value = serde_json::from_str(&std::fs::read_to_string(&json_path).unwrap()).unwrap();
    assert_eq!(back["checks"][0]["name"], "schema");
    assert_eq!(back["checks"][0]["passed"], false);
}

#[test]
fn files_of_every_format_read_into_the_users_record_shape() {
    let dir = tempfile::tempdir().unwrap();
    // CSV without a header, with a column list; mapped, the rest under metadata.
    let csv = dir.path().join("pairs.csv");
    std::fs::write(&csv, "what is 2+2,4,math,easy\n\"say \"\"hi\"\"\",hi,chat,easy\n").unwrap();
    let spec = ReadSpec::new()
        .columns(&["question", "answer", "category", "level"])
        .map("input", "question")
        .map("output", "answer")
        .map("task", "category")
        .rest("metadata");
    let r = Records::read(&csv, &spec).unwrap();
    assert_eq!(r.len(), 2);
    assert_eq!(
        Value::Object(r.rows[1].clone()),
        json!({"input": "say \"hi\"", "output": "hi", "task": "chat", "metadata": {"level": "easy"}})
    );
    assert_eq!(r.location(1), "line 2");
    // A short CSV row names the line.
    std::fs::write(&csv, "a,b\n1,2\n3\n").unwrap();
    let err = Records::read(&csv, &ReadSpec::new()).unwrap_err().to_string();
    assert!(err.contains("pairs.csv") && err.contains("line 3"), "{err}");

    // JSONL, gzip-compressed, with nested fields mapped by dotted paths.
    let gz = dir.path().join("nested.jsonl.gz");
    let mut e = flate2::write::GzEncoder::new(std::fs::File::create(&gz).unwrap(), flate2::Compression::fast());
    std::io::Write::write_all(&mut e, b"{\"q\": {\"text\": \"hello\"}, \"a\": \"world\", \"id\": 7}\n\n").unwrap();
    e.finish().unwrap();
    let r = Records::read(&gz, &ReadSpec::new().map("input", "q.text").map("output", "a")).unwrap();
    assert_eq!(Value::Object(r.rows[0].clone()), json!({"input": "hello", "output": "world"}));
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(&bad, "{\"a\": 1}\n{oops}\n").unwrap();
    let err = Records::read(&bad, &ReadSpec::new()).unwrap_err().to_string();
    assert!(err.contains("bad.jsonl") && err.contains("line 2"), "{err}");

    // Parquet written by saekit reads back to the same records.
    let records = Records::from_rows(vec![
        object(json!({"input": "a", "output": "b", "n": 1, "ok": true})),
        object(json!({"input": "c", "output": "d", "n": 2, "ok": false})),
    ]);
    let pq = dir.path().join("x.parquet");
    records.export(&pq, &ExportSpec::new(ExportFormat::Parquet)).unwrap();
    let back = Records::read(&pq, &ReadSpec::new()).unwrap();
    assert_eq!(back.rows, records.rows);
    assert_eq!(back.location(1), "row 1");
    assert!(
        Records::read(dir.path().join("x.txt"), &ReadSpec::new())
            .unwrap_err()
            .to_string()
            .contains("cannot tell the format")
    );
}

fn many(n: usize) -> Records {
    let tasks = ["qa", "qa", "qa", "summarize", "code"];
    Records::from_rows(
        (0..n)
            .map(|i| {
                // Every 50th input repeats the one five before it (same task, another output): the pair
                // must stay together.
                let k = if i % 50 == 49 { i - 5 } else { i };
                object(json!({"input": format!("question {k}"), "output": format!("answer {i}"), "task": tasks[i % 5]}))
            })
            .collect(),
    )
}

#[test]
fn splits_are_exact_reproducible_stratified_and_never_share_an_input() {
    let records = many(1000);
    let s = records.split(&SplitSpec::train_validation_test().seed(3)).unwrap();
    assert_eq!(s.counts(), [800, 100, 100]);
    assert_eq!(s.targets, [800, 100, 100]);
    let again = records.split(&SplitSpec::train_validation_test().seed(3)).unwrap();
    assert_eq!(s, again);
    let other = records.split(&SplitSpec::train_validation_test().seed(4)).unwrap();
    assert_ne!(s.indices, other.indices);
    assert_eq!(other.counts(), [800, 100, 100]);
    let all: HashSet<usize> = s.indices.iter().flatten().copied().collect();
    assert_eq!(all.len(), 1000, "every record once");
    let split_of: HashMap<usize, usize> =
        s.indices.iter().enumerate().flat_map(|(j, v)| v.iter().map(move |&i| (i, j))).collect();
    for i in (49..1000).step_by(50) {
        assert_eq!(split_of[&i], split_of[&(i - 5)], "identical inputs {i} and {} in one split", i - 5);
    }

    // Shares that are not integers: 7 × (0.5, 0.3, 0.2) = 3.5, 2.1, 1.4 → 4, 2, 1.
    let seven = many(7);
    let s7 = seven.split(&SplitSpec::new(&[("a", 0.5), ("b", 0.3), ("c", 0.2)])).unwrap();
    assert_eq!(s7.counts(), [4, 2, 1]);

    // Stratified by task: the totals exact, each task within one of its share in every split.
    let st = records.split(&SplitSpec::train_validation_test().seed(1).stratify("task")).unwrap();
    assert_eq!(st.counts(), [800, 100, 100]);
    let sizes: HashMap<&str, f64> = [("qa", 600.0), ("summarize", 200.0), ("code", 200.0)].into();
    for (task, c) in &st.strata {
        for (j, r) in [0.8, 0.1, 0.1].iter().enumerate() {
            assert!((c[j] as f64 - sizes[task.as_str()] * r).abs() <= 1.0, "{task}: {c:?}");
        }
    }
    let train = st.records(&records, "train").unwrap();
    assert_eq!(train.len(), 800);
    assert!(st.bundle().plain().contains("stratified by task"));
    assert!(records.split(&SplitSpec::new(&[("a", -1.0)])).is_err());
}

#[test]
fn exports_read_back_and_shards_carry_their_hashes() {
    let dir = tempfile::tempdir().unwrap();
    let records = Records::from_rows(
        (0..25)
            .map(|i| {
                object(json!({"input": format!("q{i}, \"quoted\"\nline"), "output": format!("a{i}"), "meta": {"i": i}}))
            })
            .collect(),
    );
    // JSONL (zstd) round trip.
    let z = dir.path().join("out.jsonl.zst");
    records.export(&z, &ExportSpec::new(ExportFormat::Jsonl)).unwrap();
    assert_eq!(Records::read(&z, &ReadSpec::new()).unwrap().rows, records.rows);
    // CSV: a header, nested values as JSON text; read back as strings.
    let c = dir.path().join("out.csv");
    records.export(&c, &ExportSpec::new(ExportFormat::Csv)).unwrap();
    let back = Records::read(&c, &ReadSpec::new()).unwrap();
    assert_eq!(back.rows[3]["input"], records.rows[3]["input"]);
    assert_eq!(back.rows[3]["meta"], json!("{\"i\":3}"));
    // The Hugging Face JSON document.
    let h = dir.path().join("out.json");
    records.export(&h, &ExportSpec::new(ExportFormat::HfJson)).unwrap();
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(&h).unwrap()).unwrap();
    assert_eq!(doc["data"].as_array().unwrap().len(), 25);
    assert_eq!(doc["data"][4], Value::Object(records.rows[4].clone()));
    // Shards of 10: three files, named as the Hub names them, and a manifest with rows and sha256.
    let s = dir.path().join("shards").join("train.parquet");
    let report = records.export(&s, &ExportSpec::new(ExportFormat::Parquet).shard_size(10)).unwrap();
    let names: Vec<String> =
        report.files.iter().map(|f| f.path.file_name().unwrap().to_string_lossy().into_owned()).collect();
    assert_eq!(names, ["train-00000-of-00003.parquet", "train-00001-of-00003.parquet", "train-00002-of-00003.parquet"]);
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(report.manifest.as_ref().unwrap()).unwrap()).unwrap();
    assert_eq!(manifest["rows"], 25);
    let rows: Vec<u64> = manifest["shards"].as_array().unwrap().iter().map(|s| s["rows"].as_u64().unwrap()).collect();
    assert_eq!(rows, [10, 10, 5]);
    for (f, m) in report.files.iter().zip(manifest["shards"].as_array().unwrap()) {
        use sha2::Digest;
        let sha: String =
            sha2::Sha256::digest(std::fs::read(&f.path).unwrap()).iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(m["sha256"], sha);
    }
    let leftovers = std::fs::read_dir(dir.path().join("shards"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(".saekit"))
        .count();
    assert_eq!(leftovers, 0);
}

#[test]
fn a_curated_dataset_is_a_catalog_artifact_with_lineage_steps_and_splits() {
    use saekit::curate::{Curate, CurateStep};
    use saekit::steps::StepSpec;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("raw.jsonl");
    let mut lines = String::new();
    for i in 0..60 {
        lines.push_str(&json!({"question": format!("<p>Question   number {i}?</p>"), "answer": format!("Answer&amp;{i}"), "task": if i % 3 == 0 { "math" } else { "chat" }}).to_string());
        lines.push('\n');
    }
    // Two exact duplicates (after cleaning) and one too short.
    lines.push_str("{\"question\": \"<b>Question number 1?</b>\", \"answer\": \"Answer&amp;1\", \"task\": \"chat\"}\n");
    lines.push_str("{\"question\": \"Question  number 2?\", \"answer\": \"Answer&2\", \"task\": \"chat\"}\n");
    lines.push_str("{\"question\": \"?\", \"answer\": \"\", \"task\": \"chat\"}\n");
    std::fs::write(&path, lines).unwrap();
    let ws = saekit::Workspace::open(dir.path().join("ws")).unwrap();
    let read = ReadSpec::new().map("input", "question").map("output", "answer").map("task", "task");
    let request = Curate::file("qa-clean", &path, read)
        .step(CurateStep::clean())
        .step(CurateStep::require_input_output())
        .step(CurateStep::filter(StepSpec::chars(Some(5), None)))
        .step(CurateStep::filter(StepSpec::ExactDedup))
        .step(CurateStep::enrich(false))
        .split(SplitSpec::new(&[("train", 0.75), ("test", 0.25)]).seed(2).stratify("task"));
    let curated = ws.curate(&request).unwrap();
    let counts: Vec<(String, u64, u64, u64)> =
        curated.steps.iter().map(|s| (s.step.clone(), s.seen, s.changed, s.dropped)).collect();
    assert_eq!(
        counts,
        [
            ("clean".to_string(), 63, 62, 0),
            ("require".to_string(), 63, 0, 1),
            ("length".to_string(), 62, 0, 0),
            ("exact_dedup".to_string(), 62, 0, 2),
            ("enrich".to_string(), 60, 60, 0),
        ]
    );
    assert_eq!(curated.steps[1].examples[0], ("line 63".to_string(), "`output` is empty".to_string()));
    assert_eq!(curated.steps[3].examples[0], ("line 61".to_string(), "duplicate of line 2".to_string()));
    assert_eq!(curated.records.rows[0]["input"], "Question number 0?");
    assert_eq!(curated.records.rows[0]["output"], "Answer&0");
    assert_eq!(curated.records.rows[0]["metadata"]["input_chars"], 18);
    assert_eq!(curated.splits.as_ref().unwrap().counts(), [45, 15]);

    // In the catalog: a dataset made from the registered input, one Parquet file per split.
    let dataset = ws.dataset("qa-clean").unwrap();
    assert_eq!(dataset.row().num_rows, Some(60));
    let lineage = dataset.lineage().unwrap().bundle().plain().to_string();
    assert!(lineage.contains("curate/qa-clean/input"), "{lineage}");
    let source = dataset.source().unwrap();
    let names: Vec<String> =
        source.files().iter().map(|f| f.file_name().unwrap().to_string_lossy().into_owned()).collect();
    assert_eq!(names, ["train.parquet", "test.parquet"]);
    let train = Records::read(&source.files()[0], &ReadSpec::new()).unwrap();
    assert_eq!(train.len(), 45);
    assert!(train.rows.iter().all(|r| r["split"] == "train"));
    let meta = &dataset.row().metadata["curation"];
    assert_eq!(meta["input_records"], 63);
    assert!(curated.bundle().plain().contains("exact_dedup"));
    // The same name again is refused (a catalog name is made once).
    assert!(ws.curate(&request).is_err());
}

#[test]
fn a_streamed_conversion_writes_what_the_in_memory_one_does_and_dedups_across_batches() {
    use saekit::curate::CurateStep;
    use saekit::curate::stream::convert;
    use saekit::steps::StepSpec;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("in.jsonl");
    let mut body = String::new();
    for i in 0..250 {
        // Every 10th repeats one from far earlier (another batch); 23 of them are repeats (rows 99 and 199
        // name questions 9 and 19, which no other row has).
        let k = if i % 10 == 9 { i / 10 } else { i };
        body.push_str(&json!({"q": format!("<i>Question</i>  {k}"), "a": format!("answer {k}"), "n": i}).to_string());
        body.push('\n');
    }
    std::fs::write(&path, body).unwrap();
    let read = ReadSpec::new().map("input", "q").map("output", "a").rest("metadata");
    let steps = [CurateStep::clean(), CurateStep::filter(StepSpec::ExactDedup), CurateStep::enrich(false)];
    let records = Records::read(&path, &read).unwrap();
    let (kept, reports) = records.preprocess(&steps).unwrap();
    assert_eq!(reports[1].dropped, 23);
    for (name, format) in
        [("out.jsonl", ExportFormat::Jsonl), ("out.csv", ExportFormat::Csv), ("out.json", ExportFormat::HfJson)]
    {
        let streamed = dir.path().join(format!("streamed-{name}"));
        let (report, counts) = convert(&path, &read, &steps, &streamed, &ExportSpec::new(format), 16).unwrap();
        assert_eq!(report.rows, 227);
        assert_eq!(counts, reports, "{name}: the same counts, batch by batch");
        let whole = dir.path().join(name);
        kept.export(&whole, &ExportSpec::new(format)).unwrap();
        let (a, b) = (std::fs::read_to_string(&streamed).unwrap(), std::fs::read_to_string(&whole).unwrap());
        if format == ExportFormat::HfJson {
            let (a, b): (Value, Value) = (serde_json::from_str(&a).unwrap(), serde_json::from_str(&b).unwrap());
            assert_eq!(a["data"], b["data"]);
        } else {
            assert_eq!(a, b, "{name}");
        }
    }
    // Parquet and shards, streamed: the same records back, shards named once their count is known.
    let shards = dir.path().join("pq").join("train.parquet");
    let (report, _) =
        convert(&path, &read, &steps, &shards, &ExportSpec::new(ExportFormat::Parquet).shard_size(100), 16).unwrap();
    let names: Vec<String> =
        report.files.iter().map(|f| f.path.file_name().unwrap().to_string_lossy().into_owned()).collect();
    assert_eq!(names, ["train-00000-of-00003.parquet", "train-00001-of-00003.parquet", "train-00002-of-00003.parquet"]);
    assert_eq!(report.files.iter().map(|f| f.rows).collect::<Vec<_>>(), [100, 100, 27]);
    let mut back = Vec::new();
    for f in &report.files {
        back.extend(Records::read(&f.path, &ReadSpec::new()).unwrap().rows);
    }
    assert_eq!(back.len(), 227);
    assert_eq!(back[7]["input"], kept.rows[7]["input"]);
    assert_eq!(back[226]["metadata"]["n"], kept.rows[226]["metadata"]["n"]);
    assert!(report.manifest.unwrap().exists());
    let leftovers = std::fs::read_dir(dir.path().join("pq"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(".saekit"))
        .count();
    assert_eq!(leftovers, 0);
}
