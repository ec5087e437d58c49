"""Curation from a terminal, read back with Python's own libraries: `saekit validate` on a planted file
(the JSON report lists exactly the planted problems; the HTML report renders in light and dark pages),
`saekit curate convert` to Parquet (pyarrow), JSONL.gz (gzip + json), CSV (csv) and the Hugging Face JSON
document (json), shards with their sha256 (hashlib), and `saekit curate split` with exact, reproducible,
leak-free counts."""

import csv
import gzip
import hashlib
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from test_screenshots import CHROMIUM, JUPYTER_DARK, count_near, screenshot

TASKS = ["qa", "summarize", "code"]


def planted(tmp_path: Path) -> tuple[Path, dict[str, list[int]]]:
    rows = []
    for i in range(60):
        rows.append({
            "question": f"<b>Question {i}</b>: how does part {i * 17 % 101} relate to part {i * 29 % 103} here?",
            "answer": f"Part {i * 17 % 101} feeds part {i * 29 % 103} through channel {i}, so order {i * 7} holds.",
            "task": TASKS[i % 3],
            "extra": {"id": i, "tags": ["a", "b"][: i % 3]},
        })
    planted = {}
    rows.append({"question": "What is missing here, the answer?", "task": "qa", "extra": {"id": 60}})
    planted["schema"] = [len(rows)]
    rows.append({"question": "spam " * 40, "answer": "spam spam spam spam", "task": "qa", "extra": {"id": 61}})
    planted["quality"] = [len(rows)]
    rows.append(dict(rows[4], question=rows[4]["question"].upper()))
    planted["duplicates"] = [len(rows)]
    path = tmp_path / "raw.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path, planted


MAP = ["--map", "input=question", "--map", "output=answer", "--map", "task=task", "--rest", "metadata"]


def test_validate_finds_the_planted_problems_and_writes_reports(saekit, tmp_path):
    path, planted_lines = planted(tmp_path)
    report_html, report_json = tmp_path / "report.html", tmp_path / "report.json"
    done = saekit("validate", path, *MAP, "--report", report_html, "--json", report_json)
    assert done.returncode != 0 and "validation failed: schema, quality, duplicates" in done.stderr, done.stderr
    report = json.loads(report_json.read_text())
    by_name = {c["name"]: c for c in report["checks"]}
    for check, lines in planted_lines.items():
        assert not by_name[check]["passed"]
        assert [f["location"] for f in by_name[check]["findings"]] == [f"line {n}" for n in lines], check
    assert by_name["duplicates"]["findings"][0]["detail"] == "duplicate of line 5"
    assert by_name["balance"]["passed"] and by_name["readiness"]["passed"]
    assert report["statistics"]["examples"] == 63
    assert dict(report["statistics"]["tasks"]) == {"qa": 22, "summarize": 21, "code": 20}
    page = report_html.read_text()
    assert "&lt;B&gt;QUESTION 4&lt;/B&gt;" in page and "<B>QUESTION" not in page, "dataset text is escaped"
    assert "<script" not in page and "http" not in page.split("<body", 1)[1].replace("http://www.w3.org", ""), \
        "self-contained: no scripts, no network"
    # A field the mapping moved is missing; the clean rows pass, with a nested field required.
    moved = saekit("validate", path, *MAP, "--require", "question:any")
    assert moved.returncode != 0 and "`question` is missing" in moved.stdout
    good = tmp_path / "good.jsonl"
    good.write_text("".join(path.read_text().splitlines(keepends=True)[:60]))
    ok = saekit("validate", good, *MAP, "--require", "metadata.extra.id:number")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "[PASS]" in ok.stdout


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed")
def test_the_validation_report_renders_in_light_and_dark_pages(saekit, tmp_path):
    path, _ = planted(tmp_path)
    light = tmp_path / "report.html"
    saekit("validate", path, *MAP, "--report", light)
    img = screenshot(light, tmp_path / "light.png", size="1200,1600")
    assert count_near(img, (0x4C, 0x78, 0xA8)) > 1_000, "the charts' bars are drawn"
    assert count_near(img, (0x1F, 0x23, 0x28), tolerance=12) > 1_000, "dark text on the light page"
    dark = tmp_path / "dark.html"
    dark.write_text(light.read_text().replace("</head>", JUPYTER_DARK, 1))
    img = screenshot(dark, tmp_path / "dark.png", size="1200,1600")
    light_text = count_near(img, (0xF0, 0xF0, 0xF0), tolerance=30)
    assert light_text > 2_000, "text follows the dark theme"
    assert count_near(img, (0x1F, 0x23, 0x28), tolerance=12) < light_text / 20, "no dark-on-dark text"


def test_exports_read_back_with_pyarrow_gzip_csv_and_json(saekit, tmp_path):
    path, _ = planted(tmp_path)
    steps = ["--clean", "--dedup", "--min-quality", "0.5", "--enrich"]
    out = tmp_path / "clean.parquet"
    done = saekit("curate", "convert", path, out, *MAP, *steps, "--parquet-compression", "zstd", "--row-group-size", "16")
    assert done.returncode == 0, done.stderr
    assert "exact_dedup" in done.stdout and "quality" in done.stdout
    table = pq.read_table(out)
    assert table.num_rows == 61  # the spam line and the duplicate dropped
    meta = pq.ParquetFile(out).metadata
    assert meta.num_row_groups == 4 and meta.row_group(0).column(0).compression == "ZSTD"
    rows = table.to_pylist()
    assert rows[0]["input"] == "Question 0: how does part 0 relate to part 0 here?", "markup stripped"
    assert rows[0]["metadata"]["input_chars"] == len(rows[0]["input"])
    assert rows[1]["metadata"]["extra"]["tags"] == ["a"]

    gz = tmp_path / "clean.jsonl.gz"
    assert saekit("curate", "convert", out, gz).returncode == 0
    back = [json.loads(line) for line in gzip.open(gz, "rt")]
    assert [r["input"] for r in back] == [r["input"] for r in rows]

    c = tmp_path / "clean.csv"
    assert saekit("curate", "convert", gz, c).returncode == 0
    with c.open(newline="") as f:
        records = list(csv.DictReader(f))
    assert len(records) == 61 and records[2]["output"] == rows[2]["output"]
    assert json.loads(records[2]["metadata"])["extra"]["id"] == 2

    hf = tmp_path / "clean.json"
    assert saekit("curate", "convert", gz, hf).returncode == 0
    doc = json.loads(hf.read_text())
    assert len(doc["data"]) == 61 and doc["data"][3]["task"] == "qa"
    assert doc["metadata"]["rows"] == 61

    # Headless CSV with a column list, sharded, each shard's sha256 in the manifest.
    headless = tmp_path / "pairs.csv"
    headless.write_text("".join(f"q{i},a{i},{TASKS[i % 3]}\n" for i in range(25)))
    shards = tmp_path / "shards" / "pairs.jsonl"
    done = saekit("curate", "convert", headless, shards, "--columns", "input,output,task", "--shard-size", "10")
    assert done.returncode == 0, done.stderr
    manifest = json.loads((tmp_path / "shards" / "pairs.shards.json").read_text())
    assert [s["rows"] for s in manifest["shards"]] == [10, 10, 5]
    for s in manifest["shards"]:
        assert hashlib.sha256((tmp_path / "shards" / s["path"]).read_bytes()).hexdigest() == s["sha256"]
    first = json.loads((tmp_path / "shards" / "pairs-00000-of-00003.jsonl").read_text().splitlines()[0])
    assert first == {"input": "q0", "output": "a0", "task": "qa"}


def test_splits_are_exact_reproducible_and_leak_free(saekit, tmp_path):
    path = tmp_path / "many.jsonl"
    lines = []
    for i in range(997):
        q = f"question {i - 6 if i % 100 == 99 else i}"  # every 100th repeats an input (same task)
        lines.append(json.dumps({"input": q, "output": f"answer {i}", "task": TASKS[i % 3]}))
    path.write_text("\n".join(lines) + "\n")
    outs = []
    for run in ("a", "b"):
        out = tmp_path / run
        done = saekit("curate", "split", path, "--out", out, "--stratify", "task", "--seed", "9")
        assert done.returncode == 0, done.stderr
        outs.append(out)
    summary = json.loads((outs[0] / "splits.json").read_text())
    # 997 × (0.8, 0.1, 0.1) = 797.6, 99.7, 99.7: floors 797, 99, 99, the two left to the largest remainders.
    assert [s["rows"] for s in summary["splits"]] == [797, 100, 100]
    for name in ("train", "validation", "test"):
        assert (outs[0] / f"{name}.jsonl").read_bytes() == (outs[1] / f"{name}.jsonl").read_bytes()
    seen = {}
    for name in ("train", "validation", "test"):
        for line in (outs[0] / f"{name}.jsonl").read_text().splitlines():
            q = json.loads(line)["input"]
            assert seen.setdefault(q, name) == name, f"{q} in {seen[q]} and {name}"
    per_task = {}
    for name in ("train", "validation", "test"):
        for line in (outs[0] / f"{name}.jsonl").read_text().splitlines():
            t = json.loads(line)["task"]
            per_task.setdefault(t, {}).setdefault(name, 0)
            per_task[t][name] += 1
    for t, counts in per_task.items():
        n = sum(counts.values())
        assert abs(counts["train"] - 0.8 * n) <= 2, (t, counts)
