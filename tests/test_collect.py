"""Collections from a terminal and over HTTP, driven by Python's own libraries: `saekit collect serve` on
127.0.0.1 under a bounded load from threads (urllib), with records/s reported and none lost; malformed
and oversized requests refused with their 4xx while the server keeps serving; `saekit collect add` from
stdin acknowledging each record; incremental exports adding up to a full one (json)."""

import json
import os
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from conftest import ROOT


def binary() -> Path:
    """The saekit binary the `saekit` fixture built."""
    return Path(os.environ.get("CARGO_TARGET_DIR") or ROOT / "target") / "debug" / "saekit"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(url: str, body: bytes) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_the_endpoint_under_a_bounded_load_loses_nothing(saekit, tmp_path):
    ws = tmp_path / "ws"
    assert saekit("--workspace", ws, "collect", "create", "app").returncode == 0
    port = free_port()
    server = subprocess.Popen(
        [str(binary()), "--workspace", str(ws), "collect", "serve", "app", "--port", str(port), "--max-body", "65536"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        line = server.stdout.readline()
        assert "listening on http://127.0.0.1:" in line, line + server.stderr.read()
        base = f"http://127.0.0.1:{port}"
        clients, requests, per = 8, 50, 10
        errors = []

        def client(k: int) -> None:
            for r in range(requests):
                body = "".join(json.dumps({"input": f"client {k} request {r} record {i}", "output": "ok",
                                           "category": ["a", "b"][i % 2]}) + "\n" for i in range(per))
                status, reply = post(base + "/records", body.encode())
                if status != 200 or reply["kept"] != per:
                    errors.append((status, reply))

        started = time.monotonic()
        threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        seconds = time.monotonic() - started
        total = clients * requests * per
        print(f"collect serve: {total} records in {seconds:.2f} s = {total / seconds:.0f} records/s "
              f"({clients * requests / seconds:.0f} requests/s)")
        assert not errors, errors[:3]
        with urllib.request.urlopen(base + "/stats", timeout=30) as r:
            stats = json.loads(r.read())
        assert stats["records"] == total, "none lost"

        status, reply = post(base + "/records", b'{"input": "a"}\n{"input": ')
        assert status == 400 and "line 2" in reply["error"]
        status, reply = post(base + "/records", b'{"output": "no input"}')
        assert status == 400 and "`input` is missing" in reply["error"]
        status, reply = post(base + "/records", b'{"input": "' + b"x" * 70000 + b'"}')
        assert status == 413
        assert server.poll() is None, "still serving"
        with urllib.request.urlopen(base + "/health", timeout=30) as r:
            assert r.status == 200
        with urllib.request.urlopen(base + "/stats", timeout=30) as r:
            assert json.loads(r.read())["records"] == total, "refused requests committed nothing"
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_stdin_acknowledgements_and_incremental_exports(saekit, tmp_path):
    ws = tmp_path / "ws"
    assert saekit("--workspace", ws, "collect", "create", "logs", "--exclude-errors").returncode == 0
    lines = [json.dumps({"input": f"q{i}", "output": f"a{i}", "error": i == 3}) for i in range(6)] + ["{broken"]
    done = subprocess.run([str(binary()), "--workspace", str(ws), "collect", "add", "logs"],
                          input="\n".join(lines) + "\n", capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["ok 1", "ok 2", "ok 3", "dropped error", "ok 4", "ok 5",
                                        "error line 7: key must be a string at line 1 column 2"]
    inc = tmp_path / "inc.jsonl"
    assert saekit("--workspace", ws, "collect", "export", "logs", inc, "--incremental").returncode == 0
    more = "\n".join(json.dumps({"input": f"late {i}"}) for i in range(3)) + "\n"
    subprocess.run([str(binary()), "--workspace", str(ws), "collect", "add", "logs"], input=more,
                   capture_output=True, text=True, timeout=120, check=True)
    done = saekit("--workspace", ws, "collect", "export", "logs", inc, "--incremental")
    assert done.returncode == 0 and "appended             3" in done.stdout, done.stdout
    full = tmp_path / "full.jsonl"
    assert saekit("--workspace", ws, "collect", "export", "logs", full).returncode == 0
    assert inc.read_bytes() == full.read_bytes()
    records = [json.loads(line) for line in full.read_text().splitlines()]
    assert [r["id"] for r in records] == list(range(1, 9))
    assert records[-1]["input"] == "late 2" and records[0]["output"] == "a0"

