"""The SAE training step on this machine, in one run: saekit's CPU step (TopK and standard) beside SAELens'
own step and numpy's sgemm on the same shapes, with the ratios the SAE speed issue asks for.

    python bench/sae_bench.py [--d-in 768] [--d-sae 16384] [--batch 4096] [--k 32] [--steps 3] [--threads 2]
                              [--saekit BIN] [--saelens-python PY] [--reference] [--json OUT]

* numpy: each of the step's five products (encoder, decoder, the decoder's input gradient, both weight
  gradients) as one float32 matmul, median of 3; the peak is the fastest of them.
* SAELens: bench/sae_lens_step.py in the SAELens environment (`--saelens-python`, default
  /var/tmp/saekit-saelens-venv/bin/python, made with `python3.11 -m venv --system-site-packages` and
  `pip install sae-lens==6.54.12`; it reuses torch from /var/tmp/saekit-bench-venv through PYTHONPATH when
  that exists, else pip brings its own, ~6 GB). Skipped with a note when it is missing. Never CI's.
* saekit: `saekit sae bench` built with the kernel's profile (what a notebook runs), its products on the
  `gemm` crate and on the system's OpenBLAS (`--blas`; what runs use when it opens); `--reference` adds the
  step made of candle's operations.
Timings are medians after one warm-up step; the load average is printed before and after.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH_SITE = "/var/tmp/saekit-bench-venv/lib/python3.11/site-packages"


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def json_lines(cmd: list, env=None) -> list:
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def build_saekit() -> str:
    target = os.environ.get("SAEKIT_KERNEL_TARGET") or (
        "/var/tmp/saekit-kernel-target" if os.path.isdir("/var/tmp/saekit-kernel-target") else str(ROOT / "target"))
    print(f"== cargo build -p saekit --profile kernel --bin saekit (CARGO_TARGET_DIR={target})", flush=True)
    subprocess.run(["cargo", "build", "--quiet", "-p", "saekit", "--profile", "kernel", "--bin", "saekit"],
                   cwd=ROOT, check=True, env={**os.environ, "CARGO_TARGET_DIR": target})
    return os.path.join(target, "kernel", "saekit")


def numpy_products(n: int, d: int, s: int, threads: int) -> dict:
    os.environ.setdefault("OPENBLAS_NUM_THREADS", str(threads))
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, d), dtype=np.float32)
    w = rng.standard_normal((d, s), dtype=np.float32)
    z = rng.standard_normal((n, s), dtype=np.float32)
    dec = rng.standard_normal((s, d), dtype=np.float32)
    e = rng.standard_normal((n, d), dtype=np.float32)
    cases = {
        "encoder x·W_enc": lambda: x @ w,
        "decoder z·W_dec": lambda: z @ dec,
        "input gradient e·W_decᵀ": lambda: e @ dec.T,
        "W_dec gradient zᵀ·e": lambda: z.T @ e,
        "W_enc gradient xᵀ·z": lambda: x.T @ z,
    }
    flop = 2.0 * n * d * s
    out = {}
    for name, f in cases.items():
        f()
        times = []
        for _ in range(3):
            t = time.perf_counter()
            f()
            times.append(time.perf_counter() - t)
        out[name] = flop / statistics.median(times) / 1e9
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--d-in", type=int, default=768)
    ap.add_argument("--d-sae", type=int, default=16384)
    ap.add_argument("--batch", type=int, default=4096)
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--saekit", help="a saekit binary (skips the build)")
    ap.add_argument("--saelens-python", default=os.environ.get("SAEKIT_SAELENS_PYTHON", "/var/tmp/saekit-saelens-venv/bin/python"))
    ap.add_argument("--reference", action="store_true", help="also time saekit's reference step (candle's operations)")
    ap.add_argument("--blas", default="openblas", help="the system BLAS to time saekit's step on too (what runs use by default when it opens)")
    ap.add_argument("--json", help="write every measurement here")
    a = ap.parse_args()
    shape = ["--d-in", str(a.d_in), "--d-sae", str(a.d_sae), "--batch", str(a.batch), "--k", str(a.k), "--steps", str(a.steps)]
    before = loadavg()
    print(f"load average before: {before}; {os.cpu_count()} CPUs; {a.threads} threads", flush=True)
    saekit = a.saekit or build_saekit()

    print("== numpy sgemm on the step's products", flush=True)
    products = numpy_products(a.batch, a.d_in, a.d_sae, a.threads)
    peak = max(products.values())
    for name, g in products.items():
        print(f"  {name:<26} {g:7.1f} GFLOP/s")

    rows = []
    print("== saekit", flush=True)
    rows += json_lines([saekit, "sae", "bench", *shape, "--threads", str(a.threads)])
    try:
        rows += json_lines([saekit, "sae", "bench", *shape, "--threads", str(a.threads), "--blas", a.blas])
    except subprocess.CalledProcessError as e:
        print(f"  (no {a.blas} BLAS: {e.stderr.strip()})")
    if a.reference:
        rows += json_lines([saekit, "sae", "bench", *shape, "--threads", str(a.threads), "--reference"])
    if os.path.exists(a.saelens_python):
        print("== SAELens", flush=True)
        env = dict(os.environ)
        if os.path.isdir(BENCH_SITE):
            env["PYTHONPATH"] = BENCH_SITE
        rows += json_lines([a.saelens_python, str(ROOT / "bench" / "sae_lens_step.py"), *shape, "--threads", str(a.threads)], env)
    else:
        print(f"  (no SAELens environment at {a.saelens_python}: its rows are missing)")
    after = loadavg()

    def find(impl, arch):
        return next((r for r in rows if r["impl"] == impl and r["architecture"] == arch), None)

    dense_flop = 6 * 2.0 * a.batch * a.d_in * a.d_sae / 1e9
    print()
    print(f"SAE training step, d_in {a.d_in}, d_sae {a.d_sae}, batch {a.batch} tokens, TopK k {a.k}, {a.threads} threads")
    print(f"{'':<34}{'s/step':>8}{'tokens/s':>10}{'GFLOP done':>12}{'GFLOP/s':>9}{'vs SAELens':>12}{'peak RSS':>10}")
    for r in rows:
        sl = find("SAELens", r["architecture"])
        ratio = f"{sl['seconds_per_step'] / r['seconds_per_step']:.2f}×" if sl and r["impl"] != "SAELens" else ""
        gflop = r.get("gflop", dense_flop)
        rss = f"{r['peak_rss_bytes'] / 2**20:.0f} MiB" if r.get("peak_rss_bytes") else ""
        print(f"{r['impl'] + ' ' + r['architecture']:<34}{r['seconds_per_step']:8.2f}{r['tokens_per_s']:10.0f}"
              f"{gflop:12.0f}{gflop / r['seconds_per_step']:9.0f}{ratio:>12}{rss:>10}")
    print()
    print(f"numpy sgemm peak on these shapes: {peak:.0f} GFLOP/s")
    products_only = ("encoder", "decoder", "W_dec gradient", "decoder input gradient", "W_enc gradient")
    for impl in dict.fromkeys(r["impl"] for r in rows if r["impl"].startswith("saekit") and "reference" not in r["impl"]):
        dense, topk = find(impl, "standard"), find(impl, "topk")
        if dense:
            alone = 5 * 2.0 * a.batch * a.d_in * a.d_sae / 1e9 / sum(v for k, v in dense["phases_seconds"].items() if k in products_only)
            print(f"{impl}: dense (standard) step {dense['gflop_per_s']:.0f} GFLOP/s = {100 * dense['gflop_per_s'] / peak:.0f} % of numpy's peak"
                  f" (its five products alone {alone:.0f} GFLOP/s = {100 * alone / peak:.0f} %)")
        if dense and topk:
            print(f"{impl}: TopK step {dense['seconds_per_step'] / topk['seconds_per_step']:.1f}× faster than the dense step")
        for r in (topk, dense):
            if r:
                parts = ", ".join(f"{k} {v:.3f}" for k, v in r["phases_seconds"].items())
                print(f"  {impl} {r['architecture']}, seconds per part: {parts}")
    print(f"load average before {before}, after {after}")
    if a.json:
        Path(a.json).write_text(json.dumps({"numpy_gflop_per_s": products, "rows": rows, "load_before": before, "load_after": after}, indent=1))


if __name__ == "__main__":
    sys.exit(main())
