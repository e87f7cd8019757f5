"""The migration that carries the arena's votes into the leaderboard's outcome log.

The database is taken back to the schema before the outcome log (votes held their own winner),
filled there with contestants, battles, votes and pair counts as the old code wrote them, and
releases are published from that old state (Bradley–Terry on two boards, Elo replaying the old
vote table). Then it migrates forward, and everything must survive: the same votes and counts,
each old release verifies byte for byte, and re-publishing gives the same CSV bytes.
SQLite in the unit tier; the same test on PostgreSQL in the integration tier.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.apps.registry import Apps
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from evalcore.ratings import RatingParams
from leaderboard import publishing, ratings
from leaderboard.models import Outcome, PairCount, Release, ReleaseRow
from tests.leaderboard.votes import battles

# Just before the outcome log: votes hold their winner (contestants already have their own app).
BEFORE = [
    ("arena", "0002_contestant_moves_to_contestants"),
    ("leaderboard", "0003_contestant_moves_to_contestants"),
]
MIRRORED = {"model_a": "model_b", "model_b": "model_a"}
CELL = {"model_a": 0, "model_b": 1, "tie": 2, "tie (bothbad)": 3}


@pytest.fixture
def old_apps(transactional_db: None) -> Iterator[Apps]:
    """The app registry of the old schema; the database is migrated back to latest afterwards."""
    executor = MigrationExecutor(connection)
    # The contestants app stays at its newest state: its table is the one the votes point at.
    targets = [*BEFORE, *executor.loader.graph.leaf_nodes("contestants")]
    executor.migrate(targets)
    # The old releases are written with today's Release model, so its columns added after the
    # outcome log (0005: style_view, preliminary) are put in for them and taken out again
    # before migrating forward, which adds them back.
    release_columns(add=True)
    yield executor.loader.project_state(targets).apps
    migrate_to_latest()


LATER_RELEASE_COLUMNS = ((Release, "style_view"), (ReleaseRow, "preliminary"))


def release_columns(*, add: bool) -> None:
    with connection.schema_editor() as editor:
        for model, name in LATER_RELEASE_COLUMNS:
            field = model._meta.get_field(name)
            (editor.add_field if add else editor.remove_field)(model, field)


def migrate_to_latest() -> None:
    executor = MigrationExecutor(connection)
    if ("leaderboard", "0005_listing_and_style_view") not in executor.loader.applied_migrations:
        release_columns(add=False)  # 0005 adds them back
    executor.migrate(executor.loader.graph.leaf_nodes())


def populate_old_schema(apps: Apps, n: int) -> None:
    """Votes and counts as the old arena wrote them (the plain rule: name order, mirrored)."""
    contestant = apps.get_model("contestants", "Contestant")
    battle_model, vote_model = apps.get_model("arena", "Battle"), apps.get_model("arena", "Vote")
    pair_model = apps.get_model("leaderboard", "PairCount")
    records = battles(n, seed=21)
    names = sorted({r[side] for r in records for side in ("model_a", "model_b")})
    cast = {
        name: contestant.objects.create(name=name, checkpoint_path="", organization=f"{name} org")
        for name in names
    }
    counts: dict[tuple[str, str, str], list[int]] = {}
    for number, record in enumerate(records):
        a, b, winner = record["model_a"], record["model_b"], record["winner"]
        battle = battle_model.objects.create(
            model_a=cast[a], model_b=cast[b], status="ready", category=record["category"],
            import_key=f"qid:{record['question_id']}", anony=True, created_at=timezone.now(),
        )  # fmt: skip
        vote_model.objects.create(
            battle=battle, winner=winner, judge=f"judge-{number % 7}", tstamp=record["tstamp"]
        )
        if b < a:
            a, b, winner = b, a, MIRRORED.get(winner, winner)
        for board in ("", record["category"]) if record["category"] else ("",):
            counts.setdefault((a, b, board), [0, 0, 0, 0])[CELL[winner]] += 1
    for (a, b, board), cells in counts.items():
        pair_model.objects.create(
            model_a=cast[a], model_b=cast[b], category=board, model_a_wins=cells[0],
            model_b_wins=cells[1], ties=cells[2], both_bad=cells[3],
        )  # fmt: skip


def publish_old(apps: Apps, *, category: str, params: RatingParams) -> Release:
    """A release published from the old schema: the old vote-log reader, then the unchanged
    release writer (the release tables are the same before and after the migration)."""
    vote_model = apps.get_model("arena", "Vote")
    votes = vote_model.objects.order_by("id")
    count, last = votes.count(), votes.last().id
    if params.method == "elo":
        board = votes.filter(battle__category=category) if category else votes
        rows = board.values_list(
            "battle__model_a__name", "battle__model_b__name", "winner", "tstamp"
        )
        table = ratings.battle_table(list(rows))
        snapshot = publishing.Snapshot(category, ratings.battle_counts(table), count, last, table)
    else:
        pair_model = apps.get_model("leaderboard", "PairCount")
        counted = pair_model.objects.filter(category=category).values_list(
            "model_a__name", "model_b__name", "model_a_wins", "model_b_wins", "ties", "both_bad"
        )
        snapshot = publishing.Snapshot(category, sorted(counted), count, last)
    computed = snapshot.compute(params)
    release = publishing._write_release(
        snapshot=snapshot, params=params, computed=computed, force=True
    )
    assert release is not None
    return release


def public_votes(apps: Apps | None) -> list[tuple[Any, ...]]:
    """Each vote's public fields in vote order, from the old tables or through the new export."""
    if apps is not None:
        return list(
            apps.get_model("arena", "Vote")
            .objects.order_by("id")
            .values_list(
                "battle__model_a__name", "battle__model_b__name", "winner", "tstamp", "judge",
                "battle__category", "battle__import_key",
            )
        )  # fmt: skip
    from arena.dumps import export_records

    return [
        (r["model_a"], r["model_b"], r["winner"], r["tstamp"], r["judge"], r["category"],
         f"qid:{r['question_id']}")
        for r in export_records()
    ]  # fmt: skip


def pair_rows() -> list[tuple[Any, ...]]:
    return sorted(
        PairCount.objects.values_list(
            "model_a__name", "model_b__name", "category", "model_a_wins", "model_b_wins", "ties",
            "both_bad",
        )
    )  # fmt: skip


def check_migration_keeps_votes_counts_and_releases(apps: Apps) -> None:
    populate_old_schema(apps, 240)
    bt = publishing.default_params(method="bt", bootstrap_rounds=20)
    elo = publishing.default_params(method="elo", bootstrap_rounds=20)
    old = [
        publish_old(apps, category="", params=bt),
        publish_old(apps, category="coding", params=bt),
        publish_old(apps, category="", params=elo),
    ]
    votes_before, counts_before = public_votes(apps), pair_rows()
    last_vote_id = apps.get_model("arena", "Vote").objects.order_by("id").last().id

    migrate_to_latest()

    from arena.models import Vote

    assert Vote.objects.count() == Outcome.objects.count() == len(votes_before) == 240
    assert public_votes(None) == votes_before  # the public export schema, vote for vote
    assert Outcome.objects.position() == (240, last_vote_id)  # outcome ids are the vote ids
    assert pair_rows() == counts_before
    assert publishing.rebuild_pair_counts() == []  # the outcome log recounts to the same counts
    for release in old:
        stored = Release.objects.get(pk=release.pk)
        verification = publishing.verify_release(release=stored)
        assert verification.ok, (stored, verification.recomputed_csv)
        again = publishing.publish_release(
            category=stored.category,
            params=ratings.params_from_dict(stored.params),
            force=True,
        )
        assert again is not None and again.csv_text.encode() == stored.csv_text.encode()
        assert again.input_digest == stored.input_digest
    check_new_votes_follow_the_carried_ones(last_vote_id)


def check_new_votes_follow_the_carried_ones(last_vote_id: int) -> None:
    from arena import services
    from arena.models import Battle
    from arena.voters import Voter
    from contestants.models import Contestant

    alpha, beta = Contestant.objects.filter(name__in=["alpha", "beta"]).order_by("name")
    now = timezone.now()
    battle = Battle.objects.create(
        model_a=beta, model_b=alpha, status="ready", answer_a_at=now, answer_b_at=now
    )
    before = PairCount.objects.get(model_a=alpha, model_b=beta, category="").model_b_wins
    vote, created = services.record_vote(
        battle_id=battle.pk, winner="model_a", voter=Voter("anon:after", "192.0.2.9")
    )
    assert created and vote.pk > last_vote_id and vote.outcome_id == vote.pk
    assert PairCount.objects.get(model_a=alpha, model_b=beta, category="").model_b_wins == (
        before + 1
    )


def test_migration_carries_votes_to_outcomes_and_old_releases_verify(old_apps: Apps) -> None:
    if connection.vendor != "sqlite":
        pytest.skip("the unit tier runs this on SQLite; PostgreSQL is the integration test")
    check_migration_keeps_votes_counts_and_releases(old_apps)


@pytest.mark.integration
def test_migration_carries_votes_to_outcomes_on_postgres(
    postgres_and_redis: None, old_apps: Apps
) -> None:
    assert connection.vendor == "postgresql"
    check_migration_keeps_votes_counts_and_releases(old_apps)
