"""The move of Contestant into its own app carries every row over, and back.

The database is migrated back to the schema before the move (contestants absent, leaderboard at
0002), filled through the historical models, then migrated forward; the same check runs on
SQLite (unit tier) and PostgreSQL (integration tier).
"""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.contenttypes.models import ContentType
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from arena.models import Battle
from contestants.models import Contestant, ContestantEvaluation
from leaderboard.models import PairCount
from submissions.models import EvaluationJob

BEFORE_MOVE = [
    ("contestants", None),
    ("contenttypes", "0002_remove_content_type_name"),
    ("leaderboard", "0002_releases"),
    ("arena", "0001_initial"),
    ("submissions", "0001_initial"),
]
OLD_ROWS: dict[str, dict[str, Any]] = {
    "big": {
        "organization": "Big Org",
        "device": "cuda",
        "quantize_int8": True,
        "max_memory": {"cuda": "2GiB", "cpu": "64GiB"},
        "parameters": 7_000_000,
        "training_tokens": 10**9,
        "weights_digest": "ab" * 32,
        "model_card": {"optimizer": "adamw"},
        "fewshot_average": 0.61,
        "fewshot_std": 0.02,
        "eval_cost_usd": 1.5,
        "eval_energy_kwh": 0.25,
        "eval_co2e_g": 120.0,
    },
    "small": {"device": "cpu", "fewshot_average": 0.4},
    "fresh": {},
}
RESULTS = ("fewshot_average", "fewshot_std", "eval_cost_usd", "eval_energy_kwh", "eval_co2e_g")


def migrate(targets: list[tuple[str, str | None]]) -> Any:
    """Migrate to ``targets``; the historical apps of that state."""
    executor = MigrationExecutor(connection)
    executor.migrate(targets)
    executor.loader.build_graph()
    return executor.loader.project_state([t for t in targets if t[1] is not None]).apps


def migrate_to_latest() -> None:
    executor = MigrationExecutor(connection)
    migrate(executor.loader.graph.leaf_nodes())


def fill_old_schema(apps: Any) -> dict[str, int]:
    OldContestant = apps.get_model("leaderboard", "Contestant")
    ids = {}
    for name, values in OLD_ROWS.items():
        ids[name] = OldContestant.objects.create(
            name=name, checkpoint_path=f"/ckpt/{name}", **values
        ).pk
    apps.get_model("leaderboard", "PairCount").objects.create(
        model_a_id=ids["big"], model_b_id=ids["small"], model_a_wins=3, ties=1
    )
    apps.get_model("arena", "Battle").objects.create(
        model_a_id=ids["small"], model_b_id=ids["big"], prompt="hi", status="ready"
    )
    job = apps.get_model("submissions", "EvaluationJob").objects.create(contestant_id=ids["big"])
    OldContentType = apps.get_model("contenttypes", "ContentType")
    OldContentType.objects.filter(
        app_label="contestants"
    ).delete()  # as in a database before the move
    ids["content_type"] = OldContentType.objects.get_or_create(
        app_label="leaderboard", model="contestant"
    )[0].pk
    ids["job"] = job.pk
    return ids


def check_forward(ids: dict[str, int]) -> None:
    for name, old in OLD_ROWS.items():
        contestant = Contestant.objects.get(pk=ids[name])
        assert contestant.name == name and contestant.checkpoint_path == f"/ckpt/{name}"
        assert contestant.serving == {
            "device": old.get("device", "auto"),
            "quantize_int8": old.get("quantize_int8", False),
            "max_memory": old.get("max_memory"),
        }
        contestant.serving_options  # noqa: B018 - the carried options parse
        for field in ("organization", "parameters", "training_tokens", "weights_digest"):
            assert getattr(contestant, field) == old.get(field, getattr(contestant, field))
        assert contestant.model_card == old.get("model_card", {})
        measured = {field: old.get(field) for field in RESULTS}
        stored = ContestantEvaluation.objects.filter(contestant=contestant).values(*RESULTS)
        assert list(stored) == ([measured] if any(measured.values()) else [])
    pair = PairCount.objects.select_related("model_a", "model_b").get()
    assert (pair.model_a.name, pair.model_b.name, pair.model_a_wins, pair.ties) == (
        "big",
        "small",
        3,
        1,
    )
    battle = Battle.objects.select_related("model_a").get()
    assert battle.model_a.name == "small"
    assert EvaluationJob.objects.get(pk=ids["job"]).contestant.name == "big"
    moved = ContentType.objects.get(pk=ids["content_type"])
    assert (moved.app_label, moved.model) == ("contestants", "contestant")


def check_migration_round_trip() -> None:
    ids = fill_old_schema(migrate(BEFORE_MOVE))
    migrate_to_latest()
    check_forward(ids)
    apps = migrate(BEFORE_MOVE)
    OldContestant = apps.get_model("leaderboard", "Contestant")
    back = {c.name: c for c in OldContestant.objects.all()}
    for name, old in OLD_ROWS.items():
        for field in ("device", "quantize_int8", "max_memory", *RESULTS):
            default = {"device": "auto", "quantize_int8": False}.get(field)
            assert getattr(back[name], field) == old.get(field, default), (name, field)
    migrate_to_latest()


@pytest.mark.django_db(transaction=True)
def test_contestant_move_carries_every_row_over_and_back_on_sqlite() -> None:
    if connection.vendor != "sqlite":
        pytest.skip("the integration tier runs this on PostgreSQL")
    check_migration_round_trip()


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_contestant_move_carries_every_row_over_and_back_on_postgresql(
    postgres_and_redis: None,
) -> None:
    assert connection.vendor == "postgresql"
    check_migration_round_trip()
