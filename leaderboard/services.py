"""The arena's hot path into the leaderboard: counting a vote in the pair counts.

Release publishing, verification and the counts rebuild live in ``leaderboard.publishing``.
"""

from __future__ import annotations

from django.db import transaction
from django.db.models import F

from leaderboard.models import Contestant, PairCount

WINNERS = ("model_a", "model_b", "tie", "tie (bothbad)")


def record_pair_outcome(
    *, model_a: Contestant, model_b: Contestant, winner: str, categories: tuple[str, ...] = ("",)
) -> None:
    """Add one vote to the pair counts, inside the caller's transaction.

    The pair is stored in name order; the outcome is mirrored when the voter's left/right
    order is the reverse. ``categories`` lists the boards the vote counts on ("" = overall).
    """
    if winner not in WINNERS:
        raise ValueError(f"winner must be one of {WINNERS}, got {winner!r}")
    if model_a.pk == model_b.pk:
        raise ValueError(f"a model cannot battle itself: {model_a.name!r}")
    if model_b.name < model_a.name:
        model_a, model_b = model_b, model_a
        winner = {"model_a": "model_b", "model_b": "model_a"}.get(winner, winner)
    field = {
        "model_a": "model_a_wins",
        "model_b": "model_b_wins",
        "tie": "ties",
        "tie (bothbad)": "both_bad",
    }[winner]
    # No savepoint: a failure here must abort the caller's whole transaction (the vote too),
    # and the hot path saves two round trips per vote.
    with transaction.atomic(savepoint=False):
        for category in categories:
            pair = PairCount.objects.filter(model_a=model_a, model_b=model_b, category=category)
            # F() keeps concurrent votes from overwriting each other's increments.
            if pair.update(**{field: F(field) + 1}):
                continue
            # First vote of the pair: a concurrent first vote may insert the row first; then
            # get_or_create's INSERT fails inside its own savepoint, it reads that row, and we
            # increment it (PostgreSQL's READ COMMITTED sees the other transaction's commit).
            _, created = PairCount.objects.get_or_create(
                model_a=model_a, model_b=model_b, category=category, defaults={field: 1}
            )
            if not created:
                pair.update(**{field: F(field) + 1})
