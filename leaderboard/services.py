"""The arena's hot path into the leaderboard: counting a vote in the pair counts.

Release publishing, verification and the counts rebuild live in ``leaderboard.publishing``.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from django.db import connection

from contestants.models import Contestant
from leaderboard.models import PairCount

WINNERS = ("model_a", "model_b", "tie", "tie (bothbad)")
_COUNT_FIELDS = ("model_a_wins", "model_b_wins", "ties", "both_bad")  # in the order of WINNERS
_COLUMNS = ("model_a_id", "model_b_id", "category", *_COUNT_FIELDS)
_MIRRORED = {"model_a": "model_b", "model_b": "model_a"}
_TABLE = PairCount._meta.db_table
# A pair's first vote inserts its row; later ones add to it. Two concurrent first votes cannot
# lose an increment: the second waits for the first's row, then updates it.
_ADD_ON_CONFLICT = "ON CONFLICT (model_a_id, model_b_id, category) DO UPDATE SET " + ", ".join(
    f"{name} = {_TABLE}.{name} + excluded.{name}" for name in _COUNT_FIELDS
)


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
    # One upsert statement for every board. No savepoint: a failure aborts the caller's whole
    # transaction.
    with connection.cursor() as cursor:
        cursor.execute(_upsert_sql(len(categories)), params)


@cache
def _upsert_sql(rows: int) -> str:
    # INSERT ... ON CONFLICT DO UPDATE: PostgreSQL 9.5+ and SQLite 3.24+.
    values = ", ".join(["(%s, %s, %s, %s, %s, %s, %s)"] * rows)
    return f"INSERT INTO {_TABLE} ({', '.join(_COLUMNS)}) VALUES {values} {_ADD_ON_CONFLICT}"


@cache
def pair_counts_upsert_from(source: str) -> str:
    """PostgreSQL: an ``INSERT ... ON CONFLICT DO UPDATE`` counting every vote of ``source``.

    ``source`` names a common table expression of the same statement with the columns
    model_a_id, model_b_id, model_a_name, model_b_name, category and winner, as the voter saw
    them. The arena writes a vote and its counts in one statement this way. The rule is
    :func:`record_pair_outcome`'s, in SQL: the pair in name order (``COLLATE "C"`` compares
    code points, as Python does), the winner mirrored with it, on the overall board and on the
    vote's category board.
    """
    increments = ", ".join(
        f"(winner = CASE WHEN flipped THEN '{_MIRRORED.get(name, name)}' ELSE '{name}' END)::int"
        for name in WINNERS
    )
    return (
        f"INSERT INTO {_TABLE} ({', '.join(_COLUMNS)}) "
        "SELECT CASE WHEN flipped THEN model_b_id ELSE model_a_id END, "
        "CASE WHEN flipped THEN model_a_id ELSE model_b_id END, "
        f"board, {increments} "
        'FROM (SELECT *, model_b_name COLLATE "C" < model_a_name COLLATE "C" AS flipped '
        f"FROM {source}) AS oriented "
        "CROSS JOIN LATERAL (VALUES (''), (NULLIF(oriented.category, ''))) AS boards (board) "
        f"WHERE board IS NOT NULL {_ADD_ON_CONFLICT}"
    )
