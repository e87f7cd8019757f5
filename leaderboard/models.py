"""The contestant registry and the pair × outcome counts every release is computed from."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class ContestantQuerySet(models.QuerySet["Contestant"]):
    def active(self) -> ContestantQuerySet:
        return self.filter(status=Contestant.Status.ACTIVE)


class Contestant(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending"
        ACTIVE = "active"
        RETIRED = "retired"
        FAILED = "failed"

    class Device(models.TextChoices):
        AUTO = "auto"
        CPU = "cpu"
        CUDA = "cuda"

    name = models.CharField(max_length=100, unique=True)
    organization = models.CharField(max_length=200, blank=True)
    license = models.CharField(max_length=100, blank=True)
    description = models.TextField(blank=True)
    checkpoint_path = models.CharField(max_length=1000, help_text="Local checkpoint directory.")
    # Serving options handed to models_zoo.serving.load on the worker.
    device = models.CharField(max_length=10, choices=Device.choices, default=Device.AUTO)
    quantize_int8 = models.BooleanField(default=False)
    max_memory = models.JSONField(null=True, blank=True, help_text='e.g. {"cuda": "2GiB"}')
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(auto_now_add=True)
    # Model card facts (training compute ≈ 6·N·D, Kaplan et al. 2020; Hoffmann et al. 2022).
    parameters = models.BigIntegerField(null=True, blank=True)
    training_tokens = models.BigIntegerField(null=True, blank=True)
    weights_digest = models.CharField(max_length=64, blank=True)
    model_card = models.JSONField(default=dict, blank=True)
    # Denormalised evaluation summaries, written by the evaluation pipeline, read by releases.
    fewshot_average = models.FloatField(null=True, blank=True)
    fewshot_std = models.FloatField(null=True, blank=True)
    eval_cost_usd = models.FloatField(null=True, blank=True)
    eval_energy_kwh = models.FloatField(null=True, blank=True)
    eval_co2e_g = models.FloatField(null=True, blank=True)

    objects = ContestantQuerySet.as_manager()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def training_flops(self) -> float | None:
        if self.parameters is None or self.training_tokens is None:
            return None
        return 6.0 * self.parameters * self.training_tokens

    @property
    def tokens_per_parameter(self) -> float | None:
        if not self.parameters or self.training_tokens is None:
            return None
        return self.training_tokens / self.parameters


class PairCount(models.Model):
    """Outcome counts for one unordered pair, stored with ``model_a.name < model_b.name``.

    Updated in the same transaction as each vote, so a release never scans raw votes.
    ``category`` is "" for the overall board, else e.g. a language.
    """

    model_a = models.ForeignKey(Contestant, on_delete=models.PROTECT, related_name="+")
    model_b = models.ForeignKey(Contestant, on_delete=models.PROTECT, related_name="+")
    category = models.CharField(max_length=50, blank=True, default="")
    model_a_wins = models.PositiveIntegerField(default=0)
    model_b_wins = models.PositiveIntegerField(default=0)
    ties = models.PositiveIntegerField(default=0)
    both_bad = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["model_a", "model_b", "category"], name="unique_pair_per_category"
            ),
            models.CheckConstraint(
                condition=~models.Q(model_a=models.F("model_b")), name="pair_of_distinct_models"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.model_a_id} vs {self.model_b_id} [{self.category or 'all'}]"

    @property
    def total(self) -> int:
        return self.model_a_wins + self.model_b_wins + self.ties + self.both_bad
