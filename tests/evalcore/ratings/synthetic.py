"""Synthetic battles drawn from known Bradley-Terry strengths."""

from __future__ import annotations

from typing import Any

import numpy as np

from evalcore.types import Outcome

WINNERS = ("model_a", "model_b", "tie", "tie (bothbad)")


def simulate(
    strengths: np.ndarray,
    n_votes: int,
    *,
    seed: int,
    tie_rate: float = 0.1,
    both_bad_rate: float = 0.05,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Votes drawn from Bradley-Terry with natural-log ``strengths`` and random ties.

    Returns integer codes (model_a, model_b, outcome), each pair equally likely.
    """
    rng = np.random.default_rng(seed)
    m = strengths.size
    a = rng.integers(0, m, n_votes)
    b = rng.integers(0, m - 1, n_votes)
    b = np.where(b >= a, b + 1, b)
    p_a = 1.0 / (1.0 + np.exp(strengths[b] - strengths[a]))
    u = rng.random(n_votes)
    decided = 1.0 - tie_rate - both_bad_rate
    outcome = np.where(
        u < decided * p_a,
        int(Outcome.A_WINS),
        np.where(
            u < decided,
            int(Outcome.B_WINS),
            np.where(u < decided + tie_rate, int(Outcome.TIE), int(Outcome.BOTH_BAD)),
        ),
    )
    return a, b, outcome


def simulate_davidson(
    strengths: np.ndarray, nu: float, n_votes: int, *, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Votes drawn from Davidson's tie model: P(a) ∝ √π_a, P(b) ∝ √π_b, P(tie) ∝ ν."""
    rng = np.random.default_rng(seed)
    m = strengths.size
    a = rng.integers(0, m, n_votes)
    b = rng.integers(0, m - 1, n_votes)
    b = np.where(b >= a, b + 1, b)
    half = (strengths[a] - strengths[b]) / 2
    weights = np.stack([np.exp(half), np.exp(-half), np.full(n_votes, nu)], axis=1)
    cumulative = np.cumsum(weights / weights.sum(axis=1, keepdims=True), axis=1)
    outcome = (rng.random(n_votes)[:, None] > cumulative).sum(axis=1)
    return a, b, np.minimum(outcome, int(Outcome.TIE))


def as_records(
    models: tuple[str, ...], a: np.ndarray, b: np.ndarray, outcome: np.ndarray
) -> list[dict[str, Any]]:
    return [
        {"model_a": models[i], "model_b": models[j], "winner": WINNERS[o], "tstamp": float(t)}
        for t, (i, j, o) in enumerate(zip(a.tolist(), b.tolist(), outcome.tolist(), strict=True))
    ]


def model_names(m: int) -> tuple[str, ...]:
    return tuple(f"model-{i:02d}" for i in range(m))
