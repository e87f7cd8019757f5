from __future__ import annotations

from typing import Any

import pytest
from django.test import Client


@pytest.mark.django_db
def test_healthz_is_200_when_database_and_broker_answer(client: Client) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


@pytest.mark.django_db
def test_healthz_is_503_naming_the_broker_when_it_is_down(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    from config.celery import app

    # A Redis broker on a closed port: the check must fail fast and name the broker.
    monkeypatch.setattr(app.conf, "broker_url", "redis://127.0.0.1:9/0")
    response = client.get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["failed"] == ["broker"]
    assert "broker" in body["reasons"]


@pytest.mark.django_db
def test_healthz_is_503_naming_the_database_when_it_is_down(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    from django.db import connections

    def refuse(*args: object, **kwargs: object) -> None:
        raise connections["default"].Database.OperationalError("connection refused (port 9)")

    monkeypatch.setattr(connections["default"], "cursor", refuse)
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["failed"] == ["database"]


def test_home_page_links_to_arena_leaderboard_and_api_docs(client: Client) -> None:
    html = client.get("/").content.decode()
    for link in ('href="/arena/"', 'href="/leaderboard/"', 'href="/api/docs/"'):
        assert link in html


@pytest.mark.django_db
def test_api_docs_and_schema_are_served(client: Client) -> None:
    assert client.get("/api/schema/").status_code == 200
    assert client.get("/api/docs/").status_code == 200


@pytest.mark.django_db
def test_unknown_worker_ping_is_404_with_error_code(client: Client) -> None:
    response = client.get("/api/worker-pings/999999")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


@pytest.mark.django_db
def test_worker_ping_runs_through_celery_in_eager_mode(client: Client) -> None:
    created = client.post("/api/worker-pings")
    assert created.status_code == 201
    detail = client.get(f"/api/worker-pings/{created.json()['id']}").json()
    assert detail["handled_at"] is not None


def test_worker_ping_hides_pid_and_host_from_non_staff(client: Client, db: None) -> None:
    from django.contrib.auth.models import User

    created = client.post("/api/worker-pings").json()
    assert set(created) == {"id", "created_at", "handled_at"}
    staff = User.objects.create_user("ops", is_staff=True)
    client.force_login(staff)
    detail = client.get(f"/api/worker-pings/{created['id']}").json()
    assert {"worker_pid", "worker_hostname", "sender_pid"} <= set(detail)


def test_anonymous_worker_pings_are_rate_limited(client: Client, db: None, settings: Any) -> None:
    import uuid

    settings.LADDER_WORKER_PING_RATE = "2/minute"
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": f"ping-{uuid.uuid4()}",
        }
    }
    from core.models import WorkerPing

    answers = [client.post("/api/worker-pings") for _ in range(3)]
    assert [a.status_code for a in answers] == [201, 201, 429]
    assert answers[2].json()["error"]["code"] == "rate_limited"
    assert WorkerPing.objects.count() == 2
