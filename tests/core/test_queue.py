from __future__ import annotations

import pytest
from celery.exceptions import NotRegistered

from core.models import WorkerPing
from core.queue import enqueue


@pytest.mark.django_db
def test_enqueue_runs_the_task_registered_under_its_name() -> None:
    ping = WorkerPing.objects.create(sender_pid=1)
    enqueue("core.ping", ping.pk)
    ping.refresh_from_db()
    assert ping.handled_at is not None and ping.worker_pid


def test_enqueue_of_an_unknown_name_raises_not_registered() -> None:
    with pytest.raises(NotRegistered):
        enqueue("arena.no_such_task")
