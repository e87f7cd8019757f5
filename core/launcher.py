"""``make run``: migrate, prepare the demo, then run web + worker + beat until Ctrl-C.

Runs no Django code itself; every step is a child process, so the web server never imports
torch (only ``setup_demo`` and the worker do). Ctrl-C or SIGTERM stops every child it started.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _python(*args: str) -> list[str]:
    return [sys.executable, *args]


def _bin(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


def run_step(argv: list[str]) -> None:
    result = subprocess.run(argv, cwd=ROOT, check=False)
    if result.returncode != 0:
        sys.stderr.write(f"ladder: step failed ({result.returncode}): {' '.join(argv)}\n")
        raise SystemExit(result.returncode)


def start_services(host: str, port: int, worker_concurrency: int) -> list[subprocess.Popen[bytes]]:
    commands = {
        "web": [
            _bin("gunicorn"),
            "--config",
            str(ROOT / "config" / "gunicorn.py"),
            "config.wsgi:application",
            "--bind",
            f"{host}:{port}",
            "--access-logfile",
            "-",
            "--graceful-timeout",
            "5",
        ],
        "worker": [
            _bin("celery"),
            "-A",
            "config",
            "worker",
            "--loglevel",
            "INFO",
            "-Q",
            "default,models",
            "--concurrency",
            str(worker_concurrency),
            "--hostname",
            "ladder-worker@%h",
        ],
        "beat": [_bin("celery"), "-A", "config", "beat", "--loglevel", "INFO"],
    }
    processes = []
    for name, argv in commands.items():
        print(f"ladder: starting {name}: {' '.join(argv[:3])} …", flush=True)
        # A new process group per child, so Ctrl-C reaches each one once, through us.
        processes.append(subprocess.Popen(argv, cwd=ROOT, start_new_session=True))
    return processes


def stop_services(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + 15
    for process in processes:
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run Ladder: web server, worker and beat.")
    parser.add_argument("--host", default=os.environ.get("LADDER_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("LADDER_PORT", "8000")))
    parser.add_argument("--worker-concurrency", type=int, default=2)
    parser.add_argument("--skip-setup", action="store_true", help="no migrate / demo setup")
    args = parser.parse_args(argv)

    if not args.skip_setup:
        run_step(_python("manage.py", "migrate", "--no-input", "-v", "0"))
        run_step(_python("manage.py", "collectstatic", "--no-input", "-v", "0"))
        run_step(_python("manage.py", "setup_demo"))
    processes = start_services(args.host, args.port, args.worker_concurrency)
    stopping = False

    def _stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    print(
        f"\nLadder is running at http://{args.host}:{args.port}/  (Ctrl-C stops it)\n", flush=True
    )
    try:
        while not stopping:
            if any(process.poll() is not None for process in processes):
                sys.stderr.write("ladder: a service exited; stopping the others\n")
                break
            time.sleep(0.5)
    finally:
        print("ladder: stopping …", flush=True)
        stop_services(processes)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
