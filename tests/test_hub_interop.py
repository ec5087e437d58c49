"""saekit and Python's huggingface_hub share one HF cache: each serves, offline, what the other downloaded.

Both talk to the tests' Hub-compatible server (crate/tests/support/mock_hub.rs, run standalone by the
`hub_mock_server` example) on 127.0.0.1; nothing leaves the machine.
"""

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

pytest.importorskip("huggingface_hub")

ROOT = Path(__file__).resolve().parent.parent
REPO = "acme/tiny"
TRAIN = "data/train-00000-of-00001.parquet"
TEST = "data/test-00000-of-00001.parquet"


@pytest.fixture(scope="module")
def hub_url():
    subprocess.run(
        ["cargo", "build", "--quiet", "-p", "saekit", "--example", "hub_mock_server"], cwd=ROOT, check=True
    )
    target = Path(os.environ.get("CARGO_TARGET_DIR") or ROOT / "target")
    server = subprocess.Popen(
        [str(target / "debug" / "examples" / "hub_mock_server"), "--tiny"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    ready = server.stdout.readline().split()
    assert ready and ready[0] == "ready", ready
    yield ready[1]
    server.stdin.close()
    server.wait(timeout=30)


def hf_env(url, cache, offline):
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HF_ENDPOINT=url, HF_HUB_CACHE=str(cache), HF_HUB_DISABLE_TELEMETRY="1")
    if offline:
        env["HF_HUB_OFFLINE"] = "1"
    return env


def python_download(url, cache, filename, offline=False):
    """hf_hub_download in a fresh interpreter (huggingface_hub reads HF_* when imported)."""
    code = (
        "import sys, huggingface_hub as h; "
        "print(h.hf_hub_download(sys.argv[1], sys.argv[2], repo_type='dataset'))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, REPO, filename],
        env=hf_env(url, cache, offline),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    return Path(out.stdout.strip().splitlines()[-1])


def test_saekit_reuses_what_huggingface_hub_downloaded(hub_url, saekit, tmp_path):
    cache = tmp_path / "hub"
    path = python_download(hub_url, cache, TRAIN)
    assert path.is_relative_to(cache) and pq.read_table(path).num_rows == 120
    # Offline: saekit must find Python's files in the cache (blobs, snapshots, refs/main).
    run = saekit(
        "--workspace", tmp_path / "ws", "hub", "download", REPO, "--split", "train", "--name", "from-python",
        env=hf_env(hub_url, cache, offline=True),
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "cached" in run.stdout and "120" in run.stdout, run.stdout


def test_huggingface_hub_reuses_what_saekit_downloaded(hub_url, saekit, tmp_path):
    cache = tmp_path / "hub"
    run = saekit(
        "--workspace", tmp_path / "ws", "hub", "download", REPO, "--split", "test", "--name", "t",
        env=hf_env(hub_url, cache, offline=False),
    )
    assert run.returncode == 0, run.stdout + run.stderr
    # Offline: huggingface_hub must find saekit's files.
    path = python_download(hub_url, cache, TEST, offline=True)
    table = pq.read_table(path)
    assert table.num_rows == 30 and table.column("text")[0].as_py() == "test row 0"
    blob = path.resolve()
    assert blob.parent.name == "blobs"
    assert blob.name == hashlib.sha256(blob.read_bytes()).hexdigest(), "LFS blobs are named by their sha256"
