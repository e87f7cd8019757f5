from __future__ import annotations

from collections.abc import Callable

import pytest
from django.contrib.auth.models import User
from django.test import Client

from leaderboard import publishing, tasks
from leaderboard.models import PublishJob, Release

pytestmark = pytest.mark.django_db


def test_beat_task_publishes_every_changed_board_once(
    counts: None, add_counts: Callable[..., None]
) -> None:
    add_counts([("alpha", "beta", 12, 3, 1, 0), ("beta", "gamma", 9, 4, 0, 1)], category="fr")
    assert tasks.publish_if_changed.delay().get() == [1, 1]
    assert tasks.publish_if_changed.delay().get() == []
    add_counts([("alpha", "beta", 1, 0, 0, 0)], category="fr")
    assert tasks.publish_if_changed.delay().get() == [2]
    assert set(Release.objects.values_list("category", "number")) == {("", 1), ("fr", 1), ("fr", 2)}


def test_beat_task_skips_a_board_that_cannot_be_rated_yet(
    counts: None, add_counts: Callable[..., None]
) -> None:
    add_counts([("alpha", "beta", 1, 0, 0, 0)], category="tiny")  # nobody reaches min_votes
    assert tasks.publish_if_changed.delay().get() == [1]
    assert not Release.objects.filter(category="tiny").exists()


def test_publish_job_task_is_idempotent(counts: None) -> None:
    job = PublishJob.objects.create()
    assert tasks.run_publish_job.delay(job.pk).get() == "published"
    assert tasks.run_publish_job.delay(job.pk).get() == "published"
    assert Release.objects.count() == 1


def test_beat_schedule_names_the_task() -> None:
    from django.conf import settings

    from config.celery import app

    assert (
        settings.CELERY_BEAT_SCHEDULE["publish-leaderboard"]["task"]
        == "leaderboard.publish_if_changed"
    )
    assert "leaderboard.publish_if_changed" in app.tasks
    assert app.amqp.router.route({}, "leaderboard.run_publish_job")["queue"].name == "default"


@pytest.fixture
def admin_client(client: Client) -> Client:
    user = User.objects.create_superuser("admin", "a@example.com", "pw")
    client.force_login(user)
    return client


def test_admin_publish_button_queues_a_job(
    admin_client: Client, counts: None, django_capture_on_commit_callbacks: Callable[..., object]
) -> None:
    assert b"Publish a release now" in admin_client.get("/admin/leaderboard/release/").content
    with django_capture_on_commit_callbacks(execute=True):  # type: ignore[attr-defined]
        response = admin_client.post("/admin/leaderboard/release/publish/", {"category": ""})
    assert response.status_code == 302
    assert PublishJob.objects.get().status == "published"
    assert Release.objects.get().number == 1


def test_admin_cannot_edit_or_delete_a_release(admin_client: Client, counts: None) -> None:
    release = publishing.publish_release()
    assert release is not None
    page = admin_client.get(f"/admin/leaderboard/release/{release.pk}/change/")
    assert page.status_code == 200 and b'name="_save"' not in page.content
    response = admin_client.post(
        f"/admin/leaderboard/release/{release.pk}/delete/", {"post": "yes"}
    )
    assert response.status_code == 403
    assert Release.objects.filter(pk=release.pk).exists()


def test_publish_command_reports_unchanged_the_second_time(counts: None) -> None:
    from io import StringIO

    from django.core.management import call_command

    out = StringIO()
    call_command("publish_release", stdout=out, stderr=StringIO())
    call_command("publish_release", stdout=out, stderr=StringIO())
    assert "published release 1" in out.getvalue() and "unchanged" in out.getvalue()
