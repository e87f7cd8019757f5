"""CPU and wall time of the bootstrap draws alone: sampler 3 (C kernel, numpy path) vs 2.

Usage::

    flock /work/bench.lock .venv/bin/python bench/ratings_draws.py [FILE]

FILE (default ``var/bench-ratings/battles.csv``) is read and aggregated to its outcome cells;
then 1,000 rounds are drawn in batches of 100 on one thread, twice per sampler; then the whole
bootstrap (draws + refits) with sampler 2 and with sampler 3 on one and on two threads.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from evalcore.ratings import (  # noqa: E402
    PairCounts,
    bootstrap,  # noqa: E402
    read_battles,
)
from evalcore.ratings.blas import single_threaded_blas  # noqa: E402
from evalcore.ratings.bradley_terry import PairOutcomes, fit_strengths  # noqa: E402
from evalcore.ratings.counter_sampler import CellSampler  # noqa: E402
from evalcore.ratings.sampling import draw_cells_v2  # noqa: E402


def timed(function: Callable[[], object]) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    function()
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    path = sys.argv[1] if len(sys.argv) > 1 else "var/bench-ratings/battles.csv"
    table = read_battles(path, attributes=())
    outcomes = PairOutcomes.from_counts(PairCounts.from_battles(table).counts, "half")
    cells = outcomes.cells
    print(f"{cells.size} cells, {int(cells.sum())} votes")
    for name, kernel in (("sampler 3, kernel", True), ("sampler 3, numpy", False)):
        for _ in range(2):
            wall, cpu = time.perf_counter(), time.process_time()
            sampler = CellSampler(cells, 0, native_kernel=kernel)
            w0, c0 = time.perf_counter() - wall, time.process_time() - cpu
            w1, c1 = timed(lambda s=sampler: [s.draw(low, 100) for low in range(0, 1000, 100)])
            print(
                f"{name}: tables {w0:.3f} s wall / {c0:.3f} s CPU; 1,000 rounds {w1:.3f} / {c1:.3f}"
            )
    for _ in range(2):
        w, c = timed(lambda: [draw_cells_v2(cells, 0, low, 100) for low in range(0, 1000, 100)])
        print(f"sampler 2: 1,000 rounds {w:.3f} s wall / {c:.3f} s CPU")
    with single_threaded_blas():
        fit = fit_strengths(outcomes, method="bt", ridge=0.0)
        for sampler, threads in ((2, 2), (3, 1), (3, 2)) * 2:
            bootstrap.REFIT_THREADS = threads
            w, c = timed(
                lambda s=sampler: bootstrap.bootstrap_strengths(
                    outcomes, fit, method="bt", ridge=0.0, rounds=1000, seed=0, sampler=s
                )
            )
            print(
                f"bootstrap, sampler {sampler}, {threads} thread(s): {w:.3f} s wall / {c:.3f} s CPU"
            )


if __name__ == "__main__":
    main()
