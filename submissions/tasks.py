"""Celery wrappers: take ids, call one service, decide nothing else (all on the models queue)."""

from __future__ import annotations

import os
import socket

from celery import shared_task

from contestants.models import Contestant


def _worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@shared_task(name="submissions.evaluate", bind=True, acks_late=True)
def evaluate(self: object, job_id: int) -> str:
    """Run a job's remaining pipeline steps (idempotent: a finished or leased job is left alone)."""
    from submissions.pipeline import run_evaluation

    eager = bool(getattr(getattr(self, "request", None), "is_eager", False))
    return run_evaluation(job_id=job_id, worker=_worker_name(), heartbeat=not eager)


@shared_task(name="submissions.requeue_stale_jobs")
def requeue_stale_jobs() -> list[int]:
    """Periodic: send again the jobs whose worker died mid-job (their lease went stale)."""
    from submissions.services import requeue_stale_jobs as requeue

    return requeue()


@shared_task(name="fewshot.evaluate_contestant", acks_late=True)
def evaluate_fewshot(contestant_id: int) -> int | None:
    """Run the few-shot benchmarks for an existing contestant and store the result's id."""
    from submissions.pipeline import run_fewshot_for

    contestant = Contestant.objects.filter(pk=contestant_id).first()
    if contestant is None:
        return None
    return run_fewshot_for(contestant)
