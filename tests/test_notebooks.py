"""The notebooks through a real Jupyter client: every notebook in notebooks/ executed with nbclient in the
saekit kernel, then targeted cases in scratch notebooks and, where nbclient would hide the timing, with
jupyter_client directly (raw iopub messages with their arrival times).

Cells of the notebooks may carry tags that say what their output must be: `expect-html` (a rich output
with text/html), `expect-svg` (a chart: image/svg+xml), `job` (a live job display that must end in its
final rendering)."""

from __future__ import annotations

import html as html_lib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

import kernel_util
from kernel_util import KernelSession, execute_notebook, notebook_paths, rich_outputs

NOTEBOOKS = notebook_paths()


def scratch(*sources: str):
    nb = new_notebook(cells=[new_code_cell(s) for s in sources])
    nb.metadata["kernelspec"] = {"name": kernel_util.kernel_under_test(), "display_name": "Rust (saekit)", "language": "rust"}
    return nb


def plain(output) -> str:
    if output["output_type"] == "stream":
        return output["text"]
    if output["output_type"] == "error":
        return f"{output['ename']}: {output['evalue']}"
    return output.get("data", {}).get("text/plain", "")


def describe(cell) -> str:
    return f"cell {cell.source[:80]!r} → " + "; ".join(
        f"{o['output_type']}{sorted(o.get('data', {}))} {plain(o)[:100]!r}" for o in cell.get("outputs", [])
    )


# ---------------------------------------------------------------------------------------------------------
# Every notebook in notebooks/


@pytest.fixture(scope="module", params=NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def executed(request, tmp_path_factory):
    """A notebook executed in the saekit kernel, in a fresh workspace (and the seconds it took)."""
    path = request.param
    workspace = tmp_path_factory.mktemp(f"ws-{path.stem}")
    nb = nbformat.read(path, as_version=4)
    mp = pytest.MonkeyPatch()
    mp.setenv("SAEKIT_NOTEBOOK_WORKSPACE", str(workspace))
    started = time.monotonic()
    try:
        execute_notebook(nb, cwd=tmp_path_factory.mktemp(f"cwd-{path.stem}"), timeout=900, allow_errors=True)
    finally:
        mp.undo()
    return path, nb, time.monotonic() - started


def test_notebook_runs_without_errors(executed):
    path, nb, seconds = executed
    errors = [describe(c) for c in nb.cells if any(o["output_type"] == "error" for o in c.get("outputs", []))]
    assert not errors, f"{path.name}: error outputs:\n" + "\n".join(errors)
    unexecuted = [c.source[:60] for c in nb.cells if c.cell_type == "code" and c.execution_count is None]
    assert not unexecuted, f"cells that did not run: {unexecuted}"


def test_execution_counts_are_consecutive_and_match_results(executed):
    _, nb, _ = executed
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1))
    for cell in code:
        for out in cell.outputs:
            if out["output_type"] == "execute_result":
                assert out["execution_count"] == cell.execution_count, describe(cell)


def test_every_rich_output_has_plain_text(executed):
    _, nb, _ = executed
    for cell in nb.cells:
        for out in rich_outputs(cell):
            assert out["data"].get("text/plain", "").strip(), f"no text/plain fallback: {describe(cell)}"
            if "application/vnd.plotly.v1+json" in out["data"]:
                assert "image/svg+xml" in out["data"], f"a plotly chart without its SVG: {describe(cell)}"


def test_statements_show_no_unit_value(executed):
    """A cell ending in a statement (`for`, `if` without else, a call returning `()`) shows nothing, as in
    Python a cell ending in `None` does: no `()` result."""
    _, nb, _ = executed
    units = [describe(c) for c in nb.cells for o in rich_outputs(c) if plain(o).strip() == "()"]
    assert not units, "cells that display `()`:\n" + "\n".join(units)


def test_tagged_cells_have_expected_outputs(executed):
    path, nb, _ = executed
    for cell in nb.cells:
        tags = set(cell.get("metadata", {}).get("tags", []))
        outs = rich_outputs(cell)
        if "expect-html" in tags:
            assert any("text/html" in o["data"] for o in outs), f"{path.name}: no text/html: {describe(cell)}"
        if "expect-svg" in tags:
            svgs = [o["data"]["image/svg+xml"] for o in outs if "image/svg+xml" in o["data"]]
            assert svgs, f"{path.name}: no image/svg+xml: {describe(cell)}"
            for svg in svgs:
                assert re.match(r"\s*<svg\b", svg), svg[:80]


def test_job_display_ends_in_its_final_rendering(executed):
    """The job cell's single output is a display (not a stream) that nbclient updated to the job's end state."""
    path, nb, _ = executed
    jobs = [c for c in nb.cells if "job" in c.get("metadata", {}).get("tags", [])]
    if path.stem == "quickstart":
        assert jobs, "the quickstart shows its tokenization job"
    for cell in jobs:
        outs = rich_outputs(cell)
        assert len(cell.outputs) == 1 and len(outs) == 1, f"one display per job: {describe(cell)}"
        text = outs[0]["data"]["text/plain"]
        assert "done in" in text, f"the job's output is not its final rendering: {text!r}"
        assert "text/html" in outs[0]["data"]


def test_quickstart_story(executed):
    path, nb, seconds = executed
    if path.stem != "quickstart":
        pytest.skip("quickstart only")
    text = "\n".join(plain(o) for c in nb.cells for o in c.get("outputs", []))
    for expected in ["austen", "kjv", "269", "1,189", "Tokenization", "sequences", "saekit"]:
        assert expected in text, f"{expected!r} missing from the quickstart's outputs"
    # The two length histograms come from one cell, as two displays, after their println lines.
    hist = next(c for c in nb.cells if "show(&stats.length_histogram())" in c.source)
    kinds = [o["output_type"] for o in hist.outputs]
    assert kinds.count("display_data") == 2, describe(hist)


def test_runner_exports_a_self_contained_report(tmp_path):
    """notebooks/run.py (the main job's runner): executed notebook beside a report with no script and no
    network reference, charts inline as SVG."""
    nb = scratch(
        'show(&Histogram::new("lengths", "bin", vec![("1".to_string(), 3), ("2".to_string(), 5)]));',
        'MimeBundle::new("plain").with("text/html", "<b id=\\"marker\\">rich</b>")',
    )
    source = tmp_path / "scratch.ipynb"
    nbformat.write(nb, source)
    out = tmp_path / "out" / "scratch.html"
    done = subprocess.run(
        [sys.executable, str(kernel_util.NOTEBOOKS / "run.py"), str(source), "--out", str(out),
         "--workspace", str(tmp_path / "ws")],
        capture_output=True, text=True, timeout=900,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    html = out.read_text()
    assert '<b id="marker">rich</b>' in html
    assert "data:image/svg+xml;base64," in html
    assert not re.search(r"<script\b", html, flags=re.I)
    assert not re.search(r"(src|href)\s*=\s*[\"']https?://", html, flags=re.I)
    executed = nbformat.read(out.with_suffix(".ipynb"), as_version=4)
    assert [c.execution_count for c in executed.cells] == [1, 2]


def test_exported_quickstart_fits_its_page(executed, tmp_path):
    """No element of the exported quickstart is wider than its page: long values wrap, token strips wrap,
    wide tables and charts scroll inside their own box. Measured by Chromium on a 900-pixel-wide page."""
    path, nb, _ = executed
    if path.stem != "quickstart":
        pytest.skip("quickstart only")
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("Debian's chromium is not installed (scripts/setup.sh installs it as root)")
    sys.path.insert(0, str(kernel_util.NOTEBOOKS))
    from run import export_html

    out = tmp_path / "quickstart.html"
    export_html(nb, out, "quickstart")
    # A probe, added to this copy only (the report itself has no script): the page's own horizontal
    # overflow, and every element of an output that sticks out of the page (where a box around it would
    # cut it off or make the reader scroll), tables and chart grids excepted.
    probe = """<script>window.addEventListener('load', () => {
      const page = document.documentElement.clientWidth;
      // Tables and chart grids may be wider than the page: they scroll inside their own box.
      const mayScroll = e => !!e.closest('table, .grid');
      const wide = [...document.querySelectorAll('.jp-OutputArea-output *, .jp-OutputArea-output')]
        .filter(e => e.getBoundingClientRect().right > page + 1 && !mayScroll(e))
        .map(e => e.tagName + '.' + e.className + ':' + Math.round(e.getBoundingClientRect().right)).slice(0, 8);
      document.title = 'WIDTH ' + JSON.stringify({page, scroll: document.documentElement.scrollWidth, wide});
    });</script></body>"""
    probed = tmp_path / "probed.html"
    probed.write_text(out.read_text().replace("</body>", probe, 1))
    done = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         f"--user-data-dir={tmp_path / 'profile'}", "--window-size=900,1200", "--virtual-time-budget=5000",
         "--dump-dom", probed.as_uri()],
        capture_output=True, text=True, timeout=120,
    )
    found = re.search(r"<title>WIDTH (.*?)</title>", done.stdout)
    assert found, done.stdout[-2000:] + done.stderr[-2000:]
    width = json.loads(html_lib.unescape(found.group(1)))
    assert width["wide"] == [], f"elements wider than the {width['page']}-pixel page: {width['wide']}"
    assert width["scroll"] <= width["page"], f"the page scrolls sideways: {width}"


# ---------------------------------------------------------------------------------------------------------
# Targeted cases in scratch notebooks (nbclient)


def test_several_show_calls_give_displays_in_order(tmp_path):
    nb = scratch(
        'show(&MimeBundle::new("first").with("text/html", "<b>first</b>"));\n'
        'show(&MimeBundle::new("second"));\n'
        'show(&Histogram::new("third", "x", vec![("a".to_string(), 3), ("b".to_string(), 5)]));\n'
        '"value"'
    )
    execute_notebook(nb, cwd=tmp_path)
    outs = nb.cells[0].outputs
    assert [o["output_type"] for o in outs] == ["display_data"] * 3 + ["execute_result"], describe(nb.cells[0])
    assert plain(outs[0]) == "first" and outs[0]["data"]["text/html"] == "<b>first</b>"
    assert plain(outs[1]) == "second"
    assert "image/svg+xml" in outs[2]["data"] and "application/vnd.plotly.v1+json" in outs[2]["data"]
    assert plain(outs[3]) == '"value"'


def test_prints_and_displays_keep_their_order(tmp_path):
    nb = scratch('println!("one");\nshow(&MimeBundle::new("two"));\nprintln!("three");\nshow(&MimeBundle::new("four"));')
    execute_notebook(nb, cwd=tmp_path)
    outs = nb.cells[0].outputs
    assert [plain(o).strip() for o in outs] == ["one", "two", "three", "four"], describe(nb.cells[0])


def test_clear_output_in_a_notebook(tmp_path):
    nb = scratch('println!("gone");\nclear_output(false);\nprintln!("kept");')
    execute_notebook(nb, cwd=tmp_path)
    assert [plain(o) for o in nb.cells[0].outputs] == ["kept\n"], describe(nb.cells[0])


def test_panic_is_an_error_and_variables_survive(tmp_path):
    nb = scratch(
        "let keep = 41;",
        'let v: Vec<u32> = Vec::new();\nprintln!("before the panic");\nv[3]',
        "keep + 1",
        'panic!("boom {}", keep)',
        "keep + 2",
    )
    execute_notebook(nb, cwd=tmp_path, allow_errors=True)
    c = nb.cells
    errors = [o for o in c[1].outputs if o["output_type"] == "error"]
    assert len(errors) == 1, describe(c[1])
    assert "index out of bounds" in errors[0]["evalue"] + "".join(errors[0]["traceback"]), errors[0]
    assert any(plain(o) == "before the panic\n" for o in c[1].outputs), "stdout before a panic is kept"
    assert [plain(o) for o in rich_outputs(c[2])] == ["42"], describe(c[2])
    errors = [o for o in c[3].outputs if o["output_type"] == "error"]
    assert len(errors) == 1 and "boom 41" in errors[0]["evalue"], describe(c[3])
    assert [plain(o) for o in rich_outputs(c[4])] == ["43"], describe(c[4])


def test_cells_skip_cargo_until_a_build_input_changes(tmp_path):
    """A cell whose build inputs are unchanged but for its source runs the cell crate's last rustc command
    without cargo (kernel-ext/src/cell_build.rs): its value, errors and variables are as cargo's would be,
    and an edited path dependency goes through cargo again."""
    lib = tmp_path / "tally"
    (lib / "src").mkdir(parents=True)
    (lib / "Cargo.toml").write_text('[package]\nname = "tally"\nversion = "0.1.0"\nedition = "2021"\n')
    source = lib / "src" / "lib.rs"
    source.write_text("pub fn count() -> u32 { 1 }\n")

    def value(s: KernelSession, code: str) -> str:
        results = s.ok(code).of_type("execute_result")
        assert len(results) == 1, code
        return results[0].text

    with KernelSession() as s:
        s.ok(f":dep tally = {{ path = {json.dumps(str(lib))} }}")
        assert value(s, "tally::count()") == "1"
        slot = Path(value(s, 'std::env::var("EVCXR_TMPDIR").unwrap()').strip('"'))
        record = slot / ".saekit-cell-rustc.json"
        assert record.is_file(), "cargo's build recorded the cell crate's rustc command"
        recorded = record.stat().st_mtime_ns
        s.ok("let base = tally::count() + 40;")
        assert value(s, "base + 1") == "42"
        failed = s.execute('let wrong: u8 = "text";')
        assert failed.status == "error" and "mismatched types" in failed.reply["content"]["evalue"], failed.describe()
        assert value(s, "base + 2") == "43", "variables survive a failed cell"
        assert record.stat().st_mtime_ns == recorded, "these cells were built without cargo"

        source.write_text("pub fn count() -> u32 { 2 }\n")
        os.utime(source, ns=(time.time_ns() + 10**9,) * 2)
        assert value(s, "tally::count()") == "2", "the edited dependency was rebuilt"
        assert record.stat().st_mtime_ns != recorded, "an edited dependency goes through cargo"
        assert value(s, "base + 3") == "44"


def test_compile_error_is_an_error_with_the_message(tmp_path):
    nb = scratch("let keep = 1;", 'let x: i32 = "not a number";', "keep")
    execute_notebook(nb, cwd=tmp_path, allow_errors=True)
    errors = [o for o in nb.cells[1].outputs if o["output_type"] == "error"]
    assert len(errors) == 1, describe(nb.cells[1])
    assert "mismatched types" in errors[0]["evalue"] + "\n".join(errors[0]["traceback"])
    assert [plain(o) for o in rich_outputs(nb.cells[2])] == ["1"]


# ---------------------------------------------------------------------------------------------------------
# Raw iopub: what nbclient cannot show (messages after a cell's idle, timing, interrupt)

SLOW_JOB = """
let slow = Job::spawn("count", |ctx| {{
    ctx.phase("counting", "steps", Some({steps}));
    for _ in 0..{steps} {{
        ctx.check()?;
        std::thread::sleep(std::time::Duration::from_millis({ms}));
        ctx.advance(1);
    }}
    Ok({steps}u64)
}});
"""


@pytest.fixture(scope="module")
def session():
    with KernelSession() as s:
        yield s


def test_background_thread_stdout_reaches_the_cell_that_started_it(session):
    a = session.ok(
        'std::thread::spawn(|| {\n'
        '    std::thread::sleep(std::time::Duration::from_millis(800));\n'
        '    println!("from the thread");\n'
        '});\n'
        '"started"'
    )
    # Arrives on its own, while the kernel is idle, credited to cell a, within a second of being printed.
    late = session.wait_until(
        lambda log: [m for m in log if m.parent == a.msg_id and m.type == "stream" and "from the thread" in m.text], 10
    )
    assert late[0].t - a.idle < 2.0, f"printed ~0.8 s after the cell, arrived {late[0].t - a.idle:.2f} s after idle"
    b = session.ok("1 + 1")
    assert "from the thread" not in b.stdout(), b.describe()


def test_background_thread_stderr_is_credited_like_stdout(session):
    a = session.ok(
        'std::thread::spawn(|| {\n'
        '    std::thread::sleep(std::time::Duration::from_millis(500));\n'
        '    eprintln!("thread warning");\n'
        '});'
    )
    session.wait_until(
        lambda log: [m for m in log if m.parent == a.msg_id and m.type == "stream" and "thread warning" in m.text], 10
    )


def test_stderr_arrives_before_idle_every_time(session):
    for i in range(10):
        ex = session.ok(f'eprintln!("warning {i}"); {i}')
        if ex.stderr() != f"warning {i}\n":
            time.sleep(1.0)
            late = [m for m in session.for_parent(ex.msg_id) if m.t > ex.idle]
            anywhere = [(m, m.parent) for m in session.log if f"warning {i}" in m.text]
            raise AssertionError(
                f"stderr not delivered before idle (iteration {i}):\n{ex.describe()}\nafter idle: {late}\n"
                f"that text anywhere on iopub (message, parent): {anywhere}; this cell's msg_id {ex.msg_id}"
            )


def test_live_job_updates_its_display_in_place(session):
    ex = session.ok(SLOW_JOB.format(steps=30, ms=100) + "slow")
    displays = ex.of_type("display_data")
    assert len(displays) == 1 and not ex.of_type("execute_result"), ex.describe()
    display_id = displays[0].display_id
    assert display_id, f"the job's display has no transient.display_id: {displays[0].content}"

    def final(log):
        ups = [m for m in log if m.type == "update_display_data" and m.display_id == display_id]
        return ups if ups and "done in" in ups[-1].text else None

    updates = session.wait_until(final, 30)
    assert len(updates) >= 3, f"a 3-second job updated only {len(updates)} times: {updates}"
    assert any(u.t > ex.idle + 0.5 for u in updates), "updates keep coming after the cell has returned"
    texts = [u.text for u in updates]
    assert len(set(texts)) >= 3, f"the updates show progress: {texts}"
    for u in updates:
        assert "text/plain" in u.content["data"] and "text/html" in u.content["data"]
    # Bounded rate: at most 4 per second (a little slack for scheduling).
    times = [u.t for u in updates]
    for i in range(len(times)):
        within = [t for t in times[i:] if t - times[i] < 1.0]
        assert len(within) <= 5, f"{len(within)} updates within one second: {times}"
    # Exactly one final rendering: nothing after "done".
    time.sleep(1.0)
    later = [m for m in session.log if m.type == "update_display_data" and m.display_id == display_id]
    assert len(later) == len(updates), "no updates after the final rendering"


def test_a_training_run_shows_its_dashboard_live_in_one_output(session, tmp_path):
    """A training job's display becomes its dashboard (latest metrics and curves) and is updated in place:
    one output, replaced about once a second (never with every progress tick), small, ending in the final
    dashboard with nothing after it."""
    if not os.environ.get("SAEKIT_MINILM_DIR"):
        pytest.skip("MiniLM's weights are not installed")
    session.ok(
        'let model = Model::load(&std::env::var("SAEKIT_MINILM_DIR").unwrap())?;\n'
        f'let ws = Workspace::open({json.dumps(str(tmp_path / "ws"))})?;\n'
        'let files = saekit::data::write_corpus(&ws.root().join("embedded"))?;\n'
        'let austen = ws.ensure_dataset("austen", &Source::open(&files[0])?)?;\n'
        'let tokens = austen.tokenize(model.tokenizer(), &TokenizeParams { max_length: 64, stride: 64, ..Default::default() })?;'
    , timeout=300)
    ex = session.ok(
        'let spec = SaeRunSpec::new(&tokens, &model)\n'
        '    .sae(SaeSpec::topk("blocks.2.hook_resid_post", 3072, 32))\n'
        '    .cache(saekit::activations::CacheParams { max_tokens: Some(8192), ..Default::default() })\n'
        '    .training_tokens(8192 * 24).batch_tokens(512).buffer_tokens(4096).metrics_every(2).checkpoint_every(0);\n'
        'let training = ws.train_saes_job(&spec);\n'
        'training'
    )
    displays = ex.of_type("display_data")
    assert len(displays) == 1 and not ex.of_type("execute_result"), ex.describe()
    display_id = displays[0].display_id

    def final(log):
        ups = [m for m in log if m.type == "update_display_data" and m.display_id == display_id]
        return ups if ups and "done in" in ups[-1].text else None

    updates = session.wait_until(final, 600)
    dashboards = [u for u in updates if "Training" in u.text]
    assert len(dashboards) >= 3, f"the dashboard was shown {len(dashboards)} times: {[u.text[:80] for u in updates]}"
    first = updates.index(dashboards[0])
    assert all("Training" in u.text for u in updates[first:]), "once shown, the dashboard stays"
    times = [u.t for u in dashboards]
    for i in range(len(times)):
        within = [t for t in times[i:] if t - times[i] < 1.0]
        assert len(within) <= 3, f"{len(within)} dashboard updates within one second: {times}"
    for u in updates:
        html = u.content["data"]["text/html"]
        assert len(html) < 300_000, f"an update of {len(html)} bytes"
    last = updates[-1].content["data"]
    assert "<svg" in last["text/html"] and "explained variance" in last["text/plain"], last["text/plain"][:500]
    steps = re.findall(r"(\d+) of (\d+)", dashboards[0].text)
    assert steps and int(steps[0][0]) < int(steps[0][1]), f"the first dashboard came mid-run: {dashboards[0].text[:300]}"
    time.sleep(1.5)
    later = [m for m in session.log if m.type == "update_display_data" and m.display_id == display_id]
    assert len(later) == len(updates), "no updates after the final rendering"


def test_job_shown_with_show_gets_a_display_id(session):
    ex = session.ok(SLOW_JOB.format(steps=5, ms=100) + "show(&slow);\n42")
    displays = ex.of_type("display_data")
    assert len(displays) == 1 and displays[0].display_id, ex.describe()
    assert [m.text for m in ex.of_type("execute_result")] == ["42"]
    session.wait_until(
        lambda log: any(
            m.type == "update_display_data" and m.display_id == displays[0].display_id and "done in" in m.text for m in log
        ),
        15,
    )


def test_update_after_the_cell_is_parented_to_the_running_cell(session):
    """nbclient drops iopub messages whose parent is not the cell it is running: a job that finishes during
    `job.wait()` in a later cell must send its final update parented to that cell, before its idle."""
    ex = session.ok(SLOW_JOB.format(steps=15, ms=100) + "slow")
    display_id = ex.of_type("display_data")[0].display_id
    wait = session.ok("slow.wait()?")
    mine = [m for m in wait.outputs if m.type == "update_display_data" and m.display_id == display_id]
    assert mine and "done in" in mine[-1].text, (
        f"no final update parented to the waiting cell before its idle; waiting cell: {wait.describe()}\n"
        f"all updates: {[m for m in session.log if m.display_id == display_id]}"
    )


def test_interrupt_cancels_the_cells_own_job_and_keeps_variables(session):
    session.ok("let keep = 7;")
    running = session.send_execute(
        SLOW_JOB.format(steps=600, ms=100) + 'let r = slow.wait();\nprintln!("status {:?}", slow.status());\nr?'
    )
    time.sleep(3.0)
    t = session.now()
    session.interrupt()
    ex = session.finish(running, timeout=30)
    assert session.now() - t < 10, "the interrupt ended the cell promptly"
    assert ex.status == "error", ex.describe()
    assert "status Cancelled" in ex.stdout(), f"the cell's own job was cancelled: {ex.describe()}"
    assert session.ok("keep").of_type("execute_result")[0].text == "7"


def test_interrupting_a_wait_leaves_an_earlier_cells_job_running(session):
    """A training run started cells earlier survives an interrupt of a later cell: `wait()` returns at once
    (well before the 3 s after which the kernel stops a cell's process), the job goes on, and `cancel()`
    stops it."""
    session.ok("let keep = 8;\n" + SLOW_JOB.format(steps=600, ms=100))
    running = session.send_execute("slow.wait()?")
    time.sleep(2.0)
    t = session.now()
    session.interrupt()
    ex = session.finish(running, timeout=30)
    assert session.now() - t < 2.5, f"wait() returned {session.now() - t:.1f} s after the interrupt"
    assert ex.status == "error" and "interrupted" in " ".join(m.text for m in ex.outputs), ex.describe()
    after = session.ok('format!("{} {:?} {}", keep, slow.status(), slow.progress().done)')
    text = after.of_type("execute_result")[0].text
    assert text.startswith('"8 Running'), f"the job goes on and the variables are kept: {text}"
    # Interrupting a cell that does not wait on it leaves it alone too.
    running = session.send_execute("std::thread::sleep(std::time::Duration::from_millis(1500)); 1")
    time.sleep(0.7)
    session.interrupt()
    session.finish(running, timeout=30)
    assert session.ok('format!("{:?}", slow.status())').of_type("execute_result")[0].text == '"Running"'
    stopped = session.ok('slow.cancel(); format!("{:?}", slow.wait().map(|_| ()))')
    assert "Cancelled" in stopped.of_type("execute_result")[0].text, stopped.describe()


def test_interrupt_of_uncooperative_code_recovers_and_says_so(session):
    session.ok("let survivor = 5;")
    running = session.send_execute("loop { std::thread::sleep(std::time::Duration::from_millis(50)); }")
    time.sleep(2.0)
    session.interrupt()
    ex = session.finish(running, timeout=60)
    assert ex.status == "error", ex.describe()
    after = session.execute("survivor")
    if after.status == "ok":
        assert after.of_type("execute_result")[0].text == "5"
    else:  # state was lost: the notebook must say so plainly
        said = " ".join(m.text + " ".join(m.content.get("traceback", [])) for m in ex.outputs + after.outputs)
        assert re.search(r"lost|restart", said, flags=re.I), f"state lost without saying so:\n{ex.describe()}\n{after.describe()}"
    assert session.ok("1 + 1").of_type("execute_result")[0].text == "2"
