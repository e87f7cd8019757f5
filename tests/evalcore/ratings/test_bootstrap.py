from __future__ import annotations

import itertools
import math
from collections import Counter

import numpy as np
import pytest
from scipy.stats import chisquare

from evalcore.ratings import PairCounts, RatingParams, compute_ratings
from evalcore.ratings.bradley_terry import PairOutcomes, fit_strengths
from evalcore.ratings.sampling import draw_cells_v1
from tests.evalcore.ratings.synthetic import model_names, simulate

RATING_PER_NAT = 400 / math.log(10)


@pytest.fixture(scope="module")
def counts() -> PairCounts:
    a, b, outcome = simulate(np.linspace(-0.8, 0.8, 6), 3000, seed=4)
    return PairCounts.from_codes(model_names(6), a, b, outcome)


def test_same_seed_gives_identical_intervals(counts):
    params = RatingParams(bootstrap_rounds=300, seed=7)
    first, second = compute_ratings(counts, params), compute_ratings(counts, params)
    assert first.rows == second.rows
    assert first.to_json() == second.to_json()
    other = compute_ratings(counts, RatingParams(bootstrap_rounds=300, seed=8))
    assert [r.ci_lower for r in other.rows] != [r.ci_lower for r in first.rows]


def test_intervals_contain_the_point_estimate(counts):
    for row in compute_ratings(counts, RatingParams(bootstrap_rounds=300)).rows:
        assert row.ci_lower < row.rating < row.ci_upper


def test_each_round_is_a_resample_of_the_votes_with_replacement():
    """Cell draws have the exact law of tallying N votes drawn with replacement."""
    cells = np.array([[2.0, 1.0, 0.0], [0.0, 1.0, 1.0]])  # five votes in four non-empty cells
    outcomes = PairOutcomes(("a", "b", "c"), np.array([0, 1]), np.array([1, 2]), cells)
    votes = np.repeat(np.arange(6), cells.ravel().astype(int))  # the cell of each vote
    # Every one of the 5^5 equally likely resamples of the votes, tallied.
    picks = np.array(list(itertools.product(range(5), repeat=5)))
    tallies = [tuple(np.bincount(votes[p], minlength=6)) for p in picks]
    law = Counter(tallies)
    rounds = 20_000
    ours = draw_cells_v1(outcomes.cells, np.random.default_rng(0), rounds).reshape(rounds, -1)
    seen = Counter(tuple(int(v) for v in row) for row in ours)
    assert set(seen) <= set(law)
    keys = sorted(law)
    expected = np.array([law[k] / len(tallies) * rounds for k in keys])
    _, p_value = chisquare([seen[k] for k in keys], expected)
    assert p_value > 1e-3


def test_anchoring_shifts_point_and_bounds_alike_and_keeps_the_anchor_uncertain(counts):
    free = compute_ratings(counts, RatingParams(bootstrap_rounds=200))
    anchored = compute_ratings(
        counts, RatingParams(bootstrap_rounds=200, anchor=("model-02", 1114.0))
    )
    shift = anchored.row_for("model-02").rating - free.row_for("model-02").rating
    assert anchored.row_for("model-02").rating == pytest.approx(1114.0)
    for row in free.rows:
        moved = anchored.row_for(row.model)
        assert moved.rating == pytest.approx(row.rating + shift, abs=1e-9)
        assert moved.ci_lower == pytest.approx(row.ci_lower + shift, abs=1e-9)
        assert moved.ci_upper == pytest.approx(row.ci_upper + shift, abs=1e-9)
    anchor_row = anchored.row_for("model-02")
    assert anchor_row.ci_upper - anchor_row.ci_lower > 1.0
    assert anchored.to_csv() != free.to_csv()


def test_degenerate_rounds_stay_finite_and_are_counted():
    # 'lucky' lost once in 20 battles, so ~36% of resamples lose that loss.
    counts = PairCounts.from_rows(
        [
            ("a", "b", 30, 20, 5, 0),
            ("b", "c", 25, 25, 5, 0),
            ("a", "c", 20, 30, 5, 0),
            ("lucky", "a", 19, 1, 0, 0),
        ]
    )
    result = compute_ratings(counts, RatingParams(bootstrap_rounds=200, seed=1))
    bootstrap = result.diagnostics["bootstrap"]
    assert 30 < bootstrap["degenerate_rounds"] < 120
    assert set(bootstrap["unbounded_in_rounds"]) == {"lucky"}
    assert bootstrap["unconverged_rounds"] == 0
    lucky = result.row_for("lucky")
    assert all(math.isfinite(v) for v in (lucky.ci_lower, lucky.ci_upper))
    assert lucky.ci_upper - lucky.rating > 500  # the data cannot bound it from above
    steady = result.row_for("b")
    assert steady.ci_upper - steady.ci_lower < 150  # and that does not leak into the others


def test_davidson_bootstrap_runs_and_is_deterministic(counts):
    params = RatingParams(method="davidson", bootstrap_rounds=100, seed=3)
    first = compute_ratings(counts, params)
    assert first.to_csv() == compute_ratings(counts, params).to_csv()
    assert all(r.ci_lower < r.rating < r.ci_upper for r in first.rows)


def test_zero_rounds_gives_no_interval_and_plain_rank_as_rank_ub(counts):
    result = compute_ratings(counts, RatingParams(bootstrap_rounds=0))
    assert all(math.isnan(r.ci_lower) and math.isnan(r.ci_upper) for r in result.rows)
    assert [r.rank_ub for r in result.rows] == [r.rank for r in result.rows]
    assert ",," in result.to_csv()


@pytest.mark.slow
def test_bootstrap_intervals_cover_the_true_ratings_at_the_stated_rate():
    m, covered, total = 8, 0, 0
    truth = np.linspace(-1.0, 1.0, m)
    expected = RATING_PER_NAT * (truth - truth.mean())
    for seed in range(150):
        a, b, outcome = simulate(truth, 4000, seed=1000 + seed, tie_rate=0.0, both_bad_rate=0.0)
        counts = PairCounts.from_codes(model_names(m), a, b, outcome)
        result = compute_ratings(counts, RatingParams(bootstrap_rounds=400, seed=seed))
        for i, name in enumerate(model_names(m)):
            row = result.row_for(name)
            covered += row.ci_lower - 1000 <= expected[i] <= row.ci_upper - 1000
            total += 1
    assert 0.92 <= covered / total <= 0.98, covered / total


@pytest.mark.slow
def test_count_bootstrap_matches_refitting_resampled_votes():
    """The fast path against the plain one: per-vote resampling and a refit each round."""
    m, rounds = 5, 1500
    a, b, outcome = simulate(np.linspace(-0.5, 0.5, m), 600, seed=9)
    counts = PairCounts.from_codes(model_names(m), a, b, outcome)
    result = compute_ratings(counts, RatingParams(bootstrap_rounds=rounds, seed=0))
    rng = np.random.default_rng(123)
    plain = []
    for _ in range(rounds):
        pick = rng.integers(0, a.size, a.size)
        resampled = PairCounts.from_codes(model_names(m), a[pick], b[pick], outcome[pick])
        fit = fit_strengths(PairOutcomes.from_counts(resampled, "half"), method="bt", ridge=0.0)
        plain.append(1000 + RATING_PER_NAT * fit.strengths)
    lower, upper = np.quantile(np.array(plain), [0.025, 0.975], axis=0)
    for i, name in enumerate(model_names(m)):
        row = result.row_for(name)
        width = upper[i] - lower[i]
        assert row.ci_lower == pytest.approx(lower[i], abs=0.1 * width)
        assert row.ci_upper == pytest.approx(upper[i], abs=0.1 * width)
