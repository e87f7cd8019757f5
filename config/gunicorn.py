"""gunicorn settings for the web process: ``gunicorn -c config/gunicorn.py config.wsgi:application``.

One file for docker-compose, ``make run`` and ``bench/arena_votes.py``, so the benchmark
measures the server as it is deployed. Overridden by environment variables:

- ``LADDER_WEB_BIND`` (default ``0.0.0.0:8000``)
- ``LADDER_WEB_WORKERS``: processes (default: one per CPU core)
- ``LADDER_WEB_THREADS``: threads per process (default 2)

Why these defaults (``bench/RESULTS.md``, arena votes): a request spends most of its time in
Python holding the GIL, so more processes than cores, or more threads than it takes to cover
the database round trips, cost CPU per request (context switches, GIL hand-offs) and add no
throughput. One thread per process was cheaper still, but then one slow request (a large
export) holds up every other request on its process's kept-alive connections.
"""

from __future__ import annotations

import gc
import os
from typing import Any


def _positive_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    if not value:
        return default
    if not value.isdigit() or int(value) < 1:
        raise SystemExit(f"ladder: configuration error: {name} must be a positive integer")
    return int(value)


bind = [os.environ.get("LADDER_WEB_BIND") or "0.0.0.0:8000"]
workers = _positive_int("LADDER_WEB_WORKERS", os.cpu_count() or 1)
worker_class = "gthread"  # threads keep HTTP/1.1 connections alive between requests
threads = _positive_int("LADDER_WEB_THREADS", 2)
keepalive = 30
backlog = 2048
reuse_port = True  # the kernel spreads new connections over the workers
graceful_timeout = 10
timeout = 60
# No gunicornc control socket: it has one default path per user, which the several servers of
# a test run or of `make run` beside the bench would take from each other.
control_socket_disable = True


def post_worker_init(worker: Any) -> None:
    """Freeze what start-up allocated: the collector never scans Django's ~120,000 import-time
    objects again, which took ~60 ms per full collection, a pause in some request."""
    gc.freeze()
