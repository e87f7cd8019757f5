"""Pair × outcome counts: the sufficient statistics every counts-based method works on.

Votes are reduced once, in O(votes), to one row per *unordered* pair of models. The pair is stored
in canonical orientation (``first`` sorts before ``second`` by name) with four counts: first wins,
second wins, ties, both bad. Seats (who was shown as A) are folded away because no method here
models a position effect, so swapping ``model_a``/``model_b`` with the winner mirrored cannot
change anything, including :meth:`PairCounts.digest`.
"""

from __future__ import annotations

import hashlib
import json
import numbers
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import NDArray

from evalcore.errors import EmptyInputError, InvalidRecordError, UnknownModelError
from evalcore.ratings.battles import BattleTable, SkipReport
from evalcore.types import Battle, Outcome

FIRST_WINS, SECOND_WINS, TIES, BOTH_BAD = range(4)
COUNT_FIELDS = ("model_a", "model_b", "model_a_wins", "model_b_wins", "ties", "both_bad")
DIGEST_VERSION = "ladder.pair-counts.v1"
DENSE_TALLY_LIMIT = 1 << 22  # bins (32 MB of int64): up to ~1,000 models

IntArray = NDArray[np.int64]


class AggregatedBattles(NamedTuple):
    """Counts built from battles, with the report of rows skipped on the way."""

    counts: PairCounts
    report: SkipReport


@dataclass(frozen=True, eq=False)
class PairCounts:
    """Outcome counts per unordered pair, as int arrays over a sorted model tuple.

    Attributes:
        models: sorted model names; ``first``/``second`` index into it.
        first, second: shape (P,), ``first < second``, pairs sorted, each pair once.
        counts: shape (P, 4): first wins, second wins, ties, both bad. Every row sums to > 0.
    """

    models: tuple[str, ...]
    first: IntArray
    second: IntArray
    counts: IntArray

    def __post_init__(self) -> None:
        for array in (self.first, self.second, self.counts):
            array.setflags(write=False)
        assert self.counts.shape == (self.first.shape[0], 4)
        assert bool(np.all(self.first < self.second))

    @property
    def n_models(self) -> int:
        return len(self.models)

    @property
    def n_pairs(self) -> int:
        return int(self.first.shape[0])

    @property
    def total_votes(self) -> int:
        return int(self.counts.sum())

    def index_of(self, model: str, *, field: str = "model") -> int:
        """Position of ``model`` in :attr:`models`.

        Raises:
            UnknownModelError: the model has no battles here.
        """
        position = int(np.searchsorted(np.asarray(self.models, dtype=object), model))
        if position >= self.n_models or self.models[position] != model:
            raise UnknownModelError(model, field=field)
        return position

    def votes_per_model(self) -> IntArray:
        """Battles each model took part in (as A or B, every outcome)."""
        per_pair = self.counts.sum(axis=1)
        return _scatter(self.n_models, self.first, per_pair) + _scatter(
            self.n_models, self.second, per_pair
        )

    def decided_per_model(self) -> tuple[IntArray, IntArray]:
        """(wins, losses) of each model over battles that were not a tie."""
        m, c = self.n_models, self.counts
        wins = _scatter(m, self.first, c[:, FIRST_WINS]) + _scatter(
            m, self.second, c[:, SECOND_WINS]
        )
        losses = _scatter(m, self.first, c[:, SECOND_WINS]) + _scatter(
            m, self.second, c[:, FIRST_WINS]
        )
        return wins, losses

    def battle_matrix(self) -> IntArray:
        """Symmetric (M, M) matrix of battle counts, all outcomes."""
        matrix = np.zeros((self.n_models, self.n_models), dtype=np.int64)
        total = self.counts.sum(axis=1)
        matrix[self.first, self.second] = total
        matrix[self.second, self.first] = total
        return matrix

    def win_matrix(self) -> IntArray:
        """(M, M) matrix: entry [i, j] is how often i beat j (ties excluded)."""
        matrix = np.zeros((self.n_models, self.n_models), dtype=np.int64)
        matrix[self.first, self.second] = self.counts[:, FIRST_WINS]
        matrix[self.second, self.first] = self.counts[:, SECOND_WINS]
        return matrix

    def to_rows(self) -> list[dict[str, Any]]:
        """The aggregated-counts form, one dict per pair in canonical orientation."""
        return [
            dict(zip(COUNT_FIELDS, (self.models[i], self.models[j], *map(int, row)), strict=True))
            for i, j, row in zip(
                self.first.tolist(), self.second.tolist(), self.counts, strict=True
            )
        ]

    def digest(self) -> str:
        """SHA-256 of a canonical serialisation.

        Independent of input row order and of which model sat in seat A, because the stored form
        is already canonical (sorted names, unordered pairs, zero pairs dropped).
        """
        hasher = hashlib.sha256(DIGEST_VERSION.encode() + b"\n")
        hasher.update(_canonical_json(list(self.models)) + b"\n")
        # Line k is json.dumps([name_i, name_j, c0, c1, c2, c3]) (compact, UTF-8), built from
        # names encoded once rather than one dumps() call per pair.
        names = [_canonical_json(name).decode() for name in self.models]
        lines = (
            f"[{names[i]},{names[j]},{c0},{c1},{c2},{c3}]\n"
            for i, j, (c0, c1, c2, c3) in zip(
                self.first.tolist(), self.second.tolist(), self.counts.tolist(), strict=True
            )
        )
        hasher.update("".join(lines).encode())
        return hasher.hexdigest()

    @classmethod
    def from_battles(
        cls,
        records: BattleTable | Iterable[Mapping[str, Any] | Battle],
        *,
        skip_invalid: bool = False,
    ) -> AggregatedBattles:
        """Aggregate battle records (or an already validated :class:`BattleTable`).

        Args:
            records: arena battle records, or a table from a reader.
            skip_invalid: drop bad records and count them instead of raising (records only; a
                table was validated when it was read).

        Returns:
            ``(counts, report)``; ``report`` lists the rows that were skipped.

        Raises:
            InvalidRecordError: a record is bad and ``skip_invalid`` is false.
        """
        table = (
            records
            if isinstance(records, BattleTable)
            else BattleTable.from_records(records, skip_invalid=skip_invalid)
        )
        counts = cls.from_codes(table.models, table.model_a, table.model_b, table.outcome)
        return AggregatedBattles(counts, table.report)

    @classmethod
    def from_codes(
        cls,
        models: Sequence[str],
        model_a: NDArray[np.integer[Any]],
        model_b: NDArray[np.integer[Any]],
        outcome: NDArray[np.integer[Any]],
    ) -> PairCounts:
        """Aggregate integer-coded battles; ``models`` must be sorted and codes valid."""
        m = len(models)
        a = np.asarray(model_a, dtype=np.int64)
        b = np.asarray(model_b, dtype=np.int64)
        o = np.asarray(outcome, dtype=np.int64)
        if a.size == 0:
            raise EmptyInputError("no battles to aggregate")
        swap = a > b
        low, high = np.where(swap, b, a), np.where(swap, a, b)
        # Mirror the outcome when the seats are swapped into canonical order (A_WINS <-> B_WINS).
        decided = o <= int(Outcome.B_WINS)
        o = np.where(swap & decided, 1 - o, o)
        codes = (low * m + high) * 4 + o
        if m * m * 4 <= DENSE_TALLY_LIMIT:  # a bincount beats sorting a million codes
            tallies = np.bincount(codes, minlength=m * m * 4)
            keys = np.flatnonzero(tallies)
            tallies = tallies[keys]
        else:
            keys, tallies = np.unique(codes, return_counts=True)
        pair_keys, pair_index = np.unique(keys // 4, return_inverse=True)
        counts = np.zeros((pair_keys.size, 4), dtype=np.int64)
        counts[pair_index, keys % 4] = tallies
        return cls(tuple(models), pair_keys // m, pair_keys % m, counts)

    @classmethod
    def from_rows(cls, rows: Iterable[Mapping[str, Any] | Sequence[Any]]) -> PairCounts:
        """Build counts from the aggregated form.

        Each row is a mapping with ``model_a, model_b, model_a_wins, model_b_wins, ties,
        both_bad`` or a 6-tuple in that order. Rows for the same pair (in either orientation)
        are summed; all-zero rows are ignored, and so is a model that only occurs in them.

        Raises:
            InvalidRecordError: a name is missing or empty, a model faces itself, or a count is
                missing, negative or not an integer.
            EmptyInputError: no row has a positive count.
        """
        totals: dict[tuple[str, str], list[int]] = {}
        for row_number, row in enumerate(rows):
            a, b, values = _parse_count_row(row, row_number)
            if a > b:
                a, b = b, a
                values = [values[1], values[0], values[2], values[3]]
            current = totals.setdefault((a, b), [0, 0, 0, 0])
            for k in range(4):
                current[k] += values[k]
        totals = {pair: v for pair, v in totals.items() if sum(v) > 0}
        if not totals:
            raise EmptyInputError("no pair has a positive count")
        models = tuple(sorted({name for pair in totals for name in pair}))
        position = {name: i for i, name in enumerate(models)}
        pairs = sorted(totals)
        return cls(
            models,
            np.asarray([position[a] for a, _ in pairs], dtype=np.int64),
            np.asarray([position[b] for _, b in pairs], dtype=np.int64),
            np.asarray([totals[p] for p in pairs], dtype=np.int64).reshape(-1, 4),
        )


def _scatter(n: int, index: IntArray, values: NDArray[Any]) -> IntArray:
    return np.bincount(index, weights=values, minlength=n).astype(np.int64)


def _canonical_json(value: object) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def _parse_count_row(
    row: Mapping[str, Any] | Sequence[Any], row_number: int
) -> tuple[str, str, list[int]]:
    if isinstance(row, Mapping):
        missing = [f for f in COUNT_FIELDS if row.get(f) is None]
        if missing:
            raise InvalidRecordError(
                f"field {missing[0]!r} is missing", row=row_number, field=missing[0]
            )
        values = [row[f] for f in COUNT_FIELDS]
    elif isinstance(row, Sequence) and not isinstance(row, str) and len(row) == len(COUNT_FIELDS):
        values = list(row)
    else:
        raise InvalidRecordError(
            f"a counts row must be a mapping or a sequence of {len(COUNT_FIELDS)} values "
            f"({', '.join(COUNT_FIELDS)})",
            row=row_number,
            field=None,
        )
    for name in COUNT_FIELDS[:2]:
        value = values[COUNT_FIELDS.index(name)]
        if not isinstance(value, str) or not value.strip():
            problem = "is empty" if isinstance(value, str) else f"must be a string, got {value!r}"
            raise InvalidRecordError(f"field {name!r} {problem}", row=row_number, field=name)
    if values[0] == values[1]:
        raise InvalidRecordError(
            f"field 'model_b' is the same model as model_a ({values[0]!r})",
            row=row_number,
            field="model_b",
        )
    numbers_ = [_parse_count(values[k], COUNT_FIELDS[k], row_number) for k in range(2, 6)]
    return values[0], values[1], numbers_


def _parse_count(value: object, name: str, row_number: int) -> int:
    number: int | None = None
    if isinstance(value, bool):
        number = None
    elif isinstance(value, numbers.Integral):
        number = int(value)
    elif isinstance(value, numbers.Real) and float(value).is_integer():
        number = int(float(value))
    elif isinstance(value, str) and value.strip().lstrip("+").isdigit():
        number = int(value)
    if number is None:
        raise InvalidRecordError(
            f"field {name!r} must be a non-negative integer, got {value!r}",
            row=row_number,
            field=name,
        )
    if number < 0:
        raise InvalidRecordError(
            f"field {name!r} must not be negative, got {number}", row=row_number, field=name
        )
    return number
