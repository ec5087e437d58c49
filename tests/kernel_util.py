"""Shared helpers for everything that drives saekit-kernel through a real Jupyter client: the conformance
suite, the notebook tests, the browser check, the quickstart runner and the latency benchmark.

Nothing here touches the real home configuration: kernelspecs are installed into a private Jupyter
directory (``JUPYTER_PATH``/``JUPYTER_DATA_DIR`` and friends point into it), and only the kernel's own
persistent build directory (``$SAEKIT_KERNEL_HOME``, default ``~/.cache/saekit-kernel``) is shared, on
purpose: it is what lets a kernel start in seconds instead of rebuilding saekit.
"""

from __future__ import annotations

import atexit
import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
# Where the lead's development builds land; scripts/env.sh exports SAEKIT_KERNEL_BIN for everyone else.
DEV_TARGET = Path("/var/tmp/saekit-kernel-target")
KERNEL_NAME = "saekit"
STOCK_NAME = "evcxr-stock"


def kernel_binary() -> Path:
    """The saekit-kernel binary: $SAEKIT_KERNEL_BIN, else $SAEKIT_KERNEL_TARGET/kernel/, else the dev target."""
    if os.environ.get("SAEKIT_KERNEL_BIN"):
        return Path(os.environ["SAEKIT_KERNEL_BIN"])
    target = Path(os.environ.get("SAEKIT_KERNEL_TARGET") or DEV_TARGET)
    return target / "kernel" / "saekit-kernel"


def stock_binary() -> Path:
    """Stock evcxr_jupyter 0.22 built beside saekit-kernel (`--features stock`): $EVCXR_STOCK_BIN overrides."""
    if os.environ.get("EVCXR_STOCK_BIN"):
        return Path(os.environ["EVCXR_STOCK_BIN"])
    return kernel_binary().with_name("evcxr-stock")


def require_binary(path: Path, what: str) -> Path:
    if not path.is_file() or not os.access(path, os.X_OK):
        raise RuntimeError(
            f"{what} not found at {path}: build it with `source scripts/env.sh; "
            f"cargo build -p saekit-kernel --profile kernel --bins` (or set SAEKIT_KERNEL_BIN)"
        )
    return path


def jupyter_env(base: Path) -> dict[str, str]:
    """Environment variables that point every Jupyter, JupyterLab and IPython directory into `base`."""
    dirs = {
        "JUPYTER_PATH": base / "data",
        "JUPYTER_DATA_DIR": base / "data",
        "JUPYTER_CONFIG_DIR": base / "config",
        "JUPYTER_RUNTIME_DIR": base / "runtime",
        "JUPYTERLAB_SETTINGS_DIR": base / "lab" / "user-settings",
        "JUPYTERLAB_WORKSPACES_DIR": base / "lab" / "workspaces",
        "IPYTHONDIR": base / "ipython",
    }
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True)
    env = {k: str(v) for k, v in dirs.items()}
    env["JUPYTER_PLATFORM_DIRS"] = "1"
    return env


def install_saekit_kernel(base: Path, name: str = KERNEL_NAME, prebuild: bool = True, quiet: bool = False) -> Path:
    """`saekit-kernel install --user` into `base`'s private data dir; returns the kernelspec directory.

    With `prebuild` (the default) the kernel builds saekit once into $SAEKIT_KERNEL_HOME; when that is
    already warm this is a no-op of a few seconds, on a fresh machine it is the one slow step.
    """
    binary = require_binary(kernel_binary(), "saekit-kernel")
    env = {**os.environ, **jupyter_env(base)}
    cmd = [str(binary), "install", "--user", "--name", name]
    if not prebuild:
        cmd.append("--no-prebuild")
    out = subprocess.DEVNULL if quiet else None
    subprocess.run(cmd, env=env, check=True, timeout=3600, stdout=out, stderr=out if quiet else None)
    spec = Path(env["JUPYTER_DATA_DIR"]) / "kernels" / name
    if not (spec / "kernel.json").is_file():
        raise RuntimeError(f"`{' '.join(cmd)}` did not write {spec / 'kernel.json'}")
    return spec


def install_stock_kernel(base: Path, build_dir: Path, name: str = STOCK_NAME) -> Path:
    """A kernelspec for stock evcxr_jupyter with a persistent build dir (EVCXR_TMPDIR) and an empty config dir."""
    binary = require_binary(stock_binary(), "evcxr-stock")
    spec = Path(jupyter_env(base)["JUPYTER_DATA_DIR"]) / "kernels" / name
    spec.mkdir(parents=True, exist_ok=True)
    build_dir.mkdir(parents=True, exist_ok=True)
    config = base / "evcxr-config"
    config.mkdir(parents=True, exist_ok=True)
    kernel_json = {
        "argv": [str(binary), "--control_file", "{connection_file}"],
        "display_name": "Rust (stock evcxr 0.22)",
        "language": "rust",
        "interrupt_mode": "message",
        "env": {"EVCXR_TMPDIR": str(build_dir), "EVCXR_CONFIG_DIR": str(config)},
    }
    (spec / "kernel.json").write_text(json.dumps(kernel_json, indent=2))
    return spec


_prepared: dict[str, Path] = {}
_failed: dict[str, Exception] = {}


def prepare(kernel: str = KERNEL_NAME) -> Path:
    """Once per process: a private Jupyter dir holding the kernelspec `kernel`, with os.environ pointed at
    it so that jupyter_client and nbclient in this process (and their kernels) find it.

    `kernel` is "saekit" (the default) or "evcxr-stock" (harness development against stock evcxr; its
    build dir is $EVCXR_STOCK_TMPDIR or /var/tmp/saekit-evcxr-stock). $SAEKIT_TEST_KERNEL overrides it.
    """
    kernel = os.environ.get("SAEKIT_TEST_KERNEL", kernel)
    if kernel in _prepared:
        return _prepared[kernel]
    if "base" not in _prepared:
        base = Path(tempfile.mkdtemp(prefix="saekit-jupyter-"))
        atexit.register(shutil.rmtree, base, ignore_errors=True)
        _prepared["base"] = base
        os.environ.update(jupyter_env(base))
    base = _prepared["base"]
    if kernel in _failed:  # an install that failed once fails every test that needs it, without retrying
        raise RuntimeError(f"installing the {kernel!r} kernelspec failed earlier: {_failed[kernel]}")
    try:
        if kernel == STOCK_NAME:
            build = Path(os.environ.get("EVCXR_STOCK_TMPDIR", "/var/tmp/saekit-evcxr-stock"))
            _prepared[kernel] = install_stock_kernel(base, build)
        elif kernel == KERNEL_NAME:
            _prepared[kernel] = install_saekit_kernel(base)
        else:  # any kernel installed elsewhere (e.g. python3 for harness checks): found through the venv
            _prepared[kernel] = base
    except Exception as e:
        _failed[kernel] = e
        raise
    return _prepared[kernel]


def kernel_under_test() -> str:
    return os.environ.get("SAEKIT_TEST_KERNEL", KERNEL_NAME)


# ---------------------------------------------------------------------------------------------------------
# A kernel session that records every iopub message with its arrival time.


@dataclass
class Msg:
    """One iopub message as it arrived: `t` is seconds since the session started (time.monotonic based)."""

    t: float
    msg: dict[str, Any]

    @property
    def type(self) -> str:
        return self.msg["header"]["msg_type"]

    @property
    def content(self) -> dict[str, Any]:
        return self.msg["content"]

    @property
    def parent(self) -> str | None:
        return (self.msg.get("parent_header") or {}).get("msg_id")

    @property
    def display_id(self) -> str | None:
        return (self.content.get("transient") or {}).get("display_id")

    @property
    def text(self) -> str:
        """Stream text, or a display's text/plain, or an error's ename: evalue."""
        c = self.content
        if self.type == "stream":
            return c.get("text", "")
        if "data" in c:
            return c["data"].get("text/plain", "")
        if self.type == "error":
            return f"{c.get('ename')}: {c.get('evalue')}"
        return ""

    def __repr__(self) -> str:
        extra = self.content.get("execution_state") or self.content.get("name") or ""
        return f"<{self.t:8.3f}s {self.type} {extra} {self.text[:60]!r}>"


@dataclass
class Execution:
    msg_id: str
    code: str
    sent: float
    reply: dict[str, Any] | None = None
    replied: float | None = None
    idle: float | None = None
    outputs: list[Msg] = field(default_factory=list)  # iopub messages between busy and idle, in order

    @property
    def status(self) -> str:
        return self.reply["content"]["status"] if self.reply else "no reply"

    @property
    def latency(self) -> float:
        """execute_request sent → execute_reply received."""
        assert self.replied is not None
        return self.replied - self.sent

    def of_type(self, *types: str) -> list[Msg]:
        return [m for m in self.outputs if m.type in types]

    def stdout(self) -> str:
        return "".join(m.text for m in self.outputs if m.type == "stream" and m.content["name"] == "stdout")

    def stderr(self) -> str:
        return "".join(m.text for m in self.outputs if m.type == "stream" and m.content["name"] == "stderr")

    def describe(self) -> str:
        lines = [f"cell {self.code!r}: reply {self.status}"]
        if self.reply and self.status == "error":
            c = self.reply["content"]
            lines.append(f"  reply ename={c.get('ename')!r} evalue={c.get('evalue')!r}")
        lines += [f"  {m!r}" for m in self.outputs]
        return "\n".join(lines)


class KernelSession:
    """A kernel started with jupyter_client, with a thread that records every iopub message as it arrives."""

    def __init__(
        self,
        kernel_name: str | None = None,
        startup_timeout: float = 180,
        cwd: str | Path | None = None,
        env: dict[str, str | None] | None = None,
        launch: dict[str, Any] | None = None,
    ):
        """`env` is merged over os.environ (a value of None removes that variable); `launch` holds further
        arguments for KernelManager.start_kernel, which passes them on to Popen (e.g. stderr=a file)."""
        from jupyter_client.manager import KernelManager

        self.kernel_name = kernel_name or kernel_under_test()
        prepare(self.kernel_name)
        self.t0 = time.monotonic()
        self.km = KernelManager(kernel_name=self.kernel_name)
        kwargs: dict[str, Any] = {}
        if cwd is not None:
            kwargs["cwd"] = str(cwd)
        if env is not None:
            kwargs["env"] = {k: v for k, v in {**os.environ, **env}.items() if v is not None}
        kwargs.update(launch or {})
        self.km.start_kernel(**kwargs)
        self.kc = self.km.client()
        self.kc.start_channels()
        self.info_at: float | None = None  # first kernel_info_reply, seconds after start_kernel was called
        self.kernel_info: dict[str, Any] = {}
        try:
            self._wait_ready(startup_timeout)
        except Exception:
            self.close()
            raise
        self.ready_at = self.now()
        self.log: list[Msg] = []
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._reader = threading.Thread(target=self._read_iopub, daemon=True)
        self._reader.start()

    def now(self) -> float:
        return time.monotonic() - self.t0

    def _wait_ready(self, timeout: float) -> None:
        """Like jupyter_client's wait_for_ready (a kernel_info_reply, then proof that iopub is connected),
        but asking every 0.25 s and noting when the first reply came."""
        deadline = time.monotonic() + timeout
        while True:
            self.kc.kernel_info()
            try:
                msg = self.kc.get_shell_msg(timeout=0.25)
            except queue.Empty:
                msg = None
            if msg is not None and msg["msg_type"] == "kernel_info_reply":
                if self.info_at is None:
                    self.info_at, self.kernel_info = self.now(), msg["content"]
                try:
                    self.kc.iopub_channel.get_msg(timeout=0.2)
                    break
                except queue.Empty:
                    pass
            if not self.km.is_alive():
                raise RuntimeError(f"kernel {self.kernel_name!r} died before replying to kernel_info")
            if time.monotonic() > deadline:
                raise RuntimeError(f"kernel {self.kernel_name!r} did not reply to kernel_info within {timeout} s")
        for channel in (self.kc.shell_channel, self.kc.iopub_channel):
            while True:  # the replies to the other kernel_info requests, and their status messages
                try:
                    channel.get_msg(timeout=0.1)
                except queue.Empty:
                    break

    def _read_iopub(self) -> None:
        while not self._stop.is_set():
            try:
                msg = self.kc.iopub_channel.get_msg(timeout=0.05)
            except queue.Empty:
                continue
            except Exception:  # channel closed while shutting down
                return
            with self._cond:
                self.log.append(Msg(self.now(), msg))
                self._cond.notify_all()

    def wait_until(self, predicate: Callable[[list[Msg]], Any], timeout: float) -> Any:
        """Waits until predicate(log) is truthy and returns its value; raises TimeoutError otherwise."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                value = predicate(self.log)
                if value:
                    return value
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"timed out after {timeout} s; iopub so far: {self.log[-20:]}")
                self._cond.wait(min(left, 0.1))

    def for_parent(self, msg_id: str) -> list[Msg]:
        with self._cond:
            return [m for m in self.log if m.parent == msg_id]

    def send_execute(self, code: str, stop_on_error: bool = True, allow_stdin: bool = False) -> Execution:
        msg_id = self.kc.execute(code, stop_on_error=stop_on_error, allow_stdin=allow_stdin)
        return Execution(msg_id=msg_id, code=code, sent=self.now())

    def finish(self, ex: Execution, timeout: float = 300) -> Execution:
        """Waits for the reply and the idle status of an execution sent with send_execute."""
        deadline = time.monotonic() + timeout
        while ex.reply is None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no execute_reply within {timeout} s for {ex.code!r}; iopub: {self.for_parent(ex.msg_id)}")
            try:
                reply = self.kc.get_shell_msg(timeout=min(left, 1))
            except queue.Empty:
                continue
            if (reply.get("parent_header") or {}).get("msg_id") == ex.msg_id:
                ex.reply, ex.replied = reply, self.now()

        def idle(log: list[Msg]) -> Msg | None:
            for m in log:
                if m.parent == ex.msg_id and m.type == "status" and m.content["execution_state"] == "idle":
                    return m
            return None

        idle_msg = self.wait_until(idle, max(5.0, deadline - time.monotonic()))
        ex.idle = idle_msg.t
        ex.outputs = [
            m
            for m in self.for_parent(ex.msg_id)
            if m.t <= idle_msg.t and m.type not in ("status", "execute_input")
        ]
        return ex

    def execute(self, code: str, timeout: float = 300, **kwargs: Any) -> Execution:
        return self.finish(self.send_execute(code, **kwargs), timeout)

    def ok(self, code: str, timeout: float = 300) -> Execution:
        """Executes `code` and fails with the cell's outputs when it did not succeed."""
        ex = self.execute(code, timeout)
        if ex.status != "ok":
            raise AssertionError(ex.describe())
        return ex

    def interrupt(self) -> None:
        self.km.interrupt_kernel()

    def close(self) -> None:
        if hasattr(self, "_stop"):
            self._stop.set()
            self._reader.join(timeout=2)
        try:
            self.kc.stop_channels()
        finally:
            self.km.shutdown_kernel(now=False)

    def __enter__(self) -> "KernelSession":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


# ---------------------------------------------------------------------------------------------------------
# Notebooks through nbclient.


def execute_notebook(
    nb: Any,
    kernel_name: str | None = None,
    cwd: str | Path | None = None,
    timeout: int = 900,
    allow_errors: bool = False,
    startup_timeout: int = 300,
    launch: dict[str, Any] | None = None,
) -> Any:
    """Executes a notebook (an nbformat node) in place through `kernel_name` and returns it. `launch` holds
    further arguments for the kernel manager's start_kernel (passed on to Popen, e.g. stderr=a file)."""
    from nbclient import NotebookClient

    kernel_name = kernel_name or kernel_under_test()
    prepare(kernel_name)
    client = NotebookClient(
        nb,
        kernel_name=kernel_name,
        timeout=timeout,
        startup_timeout=startup_timeout,
        allow_errors=allow_errors,
        record_timing=True,
        resources={"metadata": {"path": str(cwd or NOTEBOOKS)}},
    )
    client.execute(**(launch or {}))
    return nb


def rich_outputs(cell: Any) -> list[Any]:
    return [o for o in cell.get("outputs", []) if o.get("output_type") in ("display_data", "execute_result")]


def notebook_paths() -> list[Path]:
    return sorted(p for p in NOTEBOOKS.glob("*.ipynb") if not p.name.endswith(".executed.ipynb"))


if __name__ == "__main__":  # `python tests/kernel_util.py`: where the binaries are, for a quick look
    print("saekit-kernel:", kernel_binary(), "(present)" if kernel_binary().exists() else "(missing)")
    print("evcxr-stock:  ", stock_binary(), "(present)" if stock_binary().exists() else "(missing)")
    sys.exit(0)
