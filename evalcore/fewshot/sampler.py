"""Seeded Multi-Splits partitions and demonstration sampling.

Multi-Splits (FewNLU, Zheng et al., ACL 2022, arXiv:2109.12742, ``--few_shot_setting
dev32_split``): the labeled pool is shuffled and cut into train and dev at ratio ``r``, K times,
with split seeds drawn from one RNG seeded by the run seed. Records sharing a group key (a WSC
text, a COPA premise) stay on one side.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Split:
    """One Multi-Splits partition of the pool (indices into the pool records)."""

    index: int
    seed: int
    train: tuple[int, ...]
    dev: tuple[int, ...]


def make_splits(
    records: Sequence[Mapping[str, Any]],
    *,
    splits: int,
    seed: int,
    ratio: float = 0.5,
    group_by: Callable[[Mapping[str, Any]], str] | None = None,
) -> list[Split]:
    """Partition ``records`` into train/dev ``splits`` times.

    Args:
        records: The labeled pool.
        splits: K, the number of random partitions.
        seed: Run seed; the K split seeds are drawn from ``random.Random(seed)``.
        ratio: Share of records that go to train (FewNLU r = 0.5).
        group_by: Key whose equal values must stay on one side; default one group per record.

    Returns:
        K splits; a split's train and dev are disjoint and cover the pool.

    Raises:
        ValueError: If ``splits`` < 1, ``ratio`` is not in (0, 1) or the pool has < 2 groups.
    """
    if splits < 1:
        raise ValueError(f"splits must be at least 1, got {splits}")
    if not 0.0 < ratio < 1.0:
        raise ValueError(f"ratio must be strictly between 0 and 1, got {ratio}")
    groups: dict[str, list[int]] = {}
    for index, record in enumerate(records):
        key = group_by(record) if group_by else str(index)
        groups.setdefault(key, []).append(index)
    if len(groups) < 2:
        raise ValueError(f"need at least two groups of records to split, got {len(groups)}")
    rng = random.Random(seed)
    seeds = [rng.randrange(2**31) for _ in range(splits)]
    return [_cut(list(groups.values()), len(records), ratio, i, s) for i, s in enumerate(seeds)]


def _cut(groups: list[list[int]], total: int, ratio: float, index: int, seed: int) -> Split:
    random.Random(seed).shuffle(groups)
    target = int(total * ratio)  # FewNLU cuts at int(n * r)
    train: list[int] = []
    dev: list[int] = []
    for group in groups:
        (train if len(train) < target else dev).extend(group)
    if not train or not dev:
        raise ValueError(f"split {index} left one side empty; the pool is too small or lumpy")
    return Split(index, seed, tuple(sorted(train)), tuple(sorted(dev)))


class DemoSampler:
    """Draws in-context demonstrations with its own seeded ``random.Random``.

    The generator is keyed by (split seed, task, k), not advanced per test doc, so a doc's
    demonstrations never depend on iteration order or sharding (the lm-evaluation-harness
    sampler shares one sequential RNG across docs; see its PR #1724).
    """

    def __init__(self, seed: int, task: str) -> None:
        self.seed = seed
        self.task = task

    def sample(self, pool: Sequence[T], k: int) -> list[T]:
        """``k`` distinct items of ``pool`` in random order (all of it if smaller)."""
        if k < 0:
            raise ValueError(f"k must be non-negative, got {k}")
        rng = random.Random(f"{self.seed}:{self.task}:{k}")
        return rng.sample(list(pool), min(k, len(pool)))
