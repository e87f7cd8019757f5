"""PostgreSQL + Redis + a real celery worker: publishing through the broker, and concurrency."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from django.db import connection
from django.test import Client

from leaderboard import publishing
from leaderboard.models import PublishJob, Release

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_staff_publish_runs_on_a_real_worker(
    postgres_and_redis: None,
    celery_worker_process: Any,
    counts: None,
    staff_token: str,
    client: Client,
) -> None:
    response = client.post(
        "/api/leaderboards/publish",
        {},
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Token {staff_token}",
    )
    assert response.status_code == 202
    job_id = response.json()["id"]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        job = PublishJob.objects.get(pk=job_id)
        if job.status not in ("queued", "running"):
            break
        time.sleep(0.2)
    assert job.status == "published", (
        job.error_code,
        job.message,
        "".join(celery_worker_process.log[-30:]),
    )
    assert client.get("/leaderboard/latest.csv").content == job.release.csv_text.encode()


def test_concurrent_publishers_get_distinct_numbers(postgres_and_redis: None, counts: None) -> None:
    numbers: list[int] = []
    errors: list[BaseException] = []

    def publish() -> None:
        try:
            release = publishing.publish_release(force=True)
            assert release is not None
            numbers.append(release.number)
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=publish) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and sorted(numbers) == [1, 2, 3]


def test_concurrent_unforced_publishers_publish_one_release(
    postgres_and_redis: None, counts: None
) -> None:
    results: list[Release | None] = []

    def run() -> None:
        try:
            results.append(publishing.publish_release())
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(r is not None for r in results) == 1
    assert Release.objects.count() == 1


def test_release_reproduces_on_postgresql(postgres_and_redis: None, counts: None) -> None:
    release = publishing.publish_release()
    assert release is not None
    assert publishing.verify_release(release=Release.objects.get(pk=release.pk)).ok


def test_elo_release_reproduces_on_postgresql(
    postgres_and_redis: None, imported_votes: None
) -> None:
    release = publishing.publish_release(params=publishing.default_params(method="elo"))
    assert release is not None
    assert publishing.verify_release(release=Release.objects.get(pk=release.pk)).ok


def test_elo_log_position_waits_for_a_vote_still_being_written(
    postgres_and_redis: None, imported_votes: None
) -> None:
    """A vote that has its id but has not committed yet must not fall below a release's
    last vote id unseen (a later verification would then replay it)."""
    from django.db import transaction

    from arena.dumps import import_battles
    from leaderboard.models import Outcome
    from leaderboard.publishing import settled_position
    from tests.leaderboard.votes import battles

    inserted, commit = threading.Event(), threading.Event()
    positions: list[tuple[int, int | None]] = []

    def slow_vote() -> None:
        try:
            with transaction.atomic():
                import_battles(battles(1, seed=99))
                inserted.set()
                commit.wait(10)
        finally:
            connection.close()

    def read_position() -> None:
        try:
            positions.append(settled_position())
        finally:
            connection.close()

    voter, reader = threading.Thread(target=slow_vote), threading.Thread(target=read_position)
    voter.start()
    assert inserted.wait(10)
    reader.start()
    reader.join(0.5)
    still_waiting = reader.is_alive()
    commit.set()
    voter.join()
    reader.join()
    assert still_waiting
    assert positions == [Outcome.objects.position()] and positions[0][0] == 501
