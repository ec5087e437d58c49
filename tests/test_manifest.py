"""Bucket manifests from a terminal, checked with Python's own libraries: `saekit manifest analyze`,
`add-bucket`, `phase` and `create-sample` on a planted JSONL; the counts against a largest-remainder
apportionment written here; every example read back with `json` equal to (and byte for byte the same as)
an input line; the manifest valid under the published schema (`jsonschema`); refusals and hand edits."""

import json
import random
from fractions import Fraction
from pathlib import Path

import jsonschema

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = ROOT / "crate" / "schema" / "manifest.schema.json"
SIZES = {"instruction": 90, "cot_math": 45, "code": 30, "tool_use": 7}


def planted(tmp_path: Path) -> tuple[Path, list[str]]:
    rng = random.Random(3)
    lines = []
    for bucket, n in SIZES.items():
        for i in range(n):
            example = {
                "input": f"{bucket} #{i} — naïve ✓ <script>x</script>",
                "output": "y" * rng.randint(1, 40),
                "bucket": bucket,
                "_safety_label": rng.choice(["safe", "review", "unsafe"]),
                "_reviewed": i % 2 == 0,
                "_grounding": {"docs": [i, i + 1], "score": 1e-7 * i, "big": 2**60 + i},
            }
            # Key order and spacing vary, as in files written by different tools.
            keys = list(example)
            rng.shuffle(keys)
            sep = rng.choice([(", ", ": "), (",", ":")])
            lines.append(json.dumps({k: example[k] for k in keys}, ensure_ascii=rng.random() < 0.5, separators=sep))
    rng.shuffle(lines)
    path = tmp_path / "train.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path, lines


def hamilton(total: int, weights: dict[str, Fraction]) -> dict[str, int]:
    """Largest remainder: floors, then one each to the largest remainders (ties to the earlier bucket)."""
    s = sum(weights.values())
    quotas = {b: total * w / s for b, w in weights.items()}
    counts = {b: int(q) for b, q in quotas.items()}
    order = sorted(weights, key=lambda b: (-(quotas[b] - counts[b]), list(weights).index(b)))
    for b in order[: total - sum(counts.values())]:
        counts[b] += 1
    return counts


def test_a_manifest_made_edited_and_sampled_from_the_command_line(saekit, tmp_path):
    data, lines = planted(tmp_path)
    m = tmp_path / "manifest.json"
    done = saekit("manifest", "--manifest", m, "analyze", data, "--by", "bucket", "--write", "--name", "sft", "--json")
    assert done.returncode == 0, done.stderr
    analysis = json.loads(done.stdout)
    assert {b["name"]: b["examples"] for b in analysis["buckets"]} == SIZES
    assert analysis["rows"] == 172 and analysis["unassigned"] == 0

    creative = tmp_path / "creative.jsonl"
    creative.write_text("".join(json.dumps({"input": f"poem {i}", "_reviewed": None}) + "\n" for i in range(20)))
    done = saekit("manifest", "add-bucket", "creative", "--source", creative, "--weight", "0.2",
                  "--description", "poems & <b>verse</b>", "--manifest", m)
    assert done.returncode == 0, done.stderr
    done = saekit("manifest", "phase", "phase1_calibration", "--weight", "instruction=3", "--weight", "code=2",
                  "--weight", "creative=2", "--normalize", "--total-samples", "61", "--manifest", m)
    assert done.returncode == 0, done.stderr

    manifest = json.loads(m.read_text())
    printed = saekit("manifest", "schema")
    schema = json.loads(printed.stdout)
    assert schema == json.loads(SCHEMA.read_text()), "crate/schema/manifest.schema.json is out of date"
    jsonschema.validate(manifest, schema)
    weights = {b["name"]: b["weight"] for b in manifest["buckets"]}
    assert abs(sum(weights.values()) - 1) < 1e-9 and weights["creative"] == 0.2
    assert abs(weights["instruction"] - 0.8 * 90 / 172) < 1e-12
    assert manifest["buckets"][-1]["source"] == {"path": "creative.jsonl"}

    out = tmp_path / "out" / "phase1.jsonl"
    done = saekit("manifest", "create-sample", "--phase", "phase1_calibration", "--output", out, "--seed", "5",
                  "--json", "--manifest", m)
    assert done.returncode == 0, done.stderr
    sample = json.loads(done.stdout)
    written = out.read_text(encoding="utf-8").splitlines()
    assert len(written) == 61 == sample["total"]
    # 61 × (3/7, 2/7, 2/7) = 26.14, 17.43, 17.43: floors 26, 17, 17, the last to the first 0.43.
    want = hamilton(61, {"instruction": Fraction(3), "code": Fraction(2), "creative": Fraction(2)})
    assert want == {"instruction": 26, "code": 18, "creative": 17}
    got = {}
    pool = {line: 0 for line in lines}
    poems = [json.dumps({"input": f"poem {i}", "_reviewed": None}) for i in range(20)]
    for line in written:
        assert line in pool or line in poems, line
        if line in pool:
            pool[line] += 1
            assert pool[line] == 1, "no example repeats"
        example = json.loads(line)
        got[example.get("bucket", "creative")] = got.get(example.get("bucket", "creative"), 0) + 1
    assert got == want
    assert {b["name"]: b["rows"] for b in sample["buckets"] if b["rows"]} == want
    provenance = json.loads((out.parent / "phase1.jsonl.sample.json").read_text())
    assert provenance["seed"] == 5 and provenance["phase"] == "phase1_calibration"

    again = tmp_path / "again.jsonl"
    saekit("manifest", "create-sample", "--phase", "phase1_calibration", "--output", again, "--seed", "5",
           "--manifest", m)
    assert again.read_bytes() == out.read_bytes(), "the same seed gives the same file"

    # Too few tool_use examples for a phase that leans on them: refused, naming the bucket and the numbers.
    saekit("manifest", "phase", "tools", "--weight", "tool_use=0.5", "--weight", "instruction=0.5", "--manifest", m)
    short = tmp_path / "short.jsonl"
    done = saekit("manifest", "create-sample", "--phase", "tools", "--total-samples", "30", "--output", short,
                  "--manifest", m)
    assert done.returncode != 0
    assert "bucket `tool_use` has 7 examples but its weight 0.5 asks for 15 of 30" in done.stderr, done.stderr
    assert not short.exists()
    done = saekit("manifest", "create-sample", "--phase", "tools", "--total-samples", "30", "--output", short,
                  "--max-repetitions", "3", "--manifest", m)
    assert done.returncode == 0, done.stderr
    assert len(short.read_text().splitlines()) == 30

    summary = saekit("manifest", "summary", "--manifest", m, "--html", tmp_path / "card.html")
    assert summary.returncode == 0, summary.stderr
    assert "phase1_calibration" in summary.stdout and "tools" in summary.stdout
    page = (tmp_path / "card.html").read_text()
    assert "poems &amp; &lt;b&gt;verse&lt;/b&gt;" in page and "<b>verse</b>" not in page
    assert page.count("<svg") == 3, "one chart per weight set: the buckets' own and two phases"


def test_hand_edited_manifests_that_do_not_hold_together_are_refused(saekit, tmp_path):
    data, _ = planted(tmp_path)
    m = tmp_path / "m.json"
    assert saekit("manifest", "analyze", data, "--by", "bucket", "--write", "--manifest", m).returncode == 0
    manifest = json.loads(m.read_text())
    manifest["phases"] = [{"name": "p", "weights": {"instruction": 0.5, "creative": 0.5}}]
    m.write_text(json.dumps(manifest, indent=2))
    done = saekit("manifest", "summary", "--manifest", m)
    assert done.returncode != 0
    assert "m.json" in done.stderr and "bucket `creative`, which the manifest does not have" in done.stderr
    manifest["phases"] = [{"name": "p", "weights": {"instruction": 0.5, "code": 0.25}}]
    m.write_text(json.dumps(manifest, indent=2))
    done = saekit("manifest", "summary", "--manifest", m)
    assert "phase `p`'s weights sum to 0.75, not 1" in done.stderr, done.stderr
    # The documented normalisation: the same weights stored through `phase --normalize`.
    manifest["phases"] = []
    m.write_text(json.dumps(manifest, indent=2))
    done = saekit("manifest", "phase", "p", "--weight", "instruction=0.5", "--weight", "code=0.25", "--normalize",
                  "--manifest", m)
    assert done.returncode == 0, done.stderr
    stored = json.loads(m.read_text())["phases"][0]["weights"]
    assert stored == {"code": 1 / 3, "instruction": 2 / 3}
