"""The quickstart in JupyterLab, in Debian's headless Chromium driven by playwright-core: all cells run in
the saekit kernel, the tokenization job's progress display changes in place (one output whose text
changes, never a second output), and no error appears. A screenshot is left in out/browser/.

    .venv/bin/python -m pytest tests/test_browser.py        # as part of the suite
    .venv/bin/python tests/test_browser.py                  # alone, printing what the browser saw
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import kernel_util  # noqa: E402

ROOT = kernel_util.ROOT
BROWSER = ROOT / "tests" / "browser"
CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
NODE = shutil.which("node")

pytestmark = [
    pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (scripts/setup.sh installs it as root)"),
    pytest.mark.skipif(NODE is None, reason="node is not installed (needed for playwright-core)"),
]

# JupyterLab user settings for a quiet, deterministic session: every cell attached to the DOM (so the job
# cell can be watched wherever it is), and no news or update checks (no network).
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false", "checkForUpdates": False},
}


def ensure_playwright() -> None:
    if not (BROWSER / "node_modules" / "playwright-core").is_dir():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=BROWSER, check=True, timeout=600)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def job_cell_index(nb) -> int:
    code = [c for c in nb.cells if c.cell_type == "code"]
    return next(i for i, c in enumerate(code) if "job" in c.get("metadata", {}).get("tags", []))


def run_in_jupyterlab(
    notebook: Path, out: Path, timeout_s: int = 900, install: bool = True, mid_text: str | None = None
) -> tuple[dict, Path]:
    """Starts JupyterLab on a temp copy of `notebook`, runs the browser check, returns (result, saved notebook).
    With `mid_text`, also pictures the job cell mid-run, once its output shows that text (docs screenshots)."""
    ensure_playwright()
    out.mkdir(parents=True, exist_ok=True)
    base = Path(tempfile.mkdtemp(prefix="saekit-lab-"))
    try:
        env = {**os.environ, **kernel_util.jupyter_env(base)}
        if install:  # the notebook's kernelspec; install=False for harness checks with a Python notebook
            kernel_util.install_saekit_kernel(base)
        for name, value in LAB_SETTINGS.items():
            f = Path(env["JUPYTERLAB_SETTINGS_DIR"]) / name
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_text(json.dumps(value))
        root = base / "root"
        root.mkdir()
        shutil.copy(notebook, root / notebook.name)
        env["SAEKIT_NOTEBOOK_WORKSPACE"] = str(base / "workspace")

        port, token = free_port(), secrets.token_hex(16)
        url = f"http://127.0.0.1:{port}"
        lab_log = open(out / "jupyterlab.log", "w")
        lab = subprocess.Popen(
            [
                str(ROOT / ".venv" / "bin" / "jupyter"), "lab", "--no-browser",
                "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0", "--allow-root",
                f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
                "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
                "--LabApp.extension_manager=readonly",
            ],
            env=env, stdout=lab_log, stderr=subprocess.STDOUT, cwd=root,
        )
        try:
            deadline = time.monotonic() + 120
            while True:
                try:
                    with urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2) as r:
                        if r.status == 200:
                            break
                except OSError:
                    pass
                if lab.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"JupyterLab did not start; see {out / 'jupyterlab.log'}")
                time.sleep(0.5)

            nb = nbformat.read(notebook, as_version=4)
            done = subprocess.run(
                [
                    NODE, str(BROWSER / "jupyterlab_check.mjs"), "--url", url, "--token", token,
                    "--notebook", notebook.name, "--out", str(out), "--job-cell", str(job_cell_index(nb)),
                    "--chromium", CHROMIUM, "--timeout-s", str(timeout_s),
                    *(["--mid-text", mid_text] if mid_text else []),
                ],
                cwd=BROWSER, capture_output=True, text=True, timeout=timeout_s + 300,
            )
            (out / "browser.log").write_text(done.stderr)
            lines = [l for l in done.stdout.splitlines() if l.startswith("{")]
            if not lines:
                raise RuntimeError(f"the browser check printed no result (exit {done.returncode}):\n{done.stderr[-4000:]}")
            result = json.loads(lines[-1])
            saved = out / f"{notebook.stem}.lab.ipynb"
            shutil.copy(root / notebook.name, saved)
            return result, saved
        finally:
            lab.terminate()
            try:
                lab.wait(timeout=20)
            except subprocess.TimeoutExpired:
                lab.kill()
            lab_log.close()
    finally:
        shutil.rmtree(base, ignore_errors=True)


def check(result: dict, saved: Path) -> None:
    assert result["ok"], f"the browser run failed: {result.get('error')}\nsteps: {result['steps']}"
    assert result.get("kernelName") == "Rust (saekit)", result.get("kernelName")
    prompts = [c["prompt"] for c in result["cells"]]
    assert all(p and p[1:-2].isdigit() for p in prompts), f"cells that did not run: {prompts}"
    assert not result["stderr"], f"errors or stderr shown in JupyterLab: {result['stderr']}"

    # The job's display changed in place: from its first appearance on, exactly one output, the same DOM
    # element throughout, whose text went through at least two states and ended in the final one.
    states = [s for s in result["job"] if s["outputs"] > 0]
    assert states, f"the job cell never showed an output: {result['job']}"
    assert {s["outputs"] for s in states} == {1}, f"the job cell had more than one output at some point: {states}"
    assert len({s["element"] for s in states}) == 1, f"the progress output was replaced, not updated: {states}"
    texts = [s["text"] for s in states]
    assert len(set(texts)) >= 2, f"the progress display never changed: {texts}"
    assert "done in" in texts[-1], f"the progress display did not end in its final state: {texts[-1]!r}"

    nb = nbformat.read(saved, as_version=4)
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o["output_type"] == "error"]
    assert not errors, f"error outputs in the saved notebook: {errors}"


def test_quickstart_in_jupyterlab():
    out = ROOT / "out" / "browser"
    result, saved = run_in_jupyterlab(kernel_util.NOTEBOOKS / "quickstart.ipynb", out)
    check(result, saved)
    assert Path(result["screenshot"]).stat().st_size > 10_000


if __name__ == "__main__":
    result, saved = run_in_jupyterlab(kernel_util.NOTEBOOKS / "quickstart.ipynb", ROOT / "out" / "browser")
    print(json.dumps({k: v for k, v in result.items() if k != "cells"}, indent=2))
    check(result, saved)
    print("ok: the progress display changed in place; screenshot", result["screenshot"])
