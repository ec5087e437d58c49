"""The tokenization benchmark in one command: saekit against the HuggingFace baseline, A/B interleaved
in the same run on the same corpus, with peak memory of each mode's whole process tree.

    python3 bench/tokenize_bench.py [--corpus PATH] [--repeat N] [--reps K] [--limit-mb MB] [--modes ...]

It first builds whatever is missing: bench/.venv (bench/setup.sh), the GPT-2 tokenizer.json
(bench/gpt2_tokenizer_json.py), the corpus (bench/make_corpus.sh, only for the default corpus path) and
the release saekit binary (`cargo build --release --bin saekit`, CARGO_TARGET_DIR defaulting to
/var/tmp/saekit-target). Then, K times, alternating the order each rep, it runs:

  saekit             `saekit tokenize --tokenizer gpt2 --out <tmp>/store --json CORPUS [CORPUS ...]`
                     (the corpus repeated N times), end to end; `seconds` is what saekit reports
  datasets.map       load_dataset("json") -> map(num_proc=2) -> to_parquet   (the anchor)
  encode_batch_fast  tokenizers over texts already in memory

and prints a table of tokens/s and peak RSS with ratios against datasets.map, the load average before
and after, and checks that saekit's token total equals encode_batch_fast's exactly (exit 1 if not).
--limit-mb MB runs on the first MB megabytes of the corpus (a cached subset file), for quick checks.
"""
import os
import sys

# This file's name shadows the standard library's `tokenize` module (which linecache, inspect and
# tracebacks import): take this folder off the import path before anything can import it.
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != HERE]

import argparse  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402

REPO = os.path.dirname(HERE)
DATA = os.path.join(HERE, "data")
VENV_PY = os.path.join(HERE, ".venv", "bin", "python")
TOKENIZER = os.path.join(DATA, "gpt2-tokenizer.json")
DEFAULT_CORPUS = os.path.join(DATA, "corpus.jsonl")
SAEKIT, ANCHOR, FAST = "saekit", "datasets.map", "encode_batch_fast"
MODE_NAMES = {"saekit": SAEKIT, "map": ANCHOR, "fast": FAST}

_spec = importlib.util.spec_from_file_location("hf_baseline", os.path.join(HERE, "hf_baseline.py"))
hf = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(hf)


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def loadavg() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


# ---------------------------------------------------------------------------------------------------
# Building what is missing.

def ensure_venv() -> None:
    subprocess.run(["bash", os.path.join(HERE, "setup.sh")], check=True)


def ensure_tokenizer() -> None:
    if not os.path.exists(TOKENIZER):
        say("== building the GPT-2 tokenizer.json")
        subprocess.run([VENV_PY, os.path.join(HERE, "gpt2_tokenizer_json.py"), "--out", TOKENIZER], check=True)


def ensure_corpus(corpus: str) -> None:
    if os.path.exists(corpus):
        return
    if os.path.abspath(corpus) != DEFAULT_CORPUS:
        sys.exit(f"error: corpus {corpus} does not exist")
    say("== building the corpus (bench/make_corpus.sh)")
    subprocess.run(["bash", os.path.join(HERE, "make_corpus.sh"), DATA], check=True)


def subset(corpus: str, limit_mb: float) -> str:
    """The first `limit_mb` MB (whole lines) of the corpus, as a cached file next to it."""
    path = os.path.join(DATA, f"{os.path.splitext(os.path.basename(corpus))[0]}-{limit_mb:g}mb.jsonl")
    if os.path.exists(path) and os.path.getmtime(path) >= os.path.getmtime(corpus):
        return path
    os.makedirs(DATA, exist_ok=True)
    limit, n = limit_mb * 1e6, 0
    with open(corpus, "rb") as src, open(path + ".tmp", "wb") as dst:
        for line in src:
            if n >= limit:
                break
            dst.write(line)
            n += len(line)
    os.replace(path + ".tmp", path)
    return path


def build_saekit() -> str:
    """Builds the release binary and returns its path."""
    target = os.environ.get("CARGO_TARGET_DIR") or "/var/tmp/saekit-target"
    say(f"== cargo build --release --bin saekit (CARGO_TARGET_DIR={target})")
    subprocess.run(["cargo", "build", "--release", "--bin", "saekit"], cwd=REPO, check=True,
                   env=dict(os.environ, CARGO_TARGET_DIR=target))
    return os.path.join(target, "release", "saekit")


def check_saekit_tokenize(binary: str) -> None:
    """Exits with a clear message when the binary has no `tokenize` command."""
    with tempfile.TemporaryDirectory(prefix="saekit-bench-") as tmp:
        probe = subprocess.run([binary, "tokenize", "--help"], capture_output=True, text=True,
                               env=dict(os.environ, SAEKIT_HOME=os.path.join(tmp, "home")))
    if "unknown command" in (probe.stdout + probe.stderr):
        sys.exit(f"error: {binary} has no `tokenize` command yet (it answered: "
                 f"{(probe.stderr or probe.stdout).strip().splitlines()[0]}).\n"
                 f"Run the Python modes only with --modes map,fast, or build a saekit that has it.")


# ---------------------------------------------------------------------------------------------------
# The modes.

def run_saekit(binary: str, corpus: str, repeat: int) -> dict:
    """saekit tokenize end to end under the same process-tree RSS sampler as the Python modes."""
    with tempfile.TemporaryDirectory(prefix="saekit-bench-store-") as tmp:
        cmd = [binary, "tokenize", "--tokenizer", "gpt2", "--out", os.path.join(tmp, "store"), "--json"]
        cmd += [corpus] * repeat
        run = hf.measure(cmd, env=dict(os.environ, SAEKIT_HOME=os.path.join(tmp, "home")))
    if run["rc"] != 0:
        tail = "\n".join((run["stderr"] + run["stdout"]).strip().splitlines()[-25:])
        raise RuntimeError(f"saekit tokenize failed (exit {run['rc']}):\n{tail}")
    result = hf.last_json_line(run["stdout"])
    missing = [k for k in ("documents", "sequences", "tokens", "document_tokens", "seconds") if k not in result]
    if missing:
        raise RuntimeError(f"saekit tokenize's JSON line lacks {missing}: {result}")
    # Compare like with like: the tokens encoded from the documents (what the HF modes count). saekit's
    # `tokens` are those stored in sequences, more than that when long documents become overlapping windows.
    result = dict(result, stored_tokens=result["tokens"], tokens=result["document_tokens"])
    result["tokens_per_s"] = result["tokens"] / result["seconds"]
    return hf.finish(dict(result, mode=SAEKIT), run)


def run_one(mode: str, binary: str, corpus: str, args) -> dict:
    if mode == "saekit":
        return run_saekit(binary, corpus, args.repeat)
    return hf.run_mode(mode, corpus, TOKENIZER, args.repeat, python=VENV_PY, map_encode=args.map_encode)


def warm_page_cache(path: str) -> None:
    """Reads the corpus once, so that no mode pays for the first read from disk."""
    with open(path, "rb") as f:
        while f.read(1 << 23):
            pass


# ---------------------------------------------------------------------------------------------------
# Report.

def fmt_rate(x: float) -> str:
    return f"{x / 1e6:.3f}M" if x >= 1e6 else f"{x / 1e3:.0f}k"


def report(results: list, before: str, after: str) -> int:
    """Prints the table and the parity check; returns the exit code."""
    by_mode = {}
    for r in results:
        by_mode.setdefault(r["mode"], []).append(r)
    anchor_rate = anchor_rss = None
    if ANCHOR in by_mode:
        anchor_rate = statistics.median(r["tokens_per_s"] for r in by_mode[ANCHOR])
        anchor_rss = max(r["peak_rss_mb"] for r in by_mode[ANCHOR])
    print()
    print(f"{'mode':<18} {'runs':>4} {'tokens/s (median)':>17} {'min-max':>17} {'seconds':>8} "
          f"{'util':>5} {'peak RSS MiB':>12} {'speed vs map':>12} {'RSS vs map':>10}")
    for mode in (SAEKIT, ANCHOR, FAST):
        rs = by_mode.get(mode)
        if not rs:
            continue
        rate = statistics.median(r["tokens_per_s"] for r in rs)
        lo, hi = min(r["tokens_per_s"] for r in rs), max(r["tokens_per_s"] for r in rs)
        rss = max(r["peak_rss_mb"] for r in rs)
        secs = statistics.median(r["seconds"] for r in rs)
        util = statistics.median(r["util"] for r in rs)
        speed = f"{rate / anchor_rate:.2f}x" if anchor_rate else "-"
        mem = f"{rss / anchor_rss:.2f}x" if anchor_rss else "-"
        print(f"{mode:<18} {len(rs):>4} {fmt_rate(rate):>17} {fmt_rate(lo) + '-' + fmt_rate(hi):>17} "
              f"{secs:>8.2f} {util:>5.2f} {rss:>12.0f} {speed:>12} {mem:>10}")
    print(f"load average (1/5/15 min): before {before}; after {after}")
    docs = {m: sorted({r["documents"] for r in rs}) for m, rs in by_mode.items()}
    print("documents: " + ", ".join(f"{m} {d}" for m, d in docs.items()))

    if SAEKIT in by_mode and FAST in by_mode:
        s_tokens = sorted({r["tokens"] for r in by_mode[SAEKIT]})
        f_tokens = sorted({r["tokens"] for r in by_mode[FAST]})
        seqs = sorted({r["sequences"] for r in by_mode[SAEKIT]})
        print(f"token parity: saekit {s_tokens} (sequences {seqs}), encode_batch_fast {f_tokens}")
        if s_tokens == f_tokens and len(s_tokens) == 1:
            print("token parity: OK (exact)")
        else:
            diff = s_tokens[-1] - f_tokens[-1]
            ndocs = by_mode[FAST][0]["documents"]
            print(f"token parity: FAILED, saekit - encode_batch_fast = {diff:+} "
                  f"({diff / ndocs:+.3f} per document over {ndocs} documents)")
            return 1
    return 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", default=DEFAULT_CORPUS, help="JSONL with a `text` field (default: %(default)s)")
    ap.add_argument("--repeat", type=int, default=1, help="feed the corpus N times to every mode (default 1)")
    ap.add_argument("--reps", type=int, default=1, help="A/B repetitions, order alternating (default 1)")
    ap.add_argument("--limit-mb", type=float, help="use only the first MB megabytes of the corpus")
    ap.add_argument("--modes", default="saekit,map,fast", help="comma-separated: saekit, map, fast")
    ap.add_argument("--map-encode", choices=["fast", "batch"], default="fast",
                    help="the call inside datasets.map: encode_batch_fast (default) or encode_batch")
    ap.add_argument("--saekit", help="use this saekit binary instead of building one")
    ap.add_argument("--json-out", help="also write every run's JSON result to this file")
    args = ap.parse_args()
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if unknown := [m for m in modes if m not in MODE_NAMES]:
        sys.exit(f"error: unknown mode(s) {unknown}; choose from {sorted(MODE_NAMES)}")

    ensure_venv()
    ensure_tokenizer()
    ensure_corpus(args.corpus)
    corpus = subset(args.corpus, args.limit_mb) if args.limit_mb else os.path.abspath(args.corpus)
    binary = None
    if "saekit" in modes:
        binary = args.saekit or build_saekit()
        check_saekit_tokenize(binary)

    warm_page_cache(corpus)
    say(f"== corpus {corpus} ({os.path.getsize(corpus) / 1e6:.1f} MB) x{args.repeat}, {args.reps} rep(s), "
        f"modes {', '.join(modes)}")
    before = loadavg()
    results = []
    for rep in range(args.reps):
        for mode in (modes if rep % 2 == 0 else modes[::-1]):
            r = run_one(mode, binary, corpus, args)
            r["rep"] = rep
            results.append(r)
            print(json.dumps(r), flush=True)
    after = loadavg()
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump({"corpus": corpus, "repeat": args.repeat, "load_before": before, "load_after": after,
                       "results": results}, f, indent=2)
    sys.exit(report(results, before, after))


if __name__ == "__main__":
    main()
