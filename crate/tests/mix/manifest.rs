//! Bucket manifests on planted JSONL files: the distribution summary, exact largest-remainder counts,
//! every extra field of every example kept byte for byte, the refusal naming the short bucket, seeds,
//! repetition caps, orders, compressed output, and hand-edited manifests that do not hold together.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use saekit::display::Render;
use saekit::mix::manifest::{Bucket, By, Manifest, Order, Phase, Sample, SampleSpec, Select};
use serde_json::{Value, json};

/// A planted instruction-tuning file: `sizes` examples per bucket (shuffled together), each with extra
/// fields, plus one example without a bucket at line 4. Returns the path and its lines.
fn planted(dir: &Path, sizes: &[(&str, usize)]) -> (PathBuf, Vec<String>) {
    let mut lines = Vec::new();
    for (bucket, n) in sizes {
        for i in 0..*n {
            lines.push(
                json!({
                    "input": format!("{bucket} question {i} <script>alert(1)</script>"),
                    "output": format!("answer {i}"),
                    "bucket": bucket,
                    "meta": {"task": format!("{bucket}-task"), "len": i},
                    "_safety_label": if i % 2 == 0 { "safe" } else { "review" },
                    "_reviewed": i % 3 == 0,
                    "_grounding": [i, 1.5e-3, null],
                })
                .to_string(),
            );
        }
    }
    // A fixed interleave (no RNG): every third line from the back.
    let mut mixed: Vec<String> = Vec::new();
    let mut rest = lines;
    while !rest.is_empty() {
        let k = rest.len() / 3;
        mixed.push(rest.remove(k));
    }
    mixed.insert(3, r#"{"input": "no bucket here", "weird": "\u00e9\ud83d\ude00"}"#.to_string());
    let path = dir.join("train.jsonl");
    std::fs::write(&path, mixed.join("\n") + "\n\n").unwrap();
    (path, mixed)
}

fn read_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path).unwrap().lines().map(str::to_string).collect()
}

fn bucket_of(line: &str) -> String {
    let v: Value = serde_json::from_str(line).unwrap();
    v["bucket"].as_str().map(str::to_string).unwrap_or_else(|| v["input"].as_str().unwrap().to_string())
}

fn counts(lines: &[String]) -> BTreeMap<String, usize> {
    let mut c = BTreeMap::new();
    for l in lines {
        *c.entry(bucket_of(l)).or_default() += 1;
    }
    c
}

const SIZES: [(&str, usize); 4] = [("instruction", 120), ("cot_math", 70), ("code", 40), ("analytical", 9)];

fn manifest(dir: &Path) -> (Manifest, Vec<String>) {
    let (path, lines) = planted(dir, &SIZES);
    let analysis = Manifest::analyze(&path, By::field("bucket")).unwrap();
    let mut m = Manifest::from_analysis("sft", &analysis);
    m.save(dir.join("manifest.json")).unwrap();
    (m, lines)
}

#[test]
fn the_distribution_summary_of_a_planted_file() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = planted(dir.path(), &SIZES);
    let a = Manifest::analyze(&path, By::field("bucket")).unwrap();
    assert_eq!(a.rows, 240);
    assert_eq!(a.unassigned, 1);
    assert_eq!(a.unassigned_lines, [4]);
    let got: Vec<(&str, u64)> = a.buckets.iter().map(|b| (b.name.as_str(), b.examples)).collect();
    assert_eq!(got, [("instruction", 120), ("cot_math", 70), ("code", 40), ("analytical", 9)]);
    assert!((a.buckets[0].share - 120.0 / 239.0).abs() < 1e-12);
    assert!((a.buckets.iter().map(|b| b.share).sum::<f64>() - 1.0).abs() < 1e-12);
    assert!(a.buckets.iter().all(|b| b.mean_bytes > 150.0));

    // A nested field, and rules in order with the rest in a bucket of its own.
    let nested = Manifest::analyze(&path, By::field("meta.task")).unwrap();
    assert_eq!(nested.buckets[0].name, "instruction-task");
    let rules = By::rules(
        vec![
            ("mathy".into(), Select::matches("input", "^(cot_math|analytical) ")),
            ("coding".into(), Select::equals("bucket", "code")),
        ],
        Some("other".into()),
    );
    let r = Manifest::analyze(&path, rules).unwrap();
    let got: Vec<(&str, u64)> = r.buckets.iter().map(|b| (b.name.as_str(), b.examples)).collect();
    assert_eq!(got, [("mathy", 79), ("coding", 40), ("other", 121)]);
    assert_eq!(r.unassigned, 0);

    // As a card, a table and bars; the text from the file is escaped.
    let bundle = a.bundle();
    assert!(bundle.plain().contains("instruction") && bundle.plain().contains("50.2%"));
    let html = bundle.get("text/html").unwrap();
    assert!(html.contains("<svg") && html.contains("cot_math"));
    assert_eq!(a.chart().bars.len(), 4);

    // A line that is not JSON names the file and the line.
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(&bad, "{\"bucket\": \"a\"}\n{\"bucket\": \"a\"\n").unwrap();
    let err = Manifest::analyze(&bad, By::field("bucket")).unwrap_err().to_string();
    assert!(err.contains("bad.jsonl") && err.contains("line 2"), "{err}");
    std::fs::write(&bad, "{\"bucket\": \"a\"}\n[1, 2]\n").unwrap();
    let err = Manifest::analyze(&bad, By::field("bucket")).unwrap_err().to_string();
    assert!(err.contains("line 2") && err.contains("expected a JSON object") && err.contains("an array"), "{err}");
}

#[test]
fn exact_largest_remainder_counts_for_totals_whose_shares_are_not_integers() {
    let dir = tempfile::tempdir().unwrap();
    let (mut m, _) = manifest(dir.path());
    m.set_phase(
        Phase::new("p")
            .weight("instruction", 0.45)
            .weight("cot_math", 0.35)
            .weight("code", 0.15)
            .weight("analytical", 0.05),
    )
    .unwrap();
    // total × (0.45, 0.35, 0.15, 0.05), floors then the leftovers to the largest remainders.
    let expected: [(u64, [usize; 4]); 5] = [
        (7, [3, 3, 1, 0]),  // 3.15 2.45 1.05 0.35 → +1 to cot_math (0.45)
        (13, [6, 4, 2, 1]), // 5.85 4.55 1.95 0.65 → +1 to code .95, instruction .85, analytical .65
        (100, [45, 35, 15, 5]),
        (101, [46, 35, 15, 5]), // 45.45 35.35 15.15 5.05
        (33, [15, 11, 5, 2]),   // 14.85 11.55 4.95 1.65 → code .95, instruction .85, analytical .65
    ];
    for (total, want) in expected {
        let out = dir.path().join(format!("s{total}.jsonl"));
        let s = m.create_sample(&SampleSpec::of_phase("p").total(total), &out).unwrap();
        let rows: Vec<usize> = s.buckets.iter().map(|b| b.rows as usize).collect();
        assert_eq!(rows, want, "total {total}");
        let lines = read_lines(&out);
        assert_eq!(lines.len() as u64, total);
        let c = counts(&lines);
        for (name, n) in ["instruction", "cot_math", "code", "analytical"].iter().zip(want) {
            assert_eq!(c.get(*name).copied().unwrap_or(0), n, "total {total}, {name}");
        }
    }
    // 1/3 each of 100: the leftover to the first.
    m.set_phase(
        Phase::new("thirds").weight("instruction", 1.0 / 3.0).weight("cot_math", 1.0 / 3.0).weight("code", 1.0 / 3.0),
    )
    .unwrap();
    assert_eq!(m.counts(&SampleSpec::of_phase("thirds").total(100)).unwrap().1, [34, 33, 33, 0]);
}

#[test]
fn every_extra_field_of_every_example_is_kept_and_the_same_seed_gives_the_same_file() {
    let dir = tempfile::tempdir().unwrap();
    let (m, input) = manifest(dir.path());
    let out = dir.path().join("a.jsonl");
    let spec = SampleSpec::new(150).seed(7);
    let s = m.create_sample(&spec, &out).unwrap();
    let lines = read_lines(&out);
    assert_eq!(lines.len(), 150);
    // Each line is one of the input's, byte for byte; none repeats (no bucket needed repetition).
    let mut pool: HashMap<&str, usize> = HashMap::new();
    for l in &input {
        *pool.entry(l.as_str()).or_default() += 1;
    }
    for l in &lines {
        let left = pool.get_mut(l.as_str()).unwrap_or_else(|| panic!("not an input line: {l}"));
        assert!(*left > 0, "repeated: {l}");
        *left -= 1;
        let v: Value = serde_json::from_str(l).unwrap();
        for field in ["_safety_label", "_reviewed", "_grounding", "meta", "input", "output"] {
            assert!(v.get(field).is_some(), "{field} missing in {l}");
        }
    }
    assert_eq!(s.buckets.iter().map(|b| b.rows).sum::<u64>(), 150);

    // The same seed, the same bytes; another seed, another file with the same counts.
    let again = dir.path().join("b.jsonl");
    m.create_sample(&spec, &again).unwrap();
    assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&again).unwrap());
    let other = dir.path().join("c.jsonl");
    m.create_sample(&SampleSpec::new(150).seed(8), &other).unwrap();
    assert_ne!(std::fs::read(&out).unwrap(), std::fs::read(&other).unwrap());
    assert_eq!(counts(&read_lines(&other)), counts(&lines));
    // The manifest's own seed is the default.
    let mut seeded = m.clone();
    seeded.seed = 7;
    let d = dir.path().join("d.jsonl");
    seeded.create_sample(&SampleSpec::new(150), &d).unwrap();
    assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&d).unwrap());

    // Interleaved: every prefix within one example of each bucket's count share.
    let shares: Vec<f64> = s.buckets.iter().map(|b| b.rows as f64 / 150.0).collect();
    let names: Vec<&str> = s.buckets.iter().map(|b| b.name.as_str()).collect();
    let mut seen = [0f64; 4];
    for (t, l) in lines.iter().enumerate() {
        let i = names.iter().position(|n| *n == bucket_of(l)).unwrap();
        seen[i] += 1.0;
        for j in 0..4 {
            assert!((seen[j] - (t + 1) as f64 * shares[j]).abs() <= 1.0, "prefix {t}");
        }
    }

    // The provenance beside it names the manifest, the seed, the counts and each file's sha256.
    let prov: Value = serde_json::from_str(&std::fs::read_to_string(Sample::provenance_path(&out)).unwrap()).unwrap();
    assert_eq!(prov["seed"], 7);
    assert_eq!(prov["total"], 150);
    assert_eq!(prov["manifest_hash"], m.hash());
    assert_eq!(prov["buckets"][0]["rows"], s.buckets[0].rows);
    assert_eq!(prov["buckets"][0]["sha256"].as_str().unwrap().len(), 64);

    // Tagged: the same objects with the bucket added, nothing else changed.
    let tagged = dir.path().join("t.jsonl");
    m.create_sample(&spec.clone().tag_field("_bucket"), &tagged).unwrap();
    for (plain, tag) in lines.iter().zip(read_lines(&tagged)) {
        let mut a: serde_json::Map<String, Value> = serde_json::from_str(plain).unwrap();
        let b: serde_json::Map<String, Value> = serde_json::from_str(&tag).unwrap();
        a.insert("_bucket".into(), a["bucket"].clone());
        assert_eq!(a, b);
    }
    let err = m.create_sample(&spec.clone().tag_field("_reviewed"), dir.path().join("x.jsonl")).unwrap_err();
    assert!(err.to_string().contains("already has a field `_reviewed`"), "{err}");

    // Grouped and shuffled orders keep the counts; a .gz output reads back to the same lines.
    let g = dir.path().join("g.jsonl");
    m.create_sample(&spec.clone().order(Order::Grouped), &g).unwrap();
    let g = read_lines(&g);
    assert_eq!(counts(&g), counts(&lines));
    assert!(g[..s.buckets[0].rows as usize].iter().all(|l| bucket_of(l) == "instruction"));
    let z = dir.path().join("z.jsonl.gz");
    m.create_sample(&spec.clone().order(Order::Shuffled), &z).unwrap();
    let mut text = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(std::fs::File::open(&z).unwrap()), &mut text)
        .unwrap();
    let mut shuffled: Vec<&str> = text.lines().collect();
    let mut interleaved: Vec<&str> = lines.iter().map(String::as_str).collect();
    assert_ne!(shuffled, interleaved);
    shuffled.sort();
    interleaved.sort();
    assert_eq!(shuffled, interleaved, "the same examples, another order");
}

#[test]
fn a_bucket_too_small_is_refused_with_the_numbers_unless_repetition_is_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let (mut m, _) = manifest(dir.path());
    m.set_phase(Phase::new("heavy").weight("instruction", 0.5).weight("analytical", 0.5).total_samples(30)).unwrap();
    let out = dir.path().join("s.jsonl");
    let err = m.create_sample(&SampleSpec::of_phase("heavy"), &out).unwrap_err().to_string();
    assert!(
        err.contains("bucket `analytical` has 9 examples but its weight 0.5 asks for 15 of 30")
            && err.contains("allows 9")
            && err.contains("max_repetitions ≥ 1.67"),
        "{err}"
    );
    assert!(!err.contains("`instruction` has"), "only the short bucket is named: {err}");
    assert!(!out.exists() && !Sample::provenance_path(&out).exists(), "nothing written");
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(".saekit"))
        .collect();
    assert!(leftovers.is_empty());

    // Allowed to repeat twice: every analytical example once, six of them twice.
    let s = m.create_sample(&SampleSpec::of_phase("heavy").max_repetitions(2.0), &out).unwrap();
    let a = s.buckets.iter().find(|b| b.name == "analytical").unwrap();
    assert_eq!((a.rows, a.examples, a.distinct), (15, 9, 9));
    let mut uses: HashMap<String, usize> = HashMap::new();
    for l in read_lines(&out).into_iter().filter(|l| bucket_of(l) == "analytical") {
        *uses.entry(l).or_default() += 1;
    }
    assert_eq!(uses.len(), 9);
    let mut spread: Vec<usize> = uses.values().copied().collect();
    spread.sort();
    assert_eq!(spread, [1, 1, 1, 2, 2, 2, 2, 2, 2]);
    // A bucket's own cap works the same; no total and no phase size is an error saying so.
    let mut capped = m.clone();
    capped.buckets.iter_mut().find(|b| b.name == "analytical").unwrap().max_repetitions = Some(2.0);
    assert!(capped.create_sample(&SampleSpec::of_phase("heavy"), dir.path().join("c.jsonl")).is_ok());
    let err = m.create_sample(&SampleSpec::default(), dir.path().join("n.jsonl")).unwrap_err();
    assert!(err.to_string().contains("--total-samples"), "{err}");
    let err = m.create_sample(&SampleSpec::of_phase("nope").total(5), dir.path().join("n.jsonl")).unwrap_err();
    assert!(err.to_string().contains("no phase `nope`") && err.to_string().contains("heavy"), "{err}");
}

#[test]
fn buckets_added_from_other_files_and_hand_edited_manifests() {
    let dir = tempfile::tempdir().unwrap();
    let (mut m, _) = manifest(dir.path());
    let creative = dir.path().join("data").join("creative.jsonl");
    std::fs::create_dir_all(creative.parent().unwrap()).unwrap();
    std::fs::write(
        &creative,
        (0..25).map(|i| format!("{{\"input\": \"poem {i}\", \"_x\": {i}}}\n")).collect::<String>(),
    )
    .unwrap();
    let added = m.add_bucket(Bucket::new("creative", &creative).weight(0.2).description("poems")).unwrap();
    assert_eq!(added.examples, 25);
    let w: Vec<f64> = m.buckets.iter().map(|b| b.weight).collect();
    assert!((w[0] - 0.8 * 120.0 / 239.0).abs() < 1e-12 && w[4] == 0.2);
    assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-9);
    assert_eq!(m.buckets[4].source.path, "data/creative.jsonl", "relative to the manifest's folder");
    // A duplicate name or a weight outside [0, 1] is refused, and the manifest is unchanged.
    let before = m.clone();
    assert!(m.add_bucket(Bucket::new("creative", &creative).weight(0.1)).is_err());
    assert!(m.add_bucket(Bucket::new("more", &creative).weight(1.5)).is_err());
    assert!(m.add_bucket(Bucket::new("gone", dir.path().join("missing.jsonl")).weight(0.1)).is_err());
    assert_eq!(m, before);
    m.set_phase(Phase::new("creative").weight("creative", 0.5).weight("instruction", 0.5)).unwrap();
    let path = dir.path().join("manifest.json");
    m.save(&path).unwrap();
    let loaded = Manifest::load(&path).unwrap();
    assert_eq!(loaded, m);
    let s = loaded.create_sample(&SampleSpec::of_phase("creative").total(40), dir.path().join("s.jsonl")).unwrap();
    assert_eq!(s.buckets[4].rows, 20);

    // The same manifest moved with its data still finds it.
    let moved = tempfile::tempdir().unwrap();
    for f in ["manifest.json", "train.jsonl"] {
        std::fs::copy(dir.path().join(f), moved.path().join(f)).unwrap();
    }
    std::fs::create_dir_all(moved.path().join("data")).unwrap();
    std::fs::copy(&creative, moved.path().join("data/creative.jsonl")).unwrap();
    let moved_m = Manifest::load(moved.path().join("manifest.json")).unwrap();
    assert_eq!(moved_m.path_of(&moved_m.buckets[4]), moved.path().join("data/creative.jsonl"));

    // Removing a bucket rescales the rest and the phases that used it.
    let mut r = loaded.clone();
    r.remove_bucket("creative").unwrap();
    assert!((r.buckets.iter().map(|b| b.weight).sum::<f64>() - 1.0).abs() < 1e-9);
    assert_eq!(r.phase("creative").unwrap().weights, BTreeMap::from([("instruction".to_string(), 1.0)]));

    // Hand edits: an unknown bucket in a phase, weights that do not sum to one, a typo'd key.
    let text = std::fs::read_to_string(&path).unwrap();
    let edit = |from: &str, to: &str| {
        assert!(text.contains(from), "{from}");
        std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
        Manifest::load(&path).unwrap_err().to_string()
    };
    let err = edit("\"creative\": 0.5", "\"creativ\": 0.5");
    assert!(
        err.contains("manifest.json")
            && err.contains("phase `creative` gives weight 0.5 to bucket `creativ`, which the manifest does not have")
            && err.contains("instruction, cot_math, code, analytical, creative"),
        "{err}"
    );
    let err = edit("\"creative\": 0.5", "\"creative\": 0.4");
    assert!(err.contains("phase `creative`'s weights sum to 0.9, not 1") && err.contains("--normalize"), "{err}");
    let err = edit("\"weight\": 0.2,", "\"weight\": 0.3,");
    assert!(err.contains("the buckets' weights sum to 1.1") && err.contains("creative 0.3"), "{err}");
    let err = edit("\"examples\"", "\"example\"");
    assert!(err.contains("manifest.json") && err.contains("line") && err.contains("unknown field `example`"), "{err}");
    let err = edit("\"description\": \"poems\"", "\"description\": \"poems\",");
    assert!(err.contains("manifest.json") && err.contains("line"), "{err}");
    std::fs::write(&path, &text).unwrap();
    assert!(Manifest::load(&path).is_ok());
    // Setting a phase that does not hold together leaves the manifest as it was.
    let mut m2 = loaded.clone();
    assert!(m2.set_phase(Phase::new("creative").weight("creative", 2.0)).is_err());
    assert!(m2.set_phase(Phase::new("creative").weight("creative", 2.0).normalized()).is_ok());
    assert_eq!(m2.phase("creative").unwrap().weights["creative"], 1.0);
}

#[test]
fn a_manifest_card_shows_its_phases_side_by_side_and_a_sample_its_first_examples_escaped() {
    let dir = tempfile::tempdir().unwrap();
    let (mut m, _) = manifest(dir.path());
    m.set_phase(Phase::new("phase1_calibration").weight("instruction", 0.7).weight("code", 0.3).total_samples(50))
        .unwrap();
    m.set_phase(Phase::new("reasoning_heavy").weight("cot_math", 0.6).weight("analytical", 0.1).weight("code", 0.3))
        .unwrap();
    let bundle = m.bundle();
    let html = bundle.get("text/html").unwrap();
    assert!(html.contains("phase1_calibration") && html.contains("reasoning_heavy"));
    let grid = m.phases_chart().bundle();
    let svg = grid.get("image/svg+xml").unwrap();
    assert_eq!(svg.matches("<svg ").count(), 4, "the grid and one chart per weight set");
    assert!(bundle.plain().contains("70.0%"));
    let s = m.create_sample(&SampleSpec::of_phase("phase1_calibration"), dir.path().join("s.jsonl")).unwrap();
    assert_eq!(s.total, 50);
    let html = s.bundle().get("text/html").unwrap().to_string();
    assert!(html.contains("&lt;script&gt;") && !html.contains("<script>alert"), "escaped");
    assert_eq!(s.preview.len(), 5);
}
