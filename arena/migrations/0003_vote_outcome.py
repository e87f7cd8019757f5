"""Carry every vote into the leaderboard's outcome log, and link the vote to its outcome.

Each vote becomes the outcome with the same id, so vote order is outcome-log order and every
release's ``last_vote_id`` keeps naming the same prefix of the log; 0004 then makes that link
the vote's primary key and drops the vote's own copies of the winner and the times. The copy
runs in id ranges of CHUNK votes (millions of rows are fine), in plain SQL that PostgreSQL and
SQLite both run; an unknown winner stops the migration (the result column is NOT NULL) instead
of being dropped.
"""

from __future__ import annotations

from typing import Any

import django.db.models.deletion
from django.db import migrations, models

CHUNK = 50_000
VOTE, BATTLE, OUTCOME = "arena_vote", "arena_battle", "leaderboard_outcome"
# evalcore.types.Outcome's values (its on-disk contract), frozen here as this migration saw them.
RESULT_BY_WINNER = {"model_a": 0, "model_b": 1, "tie": 2, "tie (bothbad)": 3}


def _result_case(column: str) -> str:
    whens = " ".join(f"WHEN '{w}' THEN {r}" for w, r in RESULT_BY_WINNER.items())
    return f"CASE {column} {whens} END"


def _winner_case(column: str) -> str:
    whens = " ".join(f"WHEN {r} THEN '{w}'" for w, r in RESULT_BY_WINNER.items())
    return f"CASE {column} {whens} END"


def _id_ranges(cursor: Any) -> list[tuple[int, int]]:
    cursor.execute(f"SELECT MIN(id), MAX(id) FROM {VOTE}")
    low, high = cursor.fetchone()
    if low is None:
        return []
    return [(start, start + CHUNK) for start in range(low - 1, high, CHUNK)]


def carry_votes(apps: Any, schema_editor: Any) -> None:
    connection = schema_editor.connection
    insert = (
        f"INSERT INTO {OUTCOME} (id, model_a_id, model_b_id, result, category, style, tstamp, "
        f"created_at) SELECT v.id, b.model_a_id, b.model_b_id, {_result_case('v.winner')}, "
        f"b.category, NULL, v.tstamp, v.created_at FROM {VOTE} v "
        f"JOIN {BATTLE} b ON b.id = v.battle_id WHERE v.id > %s AND v.id <= %s"
    )
    link = f"UPDATE {VOTE} SET outcome_id = id WHERE id > %s AND id <= %s"
    with connection.cursor() as cursor:
        for low, high in _id_ranges(cursor):
            cursor.execute(insert, [low, high])
            cursor.execute(link, [low, high])
        if connection.vendor == "postgresql":  # new outcomes continue after the carried ids
            cursor.execute(
                f"SELECT setval(pg_get_serial_sequence('{OUTCOME}', 'id'), "
                f"COALESCE(MAX(id), 1), MAX(id) IS NOT NULL) FROM {OUTCOME}"
            )


def restore_votes(apps: Any, schema_editor: Any) -> None:
    """Backwards: each vote's own winner and times again, from its outcome."""
    of_vote = f"FROM {OUTCOME} o WHERE o.id = {VOTE}.outcome_id"
    restore = (
        f"UPDATE {VOTE} SET winner = (SELECT {_winner_case('o.result')} {of_vote}), "
        f"tstamp = (SELECT o.tstamp {of_vote}), created_at = (SELECT o.created_at {of_vote}) "
        "WHERE id > %s AND id <= %s"
    )
    with schema_editor.connection.cursor() as cursor:
        for low, high in _id_ranges(cursor):
            cursor.execute(restore, [low, high])


class Migration(migrations.Migration):
    dependencies = [
        ("arena", "0002_contestant_moves_to_contestants"),
        ("leaderboard", "0004_outcome_log"),
    ]

    operations = [
        migrations.AddField(
            model_name="vote",
            name="outcome",
            field=models.OneToOneField(
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to="leaderboard.outcome",
            ),
        ),
        migrations.RunPython(carry_votes, restore_votes, elidable=False),
    ]
