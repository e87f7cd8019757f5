from __future__ import annotations

import json
import math
import random

import numpy as np
import pytest

from evalcore.errors import EmptyInputError, UnknownModelError
from evalcore.ratings import (
    CSV_COLUMNS,
    BattleFilter,
    PairCounts,
    RatingParams,
    compute_ratings,
    rate_battles,
)
from evalcore.ratings.result import build_result
from tests.evalcore.ratings.synthetic import model_names, simulate

MIRROR = {
    "model_a": "model_b",
    "model_b": "model_a",
    "tie": "tie",
    "tie (bothbad)": "tie (bothbad)",
}


@pytest.fixture(scope="module")
def counts() -> PairCounts:
    a, b, outcome = simulate(np.linspace(-1, 1, 5), 2000, seed=1)
    return PairCounts.from_codes(model_names(5), a, b, outcome)


def test_csv_has_exactly_the_documented_columns_and_fixed_decimals(counts):
    text = compute_ratings(counts, RatingParams(bootstrap_rounds=50)).to_csv()
    lines = text.splitlines()
    assert lines[0] == "rank,rank_ub,model,rating,ci_lower,ci_upper,votes,win_rate"
    assert tuple(lines[0].split(",")) == CSV_COLUMNS
    rank, rank_ub, model, rating, lower, upper, votes, win_rate = lines[1].split(",")
    assert (rank, model) == ("1", "model-04")
    for value in (rating, lower, upper):
        assert len(value.split(".")[1]) == 2
    assert len(win_rate.split(".")[1]) == 4
    assert text.endswith("\n") and "\r" not in text


def test_rows_are_sorted_by_rating_with_competition_ranks(counts):
    rows = compute_ratings(counts, RatingParams(bootstrap_rounds=0)).rows
    assert [r.rating for r in rows] == sorted((r.rating for r in rows), reverse=True)
    assert [r.rank for r in rows] == [1, 2, 3, 4, 5]


def test_rank_ub_counts_models_whose_lower_bound_beats_this_upper_bound():
    counts = PairCounts.from_rows(
        [("a", "b", 1, 1, 0, 0), ("b", "c", 1, 1, 0, 0), ("a", "c", 1, 1, 0, 0)]
    )
    ratings = np.array([1100.0, 1050.0, 900.0])
    lower = np.array([1080.0, 1000.0, 850.0])
    upper = np.array([1120.0, 1090.0, 990.0])
    result = build_result(
        counts, RatingParams(), ratings, (lower, upper), input_digest="x", diagnostics={}
    )
    assert [(r.model, r.rank, r.rank_ub) for r in result.rows] == [
        ("a", 1, 1),
        ("b", 2, 1),
        ("c", 3, 3),
    ]


def test_equal_ratings_share_a_rank():
    counts = PairCounts.from_rows([("a", "b", 2, 2, 0, 0), ("b", "c", 2, 2, 0, 0)])
    assert [r.rank for r in compute_ratings(counts, RatingParams(bootstrap_rounds=0)).rows] == [
        1,
        1,
        1,
    ]


def test_min_votes_hides_models_but_keeps_them_in_the_fit():
    counts = PairCounts.from_rows(
        [("a", "b", 30, 20, 0, 0), ("b", "c", 25, 25, 0, 0), ("new", "a", 2, 1, 0, 0)]
    )
    shown = compute_ratings(counts, RatingParams(bootstrap_rounds=0, min_votes=10))
    everyone = compute_ratings(counts, RatingParams(bootstrap_rounds=0))
    assert shown.below_min_votes == ("new",)
    assert [r.model for r in shown.rows] == ["a", "b", "c"]
    assert shown.row_for("a").rating == everyone.row_for("a").rating
    assert shown.matrices.models == ("a", "b", "c")
    with pytest.raises(EmptyInputError, match="min_votes=1000"):
        compute_ratings(counts, RatingParams(bootstrap_rounds=0, min_votes=1000))


def test_votes_and_win_rate_leave_ties_out_of_the_rate():
    counts = PairCounts.from_rows([("a", "b", 3, 1, 4, 2)])
    row = compute_ratings(counts, RatingParams(bootstrap_rounds=0)).row_for("a")
    assert row.votes == 10
    assert row.win_rate == 0.75


def test_matrices_are_consistent(counts):
    result = compute_ratings(counts, RatingParams(bootstrap_rounds=0))
    matrices = result.matrices
    assert matrices.models == tuple(r.model for r in result.rows)
    assert np.array_equal(matrices.battles, matrices.battles.T)
    off = ~np.eye(5, dtype=bool)
    np.testing.assert_allclose((matrices.predicted + matrices.predicted.T)[off], 1.0)
    np.testing.assert_allclose((matrices.win_fraction + matrices.win_fraction.T)[off], 1.0)
    top, bottom = result.rows[0], result.rows[-1]
    expected = 1 / (1 + 10 ** ((bottom.rating - top.rating) / 400))
    assert matrices.predicted[0, -1] == pytest.approx(expected)
    assert math.isnan(matrices.predicted[0, 0])


def test_json_is_complete_and_reproducible(counts):
    params = RatingParams(bootstrap_rounds=100, seed=5, anchor=("model-00", 800.0))
    text = compute_ratings(counts, params).to_json()
    assert text == compute_ratings(counts, params).to_json()
    document = json.loads(text)
    assert document["format"] == "ladder.ratings.v1"
    assert document["input_digest"] == counts.digest()
    assert RatingParams.from_dict(document["params"]) == params
    assert list(document["rows"][0]) == list(CSV_COLUMNS)
    assert len(document["matrices"]["predicted"]) == 5
    assert document["diagnostics"]["bootstrap"]["rounds"] == 100


def test_same_battles_in_any_order_or_seating_give_identical_bytes(battles):
    params = RatingParams(bootstrap_rounds=100, seed=2)
    expected = rate_battles(battles, params)
    shuffled = battles[:]
    random.Random(1).shuffle(shuffled)
    swapped = [
        {**b, "model_a": b["model_b"], "model_b": b["model_a"], "winner": MIRROR[b["winner"]]}
        for b in shuffled
    ]
    assert rate_battles(swapped, params).to_csv() == expected.to_csv()
    assert rate_battles(swapped, params).to_json() == expected.to_json()


def test_rate_battles_records_selection_and_skipped_rows(battles):
    result = rate_battles(
        battles + [{"model_a": "x", "model_b": "x", "winner": "tie"}],
        RatingParams(bootstrap_rounds=0),
        selection=BattleFilter(category="coding"),
        skip_invalid=True,
    )
    assert result.selection == BattleFilter(category="coding")
    assert result.skipped is not None and result.skipped.skipped_rows == 1
    assert sum(r.votes for r in result.rows) == 2 * 5


def test_unknown_anchor_is_an_unknown_model_error(counts):
    with pytest.raises(UnknownModelError) as caught:
        compute_ratings(counts, RatingParams(anchor=("gpt-7", 1000.0)))
    assert caught.value.fields == {"anchor": "gpt-7"}


def test_table_output_lines_up(counts):
    table = compute_ratings(counts, RatingParams(bootstrap_rounds=0)).to_table()
    lines = table.splitlines()
    assert lines[0].split() == list(CSV_COLUMNS)
    assert len(lines) == 6 and " - " in lines[1] + " "
