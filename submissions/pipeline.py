"""The evaluation pipeline, run by a worker on the ``models`` queue.

validate → load → fewshot → arena_answers → activate. A step that finished (or was skipped) in
an earlier attempt is not run again, and each step is safe to repeat, so a job whose worker died
is simply run again by the next worker that takes its lease. Every state change is made with
the lease token: a worker that lost its lease (cancelled, or presumed dead and requeued) stops
at the next step boundary without touching the job. The contestant becomes active only in the
last step, in the transaction that also records the job's accounting.

torch and ``models_zoo`` are imported inside the step functions only.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from contestants.models import Contestant
from contestants.services import record_evaluation
from core.exceptions import DomainError
from submissions.accounting import Meter, Prices, Usage, co2e_g, cost_usd
from submissions.checkpoint import CheckpointFacts, inspect_checkpoint
from submissions.gguf import CONVERTED_NAME, GGUF_NAME, convert_gguf
from submissions.models import PIPELINE_STEPS, BenchmarkResult, EvaluationJob, JobStep
from submissions.services import (
    card_facts,
    check_unique_weights,
    claim_job,
    discard_upload,
    fail_job,
    store_benchmark_result,
    unpack_upload,
    upload_path,
)

logger = logging.getLogger(__name__)


class LeaseLost(Exception):
    """Another worker or a cancellation took the job; stop without touching it."""


@dataclass
class Outcome:
    detail: str
    data: dict[str, Any] = field(default_factory=dict)
    skipped: bool = False


@dataclass
class Run:
    job_id: int
    token: str
    contestant: Contestant
    meter: Meter
    model: Any = None
    tokens: int = 0
    device: str = ""
    accounted: bool = False

    def served_model(self) -> Any:
        if self.model is None:
            self.model = _load_model(self.contestant)
            self.device = str(self.model.device)
        return self.model

    def owns_job(self) -> bool:
        return EvaluationJob.objects.filter(
            pk=self.job_id, lease_token=self.token, status=EvaluationJob.Status.RUNNING
        ).exists()

    def update_job(self, **values: Any) -> None:
        updated = EvaluationJob.objects.filter(
            pk=self.job_id, lease_token=self.token, status=EvaluationJob.Status.RUNNING
        ).update(**values)
        if not updated:
            raise LeaseLost(self.job_id)

    def progress(self, step: str, detail: str) -> None:
        JobStep.objects.filter(job_id=self.job_id, name=step).update(detail=detail[:2000])
        self.update_job(heartbeat_at=timezone.now())


def prices() -> Prices:
    return Prices(
        cpu_power_w=float(settings.LADDER_CPU_POWER_W),
        gpu_power_w=float(settings.LADDER_GPU_POWER_W),
        price_cpu_hour_usd=float(settings.LADDER_PRICE_CPU_HOUR_USD),
        price_gpu_hour_usd=float(settings.LADDER_PRICE_GPU_HOUR_USD),
        grid_g_per_kwh=float(settings.LADDER_GRID_INTENSITY_G_PER_KWH),
        pue=float(settings.LADDER_PUE),
    )


def run_evaluation(*, job_id: int, worker: str, heartbeat: bool = True) -> str:
    """Run the job's remaining steps if this worker gets its lease; returns what happened."""
    token = claim_job(job_id=job_id, worker=worker)
    if token is None:
        return "not claimed"
    job = EvaluationJob.objects.select_related("contestant").get(pk=job_id)
    run = Run(job_id, token, job.contestant, Meter(prices()).start())
    beat = Heartbeat(run) if heartbeat else None
    try:
        for step in job.steps.exclude(status__in=(JobStep.Status.FINISHED, JobStep.Status.SKIPPED)):
            run_step(run, step.name)
        return "finished"
    except LeaseLost:
        logger.warning("job %s: lease lost, stopping", job_id)
        return "lease lost"
    except StepFailed as failure:
        fail_job(job, step=failure.step, reason=failure.reason)
        return "failed"
    finally:
        if beat is not None:
            beat.stop()
        if not run.accounted:
            record_usage(run, run.meter.stop(uses_gpu=run.device.startswith("cuda")))


class StepFailed(Exception):
    def __init__(self, step: str, reason: str) -> None:
        super().__init__(f"{step}: {reason}")
        self.step, self.reason = step, reason


def run_step(run: Run, name: str) -> None:
    now = timezone.now()
    with transaction.atomic():
        run.update_job(current_step=name, heartbeat_at=now)
        JobStep.objects.filter(job_id=run.job_id, name=name).update(
            status=JobStep.Status.RUNNING,
            started_at=now,
            finished_at=None,
            attempts=F("attempts") + 1,
            detail="",
        )
    cuda = _gpu_peak_counter()
    try:
        outcome = STEPS[name](run)
        if cuda is not None:
            outcome.data["gpu_peak_mib"] = round(cuda.max_memory_allocated() / 2**20, 1)
    except (LeaseLost, StepFailed):
        raise
    except Exception as error:  # noqa: BLE001 - any step error fails the job with its reason
        logger.exception("job %s: step %s failed", run.job_id, name)
        raise StepFailed(name, f"{type(error).__name__}: {error}") from error
    with transaction.atomic():
        if not run.owns_job() and name != "activate":
            raise LeaseLost(run.job_id)
        JobStep.objects.filter(job_id=run.job_id, name=name).update(
            status=JobStep.Status.SKIPPED if outcome.skipped else JobStep.Status.FINISHED,
            finished_at=timezone.now(),
            detail=outcome.detail[:2000],
            outcome=outcome.data,
        )


def _gpu_peak_counter() -> Any:
    """``torch.cuda`` with its peak-memory counter reset, on a GPU worker; else None."""
    if not str(settings.LADDER_WORKER_DEVICE).startswith("cuda"):
        return None
    import torch  # worker side only; the web process never runs a step

    if not torch.cuda.is_available():
        return None
    torch.cuda.reset_peak_memory_stats()
    return torch.cuda


def validate_step(run: Run) -> Outcome:
    """Unpack a waiting upload, check its limits and weights, and hash them (once, here).

    A refusal fails the job with its code first in the reason (``unsafe_path: ...``), as the
    request would have answered it, and removes the refused files.
    """
    directory = Path(run.contestant.checkpoint_path)
    try:
        model_directory = unpack_upload(directory)
        facts = inspect_checkpoint(model_directory, field="checkpoint_path")
        if run.contestant.weights_digest and facts.digest != run.contestant.weights_digest:
            raise StepFailed("validate", "the weights changed since submission (digest differs)")
        check_unique_weights(run.contestant, facts.digest)
        if facts.weight_files == (GGUF_NAME,):
            facts = convert_submitted_gguf(run, facts)
            model_directory = facts.directory
    except DomainError as refusal:
        discard_upload(directory)
        raise StepFailed("validate", f"{refusal.code}: {refusal.message}") from None
    card = {**run.contestant.model_card, **card_facts(facts)}
    Contestant.objects.filter(pk=run.contestant.pk).update(
        parameters=facts.parameters,
        weights_digest=facts.digest,
        checkpoint_path=str(model_directory),
        model_card=card,
    )
    run.contestant.checkpoint_path = str(model_directory)
    upload = upload_path(directory)
    if upload is not None:  # unpacked and recorded: a retry reads the folder
        upload.unlink(missing_ok=True)
    data = {"parameters": facts.parameters, "architecture": facts.architecture}
    return Outcome(f"{facts.architecture}, {facts.parameters:,} parameters", data)


def convert_submitted_gguf(run: Run, facts: CheckpointFacts) -> CheckpointFacts:
    """Convert a GGUF upload to a safetensors folder beside it and point the contestant there.

    The GGUF digest stays in the model card; the contestant's digest becomes the converted
    folder's, in the same update as its path, so a retry validates the folder it points at.
    """
    run.progress("validate", f"converting {GGUF_NAME} ({facts.architecture}) to safetensors")
    target = convert_gguf(facts.directory / GGUF_NAME, facts.directory / CONVERTED_NAME)
    converted = inspect_checkpoint(target, field="checkpoint_path")
    card = {**run.contestant.model_card, "source_format": "gguf", "gguf_digest": facts.digest}
    Contestant.objects.filter(pk=run.contestant.pk).update(
        checkpoint_path=str(target), weights_digest=converted.digest, model_card=card
    )
    run.contestant.checkpoint_path = str(target)
    run.contestant.weights_digest = converted.digest
    run.contestant.model_card = card
    return converted


def load_step(run: Run) -> Outcome:
    delay = float(settings.LADDER_SUBMISSION_STEP_DELAY_S)
    if delay > 0:  # test hook: a window in which to kill the worker
        run.progress("load", f"waiting {delay:g} s (LADDER_SUBMISSION_STEP_DELAY_S)")
        time.sleep(delay)
    started = time.monotonic()
    model = run.served_model()
    seconds = time.monotonic() - started
    run.update_job(device=run.device)
    data = {"device": run.device, "num_parameters": model.num_parameters, "load_s": seconds}
    return Outcome(f"loaded on {run.device} in {seconds:.1f} s", data)


def _load_model(contestant: Contestant) -> Any:
    from models_zoo.serving import load

    options = contestant.serving_options.with_worker_defaults(
        device=settings.LADDER_WORKER_DEVICE, quantize_int8=settings.LADDER_WORKER_QUANTIZE_INT8
    )
    return load(contestant.checkpoint_path, **options.load_arguments())


def fewshot_step(run: Run) -> Outcome:
    if BenchmarkResult.objects.filter(job_id=run.job_id).exists():
        return Outcome("results already stored by an earlier attempt")
    data_dir, tasks, reason = fewshot_plan()
    if not tasks:
        return Outcome(f"skipped: {reason}", {"reason": reason}, skipped=True)
    model = fewshot_model(run.served_model())
    started = time.monotonic()
    document = run_fewshot_tasks(model, tasks, data_dir, lambda text: run.progress("fewshot", text))
    seconds = time.monotonic() - started
    job = EvaluationJob.objects.get(pk=run.job_id)
    result = store_benchmark_result(
        contestant=run.contestant, document=document, source="pipeline", job=job
    )
    work = int(document.get("provenance", {}).get("tokens_processed") or 0)
    run.tokens += work
    average = "n/a" if result.average is None else f"{result.average:.3f}"
    data = {"tasks": tasks, **_rates("requests", model.requests_scored, seconds)}
    data.update(_rates("tokens", work, seconds))
    return Outcome(f"{len(tasks)} tasks, average {average}", data)


def _rates(what: str, count: int, seconds: float) -> dict[str, Any]:
    """``{what: count, "seconds": s, what_per_s: rate}`` for a step's recorded outcome."""
    return {what: count, "seconds": seconds, f"{what}_per_s": count / max(seconds, 1e-9)}


def run_fewshot_for(contestant: Contestant) -> int | None:
    """The ``fewshot.*`` task's body: benchmark an existing contestant outside a job."""
    data_dir, tasks, reason = fewshot_plan()
    if not tasks:
        logger.warning("few-shot run for %s skipped: %s", contestant.name, reason)
        return None
    model = fewshot_model(_load_model(contestant))
    document = run_fewshot_tasks(model, tasks, data_dir, lambda text: logger.info("%s", text))
    result = store_benchmark_result(contestant=contestant, document=document, source="pipeline")
    return result.pk


def fewshot_plan() -> tuple[Path | None, list[str], str]:
    """The data folder and the tasks to run, or the reason there are none."""
    from evalcore.fewshot.data import task_available
    from evalcore.fewshot.registry import get_task
    from evalcore.fewshot.schema import FEWNLU_TASKS

    configured = settings.LADDER_FEWGLUE_DIR
    data_dir = Path(configured) if configured else None
    if data_dir is None or not data_dir.is_dir():
        return None, [], f"FewGLUE data folder {str(data_dir)!r} not found (LADDER_FEWGLUE_DIR)"
    wanted = list(settings.LADDER_SUBMISSION_FEWSHOT_TASKS) or list(FEWNLU_TASKS)
    tasks = [name for name in wanted if task_available(get_task(name), data_dir)]
    if not tasks:
        return data_dir, [], f"none of the tasks {wanted} has data under {data_dir}"
    return data_dir, tasks, ""


def run_fewshot_tasks(
    model: Any, tasks: list[str], data_dir: Path | None, report: Callable[[str], None]
) -> dict[str, Any]:
    """Run the tasks one by one (reporting progress), merged into one results document."""
    from evalcore.fewshot.runner import average, run_fewshot

    limit = int(settings.LADDER_SUBMISSION_FEWSHOT_LIMIT) or None
    splits = int(settings.LADDER_SUBMISSION_FEWSHOT_SPLITS)
    merged: dict[str, Any] | None = None
    tokens = 0
    for index, name in enumerate(tasks):
        report(f"task {index + 1} of {len(tasks)}: {name}")
        document = run_fewshot(
            model, tasks=[name], splits=splits, seed=0, data_dir=data_dir, limit=limit
        )
        tokens += int(document.get("provenance", {}).get("tokens_processed") or 0)
        if merged is None:
            merged = document
        else:
            merged["tasks"].update(document["tasks"])
    assert merged is not None  # tasks is not empty
    merged["average"] = average(merged["tasks"])
    merged.setdefault("provenance", {})["tokens_processed"] = tokens
    return merged


def fewshot_model(served: Any) -> Any:
    """The few-shot runner's view of a served model (``models_zoo.fewshot_lm.FewshotLM``)."""
    from models_zoo.fewshot_lm import FewshotLM

    return FewshotLM(served)


ARENA_BATCH = 16


def arena_answers_step(run: Run) -> Outcome:
    """Answers to every pooled prompt, so pool-mode battles can include the model at once."""
    from arena.models import Prompt
    from arena.services import answer_pooled_prompts  # worker side: imports models_zoo

    missing = list(Prompt.objects.order_by("id").exclude(answers__contestant=run.contestant))
    new_tokens, seconds = 0, 0.0
    for start in range(0, len(missing), ARENA_BATCH):
        run.progress("arena_answers", f"{start} of {len(missing)} pooled prompts answered")
        chunk = missing[start : start + ARENA_BATCH]
        started = time.monotonic()
        records = answer_pooled_prompts(run.contestant, chunk)
        seconds += time.monotonic() - started
        new_tokens += sum(int(answer.record.get("new_tokens") or 0) for answer in records)
        pairs = zip(chunk, records, strict=True)
        run.tokens += _count_tokens(run, [p.text + answer.text for p, answer in pairs])
    data = {"answers": len(missing), **_rates("new_tokens", new_tokens, seconds)}
    return Outcome(f"{len(missing)} pooled prompts answered", data)


def _count_tokens(run: Run, texts: list[str]) -> int:
    tokenizer = getattr(run.served_model(), "tokenizer", None)
    if tokenizer is None or not texts:
        return 0
    return sum(len(ids) for ids in tokenizer(texts)["input_ids"])


def activate_step(run: Run) -> Outcome:
    usage = run.meter.stop(uses_gpu=run.device.startswith("cuda"))
    with transaction.atomic():
        if not run.owns_job():
            raise LeaseLost(run.job_id)
        job = record_usage(run, usage)
        now = timezone.now()
        run.update_job(status=EvaluationJob.Status.FINISHED, finished_at=now, current_step="")
        Contestant.objects.filter(pk=run.contestant.pk).update(status=Contestant.Status.ACTIVE)
        record_evaluation(
            contestant_id=run.contestant.pk,
            eval_cost_usd=job.cost_usd,
            eval_energy_kwh=job.energy_kwh,
            eval_co2e_g=job.co2e_g,
        )
    return Outcome("active in the arena", {"energy_source": usage.energy_source})


def record_usage(run: Run, usage: Usage) -> EvaluationJob:
    """Add one attempt's usage to the job and re-price it (whoever holds the lease now)."""
    run.accounted = True
    table = prices()
    with transaction.atomic():
        job = EvaluationJob.objects.select_for_update().get(pk=run.job_id)
        job.wall_time_s += usage.wall_time_s
        job.cpu_seconds += usage.cpu_seconds
        job.gpu_seconds += usage.gpu_seconds
        job.energy_kwh += usage.energy_kwh
        job.energy_source = usage.energy_source
        job.tokens_processed += run.tokens
        job.device = run.device or job.device
        total = Usage(job.wall_time_s, job.cpu_seconds, job.gpu_seconds, job.energy_kwh, "")
        job.cost_usd = cost_usd(total, table)
        job.co2e_g = co2e_g(job.energy_kwh, table)
        job.save()
    run.tokens = 0
    return job


STEPS: dict[str, Callable[[Run], Outcome]] = {
    "validate": validate_step,
    "load": load_step,
    "fewshot": fewshot_step,
    "arena_answers": arena_answers_step,
    "activate": activate_step,
}
assert tuple(STEPS) == PIPELINE_STEPS


class Heartbeat:
    """Renews the job's lease from a thread while a long step runs."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.interval = max(0.5, float(settings.LADDER_JOB_LEASE_S) / 4)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True, name="job-heartbeat")
        self._thread.start()

    def _beat(self) -> None:
        try:
            while not self._stop.wait(self.interval):
                EvaluationJob.objects.filter(pk=self.run.job_id, lease_token=self.run.token).update(
                    heartbeat_at=timezone.now()
                )
        finally:
            connection.close()  # this thread's own connection

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
