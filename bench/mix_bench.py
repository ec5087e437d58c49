"""A weighted mix of 3 sources to Parquet: saekit `mix run` against HF `interleave_datasets` + `to_parquet`,
and MinHash near-dedup docs/s: saekit's `near_dedup` step against datatrove's MinHash pipeline.

    bench/.venv/bin/python bench/mix_bench.py [--rows 1000000] [--work /var/tmp/saekit-mix-bench]

What it does (every measured thing runs in its own subprocess under bench/hf_baseline.py's process-tree
RSS sampler, so `peak_rss_mb` is per measurement; `util` is CPU seconds / wall seconds):

  0. Generates 3 JSONL sources deterministically (a, b, c: 60 / 30 / 10 % of --rows; 300–600 bytes of
     text each, with id, url, lang, score and n_words fields; ~5 % of each source near-copies of an
     earlier document with one or two words changed), reused while --rows and the generator version are
     the same. Registers them in a fresh saekit workspace with `saekit import` (JSONL → Parquet once,
     as HF's load_dataset converts JSON → Arrow once; untimed for the headline, printed separately), or
     with `--register add` by reference, so the mix parses the JSONL as it reads.
  1. saekit: `saekit mix run` of a weighted 0.5 / 0.3 / 0.2 mix, stop `all_exhausted`, seed 0, to
     Parquet. Each source's `caps.max_repetitions` is set from the expected oversampling of
     all_exhausted (with a margin), since saekit refuses a mix that would draw a source past it.
     `seconds` is the wall time of the process (the report's own `seconds` is printed beside it).
  2. HF (datasets, bench/.venv): `load_dataset("json")` per source, then `interleave_datasets(...,
     probabilities=[.5, .3, .2], seed=0, stopping_strategy="all_exhausted")` + `.to_parquet(...)`,
     with HF_DATASETS_OFFLINE=1 and a fresh cache dir. `seconds` is interleave + to_parquet (timed
     inside the process, after imports); the JSON→Arrow load is timed separately as `load_s`, and a
     second row ("HF load+mix") counts it in.
  3. Near dedup at datatrove's defaults (5-grams, 14 bands × 8 hashes) over source c:
       saekit: a one-source recipe with `"preprocess": [{"step": "near_dedup"}]`, end to end (read
       the source, MinHash + LSH, write Parquet). The same recipe without the step is run too; the
       difference of the two wall times is the preprocessing pass (a second read + MinHash + LSH), printed
       as "saekit near_dedup pass".
       datatrove (its own venv, --datatrove-python; skipped with a message when absent): the 4-stage
       pipeline of its minhash example (signatures, buckets, clusters, filter + JsonlWriter) with
       `MinhashConfig()` defaults, on the same documents split into 2 files so that its signature and
       filter stages use both cores (tasks=2, workers=2; buckets: 14 tasks, 2 workers). Its default word
       tokenizer for English is spaCy's (its WhitespaceTokenizer fallback calls spaCy too); with
       --datatrove-words split, or without spaCy installed, a str.split tokenizer is used and the row
       says so. Its `util` is n/a: its tasks run in forkserver children that are never waited for, so
       their CPU time cannot be counted (their memory is in the sampled RSS).

`load` is the 1-minute load average after each run: on a shared machine, a load above the run's own
`util` means something else was using the CPUs. The HF peak RSS includes the pages of its memory-mapped
Arrow cache files that were touched (file-backed, shared), as `ps` would count them.

Prints one JSON line per measurement and a markdown table at the end.

The datatrove venv (kept out of bench/requirements.txt):
    python3 -m venv /var/tmp/saekit-datatrove-venv
    /var/tmp/saekit-datatrove-venv/bin/pip install datatrove regex "xxhash<4" tokenizers orjson spacy
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)  # datatrove's forkserver workers re-import this file by path, without it
from hf_baseline import last_json_line, measure  # noqa: E402  (also takes HERE off sys.path)

import argparse  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import random  # noqa: E402
import shutil  # noqa: E402
import time  # noqa: E402

GEN_VERSION = 1
SOURCES = [("a", 0.6, 0.5), ("b", 0.3, 0.3), ("c", 0.1, 0.2)]  # name, share of --rows, mix weight
DEFAULT_SAEKIT = "/var/tmp/saekit-target/debug/saekit"
DEFAULT_HF_PYTHON = os.path.join(HERE, ".venv", "bin", "python")
DEFAULT_DT_PYTHON = "/var/tmp/saekit-datatrove-venv/bin/python"
DUP_RATE = 0.05


# ---------------------------------------------------------------------------------------------------
# Data: deterministic, realistic-ish documents.

def make_vocab(rng: random.Random, n: int = 20000) -> list:
    onsets = ["", "b", "c", "d", "f", "g", "h", "j", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w", "z",
              "br", "ch", "cl", "dr", "fl", "gr", "pl", "pr", "sh", "st", "th", "tr"]
    vowels = ["a", "e", "i", "o", "u", "ai", "ea", "ou", "io", "y"]
    codas = ["", "", "n", "r", "s", "t", "l", "m", "nd", "ng", "st", "ck", "rt"]
    seen, words = set(), []
    while len(words) < n:
        w = "".join(rng.choice(onsets) + rng.choice(vowels) + rng.choice(codas)
                    for _ in range(rng.choice((1, 1, 2, 2, 2, 3, 3, 4))))
        if w not in seen:
            seen.add(w)
            words.append(w)
    return words


def generate(path: str, name: str, rows: int, seed: int, vocab: list) -> None:
    """Writes `rows` JSONL documents: text (300–600 bytes of sentences over a Zipf vocabulary, a per-source
    ordering of it), id, url, lang, score, n_words; ~DUP_RATE of them near-copies of a recent document."""
    rng = random.Random(seed)
    words = vocab[:]
    random.Random(seed + 1).shuffle(words)  # each source has its own frequent words
    cum, acc = [], 0.0
    for rank in range(len(words)):
        acc += 1.0 / (rank + 1) ** 1.07
        cum.append(acc)
    recent = []
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        for i in range(rows):
            if recent and rng.random() < DUP_RATE:
                toks = rng.choice(recent).split(" ")
                for _ in range(rng.choice((1, 2))):
                    j = rng.randrange(len(toks))
                    toks[j] = rng.choices(words, cum_weights=cum, k=1)[0]
                text = " ".join(toks)
            else:
                target = rng.randint(300, 600)
                pool = rng.choices(words, cum_weights=cum, k=140)
                out, size, p = [], 0, 0
                while size < target and p < len(pool):
                    n = rng.randint(6, 18)
                    sent = pool[p:p + n]
                    p += n
                    if not sent:
                        break
                    if n > 10 and rng.random() < 0.4:
                        sent[n // 2 - 1] += ","
                    s = " ".join(sent)
                    s = s[0].upper() + s[1:] + rng.choice(".....?!")
                    out.append(s)
                    size += len(s) + 1
                text = " ".join(out)[:600].rstrip()
            if len(recent) < 2000:
                recent.append(text)
            else:
                recent[rng.randrange(2000)] = text
            doc = {
                "text": text,
                "id": f"{name}-{i:07d}",
                "url": f"https://{name}.example.org/{words[i % 997]}/{i}",
                "lang": "en",
                "score": round(rng.random(), 4),
                "n_words": text.count(" ") + 1,
            }
            f.write(json.dumps(doc, ensure_ascii=False))
            f.write("\n")
    os.replace(tmp, path)


def ensure_data(work: str, total: int) -> dict:
    """The 3 source files, generated unless a manifest says they are already there for `total`."""
    data = os.path.join(work, "data")
    os.makedirs(data, exist_ok=True)
    sizes = {name: max(1, int(round(total * share))) for name, share, _ in SOURCES}
    manifest_path = os.path.join(data, "manifest.json")
    want = {"version": GEN_VERSION, "sizes": sizes}
    files = {name: os.path.join(data, f"{name}.jsonl") for name in sizes}
    try:
        with open(manifest_path) as f:
            have = json.load(f)
    except (OSError, ValueError):
        have = None
    if have == want and all(os.path.exists(p) for p in files.values()):
        print(f"# data: reusing {data} ({', '.join(f'{n} {s:,}' for n, s in sizes.items())} rows)", flush=True)
        return {"files": files, "sizes": sizes, "generate_s": 0.0}
    t0 = time.perf_counter()
    vocab = make_vocab(random.Random(1234))
    for k, (name, rows) in enumerate(sizes.items()):
        generate(files[name], name, rows, seed=100 + k, vocab=vocab)
    with open(manifest_path, "w") as f:
        json.dump(want, f)
    took = time.perf_counter() - t0
    mb = sum(os.path.getsize(p) for p in files.values()) / 2**20
    print(f"# data: generated {data} ({', '.join(f'{n} {s:,}' for n, s in sizes.items())} rows, {mb:.0f} MiB) "
          f"in {took:.1f} s", flush=True)
    return {"files": files, "sizes": sizes, "generate_s": took}


# ---------------------------------------------------------------------------------------------------
# Recipes.

def all_exhausted_repetitions(sizes: list, weights: list) -> list:
    """The max_repetitions each source needs under a weighted all_exhausted mix: the mix stops near
    T = max(n_i / p_i) rows, source j then holding ~p_j T rows (p_j T / n_j passes); with a margin for the
    randomness of the draws (and for a different source being the last one exhausted)."""
    total_w = sum(weights)
    p = [w / total_w for w in weights]
    t = max(n / q for n, q in zip(sizes, p))
    out = []
    for n, q in zip(sizes, p):
        reps = q * t / n
        sd = math.sqrt(t * q * (1 - q)) / n  # binomial spread, in passes
        out.append(round(max(1.0, reps * 1.15 + 6 * sd + 0.05), 3))
    return out


def mix_recipe(name: str, sizes: dict) -> dict:
    names = [s[0] for s in SOURCES]
    weights = [s[2] for s in SOURCES]
    reps = all_exhausted_repetitions([sizes[n] for n in names], weights)
    return {
        "name": name,
        "sources": [
            {"name": n, "from": {"kind": "dataset", "name": n}, "weight": w, "caps": {"max_repetitions": r}}
            for n, w, r in zip(names, weights, reps)
        ],
        "strategy": {"kind": "weighted"},
        "stop": "all_exhausted",
        "seed": 0,
    }


def one_source_recipe(name: str, source: str, dedup: bool) -> dict:
    src = {"name": source, "from": {"kind": "dataset", "name": source}, "weight": 1.0}
    if dedup:
        src["preprocess"] = [{"step": "near_dedup"}]
    return {"name": name, "sources": [src], "strategy": {"kind": "sequential"}, "stop": "first_exhausted", "seed": 0}


# ---------------------------------------------------------------------------------------------------
# Runs.

def fail(what: str, run: dict) -> None:
    out = "\n".join((run["stdout"].strip().splitlines() or [""])[-10:])
    err = "\n".join(run["stderr"].strip().splitlines()[-30:])
    raise SystemExit(f"error: {what} failed (exit {run['rc']})\n--- stdout (tail):\n{out}\n--- stderr (tail):\n{err}")


def measured(run: dict) -> dict:
    """The sampler's figures, and the 1-minute load average after the run (other work on the machine
    shows up here: with 2 CPUs, a load well above the run's own util means it shared them)."""
    return {
        "loadavg_1m": round(os.getloadavg()[0], 2),
        "peak_rss_mb": round(run["peak_rss_mb"], 1),
        "wall_s": round(run["wall_s"], 3),
        "cpu_s": round(run["cpu_s"], 3),
        "util": round(run["cpu_s"] / run["wall_s"], 2) if run["wall_s"] else 0.0,
    }


def emit(result: dict) -> dict:
    rows, secs = result.get("rows"), result.get("seconds")
    if rows is not None and secs:
        result["rows_per_s"] = round(rows / secs, 1)
    print(json.dumps(result), flush=True)
    return result


def saekit_add(saekit: str, ws: str, files: dict, how: str = "import") -> None:
    """Registers the sources: `import` converts the JSONL to Parquet once, as HF's load_dataset converts it to
    Arrow once (both untimed); `add` leaves them JSONL, so the mix parses JSON as it reads."""
    for name, path in files.items():
        run = measure([saekit, "--workspace", ws, how, name, path])
        if run["rc"] != 0:
            fail(f"saekit {how} {name}", run)
        emit({"measure": f"saekit {how} {name} (untimed setup)", **measured(run)})


def saekit_mix(saekit: str, ws: str, work: str, recipe: dict, label: str) -> tuple:
    path = os.path.join(work, f"{recipe['name']}.recipe.json")
    with open(path, "w") as f:
        json.dump(recipe, f, indent=2)
    run = measure([saekit, "--workspace", ws, "mix", "run", path, "--json"])
    if run["rc"] != 0:
        fail(f"saekit mix run {path}", run)
    report = last_json_line(run["stdout"])
    result = {
        "measure": label,
        "rows": report.get("total_rows"),
        "seconds": round(run["wall_s"], 3),
        "report_seconds": round(report.get("seconds", 0.0), 3),
        "per_source": {s["name"]: s["rows"] for s in report.get("sources", [])},
        **measured(run),
    }
    return result, report


def hf_mix(python: str, work: str, files: dict) -> dict:
    if not os.path.exists(python):
        raise SystemExit(f"error: {python} not found: run `bash bench/setup.sh` first (or pass --hf-python)")
    cmd = [python, os.path.abspath(__file__), "--worker", "hf", "--work", work,
           "--files", json.dumps([files[s[0]] for s in SOURCES]),
           "--weights", json.dumps([s[2] for s in SOURCES])]
    env = dict(os.environ, HF_DATASETS_OFFLINE="1", HF_HUB_OFFLINE="1", HF_DATASETS_DISABLE_PROGRESS_BARS="1")
    run = measure(cmd, env=env)
    if run["rc"] != 0:
        fail("HF interleave_datasets worker", run)
    return {**last_json_line(run["stdout"]), **measured(run)}


def datatrove_dedup(python: str, work: str, source_file: str, words: str) -> dict:
    cmd = [python, os.path.abspath(__file__), "--worker", "datatrove", "--work", work,
           "--files", json.dumps([source_file]), "--datatrove-words", words]
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    run = measure(cmd, env=env)
    if run["rc"] != 0:
        fail("datatrove MinHash worker", run)
    result = {**last_json_line(run["stdout"]), **measured(run)}
    # Its tasks run in forkserver children that this process never waits for: their CPU time is not in
    # cpu_s (their memory is in the sampled tree RSS).
    result["cpu_s"], result["util"] = None, "n/a"
    return result


# ---------------------------------------------------------------------------------------------------
# Workers: what runs inside the measured subprocess.

def worker_hf(work: str, files: list, weights: list) -> dict:
    os.environ["HF_DATASETS_OFFLINE"] = "1"
    import datasets
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    datasets.disable_progress_bars()
    tmp = os.path.join(work, "hf-tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    try:
        t0 = time.perf_counter()
        dss = [datasets.load_dataset("json", data_files=f, split="train", cache_dir=os.path.join(tmp, "cache"))
               for f in files]
        t1 = time.perf_counter()
        total_w = sum(weights)
        mixed = datasets.interleave_datasets(dss, probabilities=[w / total_w for w in weights], seed=0,
                                             stopping_strategy="all_exhausted")
        t2 = time.perf_counter()
        out = os.path.join(tmp, "mix.parquet")
        mixed.to_parquet(out)
        t3 = time.perf_counter()
        ids = pq.read_table(out, columns=["id"]).column("id")
        counts = pc.value_counts(pc.utf8_slice_codeunits(ids, 0, 1)).to_pylist()
        return {
            "measure": "HF interleave_datasets + to_parquet", "rows": len(mixed), "seconds": round(t3 - t1, 3),
            "load_s": round(t1 - t0, 3), "interleave_s": round(t2 - t1, 3), "to_parquet_s": round(t3 - t2, 3),
            "per_source": {c["values"]: c["counts"] for c in sorted(counts, key=lambda c: c["values"])},
            "parquet_mb": round(os.path.getsize(out) / 2**20, 1), "datasets": datasets.__version__,
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def split_words_tokenizer():
    """A datatrove WordTokenizer that splits on whitespace with str.split (datatrove's own
    WhitespaceTokenizer still calls spaCy for words)."""
    from datatrove.utils.word_tokenizers import WordTokenizer

    class SplitWords(WordTokenizer):
        def word_tokenize(self, text):
            return text.split()

        def sent_tokenize(self, text):
            return [text]

        def span_tokenize(self, text):
            return [(0, len(text))]

    return SplitWords()


def worker_datatrove(work: str, source_file: str, words: str) -> dict:
    from importlib.metadata import version

    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup import (MinhashDedupBuckets, MinhashDedupCluster, MinhashDedupFilter,
                                          MinhashDedupSignature)
    from datatrove.pipeline.dedup.minhash import MinhashConfig
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.writers.jsonl import JsonlWriter
    from datatrove.utils.logging import logger

    logger.remove()  # its per-task logs still go to logging_dir
    try:
        import spacy  # noqa: F401  (datatrove's word tokenizer for English, and its whitespace fallback's)
        have_spacy = True
    except ImportError:
        have_spacy = False
    if words == "default" and have_spacy:
        language, words = "eng", "spaCy (datatrove's default for English)"
    else:
        why = "asked for" if words == "split" else "spaCy not installed, so not datatrove's default"
        language, words = split_words_tokenizer(), f"str.split ({why})"

    base = os.path.join(work, "datatrove-tmp")
    shutil.rmtree(base, ignore_errors=True)
    inp = os.path.join(base, "input")
    os.makedirs(inp)
    # The same documents in 2 files (datatrove parallelises by file): first half, second half, streamed.
    with open(source_file, "rb") as f:
        docs = sum(1 for _ in f)
    half = (docs + 1) // 2
    with open(source_file, "rb") as f:
        for k, n in enumerate((half, docs - half)):
            with open(os.path.join(inp, f"part-{k}.jsonl"), "wb") as out:
                for _ in range(n):
                    out.write(f.readline())
    cfg = MinhashConfig()  # 5-grams, 14 buckets × 8 hashes, 64-bit xxhash
    sigs, buckets, remove = (os.path.join(base, d) for d in ("signatures", "buckets", "remove_ids"))
    out, logs = os.path.join(base, "output"), os.path.join(base, "logs")
    stages = [
        ("signatures", LocalPipelineExecutor(
            pipeline=[JsonlReader(inp), MinhashDedupSignature(output_folder=sigs, config=cfg, language=language)],
            tasks=2, workers=2, logging_dir=os.path.join(logs, "1"))),
        ("buckets", LocalPipelineExecutor(
            pipeline=[MinhashDedupBuckets(input_folder=sigs, output_folder=buckets, config=cfg)],
            tasks=cfg.num_buckets, workers=2, logging_dir=os.path.join(logs, "2"))),
        ("clusters", LocalPipelineExecutor(
            pipeline=[MinhashDedupCluster(input_folder=buckets, output_folder=remove, config=cfg)],
            tasks=1, workers=1, logging_dir=os.path.join(logs, "3"))),
        ("filter", LocalPipelineExecutor(
            pipeline=[JsonlReader(inp), MinhashDedupFilter(input_folder=remove),
                      JsonlWriter(out, compression=None)],
            tasks=2, workers=2, logging_dir=os.path.join(logs, "4"))),
    ]
    times = {}
    t0 = time.perf_counter()
    for name, executor in stages:
        s = time.perf_counter()
        executor.run()
        times[f"{name}_s"] = round(time.perf_counter() - s, 3)
    seconds = time.perf_counter() - t0
    kept = 0
    for name in os.listdir(out):
        with open(os.path.join(out, name), "rb") as f:
            kept += sum(1 for _ in f)
    shutil.rmtree(base, ignore_errors=True)
    return {"measure": "datatrove MinHash (4 stages)", "rows": docs, "seconds": round(seconds, 3),
            "dropped": docs - kept, "words": words, "datatrove": version("datatrove"), **times}


# ---------------------------------------------------------------------------------------------------

def table(rows: list) -> str:
    lines = ["| measurement | rows | seconds | rows/s | peak RSS MB | util | load | notes |",
             "|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        rate = r.get("rows_per_s")
        lines.append(
            f"| {r['measure']} | {r['rows']:,} | {r['seconds']:.2f} | {rate:,.0f} | "
            f"{r['peak_rss_mb'] if r.get('peak_rss_mb') is not None else '—'} | {r.get('util', '—')} | "
            f"{r.get('loadavg_1m', '—')} | "
            f"{r.get('notes', '')} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000, help="rows of the 3 sources together (60/30/10 %%)")
    ap.add_argument("--work", default="/var/tmp/saekit-mix-bench", help="work dir (data, workspace, outputs)")
    ap.add_argument("--saekit", default=DEFAULT_SAEKIT, help="the saekit binary")
    ap.add_argument("--hf-python", default=DEFAULT_HF_PYTHON, help="python with datasets (bench/setup.sh)")
    ap.add_argument("--datatrove-python", default=DEFAULT_DT_PYTHON, help="python with datatrove")
    ap.add_argument("--dedup-source", default="c", choices=[s[0] for s in SOURCES])
    ap.add_argument("--datatrove-words", choices=["default", "split"], default="default",
                    help="datatrove's word tokenizer: its default for English (spaCy), or str.split")
    ap.add_argument("--skip", default="", help="comma-separated: hf, dedup, datatrove")
    ap.add_argument("--register", choices=["import", "add"], default="import",
                    help="import: sources converted to Parquet once, untimed (as HF's load is); add: read as JSONL")
    ap.add_argument("--worker", choices=["hf", "datatrove"], help=argparse.SUPPRESS)
    ap.add_argument("--files", help=argparse.SUPPRESS)
    ap.add_argument("--weights", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.worker == "hf":
        print(json.dumps(worker_hf(args.work, json.loads(args.files), json.loads(args.weights))), flush=True)
        return
    if args.worker == "datatrove":
        print(json.dumps(worker_datatrove(args.work, json.loads(args.files)[0], args.datatrove_words)), flush=True)
        return

    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    if not os.access(args.saekit, os.X_OK):
        raise SystemExit(f"error: no saekit binary at {args.saekit} (pass --saekit)")
    os.makedirs(args.work, exist_ok=True)
    data = ensure_data(args.work, args.rows)
    files, sizes = data["files"], data["sizes"]

    ws = os.path.join(args.work, "workspace")
    shutil.rmtree(ws, ignore_errors=True)
    print(f"# saekit workspace {ws} (fresh); setup, not counted below:", flush=True)
    saekit_add(args.saekit, ws, files, args.register)

    results = []
    mix, report = saekit_mix(args.saekit, ws, args.work, mix_recipe("bench-mix", sizes), "saekit mix run")
    mix["notes"] = "weighted .5/.3/.2, all_exhausted, seed 0 → Parquet; " + \
        ", ".join(f"{s['name']} {s['rows']:,} ({s['repetitions']:.2f}×)" for s in report["sources"])
    results.append(emit(mix))

    if "hf" not in skip:
        hf = hf_mix(args.hf_python, args.work, files)
        hf["notes"] = (f"load_dataset (JSON→Arrow) {hf['load_s']:.1f} s not counted; "
                       + ", ".join(f"{k} {v:,}" for k, v in hf["per_source"].items()))
        results.append(emit(hf))
        both = dict(hf, measure="HF load_dataset + interleave + to_parquet", seconds=round(hf["seconds"] + hf["load_s"], 3),
                    notes="the same run, counting the JSON load")
        both.pop("rows_per_s", None)
        results.append(emit(both))
        ratio = {"measure": "ratio saekit / HF (rows/s)",
                 "vs_interleave_to_parquet": round(mix["rows_per_s"] / hf["rows_per_s"], 2),
                 "vs_load_interleave_to_parquet": round(mix["rows_per_s"] / both["rows_per_s"], 2),
                 "peak_rss_saekit_mb": mix["peak_rss_mb"], "peak_rss_hf_mb": hf["peak_rss_mb"]}
        print(json.dumps(ratio), flush=True)

    dedup_rows = []
    if "dedup" not in skip:
        src = args.dedup_source
        plain, _ = saekit_mix(args.saekit, ws, args.work, one_source_recipe("bench-plain", src, False),
                              f"saekit one source ({src}), no steps")
        plain["notes"] = "baseline for the row below: read the source → Parquet"
        dedup_rows.append(emit(plain))
        dd, rep = saekit_mix(args.saekit, ws, args.work, one_source_recipe("bench-dedup", src, True),
                             f"saekit near_dedup ({src}), end to end")
        step = next((s for s in rep["sources"][0]["steps"] if s.get("step", s.get("name")) == "near_dedup"),
                    rep["sources"][0]["steps"][0] if rep["sources"][0]["steps"] else {})
        dd["rows"] = sizes[src]  # documents deduplicated (the mix writes the kept ones)
        dd["dropped"] = rep.get("dropped_rows")
        dd["step"] = step
        dd["notes"] = f"5-grams, 14 × 8; dropped {rep.get('dropped_rows'):,}; writes the kept rows to Parquet"
        dedup_rows.append(emit(dd))
        pass_s = dd["seconds"] - plain["seconds"]
        if pass_s > 0:
            dedup_rows.append(emit({"measure": "saekit near_dedup pass (difference)", "rows": sizes[src],
                                    "seconds": round(pass_s, 3), "peak_rss_mb": None, "util": "—",
                                    "notes": "wall(dedup) − wall(no steps): a 2nd read + MinHash + LSH"}))
        if "datatrove" in skip:
            pass
        elif not os.path.exists(args.datatrove_python):
            print(f"# datatrove: skipped, no {args.datatrove_python} (see this script's docstring to make it)",
                  flush=True)
        else:
            dt = datatrove_dedup(args.datatrove_python, args.work, files[src], args.datatrove_words)
            dt["notes"] = (f"MinhashConfig() defaults, words: {dt['words']}; dropped {dt['dropped']:,}; "
                           f"stages s: sig {dt['signatures_s']}, buckets {dt['buckets_s']}, "
                           f"clusters {dt['clusters_s']}, filter {dt['filter_s']}")
            dedup_rows.append(emit(dt))
            sk = dedup_rows[1]
            print(json.dumps({"measure": "ratio saekit / datatrove near dedup (docs/s, end to end)",
                              "ratio": round(sk["rows_per_s"] / dt["rows_per_s"], 2)}), flush=True)

    print()
    print(f"## mix: {sum(sizes.values()):,} source rows ({', '.join(f'{n} {s:,}' for n, s in sizes.items())}), "
          f"{os.cpu_count()} CPUs")
    print()
    print(table(results))
    if "hf" not in skip:
        print()
        print(f"saekit / HF rows/s: {ratio['vs_interleave_to_parquet']}× (interleave + to_parquet), "
              f"{ratio['vs_load_interleave_to_parquet']}× (load + interleave + to_parquet); "
              f"peak RSS {mix['peak_rss_mb']} MB vs {hf['peak_rss_mb']} MB")
    if dedup_rows:
        print()
        print(f"## near dedup (MinHash 5-grams, 14 × 8) over source {args.dedup_source}: rows = documents")
        print()
        print(table(dedup_rows))


if __name__ == "__main__":
    main()
