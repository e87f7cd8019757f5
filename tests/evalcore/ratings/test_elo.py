from __future__ import annotations

import random

import numpy as np
import pytest

from evalcore.errors import InvalidParameterError
from evalcore.ratings import (
    PairCounts,
    RatingParams,
    compute_online_elo,
    compute_ratings,
    rate_battles,
)
from evalcore.ratings.elo import STEPS_PER_DRAW, bootstrap_elo, replay_elo
from tests.evalcore.ratings.synthetic import as_records, model_names, simulate


def test_one_win_moves_both_ratings_by_half_k():
    ratings = compute_online_elo([{"model_a": "a", "model_b": "b", "winner": "model_a"}])
    assert ratings == {"a": 1002.0, "b": 998.0}


def test_ties_of_both_kinds_score_one_half():
    for winner in ("tie", "tie (bothbad)"):
        ratings = compute_online_elo(
            [
                {"model_a": "a", "model_b": "b", "winner": "model_a"},
                {"model_a": "a", "model_b": "b", "winner": winner},
            ]
        )
        expected = 1 / (1 + 10 ** ((998 - 1002) / 400))
        assert ratings["a"] == pytest.approx(1002 + 4 * (0.5 - expected))


def test_elo_updates_are_zero_sum():
    a, b, outcome = simulate(np.linspace(-1, 1, 7), 5000, seed=3)
    ratings = replay_elo(
        a, b, np.array([1.0, 0.0, 0.5, 0.5])[outcome], 7, k=32, scale=400, base=10, init=1000
    )
    assert ratings.sum() == pytest.approx(7000, abs=1e-8)
    draws = bootstrap_elo(
        a,
        b,
        np.array([1.0, 0.0, 0.5, 0.5])[outcome],
        7,
        rounds=5,
        seed=0,
        k=32,
        scale=400,
        base=10,
        init=1000,
    )
    assert draws.sum(axis=1) == pytest.approx(np.full(5, 7000.0), abs=1e-8)


def test_online_elo_depends_on_order_and_rate_battles_sorts_by_tstamp():
    a, b, outcome = simulate(np.linspace(-1, 1, 4), 400, seed=2)
    records = as_records(model_names(4), a, b, outcome)
    shuffled = records[:]
    random.Random(0).shuffle(shuffled)
    assert compute_online_elo(shuffled) != compute_online_elo(records)
    params = RatingParams(method="elo", bootstrap_rounds=20)
    assert rate_battles(shuffled, params).to_csv() == rate_battles(records, params).to_csv()
    in_order = compute_online_elo(records)
    assert {r.model: r.rating for r in rate_battles(records, params).rows} == pytest.approx(
        in_order
    )


def test_vectorised_bootstrap_equals_replaying_each_round():
    a, b, outcome = simulate(np.linspace(-1, 1, 5), STEPS_PER_DRAW + 300, seed=4)
    score = np.array([1.0, 0.0, 0.5, 0.5])[outcome]
    constants = {"k": 16.0, "scale": 400.0, "base": 10.0, "init": 1000.0}
    fast = bootstrap_elo(a, b, score, 5, rounds=3, seed=9, **constants)
    # The plain path: the same draws (chunk by chunk, one column per round), replayed one by one.
    rng = np.random.default_rng(9)
    chunks = [
        rng.integers(0, a.size, size=(min(STEPS_PER_DRAW, a.size - low), 3))
        for low in range(0, a.size, STEPS_PER_DRAW)
    ]
    drawn = np.concatenate(chunks)
    for r in range(3):
        pick = drawn[:, r]
        np.testing.assert_allclose(
            fast[r], replay_elo(a[pick], b[pick], score[pick], 5, **constants), atol=1e-9
        )


def test_elo_bootstrap_is_seeded(battles):
    params = RatingParams(method="elo", bootstrap_rounds=50, seed=4)
    assert rate_battles(battles, params).to_json() == rate_battles(battles, params).to_json()


def test_elo_on_counts_is_refused_with_a_pointer():
    counts = PairCounts.from_rows([("a", "b", 1, 1, 0, 0)])
    with pytest.raises(InvalidParameterError, match="rate_battles") as caught:
        compute_ratings(counts, RatingParams(method="elo"))
    assert caught.value.field == "method"


def test_elo_digest_follows_the_time_order(battles):
    params = RatingParams(method="elo", bootstrap_rounds=0)
    reordered = [{**b, "tstamp": -b["tstamp"]} for b in battles]
    assert (
        rate_battles(battles, params).input_digest != rate_battles(reordered, params).input_digest
    )
    bt = RatingParams(bootstrap_rounds=0)
    assert rate_battles(battles, bt).input_digest == rate_battles(reordered, bt).input_digest
