from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.optimize import minimize
from scipy.special import log_expit, logsumexp

from evalcore.errors import DisconnectedGraphError, EstimationError, UnboundedRatingError
from evalcore.ratings import PairCounts, RatingParams, compute_ratings
from tests.evalcore.ratings.synthetic import model_names, simulate, simulate_davidson

RATING_PER_NAT = 400 / math.log(10)


def point(counts: PairCounts, **overrides) -> dict[str, float]:
    result = compute_ratings(counts, RatingParams(bootstrap_rounds=0, **overrides))
    return {row.model: row.rating for row in result.rows}


def expanded_votes(a, b, outcome, m, ties="half"):
    """The ±1 design matrix and targets of the public notebook, one row per vote."""
    keep = outcome != 3 if ties == "exclude_bothbad" else np.ones(a.size, dtype=bool)
    a, b, outcome = a[keep], b[keep], outcome[keep]
    design = np.zeros((a.size, m))
    design[np.arange(a.size), a] = 1.0
    design[np.arange(a.size), b] = -1.0
    target = np.select([outcome == 0, outcome == 1], [1.0, 0.0], default=0.5)
    return design, target


def per_vote_bt(design, target):
    """Independent solver: BFGS on the per-vote log-likelihood, one strength pinned at 0."""
    m = design.shape[1]

    def loss(free):
        theta = np.concatenate([[0.0], free])
        z = design @ theta
        value = -(target * log_expit(z) + (1 - target) * log_expit(-z)).sum()
        residual = target - 1 / (1 + np.exp(-z))
        return value, -(design.T @ residual)[1:]

    fit = minimize(
        loss, np.zeros(m - 1), jac=True, method="BFGS", options={"gtol": 1e-10, "maxiter": 10_000}
    )
    theta = np.concatenate([[0.0], fit.x])
    return 1000 + RATING_PER_NAT * (theta - theta.mean())


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("ties", ["half", "exclude_bothbad"])
def test_point_estimates_match_a_per_vote_solver_within_a_hundredth(seed, ties):
    m = 7
    truth = np.random.default_rng(seed).normal(0, 0.8, m)
    a, b, outcome = simulate(truth, 3000, seed=seed)
    counts = PairCounts.from_codes(model_names(m), a, b, outcome)
    ours = point(counts, ties=ties)
    independent = per_vote_bt(*expanded_votes(a, b, outcome, m, ties))
    for i, name in enumerate(model_names(m)):
        assert ours[name] == pytest.approx(independent[i], abs=0.01)


def test_point_estimates_match_the_public_notebook_logistic_regression():
    from sklearn.linear_model import LogisticRegression

    m = 6
    truth = np.linspace(-1, 1, m)
    a, b, outcome = simulate(truth, 2000, seed=11)
    counts = PairCounts.from_codes(model_names(m), a, b, outcome)
    # The notebook duplicates every vote; a tie becomes one A win and one B win.
    design, target = expanded_votes(a, b, outcome, m)
    design = np.vstack([design, design]) * math.log(10)
    labels = np.concatenate([target >= 0.5, target > 0.5]).astype(int)
    model = LogisticRegression(fit_intercept=False, C=np.inf, tol=1e-12, max_iter=10_000)
    coef = model.fit(design, labels).coef_[0]
    expected = 1000 + 400 * (coef - coef.mean())
    ours = point(counts)
    for i, name in enumerate(model_names(m)):
        assert ours[name] == pytest.approx(expected[i], abs=0.01)


def test_synthetic_strengths_are_recovered():
    m = 6
    truth = np.linspace(-1.2, 1.2, m)
    a, b, outcome = simulate(truth, 60_000, seed=5, tie_rate=0.0, both_bad_rate=0.0)
    ours = point(PairCounts.from_codes(model_names(m), a, b, outcome))
    expected = 1000 + RATING_PER_NAT * (truth - truth.mean())
    for i, name in enumerate(model_names(m)):
        assert ours[name] == pytest.approx(expected[i], abs=12)  # ≈ 4 standard errors


def test_davidson_matches_a_per_vote_solver():
    m = 5
    truth = np.array([-0.6, -0.2, 0.0, 0.3, 0.7])
    a, b, outcome = simulate(truth, 4000, seed=8, tie_rate=0.2, both_bad_rate=0.05)
    counts = PairCounts.from_codes(model_names(m), a, b, outcome)
    result = compute_ratings(counts, RatingParams(method="davidson", bootstrap_rounds=0))
    tie = outcome >= 2

    def loss(params):
        theta = np.concatenate([[0.0], params[: m - 1]])
        half = (theta[a] - theta[b]) / 2
        logits = np.stack([half, -half, np.full_like(half, params[-1])])
        chosen = np.where(tie, 2, outcome)
        return -(logits[chosen, np.arange(a.size)] - logsumexp(logits, axis=0)).sum()

    fit = minimize(loss, np.zeros(m), method="BFGS", options={"gtol": 1e-9})
    theta = np.concatenate([[0.0], fit.x[: m - 1]])
    expected = 1000 + RATING_PER_NAT * (theta - theta.mean())
    for i, name in enumerate(model_names(m)):
        assert result.row_for(name).rating == pytest.approx(expected[i], abs=0.01)
    assert result.diagnostics["davidson_nu"] == pytest.approx(math.exp(fit.x[-1]), rel=1e-4)


def test_davidson_recovers_strengths_and_tie_rate_of_davidson_data():
    m, nu = 5, 0.6
    truth = np.linspace(-1, 1, m)
    a, b, outcome = simulate_davidson(truth, nu, 60_000, seed=6)
    result = compute_ratings(
        PairCounts.from_codes(model_names(m), a, b, outcome),
        RatingParams(method="davidson", bootstrap_rounds=0),
    )
    expected = 1000 + RATING_PER_NAT * (truth - truth.mean())
    for i, name in enumerate(model_names(m)):
        assert result.row_for(name).rating == pytest.approx(expected[i], abs=12)
    assert result.diagnostics["davidson_nu"] == pytest.approx(nu, rel=0.05)


def test_davidson_without_ties_is_a_clear_error():
    counts = PairCounts.from_rows([("a", "b", 3, 2, 0, 0), ("b", "c", 1, 1, 0, 0)])
    with pytest.raises(EstimationError, match="needs both ties and decided battles"):
        compute_ratings(counts, RatingParams(method="davidson", bootstrap_rounds=0))


def test_davidson_refuses_a_model_that_only_won_and_tied():
    # Under Davidson ties do not bound a strength (ν can grow with it), so only decided
    # battles count towards a finite estimate.
    counts = PairCounts.from_rows(
        [("a", "b", 3, 2, 1, 0), ("b", "c", 2, 2, 1, 0), ("a", "d", 0, 2, 3, 0)]
    )
    with pytest.raises(UnboundedRatingError, match="'d' never lost a decided battle"):
        compute_ratings(counts, RatingParams(method="davidson", bootstrap_rounds=0))
    assert compute_ratings(counts, RatingParams(bootstrap_rounds=0)).row_for("d").rating > 1000


def test_davidson_bootstrap_survives_rounds_without_a_finite_estimate():
    counts = PairCounts.from_rows(
        [("a", "b", 2, 1, 1, 0), ("a", "c", 1, 1, 0, 0), ("b", "c", 1, 1, 1, 0)]
    )
    result = compute_ratings(counts, RatingParams(method="davidson", bootstrap_rounds=200))
    assert result.diagnostics["bootstrap"]["degenerate_rounds"] > 0
    assert result.diagnostics["bootstrap"]["unconverged_rounds"] == 0
    assert all(math.isfinite(r.ci_lower) and math.isfinite(r.ci_upper) for r in result.rows)


def test_ratings_are_centred_on_init_and_scaled_like_elo():
    counts = PairCounts.from_rows([("a", "b", 10, 1, 0, 0)])
    ours = point(counts)
    assert ours["a"] + ours["b"] == pytest.approx(2000)
    # 10:1 odds is 400·log10(10) = 400 points apart.
    assert ours["a"] - ours["b"] == pytest.approx(400)


def test_ties_count_as_half_a_win_each_way():
    with_ties = point(PairCounts.from_rows([("a", "b", 3, 1, 2, 2)]))
    as_wins = point(PairCounts.from_rows([("a", "b", 5, 3, 0, 0)]))
    assert with_ties == pytest.approx(as_wins, abs=1e-6)
    excluded = point(PairCounts.from_rows([("a", "b", 3, 1, 2, 2)]), ties="exclude_bothbad")
    assert excluded == pytest.approx(
        point(PairCounts.from_rows([("a", "b", 4, 2, 0, 0)])), abs=1e-6
    )


def test_disconnected_graph_is_a_clear_error():
    counts = PairCounts.from_rows([("a", "b", 2, 1, 0, 0), ("c", "d", 1, 2, 0, 0)])
    with pytest.raises(DisconnectedGraphError) as caught:
        point(counts)
    assert caught.value.code == "disconnected_graph"
    assert caught.value.components == [["a", "b"], ["c", "d"]]
    assert "ridge" in str(caught.value)


def test_model_that_never_lost_is_a_clear_error_naming_it():
    counts = PairCounts.from_rows(
        [("a", "b", 2, 1, 0, 0), ("b", "c", 2, 1, 0, 0), ("a", "star", 0, 3, 0, 0)]
    )
    with pytest.raises(UnboundedRatingError) as caught:
        point(counts)
    assert caught.value.models == ["star"]
    assert caught.value.code == "unbounded_rating"
    assert "'star' never lost" in str(caught.value)


def test_a_tie_is_enough_to_bound_an_unbeaten_model():
    counts = PairCounts.from_rows([("a", "b", 2, 1, 0, 0), ("a", "star", 0, 3, 1, 0)])
    assert all(math.isfinite(v) for v in point(counts).values())


@pytest.mark.parametrize(
    "rows",
    [
        [("a", "b", 2, 1, 0, 0), ("c", "d", 1, 2, 0, 0)],
        [("a", "b", 2, 1, 0, 0), ("a", "star", 0, 3, 0, 0)],
    ],
)
def test_a_ridge_prior_gives_finite_ratings(rows):
    ratings = point(PairCounts.from_rows(rows), ridge=0.1)
    assert all(math.isfinite(v) for v in ratings.values())
    if "star" in ratings:
        assert ratings["star"] == max(ratings.values())


def test_a_tiny_ridge_barely_moves_well_posed_ratings():
    m = 5
    a, b, outcome = simulate(np.linspace(-1, 1, m), 5000, seed=2)
    counts = PairCounts.from_codes(model_names(m), a, b, outcome)
    assert point(counts, ridge=1e-6) == pytest.approx(point(counts), abs=1e-3)


def test_extreme_but_finite_data_converges():
    counts = PairCounts.from_rows([("a", "b", 10_000, 1, 0, 0), ("b", "c", 10_000, 1, 0, 0)])
    ratings = point(counts)
    assert ratings["a"] - ratings["b"] == pytest.approx(1600, abs=0.01)
