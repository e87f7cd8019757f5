"""Property-style checks on random battle sets (hypothesis)."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from evalcore.ratings import PairCounts, RatingParams, compute_online_elo, compute_ratings

NAMES = ("ant", "bee", "cat", "dog")
MIRROR = {
    "model_a": "model_b",
    "model_b": "model_a",
    "tie": "tie",
    "tie (bothbad)": "tie (bothbad)",
}

battle = st.tuples(
    st.sampled_from(NAMES), st.sampled_from(NAMES), st.sampled_from(tuple(MIRROR))
).filter(lambda t: t[0] != t[1])
battle_lists = st.lists(battle, min_size=1, max_size=40)
PROPERTY = settings(max_examples=40, deadline=None)


def records(battles):
    return [{"model_a": a, "model_b": b, "winner": w} for a, b, w in battles]


@PROPERTY
@given(battle_lists, st.data())
def test_digest_and_ratings_ignore_order_and_seating(battles, data):
    order = data.draw(st.permutations(range(len(battles))))
    flips = data.draw(st.lists(st.booleans(), min_size=len(battles), max_size=len(battles)))
    moved = [
        (b, a, MIRROR[w]) if flip else (a, b, w)
        for (a, b, w), flip in zip((battles[i] for i in order), flips, strict=True)
    ]
    original, _ = PairCounts.from_battles(records(battles))
    changed, _ = PairCounts.from_battles(records(moved))
    assert changed.digest() == original.digest()
    params = RatingParams(bootstrap_rounds=20, ridge=0.5)  # the prior keeps any data finite
    assert compute_ratings(changed, params).to_csv() == compute_ratings(original, params).to_csv()


@PROPERTY
@given(battle_lists, st.floats(min_value=1, max_value=64))
def test_online_elo_is_zero_sum(battles, k):
    ratings = compute_online_elo(records(battles), k=k)
    assert math.isclose(sum(ratings.values()), 1000 * len(ratings), abs_tol=1e-8)


@PROPERTY
@given(battle_lists)
def test_ridge_ratings_are_finite_and_centred(battles):
    counts, _ = PairCounts.from_battles(records(battles))
    rows = compute_ratings(counts, RatingParams(bootstrap_rounds=0, ridge=0.1)).rows
    ratings = np.array([r.rating for r in rows])
    assert np.isfinite(ratings).all()
    assert abs(ratings.mean() - 1000) < 0.01 * len(rows)  # rounding to 2 decimals only
