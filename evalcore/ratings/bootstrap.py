"""Bootstrap intervals on outcome counts.

Resampling N votes with replacement and tallying them is *exactly* a draw from
``Multinomial(N, cells / N)`` over the pair × outcome cells, so a round costs O(cells), not
O(votes). Each round is then refitted from the full-data optimum, many rounds at a time, by the
chord method with the full-data Hessian (:func:`evalcore.ratings.newton.refine`): a handful of
gradient evaluations per round, O(pairs) each, however many models there are.

Gauge and anchoring, deliberately: ratings are only defined up to a shift, so every round is
centred the same way as the point estimate (mean strength 0, i.e. mean rating ``init``) and the
interval of a model measures its uncertainty *relative to the field*. The anchor shift is applied
afterwards to the point and both bounds alike. Shifting inside each round (as FastChat does) would
give the anchor a zero-width interval and add its own noise to everybody else's.

Degenerate rounds: with ``ridge = 0`` a resample can lose the last loss of a rarely beaten model
(or the last battle bridging two groups), and then that round has no finite MLE. Such a round is
solved with a tiny ridge (``DEGENERATE_ROUND_RIDGE``) and aligned on its largest strongly
connected group of models only, so the runaway model widens its own interval (honestly: the data
cannot bound it) without shifting everyone else. These rounds are counted in the diagnostics.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np
from numpy.typing import NDArray

from evalcore.ratings.bradley_terry import (
    PairOutcomes,
    StrengthFit,
    make_objective,
    n_parameters,
    scored,
)
from evalcore.ratings.counter_sampler import CellSampler
from evalcore.ratings.graph import main_component
from evalcore.ratings.newton import FloatArray, NewtonResult, chord_inverse, minimise, refine
from evalcore.ratings.params import Method
from evalcore.ratings.progress import ProgressBar
from evalcore.ratings.sampling import (
    LEGACY_SAMPLER,
    ROUNDS_PER_STREAM,
    draw_cells_v1,
    draw_cells_v2,
)

BATCH_ROUNDS = 100  # rounds solved together at most
BATCH_PAIR_ROUNDS = 2_000_000  # and at most this many pair × round values per array (16 MB)
DEGENERATE_ROUND_RIDGE = 1e-6
REFIT_THREADS = 2  # version 3: batches drawn and refitted on this many threads at once

_T = TypeVar("_T")


@dataclass(frozen=True)
class BootstrapDraws:
    """Per-round strengths (R, M) in the point fit's gauge, and what went unusual."""

    strengths: FloatArray
    degenerate_rounds: int = 0
    unbounded_in_rounds: dict[str, int] = field(default_factory=dict)
    unconverged_rounds: int = 0


def bootstrap_strengths(
    outcomes: PairOutcomes,
    point: StrengthFit,
    *,
    method: Method,
    ridge: float,
    rounds: int,
    seed: int,
    sampler: int = LEGACY_SAMPLER,
    progress: bool = False,
) -> BootstrapDraws:
    """Refit ``rounds`` multinomial resamples of the outcome cells.

    Args:
        outcomes: the cells of the full data (after the tie policy).
        point: the full-data fit, used as the warm start and to align each round.
        method: ``"bt"`` or ``"davidson"``.
        ridge: the prior of the point fit, reused in every round.
        rounds: number of resamples.
        seed: seeds the draws; the same seed (and sampler) gives the same draws.
        sampler: the version of the draws (:mod:`evalcore.ratings.sampling`): 1, one stream
            drawn on one helper thread; 2, a stream per round, batches drawn on two threads;
            3, counter-based words (:mod:`evalcore.ratings.counter_sampler`), batches drawn
            and refitted on two threads.
        progress: show a progress bar on stderr.
    """
    start = point.strengths if point.log_tie is None else np.append(point.strengths, point.log_tie)
    m = outcomes.n_models
    full_data = make_objective(method, outcomes, outcomes.cells[None])
    prior = np.zeros(start.size)
    prior[:m] = ridge
    inverse = chord_inverse(full_data.derivatives(start[None])[1][0], prior, m)
    batch = max(1, min(BATCH_ROUNDS, BATCH_PAIR_ROUNDS // max(outcomes.first.size, 1)))
    if sampler == 2:  # version 2's batches start its streams
        batch = max(ROUNDS_PER_STREAM, batch - batch % ROUNDS_PER_STREAM)
    lows = list(range(0, rounds, batch))

    def solve(cells: FloatArray) -> _Batch:
        penalty, gauge, fallback = _round_regularisation(outcomes, cells, method, ridge)
        x, converged = _refit(method, outcomes, cells, start, penalty, fallback, inverse)
        aligned = _align(x[:, :m], point.strengths, gauge)
        return _Batch(aligned, int(np.count_nonzero(fallback)), gauge, converged)

    with ProgressBar(total=rounds, description="bootstrap", enabled=progress) as bar:
        if sampler in (LEGACY_SAMPLER, 2):
            batches = _drawn_then_solved(outcomes, seed, sampler, lows, batch, rounds, solve)
        else:
            batches = _solved_in_pairs(outcomes, seed, lows, batch, rounds, solve)
        strengths = np.empty((rounds, m))
        unbounded = np.zeros(m, dtype=np.int64)
        degenerate = unconverged = 0
        for low, done in zip(lows, batches, strict=True):
            strengths[low : low + done.strengths.shape[0]] = done.strengths
            degenerate += done.degenerate
            unbounded += np.count_nonzero(~done.gauge, axis=0)
            unconverged += int(np.count_nonzero(~done.converged))
            bar.update(done.strengths.shape[0])
    unbounded_models = {outcomes.models[i]: int(unbounded[i]) for i in np.flatnonzero(unbounded)}
    return BootstrapDraws(strengths, degenerate, unbounded_models, unconverged)


@dataclass(frozen=True)
class _Batch:
    """One batch of refitted rounds: aligned strengths (B, M), how many fell back to damped
    Newton, the gauge masks (B, M) and which rounds converged (B,)."""

    strengths: FloatArray
    degenerate: int
    gauge: NDArray[np.bool_]
    converged: NDArray[np.bool_]


def _drawn_then_solved(
    outcomes: PairOutcomes,
    seed: int,
    sampler: int,
    lows: list[int],
    batch: int,
    rounds: int,
    solve: Callable[[FloatArray], _Batch],
) -> Iterator[_Batch]:
    """Versions 1 and 2: helpers draw the next batches (numpy sampling releases the GIL) while
    this thread refits; the draws depend only on the seed and the round (see _batch_drawer)."""
    draw = _batch_drawer(outcomes, seed, sampler)
    workers = 1 if sampler == LEGACY_SAMPLER else 2
    for cells in _run_ahead(workers, lows, batch, rounds, draw):
        yield solve(cells)


def _solved_in_pairs(
    outcomes: PairOutcomes,
    seed: int,
    lows: list[int],
    batch: int,
    rounds: int,
    solve: Callable[[FloatArray], _Batch],
) -> Iterator[_Batch]:
    """Version 3: its draws take a few milliseconds a batch, so two threads each draw and refit
    whole batches (the refits' numpy work releases the GIL), in round order; a batch's result
    depends only on its rounds, so the threads change nothing but the wall time."""
    sampler = CellSampler(outcomes.cells, seed)
    return _run_ahead(
        REFIT_THREADS, lows, batch, rounds, lambda low, size: solve(sampler.draw(low, size))
    )


def _run_ahead(
    workers: int, lows: list[int], batch: int, rounds: int, task: Callable[[int, int], _T]
) -> Iterator[_T]:
    """``task(low, size)`` of every batch, on ``workers`` threads, submitted and yielded in
    round order, at most ``workers`` batches ahead of the one yielded."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending: deque[Future[_T]] = deque()
        for number in range(len(lows)):
            while len(pending) < workers and number + len(pending) < len(lows):
                ahead = lows[number + len(pending)]
                pending.append(pool.submit(task, ahead, min(batch, rounds - ahead)))
            yield pending.popleft().result()


def _refit(
    method: Method,
    outcomes: PairOutcomes,
    cells: FloatArray,
    start: FloatArray,
    penalty: FloatArray,
    fallback: NDArray[np.bool_],
    inverse: FloatArray,
) -> tuple[FloatArray, NDArray[np.bool_]]:
    """Refit a batch of rounds from the full-data optimum: the chord method, or damped Newton
    for the rounds without a finite MLE. Returns (B, K) parameters and which converged."""
    size = cells.shape[0]
    objective = make_objective(method, outcomes, cells)
    x, converged = np.tile(start, (size, 1)), np.ones(size, dtype=bool)
    for rows, solve in ((~fallback, _refine_with(inverse)), (fallback, minimise)):
        if rows.any():
            result = solve(objective.subset(rows), x[rows], penalty[rows])
            x[rows], converged[rows] = result.x, result.converged
    return x, converged


def _refine_with(inverse: FloatArray) -> Callable[..., NewtonResult]:
    return lambda objective, x, penalty: refine(objective, x, penalty, inverse)


def _batch_drawer(
    outcomes: PairOutcomes, seed: int, sampler: int
) -> Callable[[int, int], FloatArray]:
    """``draw(first_round, rounds)`` → (rounds, P, 3) cells of the given sampler version.

    Version 1 draws from its one generator in call order (one worker, batches submitted in
    round order); version 2's streams are fixed by the round index alone.
    """
    if sampler == LEGACY_SAMPLER:
        rng = np.random.default_rng(seed)
        return lambda first_round, rounds: draw_cells_v1(outcomes.cells, rng, rounds)
    return lambda first_round, rounds: draw_cells_v2(outcomes.cells, seed, first_round, rounds)


def percentile_interval(draws: FloatArray, confidence: float) -> tuple[FloatArray, FloatArray]:
    """Lower and upper percentile bounds per column (linear interpolation, like pandas)."""
    tail = (1.0 - confidence) / 2.0
    lower, upper = np.quantile(draws, [tail, 1.0 - tail], axis=0)
    return np.asarray(lower), np.asarray(upper)


def _round_regularisation(
    outcomes: PairOutcomes, cells: FloatArray, method: Method, ridge: float
) -> tuple[FloatArray, NDArray[np.bool_], NDArray[np.bool_]]:
    """Per-round ridge (B, K), gauge mask (B, M) (the models that define the round's centre)
    and which rounds have no finite MLE."""
    size, m = cells.shape[0], outcomes.n_models
    penalty = np.zeros((size, n_parameters(method, m)))
    penalty[:, :m] = ridge
    gauge = np.ones((size, m), dtype=bool)
    if ridge > 0:  # the prior keeps every round finite, like the point fit
        return penalty, gauge, np.zeros(size, dtype=bool)
    first_scored, second_scored = scored(method, cells)
    # A round that keeps every "scored against" edge of the (checked, strongly connected) full
    # data is strongly connected too; only the others need the graph search.
    first_before, second_before = scored(method, outcomes.cells)
    fine = ((first_scored | ~first_before) & (second_scored | ~second_before)).all(axis=1)
    for r in np.flatnonzero(~fine):
        main = main_component(outcomes.graph, first_scored[r], second_scored[r])
        if main is not None:
            penalty[r, :m] = DEGENERATE_ROUND_RIDGE
            gauge[r] = main
    if method == "davidson":
        ties = cells[:, :, 2].sum(axis=1)
        decided = cells[:, :, :2].sum(axis=(1, 2))
        penalty[(ties == 0) | (decided == 0), m] = DEGENERATE_ROUND_RIDGE
    fallback = np.asarray((penalty > 0).any(axis=1))  # ridge is 0 here: any penalty is one
    return penalty, gauge, fallback


def _align(strengths: FloatArray, point: FloatArray, gauge: NDArray[np.bool_]) -> FloatArray:
    """Shift each round so its mean over the gauge models equals the point fit's mean there."""
    count = gauge.sum(axis=1)
    shift = ((strengths - point) * gauge).sum(axis=1) / count
    return np.asarray(strengths - shift[:, None])
