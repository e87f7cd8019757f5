"""The outcome log, the pair × outcome counts every release is computed from, and the releases.

``Outcome`` is the leaderboard's append-only log of rated battles (the arena's votes link to
theirs); ``PairCount`` holds the same outcomes summed per pair and board. Both are written
together by ``leaderboard.services.record_outcome`` (or the arena's one-statement vote built from
the same rule); see that module for the whole way from a vote to a release.
"""

from __future__ import annotations

from collections.abc import Iterator

from django.conf import settings
from django.db import models
from django.utils import timezone

from contestants.models import Contestant
from evalcore.types import Outcome as Result

_WINNERS = tuple(result.winner for result in Result)  # indexed by the stored value


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


class OutcomeQuerySet(models.QuerySet["Outcome"]):
    def in_log_order(self) -> OutcomeQuerySet:
        return self.order_by("id")

    def up_to(self, last_id: int) -> OutcomeQuerySet:
        return self.filter(pk__lte=last_id)

    def on_board(self, category: str) -> OutcomeQuerySet:
        """The outcomes counted on ``category``'s board ("" = the overall board: all)."""
        return self.filter(category=category) if category else self

    def position(self) -> tuple[int, int | None]:
        """(number of outcomes, id of the newest one); (0, None) when there are none."""
        summary = self.aggregate(count=models.Count("pk"), last=models.Max("pk"))
        return int(summary["count"]), summary["last"]

    def battles(self, chunk_size: int = 20_000) -> Iterator[tuple[str, str, str, float | None]]:
        """(model_a name, model_b name, winner, tstamp) of each outcome, in log order."""
        rows = self.in_log_order().values_list("model_a__name", "model_b__name", "result", "tstamp")
        for a, b, result, tstamp in rows.iterator(chunk_size=chunk_size):
            yield a, b, _WINNERS[result], tstamp

    def for_counting(self, chunk_size: int = 20_000) -> Iterator[tuple[str, str, Result, str]]:
        """(model_a name, model_b name, outcome, category) of each outcome, in log order."""
        rows = self.in_log_order().values_list(
            "model_a__name", "model_b__name", "result", "category"
        )
        for a, b, result, category in rows.iterator(chunk_size=chunk_size):
            yield a, b, Result(result), category


class Outcome(models.Model):
    """One rated battle, as its voter saw it (``model_a`` on the left). Append-only.

    ``result`` stores the :class:`evalcore.types.Outcome` integer value (0 A wins, 1 B wins,
    2 tie, 3 both bad: the engine's on-disk contract), seen from ``model_a``. Rows are written
    only with their pair counts (``leaderboard.services``) and never updated or deleted: ids
    order the log, and an Elo release replays every row with id <= its ``last_vote_id``.
    ``style`` holds optional per-answer style features, ``{"a": {...}, "b": {...}}``.
    An arena vote's primary key is its outcome's id, so vote ids and outcome ids are one.
    """

    RESULT_CHOICES = [(result.value, result.winner) for result in Result]

    model_a = models.ForeignKey(Contestant, on_delete=models.PROTECT, related_name="+")
    model_b = models.ForeignKey(Contestant, on_delete=models.PROTECT, related_name="+")
    result = models.PositiveSmallIntegerField(choices=RESULT_CHOICES)
    category = models.CharField(max_length=50, blank=True, default="")
    style = models.JSONField(null=True, blank=True, help_text='{"a": {...}, "b": {...}}')
    tstamp = models.FloatField(null=True, blank=True, help_text="Unix seconds.")
    created_at = models.DateTimeField(default=timezone.now)

    objects = OutcomeQuerySet.as_manager()

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=~models.Q(model_a=models.F("model_b")), name="outcome_of_distinct_models"
            ),
            models.CheckConstraint(
                condition=models.Q(result__lte=int(max(Result))), name="outcome_result_known"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.winner} ({self.model_a_id} vs {self.model_b_id})"

    @property
    def outcome(self) -> Result:
        return Result(self.result)

    @property
    def winner(self) -> str:
        """The arena ``winner`` string of this outcome."""
        return self.outcome.winner


class ReleaseQuerySet(models.QuerySet["Release"]):
    def for_category(self, category: str) -> ReleaseQuerySet:
        return self.filter(category=category)

    def light(self) -> ReleaseQuerySet:
        """Without the large immutable payloads (input counts and CSV)."""
        return self.defer("input_counts", "csv_text", "style_view")

    def latest_for(self, category: str) -> Release | None:
        return self.for_category(category).order_by("-number").first()


class Release(models.Model):
    """One published leaderboard version. Never edited: a new version is a new row.

    Bradley–Terry and Davidson releases are self-contained: ``input_counts`` (canonical JSON of
    the pair rows) and ``params`` are all that is needed to recompute them. Online Elo depends on
    vote order, so an Elo release is recomputed from the append-only outcome log up to
    ``last_vote_id`` (an outcome id, which is also its arena vote's id), and ``input_digest`` covers that ordered battle sequence (its
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
    vote_count = models.BigIntegerField(help_text="Outcomes in the log at publish time.")
    last_vote_id = models.BigIntegerField(
        null=True, blank=True, help_text="Id of the newest outcome (= its vote's id) covered."
    )
    counted_votes = models.BigIntegerField(help_text="Votes in the input counts.")
    model_count = models.PositiveIntegerField()
    code_version = models.CharField(max_length=100)
    csv_text = models.TextField()
    # What changed since the previous release of the category, computed once at publish time.
    changes = models.JSONField(default=dict)
    # The top models' battle counts, observed and predicted win rates, for the heatmaps.
    charts = models.JSONField(default=dict)
    diagnostics = models.JSONField(default=dict)
    # The style-controlled table (contextual Bradley-Terry, sandwich intervals), when the
    # release's battles carried the answers' style features: {"params", "input_digest",
    # "coefficients", "csv_text", "rows"} (leaderboard.ratings.compute_style_view). {} if none.
    style_view = models.JSONField(default=dict, blank=True)

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
    # Ranked although under min_votes (listing rule "preliminary"), marked as such on the page.
    preliminary = models.BooleanField(default=False)
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
