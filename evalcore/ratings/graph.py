"""When does a finite Bradley–Terry MLE exist?

Draw an arrow i → j whenever i scored against j (a win, or a tie, which is half a win each way).
The MLE exists and is unique up to a shift iff this graph is strongly connected (Zermelo 1929;
Hunter 2004, Assumption 1). If the undirected comparison graph is disconnected the groups cannot
be put on one scale at all; if it is connected but not strongly, some group never lost (or never
won) against the rest and its rating runs off to infinity. Both are reported, never fitted
silently.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
from numpy.typing import NDArray

from evalcore.errors import DisconnectedGraphError, UnboundedRatingError

IntArray = NDArray[np.int64]


@dataclass(frozen=True, eq=False)
class ScoreGraph:
    """The pairs as a graph; each query says which of the two arrows of every pair exist."""

    n_models: int
    first: IntArray
    second: IntArray

    def components(self, present: NDArray[np.bool_]) -> tuple[int, IntArray]:
        """Undirected components over pairs with any battle."""
        return self._components(present, present, strong=False)

    def strong_components(
        self, first_scored: NDArray[np.bool_], second_scored: NDArray[np.bool_]
    ) -> tuple[int, IntArray]:
        """Strongly connected components of the "scored against" graph (first → second where
        the first model scored against the second, and the reverse)."""
        return self._components(first_scored, second_scored, strong=True)

    @cached_property
    def _layout(self) -> tuple[IntArray, IntArray, IntArray]:
        """CSR layout of all 2·P arrows, sorted once: (order, column indices, row pointers)."""
        rows = np.concatenate([self.first, self.second])
        cols = np.concatenate([self.second, self.first])
        order = np.lexsort((cols, rows))
        indptr = np.searchsorted(rows[order], np.arange(self.n_models + 1))
        return order, cols[order], indptr

    def _components(
        self, forward: NDArray[np.bool_], backward: NDArray[np.bool_], *, strong: bool
    ) -> tuple[int, IntArray]:
        if self._connected(forward, backward, strong=strong):  # the usual case: no labels needed
            return 1, np.zeros(self.n_models, dtype=np.int64)
        return self._labelled_components(forward, backward, strong=strong)

    def _connected(
        self, forward: NDArray[np.bool_], backward: NDArray[np.bool_], *, strong: bool
    ) -> bool:
        """Whether the arrows connect every model (strongly: both ways from model 0).

        A breadth-first search on a dense M × M adjacency, a few numpy steps per query, so the
        common connected case never needs scipy's graph routines (slow to import).
        """
        m = self.n_models
        if m <= 1:
            return True
        arrows = np.zeros((m, m), dtype=bool)
        arrows[self.first[forward], self.second[forward]] = True
        arrows[self.second[backward], self.first[backward]] = True
        if not strong:
            arrows |= arrows.T
        for adjacency in (arrows, arrows.T) if strong else (arrows,):
            reached = np.zeros(m, dtype=bool)
            reached[0] = True
            frontier = reached.copy()
            while frontier.any():
                frontier = adjacency[frontier].any(axis=0) & ~reached
                reached |= frontier
            if not reached.all():
                return False
        return True

    def _labelled_components(
        self, forward: NDArray[np.bool_], backward: NDArray[np.bool_], *, strong: bool
    ) -> tuple[int, IntArray]:
        from scipy.sparse import csr_matrix
        from scipy.sparse.csgraph import connected_components

        # Filling a fixed, pre-sorted CSR layout costs O(pairs) per query; building a sparse
        # matrix from coordinates would sort every time (this runs once per degenerate-looking
        # bootstrap round).
        order, indices, indptr = self._layout
        data = np.concatenate([forward, backward])[order].astype(np.float64)
        size = (self.n_models, self.n_models)
        adjacency = csr_matrix((data, indices, indptr), shape=size)
        adjacency.eliminate_zeros()  # explicit zeros would count as edges
        count, labels = connected_components(
            adjacency, directed=strong, connection="strong" if strong else "weak"
        )
        return int(count), np.asarray(labels, dtype=np.int64)


def check_finite_mle(
    graph: ScoreGraph,
    models: tuple[str, ...],
    present: NDArray[np.bool_],
    first_scored: NDArray[np.bool_],
    second_scored: NDArray[np.bool_],
    *,
    direction: str = "lost",
) -> None:
    """Raise unless the ridge-free MLE is finite.

    Args:
        graph: the pairs.
        models: names, for the messages.
        present: pairs with at least one battle.
        first_scored, second_scored: per pair, whether each side scored against the other.
        direction: how the message words "never scored against".

    Raises:
        DisconnectedGraphError: the comparison graph falls apart into groups.
        UnboundedRatingError: a group of models never lost against the rest.
    """
    count, labels = graph.components(present)
    if count > 1:
        groups = [[models[i] for i in np.flatnonzero(labels == c)] for c in range(count)]
        raise DisconnectedGraphError(sorted(groups, key=lambda g: (-len(g), g)))
    count, labels = graph.strong_components(first_scored, second_scored)
    if count == 1:
        return
    beaten = _components_scored_against(graph, labels, first_scored, second_scored)
    # A group nobody outside ever scored against never lost; report that first.
    unbeaten = [c for c in range(count) if not beaten[c]]
    if unbeaten:
        group = [models[i] for i in np.flatnonzero(labels == unbeaten[0])]
        raise UnboundedRatingError(group, direction=direction)
    raise AssertionError("a condensation DAG always has a source")


def _components_scored_against(
    graph: ScoreGraph,
    labels: IntArray,
    first_scored: NDArray[np.bool_],
    second_scored: NDArray[np.bool_],
) -> NDArray[np.bool_]:
    """For each strong component: did any model outside it score against a model inside?"""
    winners = np.concatenate([graph.first[first_scored], graph.second[second_scored]])
    losers = np.concatenate([graph.second[first_scored], graph.first[second_scored]])
    crossing = labels[winners] != labels[losers]
    beaten = np.zeros(int(labels.max()) + 1, dtype=bool)
    beaten[labels[losers[crossing]]] = True
    return beaten


def main_component(
    graph: ScoreGraph, first_scored: NDArray[np.bool_], second_scored: NDArray[np.bool_]
) -> NDArray[np.bool_] | None:
    """Mask of the largest strong component, or ``None`` when the graph is strongly connected."""
    count, labels = graph.strong_components(first_scored, second_scored)
    if count == 1:
        return None
    sizes = np.bincount(labels)
    return np.asarray(labels == int(np.argmax(sizes)))
