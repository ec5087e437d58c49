"""The HuggingFace (Python) tokenization baseline that saekit is measured against, and the process-tree
memory sampler that every benchmark mode runs under.

    bench/.venv/bin/python bench/hf_baseline.py --corpus bench/data/corpus.jsonl \
        --tokenizer bench/data/gpt2-tokenizer.json [--repeat N] [--modes map,fast]

Each mode runs in its own subprocess, so peak memory is per mode. The parent samples /proc every 50 ms
and sums the RSS of the whole process tree (the mode's process and all of its children, e.g. the
datasets worker processes); the largest sum is `peak_rss_mb`. Shared pages (fork, mmap) are counted
once per process, so this over-counts a forked tree a little, like `ps` totals do.

Modes (each prints one JSON line: mode, documents, tokens, seconds, tokens_per_s, peak_rss_mb, ...):
  map   `datasets.load_dataset("json", cache_dir=<fresh temp dir>)` -> `.map(tokenize, batched=True,
        batch_size=1000, num_proc=2, remove_columns=[...])` -> `.to_parquet(...)`, with
        HF_DATASETS_OFFLINE=1. `seconds` covers all three steps (timed inside the process, after imports).
  fast  `tokenizers.Tokenizer.from_file(...).encode_batch_fast` over all texts in batches of 1000. The
        texts are read from the JSONL first, untimed; `seconds` is the encoding only.
With --repeat N the corpus is fed N times (map: N data files; fast: the loaded texts are encoded N times).

bench/tokenize_bench.py imports `measure` and `run_mode` from here (standard library only at module level).
"""
import os
import sys

# This folder once held a tokenize.py that would shadow the standard library's `tokenize` module (imported
# by `inspect`, hence by datasets): take the folder off the import path before anything else.
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != HERE]

import argparse  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402

MODES = {"map": "datasets.map", "fast": "encode_batch_fast"}
PAGE = os.sysconf("SC_PAGE_SIZE")
BATCH = 1000


# ---------------------------------------------------------------------------------------------------
# Measuring: process-tree RSS sampler and a runner that records wall time, CPU time and peak memory.

def tree_rss_bytes(root: int) -> int:
    """The summed resident set size of `root` and all of its descendants, read from /proc/<pid>/stat."""
    parent, rss = {}, {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue  # the process ended while we looked
        fields = stat[stat.rfind(b")") + 2:].split()  # the command name may hold spaces and brackets
        pid = int(name)
        parent[pid], rss[pid] = int(fields[1]), int(fields[21])
    children = {}
    for pid, ppid in parent.items():
        children.setdefault(ppid, []).append(pid)
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        total += rss.get(pid, 0)
        stack.extend(children.get(pid, ()))
    return total * PAGE


class TreeSampler(threading.Thread):
    """Samples `tree_rss_bytes(root)` every `interval` seconds until stopped; keeps the peak."""

    def __init__(self, root: int, interval: float = 0.05):
        super().__init__(daemon=True)
        self.root, self.interval = root, interval
        self.peak, self.samples = 0, 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.peak = max(self.peak, tree_rss_bytes(self.root))
            self.samples += 1
            self._stop_event.wait(self.interval)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


def measure(cmd, env=None, cwd=None) -> dict:
    """Runs `cmd` under the sampler. Returns rc, stdout, stderr, wall_s, cpu_s (user+system of the
    process and the children it waited for) and peak_rss_mb (peak of the summed tree RSS, MiB)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env, cwd=cwd)
        sampler = TreeSampler(proc.pid)
        sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        sampler.stop()
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return {
            "rc": proc.returncode,
            "stdout": out.read().decode("utf-8", "replace"),
            "stderr": err.read().decode("utf-8", "replace"),
            "wall_s": wall,
            "cpu_s": usage.ru_utime + usage.ru_stime,
            "peak_rss_mb": sampler.peak / 2**20,
            "rss_samples": sampler.samples,
        }


def last_json_line(text: str) -> dict:
    """The last line of `text` that parses as a JSON object."""
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                continue
    raise ValueError("no JSON line in the output")


def finish(result: dict, run: dict) -> dict:
    """Adds the measured fields (peak RSS, wall and CPU time) to a mode's own JSON result."""
    result["tokens_per_s"] = result["tokens"] / result["seconds"] if result["seconds"] else 0.0
    result["peak_rss_mb"] = round(run["peak_rss_mb"], 1)
    result["wall_s"] = round(run["wall_s"], 3)
    result["cpu_s"] = round(run["cpu_s"], 3)
    result["util"] = round(run["cpu_s"] / run["wall_s"], 2) if run["wall_s"] else 0.0
    return result


def run_mode(mode: str, corpus: str, tokenizer: str, repeat: int = 1, python: str = sys.executable,
             map_encode: str = "fast") -> dict:
    """Runs one Python mode ("map" or "fast") in a subprocess under the sampler; its JSON result."""
    cmd = [python, os.path.abspath(__file__), "--worker", mode, "--corpus", corpus,
           "--tokenizer", tokenizer, "--repeat", str(repeat), "--map-encode", map_encode]
    env = dict(os.environ, HF_DATASETS_OFFLINE="1", HF_HUB_OFFLINE="1", HF_DATASETS_DISABLE_PROGRESS_BARS="1")
    run = measure(cmd, env=env)
    if run["rc"] != 0:
        tail = "\n".join(run["stderr"].strip().splitlines()[-25:])
        raise RuntimeError(f"mode {mode} failed (exit {run['rc']}):\n{tail}")
    return finish(last_json_line(run["stdout"]), run)


# ---------------------------------------------------------------------------------------------------
# Workers: what runs inside the measured subprocess.

def encoder(tok, how: str):
    """The batch-encoding call used inside datasets.map: `encode_batch_fast` (no offsets, the fastest
    tokenizers call) or `encode_batch` (what transformers' fast tokenizers call)."""
    return tok.encode_batch_fast if how == "fast" else tok.encode_batch


def worker_map(corpus: str, tokenizer: str, repeat: int, how: str) -> dict:
    """load_dataset("json") -> map(tokenize, batched, num_proc=2) -> to_parquet, in a fresh temp dir."""
    os.environ["HF_DATASETS_OFFLINE"] = "1"
    import datasets
    import pyarrow.compute as pc
    from tokenizers import Tokenizer

    datasets.disable_progress_bars()
    tmp = tempfile.mkdtemp(prefix="saekit-bench-map-")
    try:
        # N differently named links, so that datasets reads the file N times (it may merge equal paths).
        files = [corpus]
        if repeat > 1:
            files = []
            for i in range(repeat):
                link = os.path.join(tmp, f"corpus-{i}.jsonl")
                os.symlink(os.path.abspath(corpus), link)
                files.append(link)
        tok = Tokenizer.from_file(tokenizer)
        encode = encoder(tok, how)

        def tokenize(batch):
            return {"input_ids": [e.ids for e in encode(batch["text"])]}

        t0 = time.perf_counter()
        ds = datasets.load_dataset("json", data_files=files, split="train", cache_dir=os.path.join(tmp, "cache"))
        t1 = time.perf_counter()
        out = ds.map(tokenize, batched=True, batch_size=BATCH, num_proc=2, remove_columns=ds.column_names)
        t2 = time.perf_counter()
        parquet = os.path.join(tmp, "tokens.parquet")
        out.to_parquet(parquet)
        t3 = time.perf_counter()
        tokens = int(pc.sum(pc.list_value_length(out.data.column("input_ids"))).as_py() or 0)
        return {
            "mode": MODES["map"], "documents": len(out), "tokens": tokens, "seconds": round(t3 - t0, 3),
            "load_s": round(t1 - t0, 3), "map_s": round(t2 - t1, 3), "to_parquet_s": round(t3 - t2, 3),
            "parquet_mb": round(os.path.getsize(parquet) / 2**20, 1), "encode": f"encode_batch{'_fast' * (how == 'fast')}",
            "id_type": str(out.features["input_ids"]),
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def worker_fast(corpus: str, tokenizer: str, repeat: int) -> dict:
    """encode_batch_fast over all texts in batches of 1000; the texts are loaded first, untimed."""
    from tokenizers import Tokenizer

    texts = []
    with open(corpus, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                texts.append(json.loads(line)["text"])
    tok = Tokenizer.from_file(tokenizer)
    tokens = 0
    t0 = time.perf_counter()
    for _ in range(repeat):
        for i in range(0, len(texts), BATCH):
            tokens += sum(len(e) for e in tok.encode_batch_fast(texts[i:i + BATCH]))
    seconds = time.perf_counter() - t0
    return {"mode": MODES["fast"], "documents": len(texts) * repeat, "tokens": tokens, "seconds": round(seconds, 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", required=True, help="a JSONL file with a `text` field per line")
    ap.add_argument("--tokenizer", required=True, help="a tokenizer.json (bench/gpt2_tokenizer_json.py)")
    ap.add_argument("--repeat", type=int, default=1, help="feed the corpus this many times")
    ap.add_argument("--modes", default="map,fast", help="comma-separated: map, fast")
    ap.add_argument("--map-encode", choices=["fast", "batch"], default="fast",
                    help="the call inside datasets.map: encode_batch_fast (default) or encode_batch")
    ap.add_argument("--worker", choices=sorted(MODES), help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.worker == "map":
        print(json.dumps(worker_map(args.corpus, args.tokenizer, args.repeat, args.map_encode)), flush=True)
    elif args.worker == "fast":
        print(json.dumps(worker_fast(args.corpus, args.tokenizer, args.repeat)), flush=True)
    else:
        for mode in args.modes.split(","):
            result = run_mode(mode.strip(), args.corpus, args.tokenizer, args.repeat, map_encode=args.map_encode)
            print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
