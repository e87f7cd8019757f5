"""The versioned bootstrap samplers: version 1 unchanged bit for bit, version 2's law and
determinism, and how parameter sets record the version."""

from __future__ import annotations

import hashlib
import itertools
import math
from collections import Counter

import numpy as np
import pytest
from scipy.stats import chisquare

from evalcore.errors import InvalidParameterError
from evalcore.ratings import PairCounts, RatingParams, compute_ratings
from evalcore.ratings import bootstrap as bootstrap_module
from evalcore.ratings.bradley_terry import PairOutcomes
from evalcore.ratings.cli import build_parser, params_from_args
from evalcore.ratings.counter_sampler import draw_cells_v3
from evalcore.ratings.sampling import ROUNDS_PER_STREAM, draw_cells_v1, draw_cells_v2
from tests.evalcore.ratings.synthetic import model_names, simulate


@pytest.fixture(scope="module")
def counts() -> PairCounts:
    a, b, outcome = simulate(np.linspace(-0.8, 0.8, 6), 3000, seed=4)
    return PairCounts.from_codes(model_names(6), a, b, outcome)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# Computed with the code of commit 710c2db, before the samplers were versioned: version 1 must
# keep giving these bytes, or releases made with it would stop verifying.
V1_DRAWS = "d77c0c27524a389a839506cfa8a439e17e43fc04216a3f1aedd40db2fa29922f"
V1_CSV = {
    "bt": "ea861c99367ac7e16befcd40b1702f789f2cadd10e0c16ecbefd4fef63ad3302",
    "davidson": "297f1da1d004a39afaa1ca7c14190536ca92db69f7a8bb697f2234274326d117",
    "reweight": "401b552612227044937344444160961a7918ee73016c3a076056a196e9cc706b",
    "ridge": "be66c23461ee5621ae8078a8497aa88e01a51d2b0e36667445e813dd6dafe534",
}
V1_OPTIONS = {"bt": {}, "davidson": {"method": "davidson"}, "reweight": {"reweight": True}}


def test_version_1_draws_and_results_are_the_bytes_of_before(counts):
    outcomes = PairOutcomes.from_counts(counts, "half")
    draws = draw_cells_v1(outcomes.cells, np.random.default_rng(11), 50)
    assert _sha(np.ascontiguousarray(draws, dtype="<f8").tobytes()) == V1_DRAWS
    options = {**V1_OPTIONS, "ridge": {"ridge": 0.5}}
    for name, extra in options.items():
        params = RatingParams(bootstrap_rounds=200, seed=3, bootstrap_sampler=1, **extra)
        assert _sha(compute_ratings(counts, params).to_csv().encode()) == V1_CSV[name], name


def test_a_recorded_parameter_set_without_a_version_recomputes_with_version_1(counts):
    recorded = RatingParams(bootstrap_rounds=200, seed=3).to_dict()
    del recorded["bootstrap_sampler"]  # as releases made before the versions store it
    params = RatingParams.from_dict(recorded)
    assert params.bootstrap_sampler == 1
    assert _sha(compute_ratings(counts, params).to_csv().encode()) == V1_CSV["bt"]
    assert RatingParams().bootstrap_sampler == 3
    assert RatingParams.from_dict(RatingParams().to_dict()) == RatingParams()


def test_sampler_versions_are_checked_and_the_cli_passes_them():
    for bad in (0, 4, True, "2"):
        with pytest.raises(InvalidParameterError):
            RatingParams(bootstrap_sampler=bad)
    parser = build_parser()
    assert params_from_args(parser.parse_args(["f.csv"])).bootstrap_sampler == 3
    old = parser.parse_args(["f.csv", "--bootstrap-sampler", "1"])
    assert params_from_args(old).bootstrap_sampler == 1


@pytest.mark.parametrize("draw", [draw_cells_v2, draw_cells_v3])
def test_versions_2_and_3_have_the_exact_law_of_resampling_the_votes(draw):
    """Same check as version 1's: every one of the 5^5 resamples of five votes, tallied."""
    cells = np.array([[2.0, 1.0, 0.0], [0.0, 1.0, 1.0]])
    votes = np.repeat(np.arange(6), cells.ravel().astype(int))
    picks = np.array(list(itertools.product(range(5), repeat=5)))
    law = Counter(tuple(np.bincount(votes[p], minlength=6)) for p in picks)
    rounds = 20_000
    ours = draw(cells, 0, 0, rounds).reshape(rounds, -1)
    seen = Counter(tuple(int(v) for v in row) for row in ours)
    assert set(seen) <= set(law)
    keys = sorted(law)
    expected = np.array([law[k] / len(picks) * rounds for k in keys])
    _, p_value = chisquare([seen[k] for k in keys], expected)
    assert p_value > 1e-3


@pytest.mark.parametrize("draw", [draw_cells_v2, draw_cells_v3])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_versions_2_and_3_moments_match_the_multinomial_on_random_cells(draw, seed):
    rng = np.random.default_rng(seed)
    cells = rng.integers(0, 60, size=(15, 3)).astype(np.float64)
    cells[rng.random((15, 3)) < 0.2] = 0.0
    n, p = cells.sum(), (cells / cells.sum()).ravel()
    rounds = 6000
    draws = draw(cells, seed, 0, rounds).reshape(rounds, -1)
    assert np.all(draws.sum(axis=1) == n)  # every round has exactly the N votes
    assert np.all(draws[:, p == 0] == 0)
    mean_error = (draws.mean(axis=0) - n * p) / np.sqrt(n * p * (1 - p) / rounds + 1e-300)
    assert np.abs(mean_error[p > 0]).max() < 5
    covariance = np.cov(draws, rowvar=False)
    exact = n * (np.diag(p) - np.outer(p, p))
    assert np.abs(covariance - exact).max() < 0.12 * np.abs(exact).max()
    # against numpy's own multinomial sampler, cell by cell
    reference = rng.multinomial(int(n), p, size=rounds)
    assert np.allclose(draws.var(axis=0), reference.var(axis=0), rtol=0.15, atol=0.5)


def test_version_2_draws_depend_only_on_the_seed_and_the_round():
    cells = np.array([[30.0, 20.0, 5.0], [7.0, 0.0, 9.0]])
    step = ROUNDS_PER_STREAM
    whole = draw_cells_v2(cells, 5, 0, 5 * step)
    parts = [draw_cells_v2(cells, 5, low, step) for low in range(0, 5 * step, step)]
    assert np.array_equal(whole, np.concatenate(parts))
    assert np.array_equal(draw_cells_v2(cells, 5, 2 * step, 3), whole[2 * step : 2 * step + 3])
    assert not np.array_equal(draw_cells_v2(cells, 6, 0, step), whole[:step])
    with pytest.raises(ValueError):
        draw_cells_v2(cells, 5, 1, 3)


@pytest.mark.parametrize("version", [2, 3])
def test_versions_2_and_3_bootstrap_the_same_however_it_is_batched(counts, monkeypatch, version):
    params = RatingParams(bootstrap_rounds=180, seed=2, bootstrap_sampler=version)
    first = compute_ratings(counts, params).to_csv()
    monkeypatch.setattr(bootstrap_module, "BATCH_ROUNDS", 40)
    assert compute_ratings(counts, params).to_csv() == first
    other = RatingParams(bootstrap_rounds=180, seed=3, bootstrap_sampler=version)
    assert compute_ratings(counts, other).to_csv() != first


def test_both_versions_give_intervals_of_the_same_width():
    a, b, outcome = simulate(np.linspace(-1.0, 1.0, 8), 20_000, seed=12)
    counts = PairCounts.from_codes(model_names(8), a, b, outcome)
    widths = {}
    for version in (1, 2, 3):
        result = compute_ratings(
            counts, RatingParams(bootstrap_rounds=800, bootstrap_sampler=version)
        )
        widths[version] = np.array([row.ci_upper - row.ci_lower for row in result.rows])
        assert math.isfinite(widths[version].sum())
    # 800 rounds estimate a 95 % width to a few per cent; the two must agree on average.
    for version in (2, 3):
        assert abs(widths[version].mean() / widths[1].mean() - 1) < 0.05
        assert np.abs(widths[version] / widths[1] - 1).max() < 0.15
