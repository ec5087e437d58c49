"""The token store and its exports, written by Rust and read back with NumPy and pyarrow: the on-disk
format (`tokens.bin`, `offsets.bin`, `store.json`), `to_npy` for equal-length and ragged stores, and
`to_parquet`'s `input_ids: list<int32>` column."""

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

ROOT = Path(__file__).resolve().parent.parent
SEQUENCES = [[1, 2, 3], [50256], [10, 20, 30, 40]]
FIXED = [[1, 2, 3, 4], [5, 6, 7, 8]]
TEST = "tokenize::store::tests::write_fixture_store"


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory):
    """Runs the ignored Rust test that writes the stores and their exports into a fresh directory."""
    out = tmp_path_factory.mktemp("token-store")
    done = subprocess.run(
        ["cargo", "test", "--quiet", "-p", "saekit", "--lib", TEST, "--", "--ignored", "--exact"],
        cwd=ROOT,
        env={**os.environ, "SAEKIT_STORE_FIXTURE_DIR": str(out)},
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout, f"the fixture test did not run:\n{done.stdout}"
    return out


def test_store_files_have_the_documented_layout(fixtures):
    store = fixtures / "store"
    meta = json.loads((store / "store.json").read_text())
    assert meta == {
        "format": "saekit-token-store",
        "version": 1,
        "dtype": "uint16",
        "vocab_size": 50257,
        "num_sequences": 3,
        "num_tokens": 8,
        "max_sequence_length": 4,
    }
    tokens = np.fromfile(store / "tokens.bin", dtype="<u2")
    offsets = np.fromfile(store / "offsets.bin", dtype="<u8")
    assert offsets.tolist() == [0, 3, 4, 8]
    assert [tokens[a:b].tolist() for a, b in zip(offsets[:-1], offsets[1:])] == SEQUENCES


def test_equal_length_store_exports_a_matrix(fixtures):
    fixed = np.load(fixtures / "fixed.npy")
    assert fixed.dtype == np.uint16
    assert fixed.shape == (2, 4)
    assert fixed.tolist() == FIXED
    assert not (fixtures / "fixed.offsets.npy").exists()


def test_ragged_store_exports_tokens_and_offsets(fixtures):
    tokens = np.load(fixtures / "ragged.npy")
    offsets = np.load(fixtures / "ragged.offsets.npy")
    assert tokens.dtype == np.uint16 and tokens.shape == (8,)
    assert offsets.dtype == np.uint64 and offsets.shape == (4,)
    assert [tokens[a:b].tolist() for a, b in zip(offsets[:-1], offsets[1:])] == SEQUENCES


def test_parquet_export_is_what_hf_datasets_writes(fixtures):
    table = pq.read_table(fixtures / "tokens.parquet")
    assert table.column_names == ["input_ids"]
    assert table.schema.field("input_ids").type == pa.list_(pa.int32())
    assert table.column("input_ids").to_pylist() == SEQUENCES
    meta = pq.read_metadata(fixtures / "tokens.parquet")
    assert meta.row_group(0).column(0).compression == "ZSTD"
    # Only the finished files are left: no temporary names.
    assert sorted(p.name for p in fixtures.iterdir() if p.name.startswith(".")) == []
