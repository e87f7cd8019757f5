"""A small named cast: four contestants, a handful of pair counts, fast rating parameters."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.contrib.auth.models import User
from rest_framework.authtoken.models import Token

from contestants.models import Contestant
from contestants.services import record_evaluation
from leaderboard.models import PairCount

# (model_a, model_b, a wins, b wins, ties, both bad): alpha > beta > gamma; delta barely played.
COUNTS = [
    ("alpha", "beta", 30, 18, 5, 2),
    ("alpha", "gamma", 40, 10, 4, 1),
    ("beta", "gamma", 28, 20, 6, 3),
    ("beta", "delta", 2, 1, 0, 0),
    ("delta", "gamma", 1, 2, 0, 0),
]
FAST_PARAMS = {"bootstrap_rounds": 40, "seed": 7, "min_votes": 10, "ridge": 0.01}


@pytest.fixture(autouse=True)
def fast_rating_params(settings: pytest.FixtureRequest) -> None:
    settings.LEADERBOARD_RATING_PARAMS = FAST_PARAMS  # type: ignore[attr-defined]
    settings.LADDER_CODE_VERSION = "test"  # type: ignore[attr-defined]
    from leaderboard.version import code_version

    code_version.cache_clear()


@pytest.fixture
def cast(db: None) -> dict[str, Contestant]:
    facts = {
        "alpha": {"organization": "Alpha Labs", "license": "MIT"},
        "beta": {"organization": "Beta Co", "license": "Apache-2.0", "parameters": 7_000_000},
        "gamma": {"organization": "Gamma", "license": "CC-BY-4.0"},
        "delta": {"organization": "Delta", "license": "MIT"},
    }
    results = {"alpha": {"fewshot_average": 0.61}, "gamma": {"eval_cost_usd": 1.5}}
    cast = {
        name: Contestant.objects.create(
            name=name, checkpoint_path=f"/ckpt/{name}", status="active", **values
        )
        for name, values in facts.items()
    }
    for name, measured in results.items():
        record_evaluation(contestant_id=cast[name].pk, **measured)
    return cast


@pytest.fixture
def add_counts(cast: dict[str, Contestant]) -> Callable[..., None]:
    def add(rows: list[tuple[str, str, int, int, int, int]], category: str = "") -> None:
        for a, b, wins_a, wins_b, ties, both_bad in rows:
            first, second = sorted((a, b))
            if first != a:
                wins_a, wins_b = wins_b, wins_a
            row, _ = PairCount.objects.get_or_create(
                model_a=cast[first], model_b=cast[second], category=category
            )
            row.model_a_wins += wins_a
            row.model_b_wins += wins_b
            row.ties += ties
            row.both_bad += both_bad
            row.save()

    return add


@pytest.fixture
def counts(add_counts: Callable[..., None]) -> None:
    add_counts(COUNTS)


@pytest.fixture
def staff_token(db: None) -> str:
    user = User.objects.create_user("staff", password="pw", is_staff=True)
    return Token.objects.create(user=user).key


@pytest.fixture
def user_token(db: None) -> str:
    user = User.objects.create_user("voter", password="pw")
    return Token.objects.create(user=user).key


@pytest.fixture
def imported_votes(db: None) -> None:
    """500 votes in the arena's vote log (and its pair counts), as an imported dump."""
    from arena.dumps import import_battles
    from tests.leaderboard.votes import battles

    report = import_battles(battles())
    assert report.imported == 500
