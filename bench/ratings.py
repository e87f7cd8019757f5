"""Benchmark of the ratings engine against the public notebooks' per-vote bootstrap.

Workload (issue "Ratings engine"): 1,000,000 synthetic votes among 100 models in the arena battle
schema, written to parquet; then, each timed on its own:

* engine, in a fresh subprocess (so its peak RSS is its own): read, aggregate, one Bradley–Terry
  fit, and the fit plus a 1,000-round bootstrap (``compute_ratings``), and the CLI end to end;
* baseline, the method of the public notebooks (FastChat's ``compute_mle_elo`` +
  ``get_bootstrap_result``): every round resamples the vote rows with pandas, duplicates them,
  builds the dense ±log(10) design matrix and refits sklearn's ``LogisticRegression``. A few
  rounds are timed and extrapolated to 1,000.

``--pipeline`` runs the issue-16 pipeline benchmark instead (``bench/ratings_pipeline.py``: CSV
and JSON Lines files of 1.67M votes through the column-wise readers, bootstrap and sandwich
intervals, style control, beside today's per-row reader and arena-rank).

Usage::

    python bench/ratings.py                # the full workload (about 2-3 minutes)
    python bench/ratings.py --pipeline     # the pipeline benchmark (see ratings_pipeline.py)
    python bench/ratings.py --votes 100000 --rounds 100 --baseline-rounds 1   # a quick look
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

WINNERS = np.array(["model_a", "model_b", "tie", "tie (bothbad)"])


def make_battles(path: Path, *, votes: int, models: int, seed: int) -> dict[str, Any]:
    """Write ``votes`` battles drawn from Bradley–Terry strengths (sd 0.6 nat ≈ 100 points)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    strengths = rng.normal(0.0, 0.6, models)
    a = rng.integers(0, models, votes)
    b = rng.integers(0, models - 1, votes)
    b = np.where(b >= a, b + 1, b)
    p_a = 1.0 / (1.0 + np.exp(strengths[b] - strengths[a]))
    u = rng.random(votes)
    outcome = np.select([u < 0.8 * p_a, u < 0.8, u < 0.95], [0, 1, 2], default=3)
    names = np.array([f"model-{i:03d}" for i in range(models)])
    table = pa.table(
        {
            "model_a": names[a],
            "model_b": names[b],
            "winner": WINNERS[outcome],
            "tstamp": 1.7e9 + np.sort(rng.random(votes)) * 3e7,
            "judge": np.char.add("arena_user_", rng.integers(0, 50_000, votes).astype(str)),
            "language": np.array(["English", "Chinese", "German", "French"])[
                rng.integers(0, 4, votes)
            ],
            "category": np.array(["coding", "math", "creative", "other"])[
                rng.integers(0, 4, votes)
            ],
            "anony": rng.random(votes) < 0.9,
        }
    )
    pq.write_table(table, path)
    return {"votes": votes, "models": models, "bytes": path.stat().st_size}


class Stopwatch:
    """Wall-clock and CPU seconds of each stage (CPU time is robust to a busy machine)."""

    def __init__(self) -> None:
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}

    def time(self, stage: str, function: Any, *args: Any, **kwargs: Any) -> Any:
        wall, cpu = time.perf_counter(), time.process_time()
        value = function(*args, **kwargs)
        self.wall[stage] = time.perf_counter() - wall
        self.cpu[stage] = time.process_time() - cpu
        return value


def peak_rss_mb() -> float:
    """This process's peak resident memory since it started (exec), in MB.

    ``VmHWM`` rather than ``ru_maxrss``: on Linux the latter survives ``exec`` and so includes the
    parent's memory at the time of the fork.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_engine(path: Path, rounds: int) -> dict[str, Any]:
    """The engine stages, timed one by one (runs inside the subprocess)."""
    from evalcore.ratings import PairCounts, RatingParams, compute_ratings, read_battles

    watch = Stopwatch()
    table = watch.time("read", read_battles, path)
    counts, _ = watch.time("aggregate", PairCounts.from_battles, table)
    point = watch.time("fit", compute_ratings, counts, RatingParams(bootstrap_rounds=0))
    result = watch.time(
        "fit_and_bootstrap", compute_ratings, counts, RatingParams(bootstrap_rounds=rounds, seed=0)
    )
    for clock in (watch.wall, watch.cpu):
        clock["bootstrap"] = clock["fit_and_bootstrap"] - clock["fit"]
        clock["total"] = clock["read"] + clock["aggregate"] + clock["fit_and_bootstrap"]
    return {
        "wall": watch.wall,
        "cpu": watch.cpu,
        "peak_rss_mb": peak_rss_mb(),
        "pairs": counts.n_pairs,
        "cells": int(np.count_nonzero(counts.counts)),
        "ratings": {r.model: r.rating for r in point.rows},
        "mean_ci_width": float(np.mean([r.ci_upper - r.ci_lower for r in result.rows])),
    }


def engine_in_subprocess(path: Path, rounds: int) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, __file__, "--engine-only", str(path), "--rounds", str(rounds)],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    return json.loads(done.stdout)


CLI_WRAPPER = """
import runpy, sys
sys.argv = ["evalcore.ratings", *sys.argv[1:]]
try:
    runpy.run_module("evalcore.ratings", run_name="__main__")
finally:
    sys.path.insert(0, "bench")
    from ratings import peak_rss_mb
    print(f"peak_rss_mb={peak_rss_mb()}", file=sys.stderr)
"""


def cli_in_subprocess(path: Path, rounds: int, out: Path) -> dict[str, float]:
    """``python -m evalcore.ratings`` end to end, including interpreter start-up."""
    arguments = [str(path), "--bootstrap", str(rounds), "-o", str(out)]
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", CLI_WRAPPER, *arguments],
        check=True,
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    elapsed = time.perf_counter() - start
    peak = float(done.stderr.rsplit("peak_rss_mb=", 1)[1])
    return {"seconds": elapsed, "peak_rss_mb": peak}


def baseline_fit(battles: Any, models: Any) -> Any:
    """FastChat's ``compute_mle_elo`` (public notebook, Mar 2024): dense duplicated rows."""
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    doubled = pd.concat([battles, battles], ignore_index=True)
    n, p = doubled.shape[0], len(models.index)
    design = np.zeros([n, p])
    design[np.arange(n), models[doubled["model_a"]]] = +math.log(10)
    design[np.arange(n), models[doubled["model_b"]]] = -math.log(10)
    target = np.zeros(n)
    target[doubled["winner"] == "model_a"] = 1.0
    tie = ((doubled["winner"] == "tie") | (doubled["winner"] == "tie (bothbad)")).to_numpy().copy()
    tie[len(tie) // 2 :] = False
    target[tie] = 1.0
    # The notebook's penalty=None, spelled the way sklearn >= 1.8 asks for it.
    model = LogisticRegression(fit_intercept=False, C=np.inf, tol=1e-6)
    model.fit(design, target)
    return 400 * model.coef_[0] + 1000


def run_baseline(path: Path, rounds: int) -> dict[str, Any]:
    import pandas as pd

    start = time.perf_counter()
    battles = pd.read_parquet(path, columns=["model_a", "model_b", "winner"])
    read = time.perf_counter() - start
    names = pd.concat([battles["model_a"], battles["model_b"]]).unique()
    models = pd.Series(np.arange(len(names)), index=names)
    start = time.perf_counter()
    ratings = baseline_fit(battles, models)
    fit = time.perf_counter() - start
    rng = np.random.default_rng(0)
    per_round = []
    for _ in range(rounds):
        start = time.perf_counter()
        sample = battles.sample(frac=1.0, replace=True, random_state=rng)
        baseline_fit(sample, models)
        per_round.append(time.perf_counter() - start)
    return {
        "read": read,
        "fit": fit,
        "round_seconds": per_round,
        "peak_rss_mb": peak_rss_mb(),
        "ratings": dict(
            zip(names.tolist(), (ratings - ratings.mean() + 1000).tolist(), strict=True)
        ),
    }


def report(
    engine: dict[str, Any], cli: dict[str, float], baseline: dict[str, Any], rounds: int
) -> str:
    wall, cpu = engine["wall"], engine["cpu"]
    round_time = float(np.mean(baseline["round_seconds"]))
    baseline_bootstrap = round_time * rounds
    baseline_total = baseline["read"] + baseline["fit"] + baseline_bootstrap
    ours = engine["ratings"]
    gap = max(abs(ours[m] - baseline["ratings"][m]) for m in ours)
    extrapolated = f"extrapolated: {len(baseline['round_seconds'])} rounds x {round_time:.1f} s"
    lines = [
        "| stage | engine wall (s) | engine CPU (s) | baseline wall (s) |",
        "|---|---:|---:|---:|",
        f"| read parquet | {wall['read']:.2f} | {cpu['read']:.2f} | {baseline['read']:.2f} |",
        f"| aggregate to pair x outcome counts | {wall['aggregate']:.2f} "
        f"| {cpu['aggregate']:.2f} | - |",
        f"| one Bradley-Terry fit | {wall['fit']:.3f} | {cpu['fit']:.3f} | {baseline['fit']:.1f} |",
        f"| bootstrap, {rounds} rounds | {wall['bootstrap']:.2f} | {cpu['bootstrap']:.2f} "
        f"| {baseline_bootstrap:,.0f} ({extrapolated}) |",
        f"| **read + aggregate + fit + bootstrap** | **{wall['total']:.2f}** "
        f"| **{cpu['total']:.2f}** | **{baseline_total:,.0f}** |",
        f"| CLI end to end, incl. interpreter start-up | {cli['seconds']:.2f} | - | - |",
        "",
        f"- speed-up over the baseline, whole pipeline: **{baseline_total / wall['total']:,.0f}x** "
        f"(wall); bootstrap alone: {baseline_bootstrap / wall['bootstrap']:,.0f}x",
        f"- peak RSS (VmHWM): engine {engine['peak_rss_mb']:.0f} MB, CLI {cli['peak_rss_mb']:.0f} MB; "
        f"baseline process {baseline['peak_rss_mb']:,.0f} MB (dense 2N x 100 design matrix)",
        f"- input: {engine['pairs']} pairs, {engine['cells']} non-empty pair x outcome cells; "
        f"mean 95% CI width {engine['mean_ci_width']:.1f} points",
        f"- largest |engine - baseline| point rating: {gap:.3f} points "
        "(the baseline stops at lbfgs tol 1e-6, as in the notebook)",
        f"- load average during the run: {' '.join(f'{v:.1f}' for v in os.getloadavg())} "
        f"on {os.cpu_count()} CPUs",
    ]
    return "\n".join(lines)


def main() -> None:
    if "--pipeline" in sys.argv[1:]:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from ratings_pipeline import main as pipeline

        pipeline([a for a in sys.argv[1:] if a != "--pipeline"])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--votes", type=int, default=1_000_000)
    parser.add_argument("--models", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=1000)
    parser.add_argument("--baseline-rounds", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--engine-only", metavar="PARQUET", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.engine_only:
        print(json.dumps(run_engine(Path(args.engine_only), args.rounds)))
        return
    with tempfile.TemporaryDirectory(prefix="ladder-bench-") as directory:
        path = Path(directory) / "battles.parquet"
        start = time.perf_counter()
        meta = make_battles(path, votes=args.votes, models=args.models, seed=args.seed)
        print(
            f"generated {meta['votes']:,} votes, {meta['models']} models "
            f"({meta['bytes'] / 1e6:.1f} MB parquet) in {time.perf_counter() - start:.1f}s; "
            f"{os.cpu_count()} CPUs",
            flush=True,
        )
        # The CLI first: RUSAGE_CHILDREN reports the largest child so far.
        cli = cli_in_subprocess(path, args.rounds, Path(directory) / "ratings.csv")
        engine = engine_in_subprocess(path, args.rounds)
        print(f"engine done in {engine['wall']['total']:.2f}s; running the baseline", flush=True)
        baseline = run_baseline(path, args.baseline_rounds)
    print(report(engine, cli, baseline, args.rounds))


if __name__ == "__main__":
    main()
