"""Prompt sets with pre-generated answers, battles and their single vote."""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import models
from django.utils import timezone

from contestants.models import Contestant
from leaderboard.models import Outcome


def prompt_digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class PromptSet(models.Model):
    name = models.CharField(max_length=100, unique=True)
    description = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.name


class PromptQuerySet(models.QuerySet["Prompt"]):
    def with_answers_from(self, minimum: int) -> PromptQuerySet:
        """Prompts with pooled answers from at least ``minimum`` active contestants."""
        active = models.Q(answers__contestant__status=Contestant.Status.ACTIVE)
        return self.annotate(
            active_answers=models.Count("answers", filter=active, distinct=True)
        ).filter(active_answers__gte=minimum)


class Prompt(models.Model):
    prompt_set = models.ForeignKey(PromptSet, on_delete=models.CASCADE, related_name="prompts")
    text = models.TextField()
    # sha256 of the text: a unique key that works for long texts on every database.
    digest = models.CharField(max_length=64, db_index=True)
    category = models.CharField(max_length=50, blank=True)
    language = models.CharField(max_length=50, blank=True)

    objects = PromptQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["prompt_set", "digest"], name="unique_prompt_in_set")
        ]

    def __str__(self) -> str:
        return self.text[:60]


class PooledAnswer(models.Model):
    """One contestant's pre-generated answer to one pooled prompt."""

    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="answers")
    contestant = models.ForeignKey(Contestant, on_delete=models.CASCADE, related_name="+")
    text = models.TextField(blank=True)
    max_new_tokens = models.PositiveIntegerField()
    # How it was made: rendered prompt sha256, template, settings, finish reason (generation.py).
    generation = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["prompt", "contestant"], name="one_answer_per_model")
        ]

    def __str__(self) -> str:
        return f"{self.contestant_id} on prompt {self.prompt_id}"


class BattleQuerySet(models.QuerySet["Battle"]):
    def for_voter(self) -> BattleQuerySet:
        """With both contestants and the vote, for the page and the API (one query)."""
        return self.select_related("model_a", "model_b", "vote__outcome")


class Battle(models.Model):
    """Two anonymous answers to one prompt; ``model_a`` is shown on the left.

    ``status`` tracks the answers only; a battle is decided when its one Vote row exists (the
    vote's unique battle is the single source of truth, and the hot path writes one row less).
    """

    class Status(models.TextChoices):
        GENERATING = "generating"
        READY = "ready"
        FAILED = "failed"

    # A random UUID: battle ids are unguessable, so nobody can vote on someone else's battle.
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    prompt = models.TextField(blank=True)
    source_prompt = models.ForeignKey(
        Prompt, null=True, blank=True, on_delete=models.SET_NULL, related_name="battles"
    )
    model_a = models.ForeignKey(Contestant, on_delete=models.PROTECT, related_name="+")
    model_b = models.ForeignKey(Contestant, on_delete=models.PROTECT, related_name="+")
    answer_a = models.TextField(blank=True)
    answer_b = models.TextField(blank=True)
    answer_a_at = models.DateTimeField(null=True, blank=True)
    answer_b_at = models.DateTimeField(null=True, blank=True)
    # While answer_X_at is null, answer_X holds the partial text the worker has streamed so far.
    generation_a = models.JSONField(default=dict, blank=True)
    generation_b = models.JSONField(default=dict, blank=True)
    # Earlier complete turns of a multi-turn battle, [{role, content}, ...] (arena.conversations);
    # the current turn is prompt + answer_X.
    history_a = models.JSONField(default=list, blank=True)
    history_b = models.JSONField(default=list, blank=True)
    # Style features of each answer (evalcore.ratings.style.style_features), computed when the
    # answer is stored; the vote copies them into its outcome for style-controlled ratings.
    style_a = models.JSONField(null=True, blank=True)
    style_b = models.JSONField(null=True, blank=True)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.GENERATING)
    language = models.CharField(max_length=50, blank=True)
    category = models.CharField(max_length=50, blank=True)
    turn = models.PositiveSmallIntegerField(default=1)
    anony = models.BooleanField(default=True)
    pooled = models.BooleanField(default=False, help_text="Answers came from the prompt pool.")
    # Set only on battles loaded by import_battles; makes a re-import skip what it loaded.
    import_key = models.CharField(max_length=100, null=True, blank=True, unique=True)
    error = models.TextField(blank=True, help_text="Internal; never shown to voters.")
    created_at = models.DateTimeField(default=timezone.now)
    ready_at = models.DateTimeField(null=True, blank=True)

    objects = BattleQuerySet.as_manager()

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=~models.Q(model_a=models.F("model_b")), name="battle_of_distinct_models"
            )
        ]

    def __str__(self) -> str:
        return f"battle {self.pk} ({self.status})"

    @property
    def is_decided(self) -> bool:
        return hasattr(self, "vote")  # the reverse one-to-one raises (an AttributeError) if none

    @property
    def public_status(self) -> str:
        """generating, ready, failed, or voted once the vote exists."""
        return "voted" if self.is_decided else str(self.status)

    def partial(self, side: str) -> str | None:
        """The text streamed so far on ``side`` while it is being generated, else None."""
        if getattr(self, f"answer_{side}_at") is not None or self.status != self.Status.GENERATING:
            return None
        return str(getattr(self, f"answer_{side}"))

    def style_pair(self) -> dict[str, Any] | None:
        """``{"a": {...}, "b": {...}}`` once both answers have their style features."""
        if self.style_a is None or self.style_b is None:
            return None
        return {"a": self.style_a, "b": self.style_b}

    def answer(self, side: str) -> str | None:
        """The answer shown on ``side`` ("a" or "b"), or None while it is being generated."""
        if getattr(self, f"answer_{side}_at") is None:
            return None
        return str(getattr(self, f"answer_{side}"))


class VoteQuerySet(models.QuerySet["Vote"]):
    def in_vote_order(self) -> VoteQuerySet:
        return self.order_by("pk")

    def with_outcome(self) -> VoteQuerySet:
        return self.select_related("outcome")


class Vote(models.Model):
    """The one vote of a battle: who voted, and the leaderboard outcome it recorded.

    The outcome (winner, time, the contestants as seen) lives in the leaderboard's outcome log;
    the vote's primary key *is* its outcome's id, so vote order is outcome-log order.
    """

    outcome = models.OneToOneField(
        Outcome, primary_key=True, on_delete=models.PROTECT, related_name="+"
    )
    battle = models.OneToOneField(Battle, on_delete=models.PROTECT, related_name="vote")
    judge = models.CharField(max_length=100, help_text="Hashed voter id (public schema).")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )

    objects = VoteQuerySet.as_manager()

    def __str__(self) -> str:
        return f"{self.winner} on {self.battle_id}"

    @property
    def winner(self) -> str:
        return self.outcome.winner

    @property
    def tstamp(self) -> float | None:
        return self.outcome.tstamp

    @property
    def created_at(self) -> datetime:
        return self.outcome.created_at
