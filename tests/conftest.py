"""Shared fixtures: eager Celery for unit tests, service checks for the integration tier."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from collections.abc import Iterator
from urllib.parse import urlparse

import pytest

IN_CI = os.environ.get("CI", "").lower() == "true"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def service_reachable(url: str | None, default_port: int) -> bool:
    if not url:
        return False
    parsed = urlparse(url)
    try:
        with socket.create_connection(
            (parsed.hostname or "127.0.0.1", parsed.port or default_port), 2
        ):
            return True
    except OSError:
        return False


def require_or_skip(reason: str) -> None:
    """Skip a tier whose service is missing; under CI=true that is a failure instead."""
    if IN_CI:
        pytest.fail(f"CI=true and {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(autouse=True)
def _eager_celery_for_unit_tests(request: pytest.FixtureRequest) -> Iterator[None]:
    """Unit tests run Celery tasks inline; tiers with a real worker opt out."""
    if request.node.get_closest_marker("integration") or request.node.get_closest_marker(
        "real_worker"
    ):
        yield
        return
    try:
        from config.celery import app
    except Exception:  # noqa: BLE001 - evalcore/models_zoo tests run without Django
        yield
        return
    previous = app.conf.task_always_eager, app.conf.task_eager_propagates
    app.conf.task_always_eager = True
    app.conf.task_eager_propagates = True
    yield
    app.conf.task_always_eager, app.conf.task_eager_propagates = previous


@pytest.fixture
def postgres_and_redis() -> None:
    """The integration tier needs both services; under CI a missing one fails the test."""
    database_url = os.environ.get("DATABASE_URL")
    redis_url = os.environ.get("REDIS_URL")
    if not database_url or not database_url.startswith("postgres"):
        require_or_skip("DATABASE_URL does not point at PostgreSQL")
    if not service_reachable(database_url, 5432):
        require_or_skip(f"PostgreSQL is not reachable at {database_url}")
    if not service_reachable(redis_url, 6379):
        require_or_skip(f"Redis is not reachable at {redis_url}")


def _worker_env() -> dict[str, str]:
    """Environment for a worker process that shares this test session's database and broker."""
    from django.conf import settings
    from django.db import connection

    env = dict(os.environ)
    name = str(connection.settings_dict["NAME"])
    if connection.vendor == "sqlite":
        env["LADDER_SQLITE_PATH"] = name
        env["LADDER_BROKER_DIR"] = str(settings.BROKER_DIR)
        env.pop("DATABASE_URL", None)
    else:
        parsed = urlparse(os.environ["DATABASE_URL"])
        env["DATABASE_URL"] = parsed._replace(path=f"/{name}").geturl()
    env["LADDER_DEMO_MODE"] = "none"
    # The worker publishes with the listing rule this test session set (a test's small vote counts
    # would all be hidden under the production minimum of 1,000).
    min_votes = settings.LEADERBOARD_RATING_PARAMS.get("min_votes", settings.LEADERBOARD_MIN_VOTES)
    env["LADDER_LEADERBOARD_MIN_VOTES"] = str(min_votes)
    return env


def start_celery_worker(
    extra_env: dict[str, str] | None = None, name: str = "test-worker"
) -> subprocess.Popen[str]:
    """Start a real ``celery worker`` on both queues and wait until it reports ready."""
    import sys
    import threading
    from pathlib import Path

    celery = str(Path(sys.executable).with_name("celery"))
    process = subprocess.Popen(
        [celery, "-A", "config", "worker", "-Q", "default,models", "-c", "1", "--loglevel",
         "INFO", "--hostname", f"{name}-{os.getpid()}@%h", "--without-gossip", "--without-mingle"],
        env={**_worker_env(), **(extra_env or {})}, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    ready = threading.Event()
    log: list[str] = []

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            log.append(line)
            if " ready." in line:
                ready.set()

    threading.Thread(target=pump, daemon=True).start()
    if not ready.wait(90):
        os.killpg(process.pid, signal.SIGKILL)
        pytest.fail("celery worker did not start:\n" + "".join(log[-40:]))
    process.log = log  # type: ignore[attr-defined]
    return process


@pytest.fixture
def celery_worker_process(transactional_db: None) -> Iterator[subprocess.Popen[str]]:
    """A real ``celery worker`` subprocess on both queues, consuming through the real broker."""
    import shutil
    from pathlib import Path

    from django.conf import settings

    from config.celery import app

    if settings.CELERY_BROKER_URL.startswith("filesystem"):
        shutil.rmtree(settings.BROKER_DIR, ignore_errors=True)
        for key in ("data_folder_in", "processed_folder", "control_folder"):
            Path(settings.CELERY_BROKER_TRANSPORT_OPTIONS[key]).mkdir(parents=True, exist_ok=True)
    else:
        app.control.purge()
    process = start_celery_worker()
    yield process
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
