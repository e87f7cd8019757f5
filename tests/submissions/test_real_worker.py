"""A worker killed mid-job: the job is picked up again by a new worker and finishes once.

kombu's filesystem transport deletes a message when a worker takes it, so a worker killed with
SIGKILL loses it (Redis would redeliver it only after its visibility timeout). The job's lease
goes stale instead, and ``requeue_stale_jobs`` (run periodically by beat) sends it again.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from contestants.models import Contestant
from submissions import services
from submissions.models import EvaluationJob, JobStep
from tests.conftest import start_celery_worker

LEASE_S = 3


def kill(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(20)


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def workers() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for process in started:
        kill(process)


def clean_broker() -> None:
    from django.conf import settings

    from config.celery import app

    if settings.CELERY_BROKER_URL.startswith("filesystem"):
        shutil.rmtree(settings.BROKER_DIR, ignore_errors=True)
        for key in ("data_folder_in", "processed_folder", "control_folder"):
            Path(settings.CELERY_BROKER_TRANSPORT_OPTIONS[key]).mkdir(parents=True, exist_ok=True)
    else:
        app.control.purge()


def killed_worker_job_finishes_once(
    tiny_checkpoint: Path, workers: list[subprocess.Popen[str]], settings: Any
) -> None:
    from submissions.checkpoint import inspect_checkpoint
    from submissions.tasks import evaluate

    clean_broker()
    settings.LADDER_JOB_LEASE_S = LEASE_S
    facts = inspect_checkpoint(tiny_checkpoint)
    contestant = Contestant.objects.create(
        name="killed", checkpoint_path=str(tiny_checkpoint), serving={"device": "cpu"},
        parameters=facts.parameters, weights_digest=facts.digest,
    )  # fmt: skip
    job = services.create_job(contestant=contestant, user=None)
    common = {"LADDER_JOB_LEASE_S": str(LEASE_S), "LADDER_FEWGLUE_DIR": "/nonexistent-fewglue"}
    workers.append(
        start_celery_worker({**common, "LADDER_SUBMISSION_STEP_DELAY_S": "120"}, "doomed")
    )
    evaluate.delay(job.pk)

    def load_started() -> bool:
        return JobStep.objects.filter(job=job, name="load", status="running").exists()

    wait_for(load_started, 60, "the load step to start")
    kill(workers[0])
    time.sleep(LEASE_S + 1)
    assert EvaluationJob.objects.get(pk=job.pk).status == "running"  # nobody finishes it alone
    workers.append(start_celery_worker(common, "rescuer"))
    assert services.requeue_stale_jobs() == [job.pk]

    def finished() -> bool:
        return EvaluationJob.objects.get(pk=job.pk).is_done

    wait_for(finished, 120, "the job to finish on the second worker")
    job.refresh_from_db()
    assert (job.status, job.reason) == ("finished", ""), "".join(workers[1].log[-30:])  # type: ignore[attr-defined]
    assert job.attempts == 2
    attempts = dict(JobStep.objects.filter(job=job).values_list("name", "attempts"))
    assert attempts == {"validate": 1, "load": 2, "fewshot": 1, "arena_answers": 1, "activate": 1}
    assert JobStep.objects.get(job=job, name="fewshot").status == "skipped"
    assert Contestant.objects.get(pk=contestant.pk).status == Contestant.Status.ACTIVE
    assert services.requeue_stale_jobs() == []


@pytest.mark.real_worker
def test_job_of_a_killed_worker_finishes_once_on_a_new_worker(
    transactional_db: None, tiny_checkpoint: Path, workers: list[Any], settings: Any
) -> None:
    if os.environ.get("DATABASE_URL"):
        pytest.skip("the embedded-default test runs in the unit tier (SQLite)")
    killed_worker_job_finishes_once(tiny_checkpoint, workers, settings)


@pytest.mark.integration
def test_job_of_a_killed_worker_finishes_once_with_postgres_and_redis(
    postgres_and_redis: None,
    transactional_db: None,
    tiny_checkpoint: Path,
    workers: list[Any],
    settings: Any,
) -> None:
    killed_worker_job_finishes_once(tiny_checkpoint, workers, settings)
