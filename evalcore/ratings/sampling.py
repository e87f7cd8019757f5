"""Bootstrap samplers of the outcome cells, versioned so a release's draws can be remade.

All versions draw each round exactly from ``Multinomial(N, cells / N)``, the law of tallying N
votes resampled with replacement: independent Poisson(N·p) counts, i.e. T i.i.d. votes with
T ~ Poisson(N), then T − N of them dropped uniformly without replacement or N − T fresh ones
added (:func:`_fix_total`; version 3 has its own). Either way N i.i.d. votes remain. They
differ in the random streams:

* **1** (:func:`draw_cells_v1`): one generator, ``default_rng(seed)``, rounds in order. Its
  draws are one sequential stream (about 0.5 s of CPU for 1,000 rounds of 9,000 cells, on one
  core whatever the machine has); kept bit for bit so that releases computed with it still
  recompute byte-identically.
* **2** (:func:`draw_cells_v2`): every ``ROUNDS_PER_STREAM`` consecutive rounds their own
  generator, ``SeedSequence(seed, spawn_key=(stream,))`` (numpy's documented way to make
  independent parallel streams), so a round's draws depend only on the seed and the round
  index, never on batching, threads or the order batches are drawn in; the bootstrap draws
  batches on two threads at once. (A generator per round cost 0.1 s of CPU per 1,000 rounds.) Its
  drop step samples positions without the final shuffle (``shuffle=False``: which votes are
  dropped is a set, its order is irrelevant), half that step's cost.
* **3** (:mod:`evalcore.ratings.counter_sampler`): counter-based integer draws, every random
  word a hash of (seed, round, slot), Poisson by table inversion and the same exact fix-up in a
  small C kernel (built once with ``cc``) or, identically, in numpy; a round depends only on the
  seed and its index, so the bootstrap draws and refits whole batches on two threads. 0.2-0.3 s
  of CPU for 1,000 rounds of 8,775 cells with the kernel, against 0.5 s for version 2's draws
  (0.6-0.75 s in numpy without a compiler, plus 0.16 s of tables).

Measured and not kept: inverting per-cell Poisson tables with a guide table (Chen & Asau 1974)
costs 26 ns a draw against numpy's 45-50, but tabulating 9,000 cells (3.1M entries, tails below
1e-19) takes 0.25-0.3 s, so for 1,000 rounds it was no faster than ``Generator.poisson``.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

SAMPLERS: tuple[int, ...] = (1, 2, 3)
CURRENT_SAMPLER = 3  # what new parameter sets use
LEGACY_SAMPLER = 1  # what a recorded parameter set without a sampler version used
ROUNDS_PER_STREAM = 20  # version 2: consecutive rounds drawn from one generator


def nonzero_cells(cells: FloatArray) -> tuple[IntArray, FloatArray, int]:
    """Flat indices of the non-empty cells, their counts, and the total vote count N."""
    flat = cells.ravel()
    nonzero = np.flatnonzero(flat)
    return nonzero, flat[nonzero], int(round(float(flat.sum())))


def draw_cells_v1(cells: FloatArray, rng: np.random.Generator, rounds: int) -> FloatArray:
    """Version 1: ``rounds`` resamples of ``cells`` (P, 3) as (rounds, P, 3), from ``rng``."""
    nonzero, expected, total = nonzero_cells(cells)
    cumulative = np.cumsum(expected / total)
    draws = np.zeros((rounds, cells.size))
    for r in range(rounds):
        counts = rng.poisson(expected)
        draws[r, nonzero] = _fix_total(rng, counts, cumulative, total)
    return draws.reshape(rounds, *cells.shape)


def draw_cells_v2(cells: FloatArray, seed: int, first_round: int, rounds: int) -> FloatArray:
    """Version 2: rounds ``first_round .. first_round + rounds − 1`` of ``cells`` (P, 3) as
    (rounds, P, 3). ``first_round`` must start a stream (a multiple of ``ROUNDS_PER_STREAM``);
    the same rounds always get the same draws, however they are grouped into calls."""
    if first_round % ROUNDS_PER_STREAM:
        raise ValueError(f"first_round {first_round} is not a multiple of {ROUNDS_PER_STREAM}")
    nonzero, expected, total = nonzero_cells(cells)
    cumulative = np.cumsum(expected / total)
    draws = np.zeros((rounds, cells.size))
    for r in range(rounds):
        if r % ROUNDS_PER_STREAM == 0:
            rng = stream_generator(seed, (first_round + r) // ROUNDS_PER_STREAM)
        counts = rng.poisson(expected)
        draws[r, nonzero] = _fix_total(rng, counts, cumulative, total, shuffle=False)
    return draws.reshape(rounds, *cells.shape)


def _fix_total(
    rng: np.random.Generator,
    counts: IntArray,
    cumulative: FloatArray,
    total: int,
    *,
    shuffle: bool = True,
) -> IntArray:
    """Poisson counts (T votes in all) → N = ``total`` i.i.d. votes, i.e. the multinomial:
    drop T − N of the votes chosen uniformly without replacement, or add N − T fresh ones.
    ``shuffle=True`` is version 1's (it consumes the stream as that version always did)."""
    drawn = int(counts.sum())
    if drawn > total:  # drop drawn − total of the votes (positions in cell order)
        dropped = rng.choice(drawn, size=drawn - total, replace=False, shuffle=shuffle)
        cells = np.searchsorted(np.cumsum(counts), dropped, side="right")
        counts -= np.bincount(cells, minlength=counts.size)
    elif drawn < total:  # add total − drawn fresh votes
        cells = np.searchsorted(
            cumulative, rng.random(total - drawn) * cumulative[-1], side="right"
        )
        counts += np.bincount(cells, minlength=counts.size)
    return counts


def stream_generator(seed: int, stream: int) -> np.random.Generator:
    """Version 2's generator of rounds ``stream·ROUNDS_PER_STREAM ..`` (the next
    ``ROUNDS_PER_STREAM``, in order): independent streams for distinct indices."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(stream,))))
