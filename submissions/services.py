"""Write operations of submissions: submit, cancel, store results, lease and requeue jobs.

The worker-side pipeline lives in ``submissions.pipeline``; nothing here imports torch.
"""

from __future__ import annotations

import logging
import math
import shutil
import uuid
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.files.uploadedfile import UploadedFile
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from contestants.models import Contestant
from contestants.options import default_serving
from contestants.services import record_evaluation
from core.exceptions import DomainError, RateLimited
from core.queue import enqueue
from core.text import has_unstorable, storable_json
from evalcore.fewshot.schema import validate_results
from submissions.archive import Limits, extract_archive
from submissions.checkpoint import CheckpointFacts, find_model_directory, inspect_gguf
from submissions.exceptions import SubmissionError, not_found
from submissions.gguf import GGUF_NAME, is_gguf
from submissions.gguf import MAGIC as GGUF_MAGIC
from submissions.models import PIPELINE_STEPS, BenchmarkResult, EvaluationJob, JobStep

logger = logging.getLogger(__name__)

DAY = timedelta(days=1)
CARD_FIELDS = ("optimizer", "lr_schedule", "precision")


@dataclass(frozen=True)
class ModelCardInput:
    name: str
    organization: str = ""
    license: str = ""
    description: str = ""
    training_tokens: int | None = None
    parameters: int | None = None  # as claimed; replaced by the count from the weights
    optimizer: str = ""
    lr_schedule: str = ""
    precision: str = ""
    serving: dict[str, Any] | None = None  # validated ServingOptions.to_dict(); None: defaults


def submit_model(
    *,
    user: AbstractBaseUser,
    card: ModelCardInput,
    archive: UploadedFile | None = None,
    checkpoint_path: str | None = None,
) -> EvaluationJob:
    """Register a pending contestant, keep its upload on disk and queue its evaluation.

    Only what the request itself shows is checked here (quota, name, size, archive type, the
    server-side path's allow-list); the worker's validate step unpacks the archive, checks its
    limits and the weights, and hashes them, recording any refusal code on the job.

    Raises:
        RateLimited: ``rate_limited`` (429).
        DomainError: ``duplicate_name`` (409), ``upload_too_large`` (413) or a code (400).
    """
    check_rate_limit(user)
    free_failed_name(card.name, user)
    if Contestant.objects.filter(name=card.name).exists():
        raise duplicate_name(card.name)
    directory, upload = stage_upload(archive=archive, checkpoint_path=checkpoint_path)
    try:
        return _register(user, card, directory)
    except BaseException:
        if upload is not None:
            upload.unlink(missing_ok=True)
        raise


def free_failed_name(name: str, user: AbstractBaseUser) -> None:
    """A team retries a failed submission by submitting again under the same name.

    The failed contestant (never active, so in no battle) is renamed ``<name>~failed-<id>``
    with its jobs kept, so its history and the daily quota stay; its files went at failure.
    """
    failed = Contestant.objects.filter(
        name=name, owner_id=user.pk, status=Contestant.Status.FAILED
    ).first()
    if failed is not None:
        Contestant.objects.filter(pk=failed.pk).update(name=f"{name[:80]}~failed-{failed.pk}")


def _register(user: AbstractBaseUser, card: ModelCardInput, directory: Path) -> EvaluationJob:
    try:
        with transaction.atomic():
            # Locking the user row serialises one user's concurrent submissions for the quota.
            get_user_model().objects.select_for_update().filter(pk=user.pk).first()
            check_rate_limit(user)
            contestant = Contestant.objects.create(
                name=card.name,
                organization=card.organization,
                license=card.license,
                description=card.description,
                checkpoint_path=str(directory),
                owner=user,
                training_tokens=card.training_tokens,
                model_card={
                    **{field: getattr(card, field) for field in CARD_FIELDS},
                    "claimed_parameters": card.parameters,
                },
                serving=card.serving or default_serving(),
            )
            job = create_job(contestant=contestant, user=user)
            transaction.on_commit(lambda: enqueue("submissions.evaluate", job.pk))
    except IntegrityError:
        raise duplicate_name(card.name) from None
    return job


def card_facts(facts: CheckpointFacts) -> dict[str, Any]:
    """What the worker adds to the model card once it has inspected the weights."""
    return {
        "architecture": facts.architecture,
        "model_type": facts.model_type,
        "weight_files": list(facts.weight_files),
        "checkpoint_bytes": facts.total_bytes,
    }


def duplicate_name(name: str) -> DomainError:
    return DomainError(
        f"name: a model named {name!r} already exists",
        code="duplicate_name",
        status_code=409,
        fields={"name": ["already exists"]},
    )


def check_rate_limit(user: AbstractBaseUser) -> None:
    limit = int(settings.LADDER_SUBMISSIONS_PER_DAY)
    now = timezone.now()
    recent = EvaluationJob.objects.submitted_by_since(user.pk, now - DAY).order_by("created_at")
    if recent.count() < limit:
        return
    oldest = recent.first()
    assert oldest is not None  # count >= limit >= 0 and the limit check passed
    retry = max(1, math.ceil((oldest.created_at + DAY - now).total_seconds()))
    raise RateLimited(
        f"at most {limit} submissions per user per day; retry in {retry} s", retry_after=retry
    )


ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip")


def stage_upload(
    *, archive: UploadedFile | None, checkpoint_path: str | None
) -> tuple[Path, Path | None]:
    """The contestant's checkpoint folder, and the upload kept for the worker to unpack.

    An upload is moved (or streamed) to ``uploads/`` unread: no unpacking or hashing here.
    """
    if (archive is None) == (checkpoint_path is None):
        raise SubmissionError(
            "missing_checkpoint", "archive: send exactly one of archive or checkpoint_path"
        )
    if checkpoint_path is not None:
        return allowed_checkpoint_directory(checkpoint_path), None
    assert archive is not None
    check_upload_size(archive.size or 0)
    if not _starts_as_gguf(archive) and not str(archive.name or "").lower().endswith(
        ARCHIVE_SUFFIXES
    ):
        raise SubmissionError(
            "unsupported_archive",
            f"archive: {archive.name!r} is not a {', '.join(ARCHIVE_SUFFIXES)} file",
        )
    destination = Path(settings.LADDER_SUBMISSION_ROOT) / "checkpoints" / uuid.uuid4().hex
    upload = upload_path(destination)
    assert upload is not None
    upload.parent.mkdir(parents=True, exist_ok=True)
    on_disk = getattr(archive, "temporary_file_path", None)
    if on_disk is not None:  # Django streamed it to a temporary file: move, don't copy
        shutil.move(on_disk(), upload)
    else:
        with upload.open("xb") as out:
            for chunk in archive.chunks():
                out.write(chunk)
    if is_gguf(upload):  # a single GGUF file: its header is checked here, without torch
        try:
            inspect_gguf(upload, total_bytes=upload.stat().st_size)
        except BaseException:
            upload.unlink(missing_ok=True)
            raise
    return destination, upload


def _starts_as_gguf(archive: UploadedFile) -> bool:
    """Whether the upload begins with the GGUF magic (its name may say anything)."""
    archive.seek(0)
    head = archive.read(len(GGUF_MAGIC))
    archive.seek(0)
    return bool(head == GGUF_MAGIC)


def upload_path(checkpoint_directory: Path) -> Path | None:
    """Where the upload of an uploaded checkpoint waits; None for a server-side path."""
    root = Path(settings.LADDER_SUBMISSION_ROOT)
    if checkpoint_directory.parent != root / "checkpoints":
        return None
    return root / "uploads" / f"{checkpoint_directory.name}.archive"


def unpack_upload(checkpoint_directory: Path) -> Path:
    """Unpack a waiting upload into its folder (worker side); returns the model directory.

    A folder left by an attempt that died mid-way is unpacked again; without a waiting upload
    the folder is the model directory already.
    """
    upload = upload_path(checkpoint_directory)
    if upload is None or not upload.is_file():
        return checkpoint_directory
    shutil.rmtree(checkpoint_directory, ignore_errors=True)
    if is_gguf(upload):  # a single GGUF file: kept as is, converted by the validate step
        checkpoint_directory.mkdir(parents=True)
        shutil.copyfile(upload, checkpoint_directory / GGUF_NAME)
        return checkpoint_directory
    extract_archive(upload, checkpoint_directory, archive_limits())
    return find_model_directory(checkpoint_directory)


def discard_upload(checkpoint_directory: Path) -> None:
    """Remove a refused upload and what was unpacked of it (never a server-side path)."""
    for directory in (checkpoint_directory, *checkpoint_directory.parents):
        upload = upload_path(directory)
        if upload is not None:
            upload.unlink(missing_ok=True)
            shutil.rmtree(directory, ignore_errors=True)
            return


def check_upload_size(size: int) -> None:
    limit = int(settings.LADDER_SUBMISSION_MAX_UPLOAD_BYTES)
    if size > limit:
        raise SubmissionError(
            "upload_too_large", f"archive: the upload exceeds {limit} bytes", status_code=413
        )


def archive_limits() -> Limits:
    return Limits(
        max_files=int(settings.LADDER_SUBMISSION_MAX_FILES),
        max_unpacked_bytes=int(settings.LADDER_SUBMISSION_MAX_UNPACKED_BYTES),
        max_compression_ratio=float(settings.LADDER_SUBMISSION_MAX_COMPRESSION_RATIO),
    )


def check_unique_weights(contestant: Contestant, digest: str) -> None:
    # A converted GGUF keeps its upload's digest in the model card.
    same = Q(weights_digest=digest) | Q(model_card__gguf_digest=digest)
    if Contestant.objects.filter(same).exclude(pk=contestant.pk).exists():
        raise SubmissionError(
            "duplicate_weights",
            f"archive: a model with the same weights (digest {digest[:12]}…) exists",
            status_code=409,
        )


def allowed_checkpoint_directory(raw: str) -> Path:
    roots = [Path(root).resolve() for root in settings.LADDER_SUBMISSION_ALLOWED_ROOTS]
    if not roots:
        raise SubmissionError(
            "checkpoint_path_disabled",
            "checkpoint_path: submission by server-side path is disabled on this server",
            field="checkpoint_path",
        )
    resolved = Path(raw).resolve()
    if not any(resolved.is_relative_to(root) for root in roots) or not resolved.is_dir():
        raise SubmissionError(
            "checkpoint_path_not_allowed",
            f"checkpoint_path: {raw!r} is not a directory under an allowed root",
            field="checkpoint_path",
        )
    return resolved


def create_job(*, contestant: Contestant, user: AbstractBaseUser | None) -> EvaluationJob:
    job = EvaluationJob.objects.create(
        contestant=contestant, submitted_by=user, heartbeat_at=timezone.now()
    )
    JobStep.objects.bulk_create(
        JobStep(job=job, name=name, position=index) for index, name in enumerate(PIPELINE_STEPS)
    )
    return job


def get_contestant(name: str) -> Contestant:
    # No stored name holds a NUL, and PostgreSQL refuses one even in a lookup.
    contestant = None if has_unstorable(name) else Contestant.objects.filter(name=name).first()
    if contestant is None:
        raise not_found("model", name)
    return contestant


def check_owner(contestant: Contestant, user: AbstractBaseUser) -> None:
    if contestant.owner_id != user.pk and not getattr(user, "is_staff", False):
        raise DomainError(
            f"only the owner of {contestant.name!r} may do this",
            code="not_owner",
            status_code=403,
        )


def cancel_model(*, name: str, user: AbstractBaseUser) -> EvaluationJob:
    """Stop a model's unfinished evaluation; its worker stops at the next step boundary."""
    contestant = get_contestant(name)
    check_owner(contestant, user)
    with transaction.atomic():
        job = EvaluationJob.objects.select_for_update().filter(contestant=contestant).first()
        if job is None or job.is_done:
            raise DomainError(
                f"{name!r} has no queued or running evaluation to cancel",
                code="not_cancellable",
                status_code=409,
            )
        fail_job(job, step=job.current_step or "queued", reason="cancelled by the owner")
        job.refresh_from_db()
    return job


def fail_job(job: EvaluationJob, *, step: str, reason: str) -> None:
    """Mark a job failed (clearing its lease, so its worker stops) and its model failed."""
    with transaction.atomic():
        EvaluationJob.objects.filter(pk=job.pk).update(
            status=EvaluationJob.Status.FAILED,
            failed_step=step,
            reason=reason[:2000],
            lease_token="",
            cancel_requested=reason == "cancelled by the owner",
            finished_at=timezone.now(),
        )
        JobStep.objects.filter(job=job, name=step, status=JobStep.Status.RUNNING).update(
            status=JobStep.Status.FAILED, finished_at=timezone.now(), detail=reason[:2000]
        )
        failed = (
            Contestant.objects.filter(pk=job.contestant_id)
            .exclude(status=Contestant.Status.ACTIVE)
            .update(status=Contestant.Status.FAILED)
        )
        if failed:  # a model that never became active keeps no files (uploads only)
            path = Path(Contestant.objects.get(pk=job.contestant_id).checkpoint_path)
            transaction.on_commit(lambda: discard_upload(path))


def claim_job(*, job_id: int, worker: str) -> str | None:
    """Take the job's lease for this worker; ``None`` when it is done or held by a live worker."""
    lease_s = float(settings.LADDER_JOB_LEASE_S)
    with transaction.atomic():
        job = EvaluationJob.objects.select_for_update().filter(pk=job_id).first()
        if job is None or job.is_done:
            return None
        if job.status == EvaluationJob.Status.RUNNING and not job.lease_expired(lease_s):
            return None
        if job.attempts >= int(settings.LADDER_JOB_MAX_ATTEMPTS):
            fail_job(
                job,
                step=job.current_step or "queued",
                reason="gave up after repeated attempts (worker lost each time)",
            )
            return None
        token = uuid.uuid4().hex
        now = timezone.now()
        job.status, job.lease_token, job.heartbeat_at = EvaluationJob.Status.RUNNING, token, now
        job.attempts += 1
        job.worker = worker[:200]
        job.started_at = job.started_at or now
        job.save()
    return token


def requeue_stale_jobs() -> list[int]:
    """Send again the jobs whose worker died (lease not renewed) or whose message was lost."""
    lease_s = float(settings.LADDER_JOB_LEASE_S)
    requeued = []
    resend_s = float(settings.LADDER_JOB_QUEUED_RESEND_S)
    for job in EvaluationJob.objects.stale(timezone.now(), lease_s, resend_s):
        with transaction.atomic():
            # The conditional update makes two concurrent requeuers send the job once.
            updated = EvaluationJob.objects.filter(
                pk=job.pk, status=job.status, heartbeat_at=job.heartbeat_at
            ).update(
                status=EvaluationJob.Status.QUEUED, lease_token="", heartbeat_at=timezone.now()
            )
            if updated:
                requeued.append(job.pk)
                transaction.on_commit(lambda pk=job.pk: enqueue("submissions.evaluate", pk))
    if requeued:
        logger.warning("requeued stale evaluation jobs %s", requeued)
    return requeued


def store_benchmark_result(
    *,
    contestant: Contestant,
    document: Any,
    source: str,
    job: EvaluationJob | None = None,
    user: AbstractBaseUser | None = None,
) -> BenchmarkResult:
    """Validate a few-shot results document and make it the contestant's current scores."""
    document = storable_json(document)
    errors = validate_results(document)
    if errors:
        fields = {error.split(": ", 1)[0]: [error.split(": ", 1)[-1]] for error in errors}
        raise DomainError(errors[0], code="invalid_results", fields=fields)
    average = document.get("average") or {}
    with transaction.atomic():
        result = BenchmarkResult.objects.create(
            contestant=contestant,
            job=job,
            source=source,
            method=document["method"],
            average=average.get("mean"),
            average_std=average.get("std"),
            complete=bool(average.get("complete", False)),
            task_scores=task_scores(document),
            document=document,
            submitted_by=user if user is not None and user.is_authenticated else None,
        )
        record_evaluation(
            contestant_id=contestant.pk,
            fewshot_average=result.average,
            fewshot_std=result.average_std,
        )
    return result


def task_scores(document: dict[str, Any]) -> dict[str, Any]:
    """Per task: the task score (mean, std) and each metric's mean and std."""
    scores = {}
    for name, block in document["tasks"].items():
        metrics = {key: dict(value) for key, value in block["metrics"].items()}
        score = block.get("score") or _mean_of_metrics(metrics)
        scores[name] = {"mean": score["mean"], "std": score["std"], "metrics": metrics}
    return scores


def _mean_of_metrics(metrics: dict[str, dict[str, float]]) -> dict[str, float]:
    values = list(metrics.values())
    return {
        "mean": sum(v["mean"] for v in values) / len(values),
        "std": sum(v["std"] for v in values) / len(values),
    }
