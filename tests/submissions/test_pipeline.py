"""The evaluation pipeline: steps, leases, failures, accounting (eager, tiny model on CPU)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from contestants.models import Contestant
from evalcore.fewshot.data import POOL_FILES, TEST_FILE
from evalcore.fewshot.registry import get_task
from submissions import pipeline, services
from submissions.accounting import Prices, Usage, co2e_g, cost_usd, estimate_energy_kwh
from submissions.models import BenchmarkResult, EvaluationJob, JobStep
from tests.submissions.conftest import results_document

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fewglue_files(settings: Any, tmp_path: Path) -> None:
    """The plan needs the tasks' files to exist (not their content), wherever the checkout lies;
    the runner is replaced in each test that reaches it."""
    settings.LADDER_SUBMISSION_FEWSHOT_TASKS = ["cb", "rte"]
    settings.LADDER_FEWGLUE_DIR = str(tmp_path / "fewglue")
    for name in settings.LADDER_SUBMISSION_FEWSHOT_TASKS:
        folder = tmp_path / "fewglue" / get_task(name).directory
        folder.mkdir(parents=True)
        for file in (*POOL_FILES, TEST_FILE):
            (folder / file).touch()


@pytest.fixture
def fake_fewshot(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The runner itself is tested in tests/evalcore; here it returns a fixed document."""
    calls: list[list[str]] = []

    def run(model: Any, tasks: list[str], data_dir: Any, report: Any) -> dict[str, Any]:
        calls.append(tasks)
        report("task 1 of 2: cb")
        model.loglikelihood([("Is it", " yes"), ("Is it", " no"), ("Or", " maybe")])  # counted
        document = results_document()
        document["provenance"] = {"tokens_processed": 1234}
        return document

    monkeypatch.setattr(pipeline, "run_fewshot_tasks", run)
    return calls


@pytest.fixture
def job(tiny_checkpoint: Path, user: User) -> EvaluationJob:
    from submissions.checkpoint import inspect_checkpoint

    facts = inspect_checkpoint(tiny_checkpoint)
    contestant = Contestant.objects.create(
        name="tiny",
        checkpoint_path=str(tiny_checkpoint),
        owner=user,
        serving={"device": "cpu"},
        parameters=facts.parameters,
        training_tokens=600_000,
        weights_digest=facts.digest,
    )
    return services.create_job(contestant=contestant, user=user)


def run(job: EvaluationJob) -> str:
    return pipeline.run_evaluation(job_id=job.pk, worker="test", heartbeat=False)


def steps(job: EvaluationJob) -> dict[str, str]:
    return dict(JobStep.objects.filter(job=job).values_list("name", "status"))


def test_pipeline_runs_every_step_and_activates_the_model(
    job: EvaluationJob, fake_fewshot: list[list[str]]
) -> None:
    assert run(job) == "finished"
    job.refresh_from_db()
    assert job.status == "finished"
    assert steps(job) == {
        "validate": "finished",
        "load": "finished",
        "fewshot": "finished",
        "arena_answers": "finished",
        "activate": "finished",
    }
    contestant = Contestant.objects.get(pk=job.contestant_id)
    assert contestant.status == Contestant.Status.ACTIVE
    assert contestant.evaluation.fewshot_average == 0.525
    assert BenchmarkResult.objects.get().job_id == job.pk
    assert fake_fewshot == [["cb", "rte"]]
    fewshot = JobStep.objects.get(job=job, name="fewshot").outcome
    assert (fewshot["requests"], fewshot["tokens"]) == (3, 1234)
    assert fewshot["requests_per_s"] == pytest.approx(3 / fewshot["seconds"], rel=1e-9)
    assert "gpu_peak_mib" not in fewshot  # a CPU worker
    assert job.device == "cpu"
    assert job.wall_time_s > 0 and job.cpu_seconds > 0 and job.gpu_seconds == 0
    assert job.tokens_processed >= 1234
    assert job.energy_kwh > 0 and job.energy_source in ("rapl", "estimate", "nvml")
    assert contestant.evaluation.eval_cost_usd == pytest.approx(job.cost_usd)
    assert contestant.evaluation.eval_co2e_g == pytest.approx(job.co2e_g)
    assert contestant.evaluation.eval_energy_kwh == pytest.approx(job.energy_kwh)


def test_a_finished_job_is_not_run_twice(job: EvaluationJob, fake_fewshot: list[list[str]]) -> None:
    assert run(job) == "finished"
    assert run(job) == "not claimed"
    assert len(fake_fewshot) == 1
    assert BenchmarkResult.objects.count() == 1


def test_a_job_held_by_a_live_worker_is_not_claimed(job: EvaluationJob) -> None:
    assert services.claim_job(job_id=job.pk, worker="first") is not None
    assert services.claim_job(job_id=job.pk, worker="second") is None


def test_a_stale_lease_is_resumed_without_repeating_finished_steps(
    job: EvaluationJob, fake_fewshot: list[list[str]], settings: Any
) -> None:
    token = services.claim_job(job_id=job.pk, worker="dead")
    assert token is not None
    JobStep.objects.filter(job=job, name="validate").update(status="finished", attempts=1)
    JobStep.objects.filter(job=job, name="load").update(status="running", attempts=1)
    EvaluationJob.objects.filter(pk=job.pk).update(
        heartbeat_at=timezone.now() - timedelta(seconds=settings_lease(settings) + 5)
    )
    assert run(job) == "finished"
    attempts = dict(JobStep.objects.filter(job=job).values_list("name", "attempts"))
    assert attempts == {"validate": 1, "load": 2, "fewshot": 1, "arena_answers": 1, "activate": 1}
    assert EvaluationJob.objects.get(pk=job.pk).attempts == 2


def settings_lease(settings: Any) -> int:
    settings.LADDER_JOB_LEASE_S = 30
    return 30


def test_requeue_sends_stale_running_jobs_again(
    job: EvaluationJob, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[int] = []
    monkeypatch.setattr("submissions.tasks.evaluate.delay", lambda job_id: sent.append(job_id))
    settings.LADDER_JOB_LEASE_S = 30
    services.claim_job(job_id=job.pk, worker="dead")
    assert services.requeue_stale_jobs() == []
    old = timezone.now() - timedelta(seconds=60)
    EvaluationJob.objects.filter(pk=job.pk).update(heartbeat_at=old)
    assert services.requeue_stale_jobs() == [job.pk]
    assert EvaluationJob.objects.get(pk=job.pk).status == "queued"
    assert services.requeue_stale_jobs() == []  # a fresh "requeued at" heartbeat


def test_a_job_that_keeps_losing_its_worker_fails_with_a_reason(
    job: EvaluationJob, settings: Any
) -> None:
    settings.LADDER_JOB_MAX_ATTEMPTS = 1
    EvaluationJob.objects.filter(pk=job.pk).update(attempts=1)
    assert run(job) == "not claimed"
    job.refresh_from_db()
    assert job.status == "failed" and "attempts" in job.reason


def test_changed_weights_fail_validation_and_the_model_never_enters_the_arena(
    job: EvaluationJob,
) -> None:
    Contestant.objects.filter(pk=job.contestant_id).update(weights_digest="0" * 64)
    assert run(job) == "failed"
    job.refresh_from_db()
    assert (job.status, job.failed_step) == ("failed", "validate")
    assert "digest" in job.reason
    assert steps(job)["validate"] == "failed"
    assert steps(job)["activate"] == "pending"
    assert Contestant.objects.get(pk=job.contestant_id).status == Contestant.Status.FAILED
    assert job.wall_time_s > 0  # accounting is kept for failed jobs too


def test_a_failing_step_records_its_error_as_the_reason(
    job: EvaluationJob, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(model: Any, *args: Any) -> dict[str, Any]:
        raise RuntimeError("CUDA out of memory")

    monkeypatch.setattr(pipeline, "run_fewshot_tasks", broken)
    assert run(job) == "failed"
    job.refresh_from_db()
    assert job.failed_step == "fewshot"
    assert job.reason == "RuntimeError: CUDA out of memory"
    assert Contestant.objects.get(pk=job.contestant_id).status == Contestant.Status.FAILED


def test_missing_fewshot_data_is_a_recorded_skip(
    job: EvaluationJob, settings: Any, tmp_path: Path
) -> None:
    settings.LADDER_FEWGLUE_DIR = str(tmp_path / "absent")
    assert run(job) == "finished"
    step = JobStep.objects.get(job=job, name="fewshot")
    assert step.status == "skipped"
    assert "not found" in step.detail and "LADDER_FEWGLUE_DIR" in step.detail
    assert Contestant.objects.get(pk=job.contestant_id).status == Contestant.Status.ACTIVE


def test_a_cancelled_job_is_not_run(job: EvaluationJob, user: User) -> None:
    services.cancel_model(name="tiny", user=user)
    assert run(job) == "not claimed"
    assert steps(job)["validate"] == "pending"


def test_cancel_during_a_step_stops_the_job_at_the_step_boundary(
    job: EvaluationJob, user: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    def cancel_meanwhile(model: Any, *args: Any) -> dict[str, Any]:
        services.cancel_model(name="tiny", user=user)
        return results_document()

    monkeypatch.setattr(pipeline, "run_fewshot_tasks", cancel_meanwhile)
    assert run(job) == "lease lost"
    job.refresh_from_db()
    assert job.status == "failed" and job.reason == "cancelled by the owner"
    assert Contestant.objects.get(pk=job.contestant_id).status == Contestant.Status.FAILED


def test_arena_step_answers_every_pooled_prompt_once(
    job: EvaluationJob, fake_fewshot: list[list[str]], settings: Any
) -> None:
    from arena.models import PooledAnswer, Prompt, PromptSet

    settings.ARENA_MAX_NEW_TOKENS = 4
    pool = PromptSet.objects.create(name="pool")
    for text in ("Hello?", "What is two plus two?"):
        Prompt.objects.create(prompt_set=pool, text=text, digest=text)
    assert run(job) == "finished"
    answers = PooledAnswer.objects.filter(contestant_id=job.contestant_id)
    assert answers.count() == 2
    assert all(1 <= answer.generation["new_tokens"] <= 4 for answer in answers)
    outcome = JobStep.objects.get(job=job, name="arena_answers").outcome
    assert outcome["answers"] == 2
    assert outcome["new_tokens"] == sum(answer.generation["new_tokens"] for answer in answers)
    assert outcome["new_tokens_per_s"] > 0 and outcome["seconds"] >= 0
    run_again = pipeline.Run(job.pk, "x", job.contestant, pipeline.Meter(pipeline.prices()))
    assert pipeline.arena_answers_step(run_again).data["answers"] == 0  # idempotent


def test_evaluate_task_runs_the_pipeline_in_eager_mode(
    job: EvaluationJob, fake_fewshot: list[list[str]]
) -> None:
    from submissions.tasks import evaluate

    assert evaluate.delay(job.pk).get() == "finished"


def test_fewshot_task_stores_results_for_an_existing_contestant(
    job: EvaluationJob, fake_fewshot: list[list[str]]
) -> None:
    from submissions.tasks import evaluate_fewshot

    result_id = evaluate_fewshot.delay(job.contestant_id).get()
    assert BenchmarkResult.objects.get(pk=result_id).source == "pipeline"
    assert evaluate_fewshot.delay(10**9).get() is None


PRICES = Prices(100.0, 300.0, 0.10, 2.0, grid_g_per_kwh=400.0, pue=1.5)


def test_cost_prices_cpu_and_gpu_hours() -> None:
    usage = Usage(3600, cpu_seconds=7200, gpu_seconds=1800, energy_kwh=0, energy_source="")
    assert cost_usd(usage, PRICES) == pytest.approx(2 * 0.10 + 0.5 * 2.0)


def test_co2e_applies_pue_and_grid_intensity() -> None:
    assert co2e_g(2.0, PRICES) == pytest.approx(2.0 * 1.5 * 400.0)


def test_energy_estimate_uses_configured_watts() -> None:
    assert estimate_energy_kwh(3600, False, PRICES) == pytest.approx(0.1)
    assert estimate_energy_kwh(3600, True, PRICES) == pytest.approx(0.4)


def test_meter_labels_an_estimate_when_no_counter_is_readable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from submissions import accounting

    monkeypatch.setattr(accounting, "_nvml_handles", lambda: None)
    monkeypatch.setattr(accounting, "_rapl_microjoules", lambda: None)
    usage = accounting.Meter(PRICES).start().stop(uses_gpu=False)
    assert usage.energy_source == "estimate"


def test_meter_reads_rapl_and_handles_wraparound(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from submissions import accounting

    readings = iter([999_000_000, 1_000_000])
    monkeypatch.setattr(accounting, "_nvml_handles", lambda: None)
    monkeypatch.setattr(accounting, "_rapl_microjoules", lambda: next(readings))
    (tmp_path / "range").write_text("1000000000")
    monkeypatch.setattr(accounting, "RAPL_RANGE", tmp_path / "range")
    usage = accounting.Meter(PRICES).start().stop(uses_gpu=False)
    assert usage.energy_source == "rapl"
    assert usage.energy_kwh == pytest.approx(2.0 / 3.6e6)
