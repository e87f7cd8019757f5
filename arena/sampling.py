"""Which two contestants meet: pairs with few votes or close results come up more often.

For an unordered pair with ``n`` votes on the overall board, of which the first model won
``w`` (a tie counts as half a win, as in Bradley–Terry):

    p  = (w + 1) / (n + 2)                 # Laplace-smoothed win rate, 0.5 with no votes
    closeness = 4 · p · (1 − p)            # 1 for an even pair, → 0 for a one-sided pair
    weight = (CLOSENESS_FLOOR + closeness) / sqrt(1 + n / VOTES_SCALE)

A new pair weighs 1.5; after 100 even votes 0.45; after 100 votes won 90–10 about 0.27. The
floor keeps every pair possible, so the comparison graph stays connected. The pair is drawn
with probability proportional to its weight, then the sides are shuffled.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

CLOSENESS_FLOOR = 0.5
VOTES_SCALE = 10.0


@dataclass(frozen=True)
class PairRecord:
    """Votes so far between two contestants (ties and both-bad count half each way)."""

    votes: int = 0
    first_wins: float = 0.0


def pair_weight(record: PairRecord) -> float:
    p = (record.first_wins + 1.0) / (record.votes + 2.0)
    closeness = 4.0 * p * (1.0 - p)
    return (CLOSENESS_FLOOR + closeness) / math.sqrt(1.0 + record.votes / VOTES_SCALE)


def sample_pair(
    candidates: Sequence[int],
    records: Mapping[tuple[int, int], PairRecord],
    rng: random.Random,
) -> tuple[int, int]:
    """Draw two distinct ids from ``candidates`` (shown left, right).

    ``records`` is keyed by ``(smaller id, larger id)``; a missing pair has no votes.

    Raises:
        ValueError: fewer than two distinct candidates.
    """
    ids = sorted(set(candidates))
    if len(ids) < 2:
        raise ValueError(f"need at least two contestants to battle, got {len(ids)}")
    pairs = [(a, b) for i, a in enumerate(ids) for b in ids[i + 1 :]]
    weights = [pair_weight(records.get(pair, PairRecord())) for pair in pairs]
    first, second = rng.choices(pairs, weights=weights, k=1)[0]
    return (first, second) if rng.random() < 0.5 else (second, first)
