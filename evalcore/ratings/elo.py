"""Online Elo, as the public arenas ran it before Bradley–Terry.

For each battle in time order: ``E_a = 1 / (1 + base^((R_b − R_a)/scale))``, ``S_a`` = 1, 0 or
0.5 (A wins, B wins, either kind of tie), ``R_a += K·(S_a − E_a)`` and ``R_b −= K·(S_a − E_a)``,
so every update is zero-sum and the mean rating stays at ``init``. Unlike the counts-based fits
the result depends on the order of the battles, so it needs the battles themselves, not counts.

Bootstrap (as FastChat's ``get_bootstrap_result``): each round draws N battles with replacement,
*in the order drawn*, and replays them; the intervals are percentiles over rounds, while the
reported rating is the replay in true time order (FastChat's notebook shows the bootstrap median
instead). All rounds advance together, one battle position at a time, as numpy vectors over the
rounds: O(N·R) work with O(N) Python steps.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
from numpy.typing import NDArray

from evalcore.ratings.battles import BattleTable
from evalcore.ratings.progress import ProgressBar
from evalcore.types import Battle

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

STEPS_PER_DRAW = 1024  # battle positions drawn at once per bootstrap chunk; fixes the stream
SCORE_OF_OUTCOME = np.array([1.0, 0.0, 0.5, 0.5])  # indexed by Outcome


def compute_online_elo(
    battles: BattleTable | Iterable[Mapping[str, Any] | Battle],
    *,
    k: float = 4.0,
    scale: float = 400.0,
    base: float = 10.0,
    init: float = 1000.0,
) -> dict[str, float]:
    """Replay battles *in the order given* and return each model's final Elo rating.

    Args:
        battles: a table (e.g. ``table.in_time_order()``) or records already in time order.
        k, scale, base, init: the Elo constants (arena defaults).

    Raises:
        InvalidRecordError: a record is malformed.
    """
    table = battles if isinstance(battles, BattleTable) else BattleTable.from_records(battles)
    ratings = replay_elo(
        table.model_a,
        table.model_b,
        SCORE_OF_OUTCOME[table.outcome],
        len(table.models),
        k=k,
        scale=scale,
        base=base,
        init=init,
    )
    return dict(zip(table.models, ratings.tolist(), strict=True))


def replay_elo(
    model_a: IntArray,
    model_b: IntArray,
    score_a: FloatArray,
    n_models: int,
    *,
    k: float,
    scale: float,
    base: float,
    init: float,
) -> FloatArray:
    """Sequential Elo over integer-coded battles; returns ratings (M,)."""
    ratings = [float(init)] * n_models
    rate = math.log(base) / scale
    exp = math.exp
    for a, b, s in zip(model_a.tolist(), model_b.tolist(), score_a.tolist(), strict=True):
        ra, rb = ratings[a], ratings[b]
        delta = k * (s - 1.0 / (1.0 + exp(min((rb - ra) * rate, 700.0))))
        ratings[a] = ra + delta
        ratings[b] = rb - delta
    return np.asarray(ratings)


def bootstrap_elo(
    model_a: IntArray,
    model_b: IntArray,
    score_a: FloatArray,
    n_models: int,
    *,
    rounds: int,
    seed: int,
    k: float,
    scale: float,
    base: float,
    init: float,
    progress: bool = False,
) -> FloatArray:
    """Elo of ``rounds`` resamples (with replacement, in drawn order); returns (R, M)."""
    # scipy's one-ufunc expit per step; imported here so the counts-based path never loads scipy.
    from scipy.special import expit

    rng = np.random.default_rng(seed)
    n = model_a.size
    rate = math.log(base) / scale
    ratings = np.full(rounds * n_models, float(init))  # round r, model i at r·M + i
    offset = np.arange(rounds, dtype=np.int64) * n_models
    with ProgressBar(total=n, description="elo bootstrap", enabled=progress) as bar:
        for low in range(0, n, STEPS_PER_DRAW):
            steps = min(STEPS_PER_DRAW, n - low)
            drawn = rng.integers(0, n, size=(steps, rounds))
            seat_a, seat_b, score = model_a[drawn] + offset, model_b[drawn] + offset, score_a[drawn]
            for t in range(steps):
                ra, rb = ratings[seat_a[t]], ratings[seat_b[t]]
                delta = k * (score[t] - expit((ra - rb) * rate))
                ratings[seat_a[t]] = ra + delta  # a ≠ b within a battle, so no index repeats
                ratings[seat_b[t]] = rb - delta
            bar.update(steps)
    return ratings.reshape(rounds, n_models)


def outcome_scores(outcome: NDArray[np.int8]) -> FloatArray:
    """S_a per battle: 1, 0, or 0.5 for ``tie`` and ``tie (bothbad)``."""
    return np.asarray(SCORE_OF_OUTCOME[outcome])
