"""The registry of contestants and their current evaluation results.

``Contestant`` holds what the owner registered (name, card, checkpoint, serving options) and its
status; ``ContestantEvaluation`` holds what the evaluation pipeline measured, written by
``contestants.services.record_evaluation`` only, so the two never overwrite each other. A
leaderboard release copies both into its rows at publish time.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

from contestants.options import ServingOptions, default_serving, validate_serving

# The evaluation summary every release row copies (same names on ContestantEvaluation).
EVALUATION_FIELDS = (
    "fewshot_average",
    "fewshot_std",
    "eval_cost_usd",
    "eval_energy_kwh",
    "eval_co2e_g",
)


class ContestantQuerySet(models.QuerySet["Contestant"]):
    def active(self) -> ContestantQuerySet:
        return self.filter(status=Contestant.Status.ACTIVE)

    def with_evaluation(self) -> ContestantQuerySet:
        """Each contestant annotated with its evaluation summary (None where not evaluated)."""
        return self.annotate(
            **{name: models.F(f"evaluation__{name}") for name in EVALUATION_FIELDS}
        )


class Contestant(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending"
        ACTIVE = "active"
        RETIRED = "retired"
        FAILED = "failed"

    name = models.CharField(max_length=100, unique=True)
    organization = models.CharField(max_length=200, blank=True)
    license = models.CharField(max_length=100, blank=True)
    description = models.TextField(blank=True)
    checkpoint_path = models.CharField(max_length=1000, help_text="Local checkpoint directory.")
    # Handed to models_zoo.serving.load on the worker; see contestants.options.ServingOptions.
    serving = models.JSONField(
        default=default_serving,
        validators=[validate_serving],
        help_text='{"device": "auto|cpu|cuda[:N]", "quantize_int8": false, '
        '"max_memory": null or {"cuda": "2GiB"}}',
    )
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

    objects = ContestantQuerySet.as_manager()

    class Meta:
        # The table keeps the name it had in the leaderboard app: foreign keys from pair counts,
        # battles, pooled answers and jobs point at it, and the move copied no data.
        db_table = "leaderboard_contestant"
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def serving_options(self) -> ServingOptions:
        return ServingOptions.from_dict(self.serving)

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


class ContestantEvaluation(models.Model):
    """The current evaluation summary of one contestant, written by the evaluation pipeline."""

    contestant = models.OneToOneField(
        Contestant, on_delete=models.CASCADE, primary_key=True, related_name="evaluation"
    )
    fewshot_average = models.FloatField(null=True, blank=True)
    fewshot_std = models.FloatField(null=True, blank=True)
    eval_cost_usd = models.FloatField(null=True, blank=True)
    eval_energy_kwh = models.FloatField(null=True, blank=True)
    eval_co2e_g = models.FloatField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"evaluation of {self.contestant_id}"
