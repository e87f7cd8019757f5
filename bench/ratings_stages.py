"""Per-stage wall and CPU times of the ratings pipeline in one process (issue 16 profile).

Usage::

    flock /work/bench.lock .venv/bin/python bench/ratings_stages.py FILE [SAMPLER]

Stages: importing numpy, pyarrow and evalcore, reading FILE (CSV, JSON Lines or parquet) with
only the columns the ratings need, aggregating to pair counts, the point fit, 1,000 bootstrap
rounds with sampler version SAMPLER (default: the current one) and the sandwich intervals.
Wall is ``time.perf_counter``, CPU ``time.process_time`` (all threads of the process).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

START, START_CPU = time.perf_counter(), time.process_time()
MARKS: list[tuple[str, float, float]] = []
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def mark(name: str) -> None:
    MARKS.append((name, time.perf_counter(), time.process_time()))


def main() -> None:
    import numpy  # noqa: F401

    mark("import numpy")
    import pyarrow
    import pyarrow.compute
    import pyarrow.csv  # noqa: F401

    mark("import pyarrow")
    from evalcore.ratings import PairCounts, read_battles
    from evalcore.ratings.blas import single_threaded_blas
    from evalcore.ratings.bootstrap import bootstrap_strengths
    from evalcore.ratings.bradley_terry import PairOutcomes, fit_strengths
    from evalcore.ratings.sampling import CURRENT_SAMPLER
    from evalcore.ratings.sandwich import pair_sandwich

    mark("import evalcore")
    table = read_battles(sys.argv[1], attributes=())
    mark("read")
    outcomes = PairOutcomes.from_counts(PairCounts.from_battles(table).counts, "half")
    mark("aggregate")
    sampler = int(sys.argv[2]) if len(sys.argv) > 2 else CURRENT_SAMPLER
    with single_threaded_blas():
        fit = fit_strengths(outcomes, method="bt", ridge=0.0)
        mark("point fit")
        bootstrap_strengths(
            outcomes, fit, method="bt", ridge=0.0, rounds=1000, seed=0, sampler=sampler
        )
        mark(f"bootstrap (sampler {sampler})")
        pair_sandwich(outcomes, fit.strengths, ridge=0.0)
        mark("sandwich")
    wall, cpu = START, START_CPU
    for name, at, at_cpu in MARKS:
        print(f"{name:24s} wall {at - wall:6.3f} s  cpu {at_cpu - cpu:6.3f} s")
        wall, cpu = at, at_cpu
    print(f"{'total':24s} wall {wall - START:6.3f} s  cpu {cpu - START_CPU:6.3f} s")


if __name__ == "__main__":
    main()
