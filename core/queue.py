"""Queue a Celery task by its stable name, so a services module never imports its tasks module.

Tasks import the services they wrap; services queue work by name (``"arena.generate_answers"``),
which keeps the two apart (no import cycle). The signature resolves to the registered task, so
its options (queue, retries) and the unit tests' eager mode apply as with ``task.delay``.
"""

from __future__ import annotations

from typing import Any

from celery.result import AsyncResult

from config.celery import app


def enqueue(name: str, *args: Any, **kwargs: Any) -> AsyncResult[Any]:
    """``delay`` the task registered as ``name``.

    Raises:
        celery.exceptions.NotRegistered: no task has that name.
    """
    if name not in app.tasks:
        # Outside a worker nothing has imported the apps' tasks modules yet: import them the
        # way a worker does at start (``autodiscover_tasks``), once.
        app.loader.import_default_modules()
    task = app.tasks[name]  # a typo fails here, loudly, instead of queueing a lost message
    return task.delay(*args, **kwargs)
