"""The pair × outcome counts every release is computed from, and the releases themselves."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from contestants.models import Contestant


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


class ReleaseQuerySet(models.QuerySet["Release"]):
    def for_category(self, category: str) -> ReleaseQuerySet:
        return self.filter(category=category)

    def light(self) -> ReleaseQuerySet:
        """Without the large immutable payloads (input counts and CSV)."""
        return self.defer("input_counts", "csv_text")

    def latest_for(self, category: str) -> Release | None:
        return self.for_category(category).order_by("-number").first()


class Release(models.Model):
    """One published leaderboard version. Never edited: a new version is a new row.

    Bradley–Terry and Davidson releases are self-contained: ``input_counts`` (canonical JSON of
    the pair rows) and ``params`` are all that is needed to recompute them. Online Elo depends on
    vote order, so an Elo release is recomputed from the arena's append-only vote log up to
    ``last_vote_id``, and ``input_digest`` covers that ordered battle sequence (its
    ``input_counts`` are the same battles' counts). ``csv_text`` holds the exact CSV produced at
    publish time.
    Numbers count 1, 2, 3, … per category and are never reused (see ``ReleaseSequence``).
    """

    number = models.PositiveIntegerField()
    category = models.CharField(max_length=50, blank=True, default="")
    created_at = models.DateTimeField()
    method = models.CharField(max_length=20)
    # RatingParams.to_dict(): method, bootstrap_rounds, seed, anchor, ties, min_votes, ridge, …
    params = models.JSONField()
    input_digest = models.CharField(max_length=64)
    input_counts = models.TextField(help_text="Canonical JSON of the pair × outcome rows.")
    vote_count = models.BigIntegerField(help_text="Votes in the vote log at publish time.")
    last_vote_id = models.BigIntegerField(null=True, blank=True)
    counted_votes = models.BigIntegerField(help_text="Votes in the input counts.")
    model_count = models.PositiveIntegerField()
    code_version = models.CharField(max_length=100)
    csv_text = models.TextField()
    # What changed since the previous release of the category, computed once at publish time.
    changes = models.JSONField(default=dict)
    # The top models' battle counts, observed and predicted win rates, for the heatmaps.
    charts = models.JSONField(default=dict)
    diagnostics = models.JSONField(default=dict)

    objects = ReleaseQuerySet.as_manager()

    class Meta:
        ordering = ["category", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["category", "number"], name="unique_release_number"),
            models.CheckConstraint(
                condition=models.Q(number__gte=1), name="release_number_positive"
            ),
        ]

    def __str__(self) -> str:
        return f"release {self.number}" + (f" [{self.category}]" if self.category else "")

    @property
    def csv_filename(self) -> str:
        slug = "".join(c if c.isalnum() or c in "-_" else "_" for c in self.category)
        return f"ladder-leaderboard{'-' + slug if slug else ''}-release-{self.number}.csv"


class ReleaseRowQuerySet(models.QuerySet["ReleaseRow"]):
    def ranked(self) -> ReleaseRowQuerySet:
        return self.filter(below_min_votes=False).order_by("position")

    def below_threshold(self) -> ReleaseRowQuerySet:
        return self.filter(below_min_votes=True).order_by("position")


class ReleaseRow(models.Model):
    """One model's line in a release, with its model-card facts copied at publish time."""

    release = models.ForeignKey(Release, on_delete=models.PROTECT, related_name="rows")
    position = models.PositiveIntegerField()
    below_min_votes = models.BooleanField(default=False)
    rank = models.PositiveIntegerField(null=True, blank=True)
    rank_ub = models.PositiveIntegerField(null=True, blank=True)
    model = models.CharField(max_length=100)
    rating = models.FloatField(null=True, blank=True, help_text="None below min_votes.")
    ci_lower = models.FloatField(null=True, blank=True)
    ci_upper = models.FloatField(null=True, blank=True)
    votes = models.BigIntegerField()
    win_rate = models.FloatField(null=True, blank=True)
    organization = models.CharField(max_length=200, blank=True)
    license = models.CharField(max_length=100, blank=True)
    fewshot_average = models.FloatField(null=True, blank=True)
    fewshot_std = models.FloatField(null=True, blank=True)
    eval_cost_usd = models.FloatField(null=True, blank=True)
    eval_energy_kwh = models.FloatField(null=True, blank=True)
    eval_co2e_g = models.FloatField(null=True, blank=True)
    parameters = models.BigIntegerField(null=True, blank=True)
    training_tokens = models.BigIntegerField(null=True, blank=True)

    objects = ReleaseRowQuerySet.as_manager()

    class Meta:
        ordering = ["release", "position"]
        constraints = [
            models.UniqueConstraint(fields=["release", "model"], name="unique_model_per_release"),
        ]

    def __str__(self) -> str:
        return f"{self.model} in {self.release_id}"


class ReleaseSequence(models.Model):
    """The last number given out per category; locked while a release is written."""

    category = models.CharField(max_length=50, unique=True, blank=True)
    last_number = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.category or 'all'}: {self.last_number}"


class PublishJob(models.Model):
    """A requested publication (staff, API or beat), run by the ``leaderboard.publish`` task."""

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        PUBLISHED = "published"
        UNCHANGED = "unchanged"
        FAILED = "failed"

    category = models.CharField(max_length=50, blank=True, default="")
    force = models.BooleanField(default=False)
    params = models.JSONField(default=dict, blank=True, help_text="Overrides of the defaults.")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    release = models.ForeignKey(Release, null=True, blank=True, on_delete=models.SET_NULL)
    error_code = models.CharField(max_length=50, blank=True)
    message = models.TextField(blank=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"publish job {self.pk} ({self.status})"
