"""Sandwich intervals and reweighting, against explicit per-vote computations."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import minimize
from scipy.special import expit, log_expit, ndtri

from evalcore.errors import InvalidParameterError
from evalcore.ratings import PairCounts, RatingParams, compute_ratings
from evalcore.ratings.bradley_terry import PairOutcomes, fit_strengths, pair_weights
from evalcore.ratings.sandwich import pair_sandwich
from tests.evalcore.ratings.synthetic import model_names, simulate

Y_BY_OUTCOME = np.array([1.0, 0.0, 0.5, 0.5])  # a wins, b wins, tie, both bad (ties = half)


def _votes(m: int, n: int, seed: int, oversample: int = 0) -> tuple[np.ndarray, ...]:
    strengths = np.linspace(-0.8, 0.8, m)
    a, b, outcome = simulate(strengths, n, seed=seed)
    if oversample:  # many extra votes on one pair, as a skewed sampler would produce
        ea, eb, eo = simulate(strengths[:2], oversample, seed=seed + 1)
        a, b, outcome = (
            np.concatenate([a, ea]),
            np.concatenate([b, eb]),
            np.concatenate([outcome, eo]),
        )
    return a, b, outcome


def _outcomes(a, b, outcome, m, floor=None) -> tuple[PairCounts, PairOutcomes]:
    counts = PairCounts.from_codes(model_names(m), a, b, outcome)
    return counts, PairOutcomes.from_counts(counts, "half", reweight_floor=floor)


def _vote_weights(a, b, floor: int | None) -> np.ndarray:
    low, high = np.minimum(a, b), np.maximum(a, b)
    key = low * 1000 + high
    _, inverse, per_pair = np.unique(key, return_inverse=True, return_counts=True)
    if floor is None:
        return np.ones(a.size)
    raw = 1.0 / np.maximum(per_pair[inverse], floor)
    return raw * a.size / raw.sum()


def _explicit(a, b, outcome, s, w) -> tuple[np.ndarray, np.ndarray]:
    """H and G summed vote by vote: x = e_a − e_b, y ∈ {1, 0, ½}."""
    m = s.size
    x = np.zeros((a.size, m))
    x[np.arange(a.size), a] += 1.0
    x[np.arange(a.size), b] -= 1.0
    p = expit(x @ s)
    y = Y_BY_OUTCOME[outcome]
    hessian = (x * (w * p * (1 - p))[:, None]).T @ x
    gradient_cov = (x * (w**2 * (p - y) ** 2)[:, None]).T @ x
    return hessian, gradient_cov


@pytest.mark.parametrize("floor", [None, 50])
def test_hessian_and_gradient_covariance_match_a_per_vote_computation(floor):
    a, b, outcome = _votes(5, 400, seed=1, oversample=300)
    _, outcomes = _outcomes(a, b, outcome, 5, floor)
    fit = fit_strengths(outcomes, method="bt", ridge=0.0)
    sandwich = pair_sandwich(outcomes, fit.strengths, ridge=0.0)
    hessian, gradient_cov = _explicit(a, b, outcome, fit.strengths, _vote_weights(a, b, floor))
    np.testing.assert_allclose(sandwich.hessian, hessian, rtol=1e-10, atol=1e-9)
    np.testing.assert_allclose(sandwich.gradient_covariance, gradient_cov, rtol=1e-10, atol=1e-9)


def test_hessian_matches_finite_differences_of_the_per_vote_gradient():
    a, b, outcome = _votes(4, 300, seed=2)
    _, outcomes = _outcomes(a, b, outcome, 4)
    fit = fit_strengths(outcomes, method="bt", ridge=0.0)
    y = Y_BY_OUTCOME[outcome]

    def gradient(s: np.ndarray) -> np.ndarray:
        residual = expit(s[a] - s[b]) - y
        return np.bincount(a, residual, 4) - np.bincount(b, residual, 4)

    step = 1e-6
    numeric = np.stack(
        [
            (gradient(fit.strengths + step * e) - gradient(fit.strengths - step * e)) / (2 * step)
            for e in np.eye(4)
        ]
    )
    sandwich = pair_sandwich(outcomes, fit.strengths, ridge=0.0)
    np.testing.assert_allclose(sandwich.hessian, numeric, rtol=1e-6, atol=1e-6)


def test_ridge_enters_the_hessian_and_centres_the_scores():
    a, b, outcome = _votes(4, 200, seed=3)
    _, outcomes = _outcomes(a, b, outcome, 4)
    ridge = 5.0
    fit = fit_strengths(outcomes, method="bt", ridge=ridge)
    sandwich = pair_sandwich(outcomes, fit.strengths, ridge=ridge)
    hessian, _ = _explicit(a, b, outcome, fit.strengths, np.ones(a.size))
    np.testing.assert_allclose(sandwich.hessian, hessian + ridge * np.eye(4), atol=1e-9)
    # G is the covariance of the per-vote scores of the penalised objective.
    x = np.zeros((a.size, 4))
    x[np.arange(a.size), a], x[np.arange(a.size), b] = 1.0, -1.0
    scores = x * (expit(x @ fit.strengths) - Y_BY_OUTCOME[outcome])[:, None]
    scores += ridge * fit.strengths / a.size
    centred = scores - scores.mean(axis=0)
    np.testing.assert_allclose(sandwich.gradient_covariance, centred.T @ centred, atol=1e-8)


def test_sandwich_covariance_is_centred_and_close_to_the_bootstrap():
    a, b, outcome = _votes(6, 20_000, seed=4)
    counts, outcomes = _outcomes(a, b, outcome, 6)
    fit = fit_strengths(outcomes, method="bt", ridge=0.0)
    covariance = pair_sandwich(outcomes, fit.strengths, ridge=0.0).covariance
    np.testing.assert_allclose(covariance.sum(axis=0), 0.0, atol=1e-12)
    result = compute_ratings(counts, RatingParams(bootstrap_rounds=400, seed=0))
    sandwich_width = np.array([hi - lo for lo, hi in result.intervals["sandwich"].values()])
    bootstrap_width = np.array([hi - lo for lo, hi in result.intervals["bootstrap"].values()])
    np.testing.assert_allclose(sandwich_width, bootstrap_width, rtol=0.15)


def test_published_sandwich_interval_is_rating_plus_minus_z_sd():
    a, b, outcome = _votes(5, 3_000, seed=5)
    counts, outcomes = _outcomes(a, b, outcome, 5)
    params = RatingParams(interval="sandwich", bootstrap_rounds=0, anchor=("model-00", 1000.0))
    result = compute_ratings(counts, params)
    fit = fit_strengths(outcomes, method="bt", ridge=0.0)
    sd = np.sqrt(np.diag(pair_sandwich(outcomes, fit.strengths, ridge=0.0).covariance))
    half = float(ndtri(0.975)) * sd * params.rating_per_log_unit
    for row in result.rows:
        i = counts.index_of(row.model)
        assert row.ci_upper - row.rating == pytest.approx(half[i], abs=1e-9)
        assert row.rating - row.ci_lower == pytest.approx(half[i], abs=1e-9)
    assert result.interval_method == "sandwich"
    assert result.to_csv().splitlines()[0].endswith(",interval,preliminary")
    assert result.to_csv().splitlines()[1].endswith(",sandwich,false")


def test_sandwich_is_refused_for_davidson_and_elo():
    for method in ("davidson", "elo"):
        with pytest.raises(InvalidParameterError) as error:
            RatingParams(method=method, interval="sandwich")
        assert error.value.fields == {"interval": error.value.fields["interval"]}


def test_pair_weights_are_inverse_frequency_with_a_floor_and_mean_one_per_vote():
    votes = np.array([10.0, 100.0, 1000.0])
    weights = pair_weights(votes, 50)
    np.testing.assert_allclose(weights / weights[1], [100 / 50, 1.0, 100 / 1000])
    assert float((weights * votes).sum()) == pytest.approx(votes.sum())


def test_reweighted_fit_matches_a_scipy_minimisation_of_the_weighted_likelihood():
    m = 5
    a, b, outcome = _votes(m, 600, seed=6, oversample=2_000)
    counts, _ = _outcomes(a, b, outcome, m)
    w = _vote_weights(a, b, 50)
    y = Y_BY_OUTCOME[outcome]

    def loss(s: np.ndarray) -> float:
        d = s[a] - s[b]
        return float(-(w * (y * log_expit(d) + (1 - y) * log_expit(-d))).sum())

    expected = minimize(loss, np.zeros(m), method="BFGS", options={"gtol": 1e-9}).x
    expected = 400 / np.log(10) * (expected - expected.mean()) + 1000
    params = RatingParams(reweight=True, bootstrap_rounds=0)
    result = compute_ratings(counts, params)
    for row in result.rows:
        assert row.rating == pytest.approx(expected[counts.index_of(row.model)], abs=0.01)
    plain = compute_ratings(counts, RatingParams(bootstrap_rounds=0))
    # The oversampled pair (model-00 vs model-01) dominates less once reweighted.
    assert result.row_for("model-00").rating != pytest.approx(plain.row_for("model-00").rating)


def test_reweighted_bootstrap_is_reproducible_and_brackets_the_fit():
    a, b, outcome = _votes(5, 3_000, seed=7, oversample=3_000)
    counts, _ = _outcomes(a, b, outcome, 5)
    params = RatingParams(reweight=True, bootstrap_rounds=200, seed=3)
    result = compute_ratings(counts, params)
    assert result.to_csv() == compute_ratings(counts, params).to_csv()
    for row in result.rows:
        assert row.ci_lower < row.rating < row.ci_upper
        low, high = result.intervals["sandwich"][row.model]
        assert low < row.rating < high
