"""Fast paths against their plain counterparts."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from evalcore.ratings import PairCounts
from evalcore.ratings.bradley_terry import (
    PairOutcomes,
    cell_totals,
    fit_strengths,
    make_objective,
)
from evalcore.ratings.graph import ScoreGraph
from evalcore.ratings.newton import chord_inverse, minimise, refine
from evalcore.ratings.sampling import draw_cells_v1
from tests.evalcore.ratings.synthetic import model_names, simulate


@pytest.mark.parametrize("method", ["bt", "davidson"])
def test_chord_refinement_matches_full_newton(method):
    m = 8
    a, b, outcome = simulate(np.linspace(-1, 1, m), 1500, seed=3, tie_rate=0.2)
    outcomes = PairOutcomes.from_counts(
        PairCounts.from_codes(model_names(m), a, b, outcome), "half"
    )
    point = fit_strengths(outcomes, method=method, ridge=0.0)
    start = point.strengths if point.log_tie is None else np.append(point.strengths, point.log_tie)
    cells = draw_cells_v1(outcomes.cells, np.random.default_rng(0), 40)
    objective = make_objective(method, outcomes, cells)
    starts, ridge = np.tile(start, (40, 1)), np.zeros((40, start.size))
    reference = make_objective(method, outcomes, outcomes.cells[None]).derivatives(start[None])[1][
        0
    ]
    fast = refine(objective, starts, ridge, chord_inverse(reference, ridge[0], m))
    plain = minimise(objective, starts, ridge)
    assert fast.converged.all() and plain.converged.all()
    np.testing.assert_allclose(fast.x, plain.x, atol=1e-7)


def test_strong_components_match_scipy_on_random_graphs():
    rng = np.random.default_rng(0)
    first, second = np.triu_indices(12, 1)
    graph = ScoreGraph(12, first.astype(np.int64), second.astype(np.int64))
    for _ in range(50):
        forward, backward = rng.random(first.size) < 0.15, rng.random(first.size) < 0.15
        rows = np.concatenate([first[forward], second[backward]])
        cols = np.concatenate([second[forward], first[backward]])
        adjacency = coo_matrix((np.ones(rows.size), (rows, cols)), shape=(12, 12)).tocsr()
        expected_count, expected = connected_components(
            adjacency, directed=True, connection="strong"
        )
        count, labels = graph.strong_components(forward, backward)
        assert count == expected_count
        # Same partition, whatever the label numbering.
        assert len(set(zip(labels.tolist(), expected.tolist(), strict=True))) == count


@pytest.mark.parametrize("strong", [True, False])
def test_connectivity_fast_path_agrees_with_scipy_components(strong):
    rng = np.random.default_rng(1)
    m = 15
    first, second = np.triu_indices(m, 1)
    graph = ScoreGraph(m, first.astype(np.int64), second.astype(np.int64))
    outcomes = set()
    for density in np.linspace(0.05, 0.5, 60):
        forward, backward = rng.random(first.size) < density, rng.random(first.size) < density
        rows = np.concatenate([first[forward], second[backward]])
        cols = np.concatenate([second[forward], first[backward]])
        adjacency = coo_matrix((np.ones(rows.size), (rows, cols)), shape=(m, m)).tocsr()
        expected_count, expected = connected_components(
            adjacency, directed=strong, connection="strong" if strong else "weak"
        )
        if strong:
            count, labels = graph.strong_components(forward, backward)
        else:
            count, labels = graph.components(forward | backward)
        assert count == expected_count
        assert len(set(zip(labels.tolist(), expected.tolist(), strict=True))) == count
        outcomes.add(count == 1)
    assert outcomes == {True, False}  # both the fast path and the labelled path ran


def test_pair_sums_are_bit_identical_to_sparse_incidence_products():
    from scipy.sparse import csr_matrix

    rng = np.random.default_rng(2)
    m = 40
    first, second = np.nonzero(rng.random((m, m)) < 0.2)
    keep = first != second
    first, second = first[keep].astype(np.int64), second[keep].astype(np.int64)
    p = first.size
    outcomes = PairOutcomes(model_names(m), first, second, np.ones((p, 3)))
    incidence = outcomes.incidence
    rows = np.repeat(np.arange(p), 2)
    signed = csr_matrix(
        (np.tile([1.0, -1.0], p), (rows, np.stack([first, second], axis=1).ravel())),
        shape=(p, m),
    )
    for rounds in (1, 7, 100, 3):  # a smaller batch after a larger one reuses the bins
        x = rng.normal(size=(rounds, m)) * 10.0 ** rng.integers(-3, 4, size=(rounds, m))
        per_pair = rng.normal(size=(p, rounds)) * 10.0 ** rng.integers(-6, 6, size=(p, rounds))
        np.testing.assert_array_equal(incidence.difference(x), signed @ x.T)
        np.testing.assert_array_equal(incidence.signed(per_pair), (signed.T.tocsr() @ per_pair).T)
        unsigned = abs(signed).T.tocsr()
        np.testing.assert_array_equal(incidence.unsigned(per_pair), (unsigned @ per_pair).T)


def test_logistic_functions_match_scipy():
    from scipy.special import expit, log_expit, ndtri

    from evalcore.ratings import logistic

    rng = np.random.default_rng(3)
    x = np.concatenate(
        [rng.normal(0, 4, 100_000), rng.normal(0, 300, 1000), [0.0, -0.0, 36.0, -36.0, 800, -800]]
    )
    # Bit-identical where numpy's exp/log1p are the C library's; allow a last-bit difference
    # for a SIMD exp on other machines.
    np.testing.assert_array_max_ulp(logistic.expit(x), expit(x), maxulp=2)
    np.testing.assert_array_max_ulp(logistic.log_expit(x), log_expit(x), maxulp=2)
    for p in (0.5, 0.75, 0.9, 0.95, 0.975, 0.995, 0.9995, 1e-6):
        assert logistic.normal_quantile(p) == pytest.approx(float(ndtri(p)), rel=1e-15, abs=1e-15)


def test_cell_totals_are_bit_identical_to_numpy_sum_over_outcomes():
    """The objectives' vote totals: the same bits as ``sum(axis=-1)``, also for the non-integer
    cells of reweighted data, in every batch layout the bootstrap uses."""
    rng = np.random.default_rng(11)
    for shape in [(1, 2925, 3), (100, 2925, 3), (7, 13, 3), (13, 3)]:
        scale = rng.choice([1e-3, 1.0, 1e5], size=shape)
        cells = rng.random(shape) * scale
        assert np.array_equal(cell_totals(cells), cells.sum(axis=-1))
        counts = rng.poisson(50.0, size=shape).astype(np.float64)
        assert np.array_equal(cell_totals(counts), counts.sum(axis=-1))
