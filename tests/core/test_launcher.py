"""`make run`'s launcher: web + worker + beat on the embedded default, stopped by Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]


def fetch(url: str, data: bytes | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def wait_until(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.real_worker
@pytest.mark.slow
def test_launcher_serves_health_home_and_worker_then_stops_on_ctrl_c(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "DEBUG")}
    env.update(
        LADDER_VAR_DIR=str(tmp_path),
        LADDER_DEMO_MODE=os.environ.get("LADDER_LAUNCHER_DEMO", "tiny"),
    )
    env.pop("LADDER_BROKER_DIR", None)
    env.pop("LADDER_SQLITE_PATH", None)
    launcher = subprocess.Popen(
        [sys.executable, "-m", "core.launcher", "--port", str(port), "--worker-concurrency", "1"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: fetch(base + "/healthz")[0] == 200, 240, "/healthz to answer 200")
        status, body = fetch(base + "/")
        assert status == 200 and b"Ladder" in body
        status, body = fetch(base + "/api/worker-pings", data=b"")
        assert status == 201
        ping_id = json.loads(body)["id"]

        def handled() -> bool:
            return (
                json.loads(fetch(f"{base}/api/worker-pings/{ping_id}")[1])["handled_at"] is not None
            )

        wait_until(handled, 90, "the worker process to run the ping task")
        detail = json.loads(fetch(f"{base}/api/worker-pings/{ping_id}")[1])
        # The worker's pid and host are staff-only (issue 18); handled_at came from the worker.
        assert detail["handled_at"] is not None and "worker_pid" not in detail
    finally:
        launcher.send_signal(signal.SIGINT)
        output, _ = launcher.communicate(timeout=60)
    assert launcher.returncode == 0, output
    assert f"http://127.0.0.1:{port}/" in output
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
