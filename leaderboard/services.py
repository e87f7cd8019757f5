"""The leaderboard's write path: the outcome log and the pair counts, and the rule between them.

The way of a vote, start to end:

1. The arena stores a battle's vote (``arena.services.record_vote``) and, in the same
   transaction, its **outcome**: :func:`record_outcome` appends one ``Outcome`` row (the two
   contestants as the voter saw them, the ``evalcore.types.Outcome`` value, the category, style
   features when present, the time) and adds it to the **pair counts**. On PostgreSQL the arena
   does all of it in one statement, whose SQL is built here (:func:`outcome_insert_from`,
   :func:`pair_counts_upsert_from`) from the same rule table as the Python path.
2. The counting rule (:func:`counted`) exists once: the pair is stored in name order, the outcome
   mirrored (``Outcome.mirrored``) when the voter's order was the reverse, on the overall board
   "" and on the outcome's category board.
3. A **release** (``leaderboard.publishing``) reads only the leaderboard's tables: Bradley–Terry
   and Davidson fit the ``PairCount`` rows; online Elo replays the ``Outcome`` rows with
   id <= the release's ``last_vote_id`` in id order. ``rebuild_pair_counts`` recounts the outcome
   log with :func:`counted`; ``verify_release`` recomputes a release byte for byte.
4. The release's CSV is ``leaderboard.export.release_csv``; the arena's public battle export
   (``arena.dumps``) joins each vote to its outcome.

Outcome rows are never updated or deleted. An arena vote's primary key is its outcome's id.
"""

from __future__ import annotations

from collections.abc import Hashable
from datetime import datetime
from functools import cache
from typing import Any, TypeVar

from django.db import connection

from contestants.models import Contestant
from evalcore.types import Outcome as Result
from leaderboard.models import Outcome, PairCount

K = TypeVar("K", bound=Hashable)
# The rule table: which PairCount counter each outcome adds to, in the engine's value order.
COUNT_FIELDS: dict[Result, str] = {
    Result.A_WINS: "model_a_wins",
    Result.B_WINS: "model_b_wins",
    Result.TIE: "ties",
    Result.BOTH_BAD: "both_bad",
}
WINNERS = tuple(result.winner for result in Result)
_COLUMNS = ("model_a_id", "model_b_id", "category", *COUNT_FIELDS.values())
_TABLE = PairCount._meta.db_table
_OUTCOME_TABLE = Outcome._meta.db_table
_OUTCOME_COLUMNS = ("model_a_id", "model_b_id", "result", "category", "style", "tstamp")
# A pair's first vote inserts its row; later ones add to it. Two concurrent first votes cannot
# lose an increment: the second waits for the first's row, then updates it.
_ADD_ON_CONFLICT = "ON CONFLICT (model_a_id, model_b_id, category) DO UPDATE SET " + ", ".join(
    f"{name} = {_TABLE}.{name} + excluded.{name}" for name in COUNT_FIELDS.values()
)


def boards(category: str) -> tuple[str, ...]:
    """The boards an outcome of ``category`` counts on: overall "", then its category."""
    return ("", category) if category else ("",)


def counted(
    *, model_a: K, model_b: K, names: tuple[str, str], result: Result, category: str
) -> list[tuple[K, K, str, Result]]:
    """THE counting rule: (first, second, board, result seen from first) per counted board.

    ``names`` are the two contestants' names: the pair is stored in name order (code-point
    order, as Python compares strings), the result mirrored when the voter's order was the
    reverse.
    """
    if names[1] < names[0]:
        model_a, model_b, result = model_b, model_a, result.mirrored()
    return [(model_a, model_b, board, result) for board in boards(category)]


def increments(result: Result) -> tuple[int, int, int, int]:
    """The four counter increments (in ``COUNT_FIELDS`` order) of one ``result``."""
    a, b, c, d = (int(result is cell) for cell in COUNT_FIELDS)
    return a, b, c, d


def mirrored_counts(counts: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    """The four counters of a pair seen from its other side (``Outcome.mirrored``, cellwise)."""
    by_result = dict(zip(COUNT_FIELDS, counts))
    a, b, c, d = (by_result[cell.mirrored()] for cell in COUNT_FIELDS)
    return a, b, c, d


def record_outcome(
    *,
    model_a: Contestant,
    model_b: Contestant,
    result: Result,
    category: str = "",
    style: dict[str, Any] | None = None,
    tstamp: float | None = None,
    created_at: datetime,
) -> int:
    """Append one outcome and add it to the pair counts, inside the caller's transaction.

    ``model_a`` is the contestant the voter saw on the left; only ``pk`` and ``name`` are read.
    Returns the new outcome's id. No savepoint: a failure aborts the caller's transaction, so
    the outcome, its counts and the caller's rows (the vote) are stored together or not at all.
    """
    if not isinstance(result, Result):
        raise ValueError(f"result must be an evalcore Outcome, got {result!r}")
    if model_a.pk == model_b.pk:
        raise ValueError(f"a model cannot battle itself: {model_a.name!r}")
    style_value = Outcome._meta.get_field("style").get_db_prep_value(style, connection)
    stamp = connection.ops.adapt_datetimefield_value(created_at)
    row = [model_a.pk, model_b.pk, result.value, category, style_value, tstamp, stamp]
    with connection.cursor() as cursor:
        cursor.execute(_INSERT_OUTCOME_SQL, row)
        (outcome_id,) = cursor.fetchone()
        _add_counts(cursor, model_a, model_b, result, category)
    return int(outcome_id)


def _add_counts(
    cursor: Any, model_a: Contestant, model_b: Contestant, result: Result, category: str
) -> None:
    params: list[Any] = []
    rows = counted(
        model_a=model_a.pk,
        model_b=model_b.pk,
        names=(model_a.name, model_b.name),
        result=result,
        category=category,
    )
    for first, second, board, oriented in rows:
        params += [first, second, board, *increments(oriented)]
    # One upsert statement for every board.
    cursor.execute(_upsert_sql(len(rows)), params)


_INSERT_OUTCOME_SQL = (
    f"INSERT INTO {_OUTCOME_TABLE} ({', '.join(_OUTCOME_COLUMNS)}, created_at) "
    f"VALUES ({', '.join(['%s'] * (len(_OUTCOME_COLUMNS) + 1))}) RETURNING id"
)


@cache
def _upsert_sql(rows: int) -> str:
    # INSERT ... ON CONFLICT DO UPDATE: PostgreSQL 9.5+ and SQLite 3.24+.
    values = ", ".join(["(%s, %s, %s, %s, %s, %s, %s)"] * rows)
    return f"INSERT INTO {_TABLE} ({', '.join(_COLUMNS)}) VALUES {values} {_ADD_ON_CONFLICT}"


# --- The same rule as one PostgreSQL statement (the arena's one-statement vote) ----------------


def outcome_insert_from(source: str) -> str:
    """PostgreSQL: an ``INSERT`` appending one outcome per row of ``source``, ``RETURNING id``.

    ``source`` names a common table expression of the same statement with the columns
    outcome_id (taken beforehand from the table's sequence, see :func:`next_outcome_id_sql`),
    model_a_id, model_b_id, result, category, style, tstamp and created_at.
    """
    columns = ", ".join(("id", *_OUTCOME_COLUMNS, "created_at"))
    selected = ", ".join(("outcome_id", *_OUTCOME_COLUMNS, "created_at"))
    return f"INSERT INTO {_OUTCOME_TABLE} ({columns}) SELECT {selected} FROM {source} RETURNING id"


def next_outcome_id_sql() -> str:
    """PostgreSQL: an expression that takes the next outcome id from the table's sequence."""
    return f"nextval(pg_get_serial_sequence('{_OUTCOME_TABLE}', 'id'))"


@cache
def pair_counts_upsert_from(source: str) -> str:
    """PostgreSQL: an ``INSERT ... ON CONFLICT DO UPDATE`` counting every outcome of ``source``.

    ``source`` names a common table expression of the same statement with the columns
    model_a_id, model_b_id, model_a_name, model_b_name, category and result, as the voter saw
    them. The SQL is :func:`counted` and :func:`increments` written out from the rule table:
    the pair in name order (``COLLATE "C"`` compares code points, as Python does), the result
    mirrored with it (``Outcome.mirrored``), on the overall board and on the category's board
    (tests/arena/test_postgres.py checks the two paths agree).
    """
    cells = ", ".join(
        f"(result = CASE WHEN flipped THEN {cell.mirrored().value} ELSE {cell.value} END)::int"
        for cell in COUNT_FIELDS
    )
    return (
        f"INSERT INTO {_TABLE} ({', '.join(_COLUMNS)}) "
        "SELECT CASE WHEN flipped THEN model_b_id ELSE model_a_id END, "
        "CASE WHEN flipped THEN model_a_id ELSE model_b_id END, "
        f"board, {cells} "
        'FROM (SELECT *, model_b_name COLLATE "C" < model_a_name COLLATE "C" AS flipped '
        f"FROM {source}) AS oriented "
        "CROSS JOIN LATERAL (VALUES (''), (NULLIF(oriented.category, ''))) AS boards (board) "
        f"WHERE board IS NOT NULL {_ADD_ON_CONFLICT}"
    )
