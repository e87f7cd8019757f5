"""Fast paths against their plain counterparts."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from evalcore.ratings import PairCounts
from evalcore.ratings.bootstrap import draw_cells
from evalcore.ratings.bradley_terry import PairOutcomes, fit_strengths, make_objective
from evalcore.ratings.graph import ScoreGraph
from evalcore.ratings.newton import chord_inverse, minimise, refine
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
    cells = draw_cells(outcomes, np.random.default_rng(0), 40)
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
