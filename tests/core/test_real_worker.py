"""A task sent by the web side is executed by a separate `celery worker` process."""

from __future__ import annotations

import os
import subprocess
import time

import pytest
from django.test import Client

from core.models import WorkerPing


def wait_for_ping(ping_id: int, timeout: float = 60) -> WorkerPing:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        probe = WorkerPing.objects.get(pk=ping_id)
        if probe.is_handled:
            return probe
        time.sleep(0.2)
    raise AssertionError(f"ping {ping_id} was not handled within {timeout}s")


def send_ping_and_check(client: Client, worker: subprocess.Popen[str]) -> None:
    response = client.post("/api/worker-pings")
    assert response.status_code == 201
    probe = wait_for_ping(response.json()["id"])
    assert probe.worker_pid != os.getpid()
    assert probe.worker_pid is not None
    assert worker.poll() is None


@pytest.mark.real_worker
def test_embedded_default_worker_executes_task_through_filesystem_broker(
    celery_worker_process: subprocess.Popen[str],
) -> None:
    from django.conf import settings

    if os.environ.get("DATABASE_URL"):
        pytest.skip("the embedded-default test runs in the unit tier (SQLite)")
    assert settings.CELERY_BROKER_URL == "filesystem://"
    send_ping_and_check(Client(), celery_worker_process)


@pytest.mark.integration
def test_worker_executes_task_through_redis_with_postgres(
    postgres_and_redis: None, celery_worker_process: subprocess.Popen[str]
) -> None:
    from django.conf import settings
    from django.db import connection

    assert connection.vendor == "postgresql"
    assert settings.CELERY_BROKER_URL.startswith("redis://")
    send_ping_and_check(Client(), celery_worker_process)


@pytest.mark.integration
@pytest.mark.django_db
def test_healthz_is_200_against_postgres_and_redis(
    postgres_and_redis: None, client: Client
) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200, response.content


@pytest.mark.integration
@pytest.mark.django_db
def test_healthz_is_503_when_redis_port_is_closed(
    postgres_and_redis: None, client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    from config.celery import app

    monkeypatch.setattr(app.conf, "broker_url", "redis://127.0.0.1:9/0")
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["failed"] == ["broker"]
