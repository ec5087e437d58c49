"""Mixes read back with Python's own libraries: `saekit mix run` on local JSONL files, its Parquet shards read
with pyarrow (columns, counts per source, metadata as JSON, the provenance in each shard's key-value
metadata), and recipes checked against the published JSON schema with `jsonschema`."""

import json
from pathlib import Path

import jsonschema
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = ROOT / "crate" / "schema" / "mix-recipe.schema.json"


def write_jsonl(path: Path, prefix: str, rows: int) -> Path:
    path.write_text("".join(json.dumps({"text": f"{prefix} {i} <b>bold</b>", "i": i}) + "\n" for i in range(rows)))
    return path


def recipe(tmp_path: Path) -> dict:
    a = write_jsonl(tmp_path / "a.jsonl", "alpha", 70)
    b = write_jsonl(tmp_path / "b.jsonl", "beta", 30)
    return {
        "name": "py-mix",
        "sources": [
            {"name": "a", "from": {"kind": "files", "paths": [str(a)]}, "weight": 0.7},
            {"name": "b", "from": {"kind": "files", "paths": [str(b)]}, "weight": 0.3, "caps": {"max_repetitions": 2}},
        ],
        "strategy": {"kind": "deterministic"},
        "stop": {"total": 100},
        "rows_per_shard": 40,
    }


def test_the_published_schema_is_what_the_command_prints_and_accepts_recipes(saekit, tmp_path):
    printed = saekit("mix", "schema")
    assert printed.returncode == 0, printed.stderr
    schema = json.loads(printed.stdout)
    assert schema == json.loads(SCHEMA.read_text()), "crate/schema/mix-recipe.schema.json is out of date"
    jsonschema.validate(recipe(tmp_path), schema)
    bad = recipe(tmp_path)
    bad["stop"] = "sometimes"
    try:
        jsonschema.validate(bad, schema)
    except jsonschema.ValidationError:
        pass
    else:
        raise AssertionError("a stop rule the schema does not know was accepted")


def test_a_mix_reads_back_with_pyarrow_with_its_counts_and_provenance(saekit, tmp_path):
    path = tmp_path / "recipe.json"
    path.write_text(json.dumps(recipe(tmp_path)))
    ws = tmp_path / "ws"
    done = saekit("--workspace", ws, "mix", "run", path, "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["total_rows"] == 100
    assert [s["rows"] for s in report["sources"]] == [70, 30]
    shards = sorted((ws / "artifacts").rglob("part-*.parquet"))
    assert len(shards) == 3, shards
    table = pq.read_table(shards[0].parent)
    assert table.column_names == ["text", "source", "source_row", "metadata"]
    assert table.num_rows == 100
    sources = table.column("source").to_pylist()
    assert sources.count("a") == 70 and sources.count("b") == 30
    rows = table.to_pylist()
    for row in rows:
        meta = json.loads(row["metadata"])
        assert row["text"] == f"{'alpha' if row['source'] == 'a' else 'beta'} {meta['i']} <b>bold</b>"
        assert meta["i"] == row["source_row"]
    provenance = json.loads(pq.read_metadata(shards[0]).metadata[b"saekit.mix"])
    assert provenance["recipe_hash"] == report["recipe_hash"]
    assert [s["name"] for s in provenance["sources"]] == ["a", "b"]
    # The card a terminal gets shows the realised-vs-target table.
    shown = saekit("--workspace", ws, "mix", "show", "py-mix")
    assert shown.returncode == 0, shown.stderr
    assert "realised vs target" in shown.stdout


def test_recipes_are_saved_listed_and_exported_from_the_command_line(saekit, tmp_path):
    first = recipe(tmp_path)
    path = tmp_path / "recipe.json"
    path.write_text(json.dumps(first))
    ws = tmp_path / "ws"
    checked = saekit("mix", "check", path)
    assert checked.returncode == 0 and "mix recipe py-mix" in checked.stdout, checked.stderr
    assert "saved recipe py-mix version 1" in saekit("--workspace", ws, "mix", "save", path).stdout
    path.write_text(json.dumps({**first, "seed": 9}))
    assert "version 2" in saekit("--workspace", ws, "mix", "save", path).stdout
    history = saekit("--workspace", ws, "mix", "history", "py-mix")
    assert history.returncode == 0 and "seed" in history.stdout, history.stdout + history.stderr
    exported = saekit("--workspace", ws, "mix", "export", "py-mix@1")
    assert json.loads(exported.stdout)["seed"] == 0
    # A recipe with a typo is refused, naming the file, the line and the field.
    path.write_text(json.dumps({**first, "sourcez": []}, indent=1))
    bad = saekit("mix", "check", path)
    assert bad.returncode != 0
    assert str(path) in bad.stderr and "line" in bad.stderr and "sourcez" in bad.stderr, bad.stderr
