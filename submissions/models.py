"""Evaluation jobs, their steps, and few-shot benchmark results of contestants."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import models
from django.db.models.functions import Coalesce
from django.utils import timezone

from contestants.models import Contestant

PIPELINE_STEPS = ("validate", "load", "fewshot", "arena_answers", "activate")


class EvaluationJobQuerySet(models.QuerySet["EvaluationJob"]):
    def unfinished(self) -> EvaluationJobQuerySet:
        return self.filter(status__in=(EvaluationJob.Status.QUEUED, EvaluationJob.Status.RUNNING))

    def submitted_by_since(self, user_id: int, since: datetime) -> EvaluationJobQuerySet:
        return self.filter(submitted_by_id=user_id, created_at__gte=since)

    def stale(
        self, now: datetime, lease_s: float, queued_resend_s: float | None = None
    ) -> EvaluationJobQuerySet:
        """Running jobs whose worker stopped renewing its lease, and queued jobs whose message
        may be lost: none taken for ``queued_resend_s`` (default ``lease_s``).

        A queued job waits behind others on the models queue; resending it every lease would
        only add duplicate messages, so it waits for the longer ``queued_resend_s``.
        """
        running_cutoff = now - timedelta(seconds=lease_s)
        queued_cutoff = now - timedelta(
            seconds=lease_s if queued_resend_s is None else queued_resend_s
        )
        last = Coalesce("heartbeat_at", "created_at")
        return self.annotate(last_sign_of_life=last).filter(
            models.Q(status=EvaluationJob.Status.RUNNING, last_sign_of_life__lt=running_cutoff)
            | models.Q(status=EvaluationJob.Status.QUEUED, last_sign_of_life__lt=queued_cutoff)
        )


class EvaluationJob(models.Model):
    """One run of the evaluation pipeline for a contestant, with its accounting."""

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        FINISHED = "finished"
        FAILED = "failed"

    class EnergySource(models.TextChoices):
        NVML = "nvml", "measured (NVML)"
        RAPL = "rapl", "measured (RAPL)"
        ESTIMATE = "estimate", "estimate"

    contestant = models.ForeignKey(Contestant, on_delete=models.CASCADE, related_name="jobs")
    submitted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    current_step = models.CharField(max_length=20, blank=True)
    failed_step = models.CharField(max_length=20, blank=True)
    reason = models.TextField(blank=True)
    cancel_requested = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Lease: the worker running the job renews heartbeat_at; a stale lease is requeued.
    lease_token = models.CharField(max_length=32, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    worker = models.CharField(max_length=200, blank=True)
    # Accounting, summed over attempts.
    wall_time_s = models.FloatField(default=0.0)
    cpu_seconds = models.FloatField(default=0.0)
    gpu_seconds = models.FloatField(default=0.0)
    device = models.CharField(max_length=40, blank=True)
    tokens_processed = models.BigIntegerField(default=0)
    energy_kwh = models.FloatField(default=0.0)
    energy_source = models.CharField(max_length=10, choices=EnergySource.choices, blank=True)
    cost_usd = models.FloatField(default=0.0)
    co2e_g = models.FloatField(default=0.0)

    objects = EvaluationJobQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"job {self.pk} ({self.contestant_id}, {self.status})"

    @property
    def is_done(self) -> bool:
        return self.status in (self.Status.FINISHED, self.Status.FAILED)

    @property
    def energy_is_estimate(self) -> bool:
        return self.energy_source == self.EnergySource.ESTIMATE

    def lease_expired(self, lease_s: float) -> bool:
        last = self.heartbeat_at or self.created_at
        return last is None or timezone.now() - last > timedelta(seconds=lease_s)


class JobStep(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending"
        RUNNING = "running"
        FINISHED = "finished"
        SKIPPED = "skipped"
        FAILED = "failed"

    job = models.ForeignKey(EvaluationJob, on_delete=models.CASCADE, related_name="steps")
    name = models.CharField(max_length=20)
    position = models.PositiveSmallIntegerField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    detail = models.TextField(blank=True)  # the outcome in words: a reason, a skip, a count
    outcome = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["job", "position"]
        constraints = [models.UniqueConstraint(fields=["job", "name"], name="one_step_per_name")]

    def __str__(self) -> str:
        return f"{self.job_id}/{self.name} ({self.status})"

    @property
    def duration_s(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()


class BenchmarkResultQuerySet(models.QuerySet["BenchmarkResult"]):
    def latest_for(self, contestant: Contestant) -> BenchmarkResult | None:
        return self.filter(contestant=contestant).order_by("-created_at", "-id").first()


class BenchmarkResult(models.Model):
    """A few-shot results document (``evalcore.fewshot.schema``) for one contestant."""

    class Source(models.TextChoices):
        PIPELINE = "pipeline"
        EXTERNAL = "external"

    contestant = models.ForeignKey(Contestant, on_delete=models.CASCADE, related_name="benchmarks")
    job = models.OneToOneField(
        EvaluationJob, null=True, blank=True, on_delete=models.SET_NULL, related_name="benchmark"
    )
    source = models.CharField(max_length=10, choices=Source.choices)
    method = models.CharField(max_length=20)
    average = models.FloatField(null=True, blank=True)
    average_std = models.FloatField(null=True, blank=True)
    complete = models.BooleanField(default=False)  # all seven FewNLU tasks
    task_scores = models.JSONField(default=dict)  # task -> {"mean", "std", "metrics": {...}}
    document = models.JSONField()
    submitted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(auto_now_add=True)

    objects = BenchmarkResultQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.contestant_id} few-shot {self.average}"
