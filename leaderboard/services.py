"""The arena's hot path into the leaderboard: counting a vote in the pair counts.

Release publishing, verification and the counts rebuild live in ``leaderboard.publishing``.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from django.db import connection

from leaderboard.models import Contestant, PairCount

WINNERS = ("model_a", "model_b", "tie", "tie (bothbad)")
_COUNT_FIELDS = ("model_a_wins", "model_b_wins", "ties", "both_bad")  # in the order of WINNERS
_MIRRORED = {"model_a": "model_b", "model_b": "model_a"}


def record_pair_outcome(
    *, model_a: Contestant, model_b: Contestant, winner: str, categories: tuple[str, ...] = ("",)
) -> None:
    """Add one vote to the pair counts, inside the caller's transaction.

    The pair is stored in name order; the outcome is mirrored when the voter's left/right
    order is the reverse. ``categories`` lists the boards the vote counts on ("" = overall).
    Only ``pk`` and ``name`` of the two contestants are read.
    """
    if winner not in WINNERS:
        raise ValueError(f"winner must be one of {WINNERS}, got {winner!r}")
    if model_a.pk == model_b.pk:
        raise ValueError(f"a model cannot battle itself: {model_a.name!r}")
    if model_b.name < model_a.name:
        model_a, model_b = model_b, model_a
        winner = _MIRRORED.get(winner, winner)
    increments = [int(winner == name) for name in WINNERS]
    params: list[Any] = []
    for category in categories:
        params += [model_a.pk, model_b.pk, category, *increments]
    # One upsert statement for every board: it inserts a pair's first row or adds to it, and
    # two concurrent first votes cannot lose an increment (the second waits for the first's
    # row, then updates it). No savepoint: a failure aborts the caller's whole transaction.
    with connection.cursor() as cursor:
        cursor.execute(_upsert_sql(len(categories)), params)


@cache
def _upsert_sql(rows: int) -> str:
    # INSERT ... ON CONFLICT DO UPDATE: PostgreSQL 9.5+ and SQLite 3.24+.
    table = PairCount._meta.db_table
    columns = ", ".join(("model_a_id", "model_b_id", "category", *_COUNT_FIELDS))
    values = ", ".join(["(%s, %s, %s, %s, %s, %s, %s)"] * rows)
    added = ", ".join(f"{name} = {table}.{name} + excluded.{name}" for name in _COUNT_FIELDS)
    return (
        f"INSERT INTO {table} ({columns}) VALUES {values} "
        f"ON CONFLICT (model_a_id, model_b_id, category) DO UPDATE SET {added}"
    )
