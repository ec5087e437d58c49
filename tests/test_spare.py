"""Spare kernels: a preloaded kernel process waits on $SAEKIT_KERNEL_HOME/spare.sock and serves the next
kernel Jupyter starts (kernel-ext/src/spare.rs explains the design).

The rest of the suite runs with SAEKIT_KERNEL_SPARE=0 (tests/conftest.py), so every kernel, nbclient run and
`saekit-kernel spare ...` command here gets SAEKIT_KERNEL_SPARE=1 explicitly. Each test that needs a spare
first gets a ready one that fits the kernels it starts (`saekit-kernel spare --wait`), so the tests do not
depend on their order; a fresh spare takes ~20-25 s to get ready on a 2-core machine. At the end of the
module every spare is stopped, so the tests after these meet a quiet machine and no spare.

What is asserted is behaviour (which process serves, its directory and environment, who exits when);
timings are printed for information only (`pytest -s`).

PID 1 in a container may not reap orphans: a spare that exited can linger as a zombie, which counts as gone.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
import tomllib
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import nbformat
import pytest

import kernel_util
from kernel_util import KernelSession

pytestmark = pytest.mark.skipif(
    kernel_util.kernel_under_test() != kernel_util.KERNEL_NAME, reason="spare kernels are saekit-kernel's"
)

# A variable that every spare started by these tests (and every kernel but test_a_kernel_is_served_by_the_
# ready_spare's, whose replacement spares inherit it) has: the served kernel must not see it.
SPARE_ONLY = "SAEKIT_SPARE_TEST_SPARE_ONLY"
# Counts as a build setting for the fingerprint (EVCXR_ prefix), and evcxr ignores it.
MARK = "EVCXR_SPARE_TEST_MARK"
BUILD_VARIABLES = {
    "RUSTUP_TOOLCHAIN", "RUSTUP_HOME", "CARGO_HOME", "RUSTFLAGS", "CARGO_ENCODED_RUSTFLAGS", "RUSTC",
    "RUSTC_WRAPPER", "RUSTC_WORKSPACE_WRAPPER", "CARGO_TARGET_DIR", "LD_LIBRARY_PATH", "SAEKIT_FEATURES",
    "SAEKIT_KERNEL_LINKER",
}
BUILD_PREFIXES = ("CARGO_BUILD_", "CARGO_PROFILE_", "EVCXR_")
SAEKIT_VERSION = tomllib.loads((kernel_util.ROOT / "Cargo.toml").read_text())["workspace"]["package"]["version"]


def kernel_home() -> Path:
    return Path(os.environ.get("SAEKIT_KERNEL_HOME") or Path.home() / ".cache" / "saekit-kernel")


def spare_env(**extra: str | None) -> dict[str, str]:
    """os.environ with spares on and SPARE_ONLY set, then `extra` (None removes a variable)."""
    env = {**os.environ, "SAEKIT_KERNEL_SPARE": "1", SPARE_ONLY: "1", **extra}
    return {k: v for k, v in env.items() if v is not None}


def spare_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    binary = kernel_util.require_binary(kernel_util.kernel_binary(), "saekit-kernel")
    return subprocess.run(
        [str(binary), "spare", *args], env=env or spare_env(), capture_output=True, text=True, timeout=timeout
    )


def log_tail(lines: int = 30) -> str:
    path = kernel_home() / "spare.log"
    if not path.exists():
        return f"(no {path})"
    return f"last lines of {path}:\n" + "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def assert_logged(pid: int, line: str) -> None:
    """A spare's last words, printed just before it exits, are in spare.log (its stderr goes through a pipe
    that a thread copies; the process waits for that copy before it exits)."""
    path = kernel_home() / "spare.log"
    text = path.read_text(errors="replace") if path.exists() else ""
    start = text.rfind(f"spare kernel {pid} waiting on")
    assert start >= 0 and line in text[start:], f"{line!r} missing from {path} (spare {pid})\n{log_tail()}"


def status() -> dict[str, Any] | None:
    """`spare --status`: the JSON, or None when no spare is running."""
    done = spare_cli("--status")
    if done.returncode != 0:
        assert json.loads(done.stdout) == {"ok": False}, done.stdout + done.stderr
        return None
    st = json.loads(done.stdout)
    assert st["ok"] is True, st
    return st


def ready_spare(**extra: str | None) -> dict[str, Any]:
    """`spare --wait 600` (starting one if none runs) under spare_env(**extra): the ready spare's status."""
    started = time.monotonic()
    done = spare_cli("--wait", "600", env=spare_env(**extra), timeout=660)
    assert done.returncode == 0, f"spare --wait failed: {done.stdout}{done.stderr}\n{log_tail()}"
    st = json.loads(done.stdout.strip().splitlines()[-1])
    assert st["ok"] is True and st["ready"] is True and isinstance(st["pid"], int), st
    print(f"[spare] ready spare pid {st['pid']} after waiting {time.monotonic() - started:.1f} s (age {st['age_s']:.1f} s)")
    return st


def expected_build_env(env: dict[str, str]) -> list[list[str]]:
    return sorted(
        [k, v]
        for k, v in env.items()
        if (k in BUILD_VARIABLES or k.startswith(BUILD_PREFIXES)) and k not in ("EVCXR_TMPDIR", "EVCXR_IS_RUNTIME")
    )


def fits(st: dict[str, Any]) -> bool:
    """Whether the spare was made by this binary under the build settings of spare_env()."""
    fp = st["fingerprint"]
    binary = kernel_util.kernel_binary().resolve()
    meta = binary.stat()
    return fp["build_env"] == expected_build_env(spare_env()) and fp["exe"] == f"{binary} {meta.st_size} {meta.st_mtime_ns}"


def stop_spares(timeout: float = 90) -> None:
    """Stops whatever spare runs (one still starting has no socket yet: asked again until it does)."""
    deadline = time.monotonic() + timeout
    while (st := status()) is not None:
        assert time.monotonic() < deadline, f"could not stop the spare kernel: {st}\n{log_tail()}"
        spare_cli("--stop", timeout=60)
        if "pid" in st:
            wait_gone([st["pid"]], 15)
        else:
            time.sleep(0.5)


def current_spare(**extra: str | None) -> dict[str, Any]:
    """A ready spare that fits the kernels these tests start; one that does not (left by a failed test, or
    from an older binary) is stopped and replaced."""
    st = ready_spare(**extra)
    if not fits(st):
        print(f"[spare] stopping spare {st['pid']}: it does not fit ({st['fingerprint']})")
        stop_spares()
        st = ready_spare(**extra)
        assert fits(st), st
    return st


# ---------------------------------------------------------------------------------------------------------
# Processes


def proc_stat(pid: int) -> tuple[str, int, int] | None:
    """(state, ppid, session) of a process, or None if there is none."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return fields[0], int(fields[1]), int(fields[3])


def alive(pid: int) -> bool:
    st = proc_stat(pid)
    return st is not None and st[0] not in ("Z", "X")


def wait_gone(pids: list[int], timeout: float) -> list[int]:
    """Waits until none of `pids` is alive (zombies count as gone); returns those still alive."""
    deadline = time.monotonic() + timeout
    while True:
        left = [p for p in pids if alive(p)]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.1)


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            st = proc_stat(int(entry.name))
            if st is not None and st[1] == pid and st[0] not in ("Z", "X"):
                found.append(int(entry.name))
    return found


def cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")[:-1]
    except FileNotFoundError:
        return []


def environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")
    return dict(item.split("=", 1) for item in raw.split("\0") if "=" in item)


def evcxr_children(spare_pid: int) -> list[int]:
    """The spare's evcxr child process (the kernel binary without arguments), before it is claimed."""
    found = [p for p in children(spare_pid) if cmdline(p)[1:] == []]
    assert found, f"spare {spare_pid} has no evcxr child: {[(p, cmdline(p)) for p in children(spare_pid)]}"
    return found


# ---------------------------------------------------------------------------------------------------------
# Kernels through the launcher, with its stderr in a file


class Launched:
    """A KernelSession whose launcher's stderr goes to `stderr_path`."""

    def __init__(self, tmp_path: Path, env: dict[str, str], cwd: Path | None = None, startup_timeout: float = 180):
        self.stderr_path = tmp_path / f"launcher-{time.monotonic_ns()}.stderr"
        self._file = open(self.stderr_path, "wb")
        try:
            self.session = KernelSession(
                cwd=cwd or tmp_path, env=env, launch={"stderr": self._file}, startup_timeout=startup_timeout
            )
        except Exception:
            self._file.close()
            print(self.stderr())
            raise
        self.launcher_pid = self.session.km.provisioner.process.pid

    def stderr(self) -> str:
        self._file.flush()
        return self.stderr_path.read_text(errors="replace")

    def close(self) -> None:
        try:
            self.session.close()
        finally:
            self._file.close()

    def __enter__(self) -> "Launched":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def result_text(ex) -> str:
    results = ex.of_type("execute_result")
    assert len(results) == 1, ex.describe()
    return results[0].text


def served_by(launched: Launched, pid: int) -> None:
    text = launched.stderr()
    assert f"saekit-kernel: serving from the spare kernel (pid {pid}, ready)" in text, text


@pytest.fixture(scope="module", autouse=True)
def spares():
    """The kernelspec is installed once, before any spare runs (install stops a spare that does not fit);
    at the end every spare is stopped."""
    kernel_util.prepare()
    yield
    # A kernel's replacement spare may still be starting: stop_spares waits for it.
    stop_spares()


# ---------------------------------------------------------------------------------------------------------
# The tests


def stop_marked_spare() -> None:
    """Stops a spare left with the MARK build setting, which would be declined by every later kernel."""
    st = status()
    if st is not None and "fingerprint" in st and [MARK, "1"] in st["fingerprint"]["build_env"]:
        stop_spares()


def test_a_kernel_is_served_by_the_ready_spare(tmp_path):
    st = current_spare()
    pid = st["pid"]
    if environ(pid).get(SPARE_ONLY) != "1":  # a spare someone else started: one with the marker is needed
        stop_spares()
        st = current_spare()
        pid = st["pid"]
    evcxr = evcxr_children(pid)
    notebook_dir = tmp_path / "notebook dir"
    notebook_dir.mkdir()
    token = f"only-in-the-kernel-env-{os.getpid()}"
    env = spare_env(SAEKIT_SPARE_TEST=token, **{SPARE_ONLY: None})
    with Launched(tmp_path, env, cwd=notebook_dir) as k:
        s = k.session
        served_by(k, pid)
        assert Path(os.readlink(f"/proc/{pid}/cwd")) == notebook_dir
        for child in evcxr:
            assert Path(os.readlink(f"/proc/{child}/cwd")) == notebook_dir, f"evcxr child {child}"
        first = s.ok('let ws = Workspace::open("ws")?;\nws.datasets()?')
        print(
            f"[spare] served kernel: start → kernel_info {s.info_at:.2f} s, "
            f"start → first saekit output {first.replied:.2f} s"
        )
        assert "text/html" in first.of_type("execute_result")[0].content["data"], first.describe()
        assert (notebook_dir / "ws").is_dir(), "a relative path in a cell is the notebook's directory"
        cwd = s.ok("std::env::current_dir().unwrap().display().to_string()")
        assert result_text(cwd) == json.dumps(str(notebook_dir)), cwd.describe()
        var = s.ok('std::env::var("SAEKIT_SPARE_TEST").unwrap()')
        assert result_text(var) == json.dumps(token), var.describe()
        gone = s.ok(f'std::env::var("{SPARE_ONLY}").is_err()')
        assert result_text(gone) == "true", f"the spare's own variable {SPARE_ONLY} leaked: {gone.describe()}"
        version = s.ok("saekit_version")
        assert result_text(version) == json.dumps(SAEKIT_VERSION), version.describe()
        # A dataset card, as in the quickstart.
        started = s.now()
        card = s.ok(
            'let files = saekit::data::write_corpus(&ws.root().join("embedded"))?;\n'
            '{\n'
            '    let austen = files.iter().find(|f| f.to_string_lossy().contains("austen")).unwrap();\n'
            '    ws.add_dataset("austen", &Source::open(austen)?)?;\n'
            '}\n'
            'ws.dataset("austen")?'
        )
        print(f"[spare] dataset card cell: {card.replied - started:.2f} s")
        data = card.of_type("execute_result")[0].content["data"]
        assert "text/html" in data and "austen" in data["text/plain"], card.describe()
        assert "269" in data["text/plain"], f"austen has 269 chapters: {data['text/plain']}"


def test_clean_shutdown_ends_the_spare_and_its_evcxr_child(tmp_path):
    pid = current_spare()["pid"]
    evcxr = evcxr_children(pid)
    k = Launched(tmp_path, spare_env())
    launcher = k.session.km.provisioner.process
    try:
        served_by(k, pid)
        assert result_text(k.session.ok("40 + 2")) == "42"
    finally:
        t = time.monotonic()
        k.close()
    left = wait_gone([pid, *evcxr], 10)
    print(f"[spare] after shutdown_kernel the spare and its child were gone within {time.monotonic() - t:.2f} s")
    assert not left, f"still running after a clean shutdown: {[(p, cmdline(p)) for p in left]}"
    assert launcher.wait(10) is not None, "the launcher exits with its spare"


def test_killing_the_launcher_ends_the_spare(tmp_path):
    pid = current_spare()["pid"]
    evcxr = evcxr_children(pid)
    k = Launched(tmp_path, spare_env())
    try:
        served_by(k, pid)
        assert result_text(k.session.ok("40 + 2")) == "42"
        launcher = k.session.km.provisioner.process
        assert launcher.pid != pid
        t = time.monotonic()
        os.kill(launcher.pid, signal.SIGKILL)
        launcher.wait(10)
        left = wait_gone([pid, *evcxr], 10)
        print(f"[spare] after SIGKILL of the launcher the spare was gone within {time.monotonic() - t:.2f} s")
        assert not left, f"still running after the launcher was killed: {[(p, cmdline(p)) for p in left]}"
        assert_logged(pid, "saekit-kernel: the launcher process ended; exiting")
    finally:
        k.close()


def test_a_spare_with_other_build_settings_is_declined(tmp_path):
    stop_spares()
    mark_env = spare_env(**{MARK: "1"})
    done = spare_cli("--start", env=mark_env)
    assert done.returncode == 0 and "started a spare kernel" in done.stdout, done.stdout + done.stderr
    try:
        st = ready_spare(**{MARK: "1"})
        pid = st["pid"]
        assert [MARK, "1"] in st["fingerprint"]["build_env"], st
        assert not fits(st)
        with Launched(tmp_path, spare_env(), startup_timeout=300) as k:
            text = k.stderr()
            assert "saekit-kernel: not using the spare kernel:" in text and MARK in text, text
            assert "starting a kernel here" in text and "serving from the spare kernel" not in text, text
            assert not wait_gone([pid], 10), "the declined spare exits"
            s = k.session
            assert result_text(s.ok("40 + 2")) == "42"
            print(
                f"[spare] declined spare, in-process kernel: start → kernel_info {s.info_at:.2f} s, "
                f"start → first cell {s.now():.2f} s"
            )
            assert result_text(s.ok("saekit_version")) == json.dumps(SAEKIT_VERSION)
        assert_logged(pid, f"saekit-kernel: spare kernel declined a claim (build settings differ: {MARK}); exiting")
    finally:
        stop_marked_spare()


def test_a_claimed_kernel_starts_the_next_spare_when_idle(tmp_path):
    pid = current_spare()["pid"]
    with Launched(tmp_path, spare_env()) as k:
        served_by(k, pid)
        assert result_text(k.session.ok("1 + 1")) == "2"
        idle_since = time.monotonic()
        deadline = idle_since + 30
        while (st := status()) is None or st.get("pid") == pid:
            assert time.monotonic() < deadline, f"no new spare 30 s after the kernel went idle; {st}\n{log_tail()}"
            time.sleep(0.5)
        print(f"[spare] a new spare was running {time.monotonic() - idle_since:.1f} s after the kernel went idle")
        new = ready_spare()
        assert new["pid"] != pid and fits(new), new
        state = proc_stat(new["pid"])
        assert state is not None and state[2] == new["pid"], f"the new spare leads a session of its own: {state}"
        log = (kernel_home() / "spare.log").read_text(errors="replace")
        assert f"spare kernel {new['pid']} waiting on" in log, log_tail()
    # It outlives the kernel that started it.
    assert not wait_gone([pid], 10)
    assert alive(new["pid"]) and status()["pid"] == new["pid"]


def test_install_keeps_a_current_spare(tmp_path):
    pid = current_spare()["pid"]
    binary = kernel_util.kernel_binary()
    done = subprocess.run(
        [str(binary), "install", "--prefix", str(tmp_path / "prefix")],
        env=spare_env(), capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"a spare kernel (pid {pid}) built from these sources is running: nothing to build" in done.stdout, (
        done.stdout + done.stderr
    )
    assert "building saekit" not in done.stderr
    spec = json.loads((tmp_path / "prefix" / "share" / "jupyter" / "kernels" / "saekit" / "kernel.json").read_text())
    assert spec["argv"][1:] == ["--connection-file", "{connection_file}"]
    st = status()
    assert st is not None and st["pid"] == pid and st["ready"] is True, st


def test_install_replaces_a_spare_that_does_not_fit(tmp_path):
    stop_spares()
    done = spare_cli("--start", env=spare_env(**{MARK: "1"}))
    assert done.returncode == 0, done.stdout + done.stderr
    try:
        old = ready_spare(**{MARK: "1"})["pid"]
        done = subprocess.run(
            [str(kernel_util.kernel_binary()), "install", "--prefix", str(tmp_path / "prefix")],
            env=spare_env(), capture_output=True, text=True, timeout=600,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert "stopped the running spare kernel" in done.stdout, done.stdout + done.stderr
        assert not wait_gone([old], 10)
        started = re.search(r"started a spare kernel \(pid (\d+)\)", done.stdout)
        assert started, done.stdout + done.stderr
        new = ready_spare()
        assert new["pid"] == int(started.group(1)) != old and fits(new), new
    finally:
        stop_marked_spare()


def test_spares_off_leaves_the_spare_alone(tmp_path):
    """SAEKIT_KERNEL_SPARE=0 (as in the rest of the suite): the kernel starts in-process, the spare stays."""
    pid = current_spare()["pid"]
    with Launched(tmp_path, spare_env(SAEKIT_KERNEL_SPARE="0"), startup_timeout=300) as k:
        assert "spare kernel" not in k.stderr(), k.stderr()
        assert result_text(k.session.ok("40 + 2")) == "42"
        st = status()
        assert st is not None and st["pid"] == pid, st
    st = status()
    assert st is not None and st["pid"] == pid and alive(pid), st


def test_quickstart_through_a_spare(tmp_path, monkeypatch):
    import test_notebooks

    pid = current_spare()["pid"]
    path = kernel_util.NOTEBOOKS / "quickstart.ipynb"
    nb = nbformat.read(path, as_version=4)
    for key, value in spare_env().items():
        if os.environ.get(key) != value:
            monkeypatch.setenv(key, value)
    monkeypatch.setenv("SAEKIT_NOTEBOOK_WORKSPACE", str(tmp_path / "ws"))
    stderr_path = tmp_path / "launcher.stderr"
    started, started_wall = time.monotonic(), datetime.now(timezone.utc)
    with open(stderr_path, "wb") as stderr:
        kernel_util.execute_notebook(nb, cwd=tmp_path, timeout=900, allow_errors=True, launch={"stderr": stderr})
    seconds = time.monotonic() - started
    text = stderr_path.read_text(errors="replace")
    assert f"saekit-kernel: serving from the spare kernel (pid {pid}, ready)" in text, text
    first = next(c for c in nb.cells if c.cell_type == "code").metadata.get("execution", {})
    if "shell.execute_reply" in first:
        replied = datetime.fromisoformat(first["shell.execute_reply"].replace("Z", "+00:00"))
        print(f"[spare] quickstart through a spare: start → first cell's reply {(replied - started_wall).total_seconds():.1f} s")
    print(f"[spare] quickstart through a spare: {seconds:.1f} s in all")
    executed = (path, nb, seconds)
    test_notebooks.test_notebook_runs_without_errors(executed)
    test_notebooks.test_execution_counts_are_consecutive_and_match_results(executed)
    test_notebooks.test_every_rich_output_has_plain_text(executed)
    test_notebooks.test_statements_show_no_unit_value(executed)
    test_notebooks.test_tagged_cells_have_expected_outputs(executed)
    test_notebooks.test_job_display_ends_in_its_final_rendering(executed)
    test_notebooks.test_quickstart_story(executed)
    assert not wait_gone([pid], 10), "the spare exits with the notebook's kernel"


def test_an_unclaimed_spare_exits_after_its_idle_limit():
    stop_spares()
    done = spare_cli("--start", env=spare_env(SAEKIT_KERNEL_SPARE_IDLE="5"))
    assert done.returncode == 0, done.stdout + done.stderr
    match = re.search(r"started a spare kernel \(pid (\d+)\)", done.stdout)
    assert match, done.stdout
    pid = int(match.group(1))
    started = time.monotonic()
    seen: set[int] = set()
    while alive(pid) and time.monotonic() - started < 40:
        seen.update(children(pid))
        time.sleep(0.1)
    print(f"[spare] a spare with SAEKIT_KERNEL_SPARE_IDLE=5 exited after {time.monotonic() - started:.1f} s")
    assert not alive(pid), f"spare {pid} still running 40 s after it started\n{log_tail()}"
    assert not wait_gone(sorted(seen), 10), f"its children outlived it: {[(p, cmdline(p)) for p in seen if alive(p)]}"
    assert_logged(pid, "saekit-kernel: spare kernel unclaimed for 5 s; exiting")
    # Nothing answers on the spare socket any more (allowing a moment for the exit to finish; one CI run
    # saw a still-preparing spare answer right after this spare's pid was gone).
    deadline = time.monotonic() + 10
    while status() is not None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert status() is None, f"a spare still answers on the socket\n{log_tail()}"
    assert not (kernel_home() / "spare.sock").exists()
