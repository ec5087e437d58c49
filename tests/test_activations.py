"""The activation store with MiniLM's real weights, checked from outside: numpy reads the cache's shards
through its JSON index (f32, f16, and bf16 stored as bit patterns), and the values are an independent
numpy MiniLM's activations at each row's (sequence, position); special tokens are not there; and the
process's peak anonymous memory (RssAnon, sampled from /proc) stays within the memory the store stated
before it started, which stays within the budget, while a budget too small is refused up front."""

import json
import re
import sqlite3
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

import reference_models as R
from test_models import MINILM, needs_minilm

ROOT = Path(__file__).resolve().parent.parent
AUSTEN = ROOT / "crate" / "data" / "corpus" / "austen.jsonl.zst"
HOOKS = ["blocks.2.hook_resid_post", "blocks.1.mlp.hook_post"]
SPECIAL = {0, 100, 101, 102, 103}  # [PAD] [UNK] [CLS] [SEP] [MASK]

pytestmark = needs_minilm


@pytest.fixture(scope="module")
def workspace(saekit, tmp_path_factory):
    ws = tmp_path_factory.mktemp("activations") / "ws"
    r = saekit("--workspace", ws, "add", "austen", AUSTEN)
    assert r.returncode == 0, r.stderr
    r = saekit(
        "--workspace", ws, "tokenize", "austen", "--tokenizer", MINILM / "tokenizer.json",
        "--max-length", 128, "--stride", 128, "--add-bos", "--add-eos",
    )
    assert r.returncode == 0, r.stderr
    return ws


def artifact_path(ws: Path, kind: str) -> list[Path]:
    rows = sqlite3.connect(ws / "catalog.sqlite").execute(
        "SELECT path FROM artifacts WHERE kind = ? AND status = 'ready' ORDER BY id", (kind,)
    ).fetchall()
    return [Path(p) if Path(p).is_absolute() else ws / p for (p,) in rows]


def make(saekit, ws, *args):
    r = saekit(
        "--workspace", ws, "activations", "make", "--tokenization", "1" if False else tokenization_name(ws),
        "--model", MINILM, *[a for h in HOOKS for a in ("--hook", h)], *map(str, args),
    )
    assert r.returncode == 0, r.stderr
    return r


def tokenization_name(ws: Path) -> str:
    (name,) = sqlite3.connect(ws / "catalog.sqlite").execute(
        "SELECT name FROM artifacts WHERE kind = 'tokenization'"
    ).fetchone()
    return name


def read_cache(cache: Path):
    """Every hook's rows and the (sequence, position, token) of each, as numpy reads them."""
    index = json.loads((cache / "index.json").read_text())
    assert index["format"] == "saekit-activations" and index["version"] == 1
    tokens = np.concatenate([np.load(cache / index["tokens_dir"] / s["file"], mmap_mode="r") for s in index["shards"]])
    assert tokens.dtype == np.uint32 and tokens.shape == (index["num_tokens"], 3)
    acts = {}
    for hook in index["hooks"]:
        parts = [np.load(cache / hook["dir"] / s["file"], mmap_mode="r") for s in index["shards"]]
        a = np.concatenate(parts)
        assert a.dtype == np.dtype(index["stored_as"]), (a.dtype, index["stored_as"])
        if index["dtype"] == "bfloat16":
            a = R.bf16_bits_to_f32(a)
        acts[hook["name"]] = np.asarray(a, dtype=np.float64)
        assert acts[hook["name"]].shape == (index["num_tokens"], hook["width"])
    return index, tokens, acts


def token_sequences(ws: Path):
    (store,) = artifact_path(ws, "tokenization")
    meta = json.loads((store / "store.json").read_text())
    ids = np.fromfile(store / "tokens.bin", dtype="<u2" if meta["dtype"] == "uint16" else "<u4")
    offsets = np.fromfile(store / "offsets.bin", dtype="<u8")
    return lambda i: ids[offsets[i] : offsets[i + 1]].tolist()


@pytest.mark.parametrize("dtype,rel", [("f32", 2e-5), ("f16", 2**-10), ("bf16", 2**-7)])
def test_numpy_reads_the_shards_and_they_are_minilms_activations(saekit, workspace, dtype, rel):
    make(saekit, workspace, "--dtype", dtype, "--max-tokens", 3000, "--shard-tokens", 1024)
    cache = next(p for p in artifact_path(workspace, "activations") if json.loads((p / "index.json").read_text())["dtype"] == {"f32": "float32", "f16": "float16", "bf16": "bfloat16"}[dtype])
    index, tokens, acts = read_cache(cache)
    assert index["num_tokens"] == 3000 and [s["rows"] for s in index["shards"]] == [1024, 1024, 952]
    assert [h["width"] for h in index["hooks"]] == [384, 1536]
    assert not SPECIAL & set(tokens[:, 2].tolist()), "special tokens are left out"
    sequence = token_sequences(workspace)
    # Rows are in sequence order; check three whole sequences against the numpy reference.
    for s in sorted(set(tokens[:, 0].tolist()))[:3]:
        ids = sequence(s)
        ref = R.reference_run(MINILM, [ids])
        rows = np.nonzero(tokens[:, 0] == s)[0]
        for r in rows:
            _, pos, tok = tokens[r]
            assert ids[pos] == tok
            for hook in HOOKS:
                want = ref[hook][0, pos]
                got = acts[hook][r]
                scale = np.abs(want).max()
                assert np.abs(got - want).max() <= rel * scale + 1e-4 * scale, (dtype, hook, s, pos)
        # Every non-special token of the sequence is there, in order.
        assert [int(tokens[r, 1]) for r in rows] == [p for p, t in enumerate(ids) if t not in SPECIAL]


def rss_anon_peak(cmd: list[str]) -> tuple[int, subprocess.CompletedProcess]:
    """Runs `cmd`, sampling its RssAnon every 2 ms; returns (peak bytes, the finished process)."""
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = 0
    status = Path(f"/proc/{p.pid}/status")
    while p.poll() is None:
        try:
            m = re.search(r"RssAnon:\s+(\d+) kB", status.read_text())
            if m:
                peak = max(peak, int(m.group(1)) * 1024)
        except (FileNotFoundError, ProcessLookupError):
            pass
        time.sleep(0.002)
    out, err = p.communicate()
    return peak, subprocess.CompletedProcess(cmd, p.returncode, out, err)


def test_peak_anonymous_memory_stays_within_what_the_store_stated(saekit, workspace):
    common = [
        "--tokenization", tokenization_name(workspace), "--model", str(MINILM),
        *[a for h in HOOKS for a in ("--hook", h)],
        "--max-tokens", "12000", "--memory", "320MiB", "--batch-tokens", "1024", "--buffer-tokens", "16384",
    ]
    r = saekit("--workspace", workspace, "activations", "plan", *common, "--json")
    assert r.returncode == 0, r.stderr
    plan = json.loads(r.stdout)
    assert plan["memory_budget"] == 320 << 20
    assert plan["peak_memory"] <= plan["memory_budget"]
    assert 1 <= plan["sequences_per_batch"] < 32, plan  # the budget, not the cap, chose it
    binary = saekit("--version").args[0]
    peak, r = rss_anon_peak([binary, "--workspace", str(workspace), "activations", "make", *common, "--serve"])
    assert r.returncode == 0, r.stderr
    served = re.search(r"served (\d+) batches, (\d+) tokens, (\d+) left over", r.stdout)
    assert served and int(served[2]) + int(served[3]) == 12000, r.stdout
    assert 0 < peak <= plan["peak_memory"], f"peak RssAnon {peak / 2**20:.1f} MiB, stated {plan['peak_memory'] / 2**20:.1f} MiB"
    print(f"peak RssAnon {peak / 2**20:.1f} MiB of a stated {plan['peak_memory'] / 2**20:.1f} MiB")


def test_a_budget_too_small_is_refused_before_any_work(saekit, workspace):
    before = artifact_path(workspace, "activations")
    r = saekit(
        "--workspace", workspace, "activations", "make", "--tokenization", tokenization_name(workspace),
        "--model", MINILM, "--hook", HOOKS[0], "--max-tokens", 99, "--memory", "100MiB",
    )
    assert r.returncode != 0
    assert "needs" in r.stderr and "100.0 MiB budget" in r.stderr and "model weights" in r.stderr, r.stderr
    assert artifact_path(workspace, "activations") == before
    assert not list((workspace / "tmp").glob("*")) or all(p.suffix == ".lock" for p in (workspace / "tmp").iterdir())


@pytest.fixture(scope="module")
def minilm_run(saekit, workspace, tmp_path_factory):
    """Two SAEs trained by `saekit train` on MiniLM's activations (the record it prints as JSON)."""
    hook = HOOKS[0]
    config = {
        "name": "minilm-saes",
        "tokenization": tokenization_name(workspace),
        "model": str(MINILM),
        "saes": [
            {"name": "topk", "hook": hook, "d_sae": 768, "k": 16, "lr": 1e-3},
            {"name": "relu", "hook": hook, "architecture": "standard", "d_sae": 512, "l1_coefficient": 0.5,
             "lr": 1e-3, "normalize_activations": "expected_average_only_in", "b_dec_init": "mean"},
        ],
        "training_tokens": 8192 * 3,
        "train_batch_size_tokens": 512,
        "buffer_tokens": 4096,
        "metrics_every": 8,
        "checkpoint_every": 16,
        "cache": {"max_tokens": 8192},
        "memory": "2GiB",
    }
    path = tmp_path_factory.mktemp("run") / "run.json"
    path.write_text(json.dumps(config))
    r = saekit("--workspace", workspace, "train", path, "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_saekit_train_writes_saes_python_reads_and_a_history_pyarrow_reads(minilm_run, workspace):
    """`saekit train` on MiniLM's real activations (f32 cache of the first 8,192 tokens): two SAEs from one
    pass. safetensors + numpy (SAELens' formulas, test_sae_files) reconstruct the whole cache with the
    explained variance the run reports at its last step (within 0.1: that was one batch), TopK's L0 is k,
    the normalised SAE works on raw activations (folded), and pyarrow reads the history."""
    import pyarrow.parquet as pq
    from safetensors.numpy import load_file

    from test_sae_files import np_decode, np_encode

    hook = HOOKS[0]
    run = minilm_run
    assert run["steps"] == 48 and run["tokens"] == 48 * 512, run
    folder = Path(run["path"]) if Path(run["path"]).is_absolute() else workspace / run["path"]

    (cache,) = sqlite3.connect(workspace / "catalog.sqlite").execute(
        "SELECT a.path FROM lineage l JOIN artifacts a ON a.id = l.parent WHERE l.child = ? AND a.kind = 'activations'",
        (run["id"],),
    ).fetchone()
    index, _, acts = read_cache(Path(cache) if Path(cache).is_absolute() else workspace / cache)
    assert index["num_tokens"] == 8192
    x = acts[hook]
    total = ((x - x.mean(0)) ** 2).sum()
    by_name = {s["name"]: s for s in run["saes"]}
    for name in ["topk", "relu"]:
        sae = folder / "saes" / name
        cfg = json.loads((sae / "cfg.json").read_text())
        assert cfg["normalize_activations"] == "none" and cfg["metadata"]["hook_name"] == hook
        assert cfg["metadata"]["sae_lens_version"] >= "6.0.0"
        w = load_file(sae / "sae_weights.safetensors")
        assert sorted(w) == ["W_dec", "W_enc", "b_dec", "b_enc"]
        sparsity = load_file(sae / "sparsity.safetensors")["sparsity"]
        assert sparsity.shape == (cfg["d_sae"],) and (sparsity <= 0).all()
        z = np_encode(w, cfg, x)
        ev = 1 - ((np_decode(w, z) - x) ** 2).sum() / total
        last = by_name[name]["last"]
        assert abs(ev - last["explained_variance"]) < 0.1, (name, ev, last)
        assert ev > 0.3, (name, ev)
        if name == "topk":
            assert ((z > 0).sum(1) <= 16).all() and abs((z > 0).sum(1).mean() - last["l0"]) < 0.5
        else:
            assert by_name[name]["input_scale"] != 1.0

    table = pq.read_table(folder / "history.parquet")
    assert table.num_rows == 2 * 6
    for column in ["sae", "step", "tokens", "mse", "l0", "explained_variance", "dead", "lr", "mean_log10_density"]:
        assert column in table.column_names, column
    assert table.column("step").to_pylist()[-1] == 48


def test_saekit_eval_matches_numpy_on_held_out_sequences(saekit, workspace, minilm_run):
    """`saekit eval` on the run above: the held-out sequences are those after the ones its cache read; the
    reconstruction metrics (special tokens left out) and the sentence-embedding losses (clean, SAE spliced
    in, hook zeroed; 1 − cos) are numpy's, from the reference MiniLM with the SAE applied at the hook."""
    from safetensors.numpy import load_file

    from test_sae_files import np_decode, np_encode

    r = saekit("--workspace", workspace, "eval", "minilm-saes", "--sequences", 12, "--json")
    assert r.returncode == 0, r.stderr
    ev = json.loads(r.stdout)
    assert ev["sequences"] == 12
    db = sqlite3.connect(workspace / "catalog.sqlite")
    (run_id, run_path) = db.execute("SELECT id, path FROM artifacts WHERE kind = 'sae_run' AND name = 'minilm-saes'").fetchone()
    (stats,) = db.execute(
        "SELECT c.statistics FROM lineage l JOIN activation_caches c ON c.id = l.parent WHERE l.child = ?", (run_id,)
    ).fetchone()
    first = json.loads(stats)["sequences"]
    seq = token_sequences(workspace)
    seqs = [seq(i) for i in range(first, first + 12)]
    folder = Path(run_path) if Path(run_path).is_absolute() else workspace / run_path
    hook = HOOKS[0]
    clean = R.reference_run(MINILM, seqs)
    for got in ev["saes"]:
        sae = folder / "saes" / got["name"]
        cfg = json.loads((sae / "cfg.json").read_text())
        w = load_file(sae / "sae_weights.safetensors")
        rows = [(b, t) for b, s in enumerate(seqs) for t, tok in enumerate(s) if tok not in SPECIAL]
        x = np.stack([clean[hook][b, t] for b, t in rows])
        z = np_encode(w, cfg, x)
        err = ((np_decode(w, z) - x) ** 2).sum()
        assert got["tokens"] == len(rows)
        assert got["mse"] == pytest.approx(err / len(rows), rel=1e-3)
        assert got["explained_variance"] == pytest.approx(1 - err / ((x - x.mean(0)) ** 2).sum(), abs=1e-3)
        assert got["l0"] == pytest.approx((z > 0).sum(1).mean(), abs=0.05)

        def spliced(a):
            flat = a.reshape(-1, a.shape[-1])
            return np_decode(w, np_encode(w, cfg, flat)).reshape(a.shape)

        def loss(e):
            return float(np.mean(1 - (clean["embedding"] * e).sum(-1) / np.linalg.norm(e, axis=-1)))

        with_sae = R.reference_run(MINILM, seqs, scale={hook: spliced})["embedding"]
        ablated = R.reference_run(MINILM, seqs, scale={hook: 0.0})["embedding"]
        d = got["downstream"]
        assert d["measure"] == "embedding 1 − cos" and d["clean"] == pytest.approx(0.0, abs=1e-6)
        assert d["with_sae"] == pytest.approx(loss(with_sae), rel=2e-3, abs=1e-5)
        assert d["ablated"] == pytest.approx(loss(ablated), rel=2e-3)
        assert d["recovered"] == pytest.approx(1 - loss(with_sae) / loss(ablated), abs=5e-3)
        assert d["kl_with_sae"] is None
