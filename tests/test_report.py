"""`saekit report`: a notebook executed through the saekit kernel by a real Jupyter client and exported, with
the provenance footer the export adds by itself; `--check` re-runs it and names what changed.

The footer is read back from the exported HTML as text and checked against facts computed here, without
saekit: the checkout's commit, the sha256 of Cargo.lock, of the notebook and of the dataset's file, the
directory hash of the tokenization (read from the workspace's catalog with Python's sqlite3), and rustc's
version. The masking that --check relies on is checked on its own, without a kernel."""

from __future__ import annotations

import hashlib
import html as html_lib
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook, new_output

import kernel_util

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "notebooks"))
import run as runner  # noqa: E402


def text_of(page: str) -> str:
    """The text a reader sees: tags dropped, entities decoded, whitespace collapsed."""
    page = re.sub(r"<(style|script)\b.*?</\1>", " ", page, flags=re.S | re.I)
    return re.sub(r"\s+", " ", html_lib.unescape(re.sub(r"<[^>]+>", " ", page)))


def dir_sha256(path: Path) -> str:
    """sha256 over (relative path, NUL, size as 8 little-endian bytes, bytes) of every file, in path order."""
    if path.is_dir():
        files = sorted((f.relative_to(path).as_posix(), f) for f in path.rglob("*") if f.is_file())
    else:
        files = [("", path)]
    h = hashlib.sha256()
    for rel, f in files:
        h.update(rel.encode() + b"\0" + f.stat().st_size.to_bytes(8, "little") + f.read_bytes())
    return h.hexdigest()


def report(saekit, *args):
    """`saekit report ARGS` with $SAEKIT_NOTEBOOK_WORKSPACE unset, so each run makes its own fresh workspace
    (beside the report, or a temporary one under --check)."""
    saved = os.environ.pop("SAEKIT_NOTEBOOK_WORKSPACE", None)
    try:
        return saekit("report", *args)
    finally:
        if saved is not None:
            os.environ["SAEKIT_NOTEBOOK_WORKSPACE"] = saved


@pytest.fixture(scope="module")
def reported(tmp_path_factory, saekit):
    """The quickstart (a copy), reported by `saekit report` into a temporary out/."""
    base = tmp_path_factory.mktemp("report")
    notebook = base / "quickstart.ipynb"
    shutil.copy(kernel_util.NOTEBOOKS / "quickstart.ipynb", notebook)
    out = base / "out" / "quickstart.html"
    done = report(saekit, notebook, "--out", out)
    assert done.returncode == 0, done.stdout + done.stderr
    return notebook, out


def test_the_footer_names_what_made_the_numbers(reported):
    notebook, out = reported
    page = out.read_text()
    assert not re.search(r"<script\b", page, flags=re.I), "the report stays free of scripts"
    text = text_of(page)
    footer = text[text.index("How this report was made"):]

    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    lock = hashlib.sha256((ROOT / "Cargo.lock").read_bytes()).hexdigest()
    rustc = subprocess.run(["rustc", "-V"], capture_output=True, text=True).stdout.strip()
    # The commit named has exactly the saekit sources of this checkout's HEAD (facts are retaken when the
    # sources change, not when HEAD moves), unless the footer says they were modified.
    named = re.search(r"commit ([0-9a-f]{40})", footer)
    assert named, footer[:2000]
    dirty = nbformat.read(out.with_suffix(".ipynb"), as_version=4).metadata["saekit"]["provenance"]["build"]["dirty"]
    assert ("modified)" in footer) == dirty
    if not dirty and commit != named.group(1):
        same = subprocess.run(["git", "diff", "--quiet", named.group(1), "HEAD", "--", "crate", "Cargo.toml", "Cargo.lock"],
                              cwd=ROOT)
        assert same.returncode == 0, f"{named.group(1)} is not a commit with HEAD's saekit sources"
    assert f"Cargo.lock sha256:{lock}" in footer
    assert rustc in footer
    assert "features none" in footer
    assert f"{os.cpu_count()} cores" in footer and "threads used" in footer and "GPU" in footer
    assert hashlib.sha256(notebook.read_bytes()).hexdigest() in footer, "the notebook's own sha256"
    executed = re.search(r"executed (\S+) → (\S+) \((\d+) code cells\)", footer)
    assert executed, footer[:2000]
    start, end, cells = executed.groups()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", start) and start <= end
    nb = nbformat.read(notebook, as_version=4)
    assert int(cells) == sum(c.cell_type == "code" for c in nb.cells)

    # The artifacts, with content hashes computed here from the workspace the report ran in.
    workspace = out.parent / "quickstart.workspace"
    db = sqlite3.connect(workspace / "catalog.sqlite")
    arts = {(k, n): (i, p) for i, k, n, p in db.execute("SELECT id, kind, name, path FROM artifacts")}
    austen_id, _ = arts[("dataset", "austen")]
    austen_file = workspace / "embedded" / "austen.jsonl.zst"
    assert f"dataset austen (#{austen_id})" in footer
    assert f"sha256:{hashlib.sha256(austen_file.read_bytes()).hexdigest()}" in footer
    tok = [(i, p, n) for (k, n), (i, p) in arts.items() if k == "tokenization"]
    assert len(tok) == 1, tok
    tok_id, tok_path, tok_name = tok[0]
    line = re.search(rf"made\+?\w* tokenization {re.escape(tok_name)} \(#{tok_id}\) \[ready\] (sha256:[0-9a-f]{{64}})", footer)
    assert line, footer[:3000]
    assert line.group(1) == f"sha256:{dir_sha256(workspace / tok_path)}", "the tokenization's directory hash"
    assert f"from dataset austen (#{austen_id})" in footer, "lineage"
    assert '"max_length":256' in footer.replace(" ", ""), "the tokenization's parameters"

    # The same record as data, in the executed notebook beside the report.
    meta = nbformat.read(out.with_suffix(".ipynb"), as_version=4).metadata["saekit"]
    assert meta["run"]["notebook_sha256"] == hashlib.sha256(notebook.read_bytes()).hexdigest()
    record = meta["provenance"]
    assert record["build"]["commit"] == named.group(1) and record["build"]["cargo_lock_sha256"] == lock
    assert record["process"] == "kernel"
    [ws] = record["workspaces"]
    kinds = {(a["kind"], a["name"]): a["touches"] for a in ws["artifacts"]}
    assert "made" in kinds[("dataset", "austen")] and "read" in kinds[("dataset", "austen")]
    assert kinds[("tokenization", tok_name)][0] == "made"
    assert not any(c.source == runner.PROVENANCE_CELL for c in nbformat.read(out.with_suffix(".ipynb"), as_version=4).cells)


def test_check_finds_no_difference_then_the_edited_parameter(reported, saekit):
    notebook, out = reported
    done = report(saekit, notebook, "--out", out, "--check")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no differences" in done.stdout

    nb = nbformat.read(notebook, as_version=4)
    [cell] = [c for c in nb.cells if c.cell_type == "code" and "TokenizeParams::packed(256)" in c.source]
    cell.source = cell.source.replace("packed(256)", "packed(128)")
    nbformat.write(nb, notebook)
    done = report(saekit, notebook, "--out", out, "--check")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "packed(128)" in done.stdout and "source changed" in done.stdout
    assert "outputs differ" in done.stdout
    # The tokenization's card shows the new sequence length: the numbers that moved are named.
    assert re.search(r"^\s*\+.*128", done.stdout, flags=re.M), done.stdout[-3000:]
    assert not (out.parent / "quickstart.check.ipynb").exists()


def test_report_explains_missing_jupyter(saekit, tmp_path):
    notebook = tmp_path / "x.ipynb"
    nbformat.write(new_notebook(cells=[new_code_cell("1 + 1")]), notebook)
    done = saekit("report", notebook, env={"SAEKIT_PYTHON": "/bin/false"})
    assert done.returncode != 0
    assert "nbclient" in done.stderr and "scripts/setup.sh" in done.stderr


# ---------------------------------------------------------------------------------------------------------
# --check's comparison, without a kernel


def test_masking_ignores_timings_rates_times_and_paths():
    roots = ["/tmp/ws-1"]
    a = runner.masked("done in 1.2 s · 3.4 M tok/s · 12 MB/s at 2026-12-02T15:03:01.123Z in /tmp/ws-1/x, "
                      "session p123-1764687000123, eta 00:12, 1m 3s, 250 ms", roots)
    b = runner.masked("done in 0.9 s · 2.1 M tok/s · 9.5 MB/s at 2026-12-03T01:00:00Z in /var/tmp/other/x, "
                      "session p77-1764687999999, eta 01:02, 2m 10s, 3 ms", ["/var/tmp/other"])
    assert a == b, (a, b)
    # A path cut short to fit a column (where the cut falls depends on the path's length).
    assert runner.masked("paths  /tmp/a/ws/embedded/aus…", ["/tmp/a/ws"]) == runner.masked("paths  /tmp/much-longer/ws/embe…", [])
    # Counts, sizes and ids are not masked: they are results.
    assert runner.masked("256 tokens, 1,189 chapters, #3, 12 MB", []) == "256 tokens, 1,189 chapters, #3, 12 MB"


def test_compare_names_changed_source_and_outputs():
    def notebook(source, text):
        cell = new_code_cell(source, execution_count=1)
        cell.outputs = [new_output("execute_result", data={"text/plain": text}, execution_count=1)]
        return new_notebook(cells=[cell])

    same = runner.compare(notebook("x", "took 3 s"), notebook("x", "took 4.5 s"), [], [])
    assert same == []
    changed = runner.compare(notebook("packed(256)", "256 tokens"), notebook("packed(128)", "128 tokens"), [], [])
    assert len(changed) == 1 and "source changed" in changed[0] and "+128 tokens" in changed[0].replace("[execute_result] ", "")


def test_footer_escapes_what_it_shows():
    page = runner.footer_html({"run": {"notebook": "<script>x</script>.ipynb", "workspace": "/w"},
                               "provenance_html": "<footer class=\"saekit-provenance\">ok</footer>"})
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "saekit-provenance" in page and "run facts as text" in page
