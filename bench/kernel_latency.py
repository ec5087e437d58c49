"""Kernel start and cell latency: saekit-kernel against stock evcxr_jupyter 0.22, in one run, same machine.

    source scripts/env.sh
    cargo build -p saekit-kernel --profile kernel --bins --features stock   # both binaries
    .venv/bin/python bench/kernel_latency.py [--cells 20] [--starts 3] [--json out/kernel_latency.json]
        [--baseline bench/kernel_latency_baseline.json | --no-baseline] [--write-baseline] [--max-load 2.5]

Both kernels get a warm persistent build directory, so neither compiles saekit while being measured:
saekit-kernel its own build slots ($SAEKIT_KERNEL_HOME, prebuilt by `saekit-kernel install`), stock evcxr
a persistent EVCXR_TMPDIR (--stock-build-dir, default /var/tmp/saekit-evcxr-stock) seeded with this
repository's Cargo.lock and warmed once, unmeasured, with the same setup cell a user of stock evcxr needs:

    :dep saekit = { path = "<repo>/crate" }
    use saekit::prelude::*;

A stock build dir that was never built is first seeded with a copy of a built saekit-kernel slot (the same
evcxr cell crate, dependency line and lockfile), so a cold machine builds saekit's dependencies once, not twice.
To keep edits in progress out of a run (a change to crate/ rebuilds saekit in the middle of it), point --crate
at a copy of the workspace and SAEKIT_KERNEL_HOME and --stock-build-dir at directories of the run's own.

Four kernels by default: saekit-kernel as a researcher gets it (a ready spare kernel serves the session;
see kernel-ext/src/spare.rs), saekit-kernel with spare kernels off (SAEKIT_KERNEL_SPARE=0: evcxr and the
preload start in the kernel's own process), saekit-kernel with spares off and every cell built through cargo
(SAEKIT_KERNEL_CELL_REPLAY=0: as before kernel-ext/src/cell_build.rs, which skips cargo for a cell whose
build inputs are unchanged), and stock evcxr.

Measured, for each kernel (starts alternate between the kernels):
  * start → first kernel_info_reply (kernel_info asked every 0.25 s from the moment the process is spawned)
  * start → first saekit output: the execute_result of a dataset card (stock evcxr runs its setup cell first)
  * execute_request → execute_reply of 20 trivial cells (`x + 1`, with `let x = 1;` run before) and of 20
    saekit cells (a dataset card with statistics, `Workspace::open(..).unwrap().dataset("austen").unwrap()`),
    p50 and p95, in the first session after its setup
Stock evcxr lacks most of what saekit-kernel adds (display_data, live updates, history, ...): only what both
can do is measured. The machine's load average is printed beside the results (and per session in the
JSON), since it moves them; `--max-load L` waits (up to --load-wait seconds) for the 1-minute load to drop
below L before each measured session. The linker each kernel's evcxr uses (`:linker`) is printed too.

Regression guard (not a timed test): saekit-kernel's cell latencies (trivial and saekit cell, p50 and p95)
are compared with a baseline (`--baseline`, default bench/kernel_latency_baseline.json when it exists; written
by `--write-baseline`). When both the run and the baseline have stock evcxr, the numbers compared are
saekit-kernel's divided by stock's from the same run (which cancels most of the machine's speed and load);
otherwise the absolute times. A number more than --margin (default 25 %) and 50 ms above its baseline fails
the run (exit status 1) and is named. The issue's goal (`x + 1`: p50 < 0.5 s, p95 < 0.8 s) is reported too,
and with --goal also fails the run when missed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import kernel_util  # noqa: E402
from kernel_util import KernelSession  # noqa: E402

SAEKIT, STOCK = kernel_util.KERNEL_NAME, kernel_util.STOCK_NAME
# saekit-kernel as Jupyter starts it with spare kernels off: the engine and preload in the kernel's own process.
NO_SPARE = "saekit-no-spare"
# saekit-kernel with every cell built through cargo (SAEKIT_KERNEL_CELL_REPLAY=0, spares off), as before
# kernel-ext/src/cell_build.rs: what skipping cargo saves, in the same run.
CARGO = "saekit-cargo"
KERNELSPEC = {SAEKIT: SAEKIT, NO_SPARE: SAEKIT, CARGO: SAEKIT, STOCK: STOCK}
SESSION_ENV = {
    SAEKIT: {"SAEKIT_KERNEL_SPARE": "1"},
    NO_SPARE: {"SAEKIT_KERNEL_SPARE": "0"},
    CARGO: {"SAEKIT_KERNEL_SPARE": "0", "SAEKIT_KERNEL_CELL_REPLAY": "0"},
    STOCK: {"SAEKIT_KERNEL_SPARE": "1"},
}
STOCK_SETUP = ':dep saekit = {{ path = "{crate}" }}\nuse saekit::prelude::*;'
TRIVIAL_SETUP, TRIVIAL = "let x = 1;", "x + 1"
BASELINE = ROOT / "bench" / "kernel_latency_baseline.json"
# The numbers the regression guard compares (saekit-kernel as a researcher gets it), and the goal.
GUARDED = ("trivial_p50", "trivial_p95", "saekit_p50", "saekit_p95")
GOAL = {"trivial_p50": 0.5, "trivial_p95": 0.8}
SLACK_S = 0.05  # differences below this are never a regression (timer and scheduling noise)


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100)."""
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[k]


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def load1() -> float:
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0.0


def wait_for_load(max_load: float | None, patience: float) -> None:
    """Waits (at most `patience` seconds) until the 1-minute load average is below `max_load`."""
    if max_load is None:
        return
    deadline = time.monotonic() + patience
    if load1() >= max_load:
        print(f"   (load {loadavg()}: waiting up to {patience:.0f} s for it to drop below {max_load})", flush=True)
    while load1() >= max_load and time.monotonic() < deadline:
        time.sleep(5)


def make_workspace(path: Path) -> None:
    """A workspace with the embedded corpus, made with the saekit CLI (so neither kernel pays for it)."""
    if (path / "catalog.sqlite").exists():
        return
    target = Path(os.environ.get("CARGO_TARGET_DIR") or ROOT / "target")
    cli = target / "debug" / "saekit"
    if not cli.exists():
        subprocess.run(["cargo", "build", "--quiet", "-p", "saekit", "--bin", "saekit"], cwd=ROOT, check=True)
    subprocess.run([str(cli), "--workspace", str(path), "quickstart", "--out", str(path / "report.html")],
                   check=True, capture_output=True, timeout=600)


def seed_stock_build_dir(build_dir: Path) -> None:
    """A stock build dir that was never built starts as a copy of a built saekit-kernel slot: the same
    evcxr, cell crate, dependency line and lockfile, so the same build (a cold machine then skips a second
    build of saekit's dependencies, ~18 min on 2 cores)."""
    if (build_dir / "target").exists():
        return
    home = Path(os.environ.get("SAEKIT_KERNEL_HOME") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
                / "saekit-kernel")
    for slot in sorted((home / "slots").glob("slot-*")):
        if (slot / "saekit-built").exists() and (slot / "target").is_dir():
            print(f"== seeding {build_dir} from {slot} (a built saekit-kernel slot)", flush=True)
            subprocess.run(["cp", "-a", "--reflink=auto", str(slot / "target"), str(build_dir)], check=False)
            return


class Bench:
    def __init__(self, args: argparse.Namespace, base: Path, workspace: Path):
        self.args = args
        self.base = base
        # Self-contained (no variable carried between cells) and with `unwrap` rather than `?`, so that
        # both kernels render the card (evcxr shows a trailing `?` expression with Debug).
        self.saekit_cell = f"Workspace::open({json.dumps(str(workspace))}).unwrap().dataset(\"austen\").unwrap()"
        self.first_output = self.saekit_cell
        self.setup = {SAEKIT: None, NO_SPARE: None, CARGO: None, STOCK: STOCK_SETUP.format(crate=args.crate)}

    def session(self, kernel: str) -> KernelSession:
        env = SESSION_ENV[kernel]
        if kernel == SAEKIT:
            # What a researcher finds after install, or after a few seconds in their last notebook: a ready
            # spare kernel. Waiting for it is not measured; nothing else is compiling while we measure.
            waited = time.monotonic()
            subprocess.run([str(kernel_util.kernel_binary()), "spare", "--wait", "900"], check=True,
                           capture_output=True, env={**os.environ, **env})
            print(f"   (a spare kernel was ready after {time.monotonic() - waited:.1f} s, unmeasured)", flush=True)
        return KernelSession(KERNELSPEC[kernel], startup_timeout=self.args.startup_timeout, cwd=self.base, env=env)

    def warm(self, kernel: str) -> None:
        print(f"== warming {kernel} (unmeasured; the first time on a machine this compiles saekit's dependencies)", flush=True)
        started = time.monotonic()
        with self.session(kernel) as s:
            if self.setup[kernel]:
                s.ok(self.setup[kernel], timeout=3600)
            s.ok(self.first_output, timeout=600)
        print(f"   warm in {time.monotonic() - started:.1f} s", flush=True)

    def start(self, kernel: str, measure_cells: bool) -> dict:
        wait_for_load(self.args.max_load, self.args.load_wait)
        load = loadavg()
        s = self.session(kernel)
        try:
            row: dict = {"kernel_info": s.info_at, "load_at_start": load}
            if self.setup[kernel]:
                s.ok(self.setup[kernel], timeout=600)
            first = s.ok(self.first_output, timeout=600)
            results = first.of_type("execute_result")
            if not results:
                raise AssertionError(f"{kernel}: no execute_result for the first saekit cell:\n{first.describe()}")
            row["first_saekit_output"] = results[0].t
            row["first_saekit_mimes"] = sorted(results[0].content["data"])
            if measure_cells:
                linker = s.ok(":linker")
                row["linker"] = (linker.stdout() + "".join(m.text for m in linker.of_type("execute_result"))).strip()
                s.ok(TRIVIAL_SETUP)
                s.ok(TRIVIAL)  # not counted
                row["trivial"] = [s.ok(TRIVIAL).latency for _ in range(self.args.cells)]
                row["saekit"] = []
                for _ in range(self.args.cells):
                    ex = s.ok(self.saekit_cell)
                    assert ex.of_type("execute_result"), ex.describe()
                    row["saekit"].append(ex.latency)
                row["load_after_cells"] = loadavg()
            return row
        finally:
            s.close()


def fmt(x: float | None) -> str:
    return "–" if x is None else (f"{x:.2f} s" if x >= 1 else f"{x * 1000:.0f} ms")


def guard(summary: dict[str, dict], baseline_path: Path, margin: float) -> list[str]:
    """The guarded numbers that are more than `margin` (and SLACK_S) above the baseline's, each as a sentence."""
    baseline = json.loads(baseline_path.read_text())["summary"]
    if SAEKIT not in summary or SAEKIT not in baseline:
        print(f"regression guard: skipped ({SAEKIT} is not in both this run and {baseline_path})")
        return []
    relative = STOCK in summary and STOCK in baseline
    how = f"divided by {STOCK}'s in the same run" if relative else "absolute (stock evcxr not in both runs)"
    print(f"regression guard against {baseline_path} ({how}; margin {margin:.0%}, slack {SLACK_S * 1000:.0f} ms):")
    failures = []
    for key in GUARDED:
        now, then = summary[SAEKIT][key], baseline[SAEKIT][key]
        limit_s = max(then * (1 + margin), then + SLACK_S)
        if relative:
            ratio, ratio_then = now / summary[STOCK][key], then / baseline[STOCK][key]
            # The allowed ratio, in seconds at this run's stock speed: the margin, and at least SLACK_S.
            allowed = max(ratio_then * (1 + margin), ratio_then + SLACK_S / summary[STOCK][key])
            bad = ratio > allowed
            text = (f"{key}: {fmt(now)} = {ratio:.2f}× stock ({fmt(summary[STOCK][key])}); "
                    f"baseline {ratio_then:.2f}× ({fmt(then)}), allowed ≤ {allowed:.2f}×")
        else:
            bad = now > limit_s
            text = f"{key}: {fmt(now)}; baseline {fmt(then)}, allowed ≤ {fmt(limit_s)}"
        print(f"  {'SLOWER' if bad else 'ok':6} {text}")
        if bad:
            failures.append(text)
    return failures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cells", type=int, default=20, help="cells of each kind (default 20)")
    parser.add_argument("--starts", type=int, default=3, help="kernel starts per kernel (default 3)")
    parser.add_argument("--kernels", default=f"{SAEKIT},{NO_SPARE},{CARGO},{STOCK}",
                        help=f"which of {SAEKIT} (served by a ready spare kernel), {NO_SPARE}, {CARGO} "
                        f"(every cell through cargo) and {STOCK}")
    # Outside the home directory: stock evcxr's cells load libstd through a relative run path, which breaks
    # for a build dir under ~ while rustup lives in ~/.rustup (saekit-kernel works around it itself).
    parser.add_argument("--stock-build-dir", type=Path, default=Path("/var/tmp/saekit-evcxr-stock"))
    parser.add_argument("--crate", type=Path, default=Path(os.environ.get("SAEKIT_CRATE_PATH") or ROOT / "crate"),
                        help="the saekit crate both kernels load (default $SAEKIT_CRATE_PATH, else ./crate); "
                        "a copy keeps edits in progress from triggering rebuilds between runs")
    parser.add_argument("--startup-timeout", type=float, default=300)
    parser.add_argument("--json", type=Path, default=ROOT / "out" / "kernel_latency.json")
    parser.add_argument("--baseline", type=Path, default=BASELINE,
                        help="the regression guard's baseline (default bench/kernel_latency_baseline.json, when it exists)")
    parser.add_argument("--no-baseline", action="store_true", help="skip the regression guard")
    parser.add_argument("--write-baseline", action="store_true", help="write this run's numbers as the baseline")
    parser.add_argument("--margin", type=float, default=0.25, help="allowed rise over the baseline (default 0.25)")
    parser.add_argument("--goal", action="store_true", help="fail the run when `x + 1` misses p50 < 0.5 s, p95 < 0.8 s")
    parser.add_argument("--max-load", type=float, default=None,
                        help="wait before each measured session until the 1-minute load average is below this")
    parser.add_argument("--load-wait", type=float, default=300, help="longest wait for --max-load, seconds")
    args = parser.parse_args()
    kernels = args.kernels.split(",")
    args.crate = args.crate.resolve()
    os.environ["SAEKIT_CRATE_PATH"] = str(args.crate)  # what saekit-kernel preloads

    base = Path(tempfile.mkdtemp(prefix="saekit-bench-"))
    try:
        os.environ.update(kernel_util.jupyter_env(base))
        if SAEKIT in kernels or NO_SPARE in kernels or CARGO in kernels:
            print(f"== installing saekit-kernel ({kernel_util.kernel_binary()}) with its prebuild", flush=True)
            kernel_util._prepared[SAEKIT] = kernel_util.install_saekit_kernel(base)
        if STOCK in kernels:
            args.stock_build_dir.mkdir(parents=True, exist_ok=True)
            lock = args.stock_build_dir / "Cargo.lock"
            # The same dependency versions as saekit-kernel's build slots (unless saekit was resolved there already).
            if not lock.exists() or 'name = "saekit"' not in lock.read_text():
                shutil.copy(ROOT / "Cargo.lock", lock)
            seed_stock_build_dir(args.stock_build_dir)
            kernel_util._prepared[STOCK] = kernel_util.install_stock_kernel(base, args.stock_build_dir)
        workspace = base / "workspace"
        make_workspace(workspace)
        bench = Bench(args, base, workspace)
        for k in kernels:
            bench.warm(k)

        load_before = loadavg()
        runs: dict[str, list[dict]] = {k: [] for k in kernels}
        for i in range(args.starts):
            for k in kernels if i % 2 == 0 else reversed(kernels):
                print(f"== {k}: start {i + 1}/{args.starts}" + (" with cells" if i == 0 else ""), flush=True)
                runs[k].append(bench.start(k, measure_cells=(i == 0)))
        load_after = loadavg()

        summary: dict[str, dict] = {}
        for k in kernels:
            first = runs[k][0]
            summary[k] = {
                "kernel_info_median": statistics.median(r["kernel_info"] for r in runs[k]),
                "first_saekit_output_median": statistics.median(r["first_saekit_output"] for r in runs[k]),
                "trivial_p50": percentile(first["trivial"], 50),
                "trivial_p95": percentile(first["trivial"], 95),
                "saekit_p50": percentile(first["saekit"], 50),
                "saekit_p95": percentile(first["saekit"], 95),
                "first_saekit_mimes": first["first_saekit_mimes"],
                "linker": first.get("linker", "?"),
                "load_at_cells": first["load_at_start"],
            }

        rows = [
            ("start → kernel_info_reply (median)", "kernel_info_median"),
            ("start → first saekit output (median)", "first_saekit_output_median"),
            (f"`{TRIVIAL}` p50 ({args.cells} cells)", "trivial_p50"),
            (f"`{TRIVIAL}` p95 ({args.cells} cells)", "trivial_p95"),
            (f"dataset card p50 ({args.cells} cells)", "saekit_p50"),
            (f"dataset card p95 ({args.cells} cells)", "saekit_p95"),
        ]
        print()
        print(f"machine: {os.cpu_count()} CPUs; load average {load_before} before, {load_after} after measuring")
        print(f"{args.starts} starts per kernel; cell latency is execute_request → execute_reply")
        compare = SAEKIT in kernels and STOCK in kernels
        head = f"{'':40}" + "".join(f"{k:>17}" for k in kernels)
        if compare:
            head += f"{'stock / saekit':>16}"
        print(head)
        for label, key in rows:
            line = f"{label:40}" + "".join(f"{fmt(summary[k][key]):>17}" for k in kernels)
            if compare:
                line += f"{summary[STOCK][key] / summary[SAEKIT][key]:>15.2f}×"
            print(line)
        for k in kernels:
            print(f"{k}: {summary[k]['linker']}; load average {summary[k]['load_at_cells']} when its cells began; "
                  f"first saekit output's MIME types {summary[k]['first_saekit_mimes']}")

        status = 0
        if SAEKIT in summary:
            missed = [f"{key} {fmt(summary[SAEKIT][key])} (goal < {fmt(limit)})"
                      for key, limit in GOAL.items() if summary[SAEKIT][key] >= limit]
            print(f"goal for `{TRIVIAL}` (p50 < 0.5 s, p95 < 0.8 s): " + ("met" if not missed else "missed: " + ", ".join(missed)))
            if missed and args.goal:
                status = 1
        if not args.no_baseline and not args.write_baseline:
            if args.baseline.exists():
                failures = guard(summary, args.baseline, args.margin)
                if failures:
                    print("REGRESSION: cells got slower than the baseline:\n  " + "\n  ".join(failures))
                    status = 1
            else:
                print(f"regression guard: no baseline at {args.baseline} (write one with --write-baseline)")

        record = {"load_before": load_before, "load_after": load_after, "cpus": os.cpu_count(),
                  "trivial_cell": TRIVIAL, "cells": args.cells, "summary": summary}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({**record, "runs": runs}, indent=2))
        print(f"raw numbers: {args.json}")
        if args.write_baseline:
            args.baseline.write_text(json.dumps(
                {**record, "written": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}, indent=2) + "\n")
            print(f"baseline written: {args.baseline}")
        return status
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
