"""Validated, columnar battle tables.

A :class:`BattleTable` holds one row per valid vote as integer arrays (model codes into a sorted
name tuple, :class:`~evalcore.types.Outcome` codes, timestamps) plus the optional slicing
attributes (judge, language, category, turn, anony) as encoded columns. Every reader and the
in-memory record path build one through the same vectorised validation, so a bad record gets the
same error (row and field named) whether it came from JSON, CSV, parquet or a Python list.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from evalcore.errors import EmptyInputError, InvalidRecordError
from evalcore.types import OUTCOME_BY_WINNER, Battle, Outcome

REQUIRED_FIELDS = ("model_a", "model_b", "winner")
ATTRIBUTE_FIELDS = ("judge", "language", "category", "turn", "anony", "conversation_id")
STYLE_NAMES = ("tokens", "headers", "bold", "lists")  # = style.STYLE_FEATURES
# Flat style columns of the battle schema: tokens_a, headers_a, ..., lists_b. A record may
# instead carry ``style = {"a": {"tokens": ..}, "b": {..}}`` (how the leaderboard stores them).
STYLE_COLUMNS = tuple(f"{name}_{side}" for side in ("a", "b") for name in STYLE_NAMES)
MAX_REPORT_EXAMPLES = 5

IntArray = NDArray[np.int64]

# Per-row validation codes; 0 is valid. The first failing field of a row names its error.
_OK, _MISSING, _EMPTY, _NOT_STRING, _UNKNOWN, _SAME_MODEL, _NOT_NUMBER, _NOT_RECORD = range(8)
_REASONS = {
    _MISSING: "missing",
    _EMPTY: "empty",
    _NOT_STRING: "not a string",
    _UNKNOWN: "unknown value",
    _SAME_MODEL: "same model as model_a",
    _NOT_NUMBER: "not a number",
    _NOT_RECORD: "not a mapping",
}


@dataclass(frozen=True, eq=False)
class EncodedColumn:
    """A column as integer codes into a tuple of distinct raw values; code -1 means missing."""

    codes: IntArray
    categories: tuple[object, ...]

    @classmethod
    def from_values(cls, values: Iterable[object]) -> EncodedColumn:
        """Encode raw values; ``None`` becomes missing, unhashable values get their own code."""
        index: dict[object, int] = {}
        categories: list[object] = []
        codes: list[int] = []
        for value in values:
            codes.append(_encode_one(value, index, categories))
        return cls(np.asarray(codes, dtype=np.int64), tuple(categories))

    def take(self, indices: IntArray) -> EncodedColumn:
        return EncodedColumn(self.codes[indices], self.categories)

    def value_at(self, row: int) -> object:
        code = int(self.codes[row])
        return None if code < 0 else self.categories[code]

    def matches(self, value: object) -> NDArray[np.bool_]:
        """Rows whose value equals ``value``."""
        hits = [i for i, c in enumerate(self.categories) if _same_value(c, value)]
        return np.isin(self.codes, np.asarray(hits, dtype=np.int64))


def _same_value(category: object, value: object) -> bool:
    try:
        return bool(category == value) and type(category) is type(value)
    except Exception:  # an exotic __eq__ is simply "not equal"
        return False


def _encode_one(value: object, index: dict[object, int], categories: list[object]) -> int:
    if value is None:
        return -1
    try:
        code = index.get(value)
        if code is None:
            code = index[value] = len(categories)
            categories.append(value)
        return code
    except TypeError:  # unhashable (a list or dict): keep it, without de-duplication
        categories.append(value)
        return len(categories) - 1


@dataclass(frozen=True)
class SkipReport:
    """What validation dropped: counts per ``"field: reason"`` and the first few messages."""

    total_rows: int
    skipped_rows: int
    reasons: Mapping[str, int] = field(default_factory=dict)
    examples: tuple[str, ...] = ()

    @property
    def kept_rows(self) -> int:
        return self.total_rows - self.skipped_rows

    def to_dict(self) -> dict[str, object]:
        return {
            "total_rows": self.total_rows,
            "skipped_rows": self.skipped_rows,
            "reasons": dict(sorted(self.reasons.items())),
            "examples": list(self.examples),
        }


@dataclass(frozen=True)
class BattleFilter:
    """A slice of the battles: equality on category, language and judge; anonymous only."""

    category: str | None = None
    language: str | None = None
    judge: str | None = None
    anony_only: bool = False

    def is_empty(self) -> bool:
        return self == BattleFilter()

    def to_dict(self) -> dict[str, object]:
        return {
            "category": self.category,
            "language": self.language,
            "judge": self.judge,
            "anony_only": self.anony_only,
        }

    def describe(self) -> str:
        parts = [f"{k}={v!r}" for k, v in self.to_dict().items() if v not in (None, False)]
        return ", ".join(parts) or "no filter"


@dataclass(frozen=True, eq=False)
class BattleTable:
    """Valid battles as columns. Build with :meth:`from_records` or a reader in ``io``."""

    models: tuple[str, ...]  # sorted; model_a/model_b index into it
    model_a: IntArray
    model_b: IntArray
    outcome: NDArray[np.int8]  # Outcome values
    tstamp: NDArray[np.float64]  # NaN where absent
    rows: IntArray  # 0-based position of each battle in the original input
    attributes: Mapping[str, EncodedColumn]
    report: SkipReport
    style: NDArray[np.float64] | None = None  # (N, 2, K) raw style counts of sides a and b

    def __len__(self) -> int:
        return int(self.model_a.shape[0])

    @classmethod
    def from_records(
        cls, records: Iterable[Mapping[str, Any] | Battle], *, skip_invalid: bool = False
    ) -> BattleTable:
        """Validate arena battle records (mappings with ``winner``, or :class:`Battle`).

        Args:
            records: battle records in input order; row numbers in errors are 0-based positions.
            skip_invalid: drop bad records and count them in ``report`` instead of raising.

        Raises:
            InvalidRecordError: a record is bad and ``skip_invalid`` is false.
        """
        encoder = _RecordEncoder()
        for record in records:
            encoder.add(record)
        return encoder.build(skip_invalid=skip_invalid)

    @classmethod
    def from_columns(
        cls,
        n_rows: int,
        columns: Mapping[str, EncodedColumn],
        tstamp: NDArray[np.float64] | None = None,
        *,
        tstamp_invalid: NDArray[np.bool_] | None = None,
        not_record: NDArray[np.bool_] | None = None,
        skip_invalid: bool = False,
        style: NDArray[np.float64] | None = None,
    ) -> BattleTable:
        """Validate encoded columns (the fast path used by the columnar readers).

        ``columns`` must hold ``model_a``, ``model_b`` and ``winner``; attribute columns are
        optional. ``tstamp`` holds NaN where absent; ``tstamp_invalid`` flags unparsable values.
        ``style`` (N, 2, K) holds raw style counts, NaN where missing (an invalid row).
        """
        return _validate(
            n_rows,
            columns,
            tstamp,
            tstamp_invalid,
            not_record,
            skip_invalid=skip_invalid,
            style=style,
        )

    def take(self, indices: IntArray) -> BattleTable:
        """The battles at ``indices`` (in that order), same model vocabulary."""
        return BattleTable(
            models=self.models,
            model_a=self.model_a[indices],
            model_b=self.model_b[indices],
            outcome=self.outcome[indices],
            tstamp=self.tstamp[indices],
            rows=self.rows[indices],
            attributes={k: v.take(indices) for k, v in self.attributes.items()},
            report=self.report,
            style=None if self.style is None else self.style[indices],
        )

    def where(self, selection: BattleFilter) -> BattleTable:
        """The battles in the slice ``selection``.

        Raises:
            EmptyInputError: no battle matches.
        """
        if selection.is_empty():
            return self
        keep = np.ones(len(self), dtype=bool)
        for name in ("category", "language", "judge"):
            value = getattr(selection, name)
            if value is not None:
                keep &= self._attribute(name).matches(value)
        if selection.anony_only:
            keep &= self._attribute("anony").matches(True)
        if not keep.any():
            raise EmptyInputError(f"no battles left after filtering ({selection.describe()})")
        sliced = self.take(np.flatnonzero(keep))
        # A slice rates only the models that battled in it (none listed at the initial rating).
        models, code_a, code_b = _compact(sliced.models, sliced.model_a, sliced.model_b)
        return dataclasses.replace(sliced, models=models, model_a=code_a, model_b=code_b)

    def in_time_order(self) -> BattleTable:
        """Battles stably sorted by ``tstamp``; battles without one go last, in input order."""
        return self.take(np.argsort(self.tstamp, kind="stable"))

    def first_vote_per_conversation(self) -> BattleTable:
        """Only the first battle (in table order) of each ``conversation_id``; battles without
        one are all kept."""
        column = self.attributes.get("conversation_id")
        if column is None:
            return self
        codes = column.codes
        has_id = codes >= 0
        _, first = np.unique(codes[has_id], return_index=True)
        keep = np.sort(np.concatenate([np.flatnonzero(has_id)[first], np.flatnonzero(~has_id)]))
        return self if keep.size == len(self) else self.take(keep)

    def _attribute(self, name: str) -> EncodedColumn:
        column = self.attributes.get(name)
        if column is None:
            return EncodedColumn(np.full(len(self), -1, dtype=np.int64), ())
        return column


class _RecordEncoder:
    """Encodes records row by row into categorical columns (one pass, no per-row objects)."""

    def __init__(self) -> None:
        names = (*REQUIRED_FIELDS, *ATTRIBUTE_FIELDS)
        self.index: dict[str, dict[object, int]] = {n: {} for n in names}
        self.categories: dict[str, list[object]] = {n: [] for n in names}
        self.codes: dict[str, list[int]] = {n: [] for n in names}
        self.tstamp: list[float] = []
        self.tstamp_invalid: list[int] = []
        self.not_record: list[int] = []
        self.style: list[list[float]] = []
        self.has_style = False

    def add(self, record: Mapping[str, Any] | Battle) -> None:
        row = len(self.tstamp)
        if isinstance(record, Battle):
            get = _battle_getter(record)
        elif isinstance(record, Mapping):
            get = record.get
        else:
            self.not_record.append(row)
            get = _empty_getter
        for name, codes in self.codes.items():
            value = get(name)
            if name == "winner" and isinstance(value, Outcome):
                value = value.winner
            codes.append(_encode_one(value, self.index[name], self.categories[name]))
        self.tstamp.append(self._parse_tstamp(get("tstamp"), row))
        self.style.append(self._style_values(get))

    def _style_values(self, get: Any) -> list[float]:
        nested = get("style")
        if isinstance(nested, Mapping):
            sides = [nested.get(side) for side in ("a", "b")]
            values = [
                side.get(name) if isinstance(side, Mapping) else None
                for side in sides
                for name in STYLE_NAMES
            ]
        else:
            values = [get(name) for name in STYLE_COLUMNS]
        self.has_style = self.has_style or nested is not None or any(v is not None for v in values)
        return [_style_number(v) for v in values]

    def _parse_tstamp(self, value: object, row: int) -> float:
        if value is None:
            return float("nan")
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        self.tstamp_invalid.append(row)
        return float("nan")

    def build(self, *, skip_invalid: bool) -> BattleTable:
        n_rows = len(self.tstamp)
        columns = {
            name: EncodedColumn(np.asarray(codes, dtype=np.int64), tuple(self.categories[name]))
            for name, codes in self.codes.items()
        }
        return _validate(
            n_rows,
            columns,
            np.asarray(self.tstamp, dtype=np.float64),
            _mask(n_rows, self.tstamp_invalid),
            _mask(n_rows, self.not_record),
            skip_invalid=skip_invalid,
            style=np.asarray(self.style, dtype=np.float64).reshape(n_rows, 2, len(STYLE_NAMES))
            if self.has_style
            else None,
        )


def _style_number(value: object) -> float:
    """A style count, or NaN (an invalid row) for anything but a non-negative finite number."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return float("nan")
    number = float(value)
    return number if np.isfinite(number) and number >= 0 else float("nan")


def _battle_getter(battle: Battle) -> Any:
    return lambda name: getattr(battle, "winner" if name == "winner" else name, None)


def _empty_getter(name: str) -> None:
    return None


def _mask(n_rows: int, rows: Sequence[int]) -> NDArray[np.bool_]:
    mask = np.zeros(n_rows, dtype=bool)
    mask[np.asarray(rows, dtype=np.int64)] = True
    return mask


def _validate(
    n_rows: int,
    columns: Mapping[str, EncodedColumn],
    tstamp: NDArray[np.float64] | None,
    tstamp_invalid: NDArray[np.bool_] | None,
    not_record: NDArray[np.bool_] | None,
    *,
    skip_invalid: bool,
    style: NDArray[np.float64] | None = None,
) -> BattleTable:
    models, name_codes = _model_vocabulary(columns["model_a"], columns["model_b"])
    code_a, status_a = name_codes[0]
    code_b, status_b = name_codes[1]
    outcome, status_w = _winner_codes(columns["winner"])
    status_b = np.where(
        (status_b == _OK) & (status_a == _OK) & (code_a == code_b), _SAME_MODEL, status_b
    )
    if tstamp is None:
        tstamp = np.full(n_rows, np.nan)
    statuses = [  # in the order a row's first problem is reported
        ("record", _flag(n_rows, not_record, _NOT_RECORD)),
        ("model_a", status_a),
        ("model_b", status_b),
        ("winner", status_w),
        ("tstamp", _flag(n_rows, tstamp_invalid, _NOT_NUMBER)),
    ]
    if style is not None:  # NaN marks a missing, negative or non-numeric count
        statuses.append(
            ("style", _flag(n_rows, np.asarray(np.isnan(style).any(axis=(1, 2))), _NOT_NUMBER))
        )
    bad = np.zeros(n_rows, dtype=bool)
    for _, status in statuses:
        bad |= status != _OK
    context = _ErrorContext(columns, tstamp, statuses)
    if bad.any() and not skip_invalid:
        first = int(np.flatnonzero(bad)[0])
        raise context.error(first)
    report = context.report(bad, n_rows)
    keep = np.flatnonzero(~bad)
    if keep.size == 0:
        raise EmptyInputError(f"no valid battles in the input ({n_rows} rows read)")
    attributes = {k: columns[k] for k in ATTRIBUTE_FIELDS if k in columns}
    if keep.size < n_rows:
        code_a, code_b, outcome, tstamp = code_a[keep], code_b[keep], outcome[keep], tstamp[keep]
        attributes = {k: v.take(keep) for k, v in attributes.items()}
        style = None if style is None else style[keep]
    models, code_a, code_b = _compact(models, code_a, code_b)
    return BattleTable(
        models=models,
        model_a=code_a,
        model_b=code_b,
        outcome=outcome,
        tstamp=np.asarray(tstamp, dtype=np.float64),
        rows=keep.astype(np.int64),
        attributes=attributes,
        report=report,
        style=style,
    )


def _flag(n_rows: int, mask: NDArray[np.bool_] | None, code: int) -> NDArray[np.int8]:
    status = np.zeros(n_rows, dtype=np.int8)
    if mask is not None:
        status[mask] = code
    return status


def _model_vocabulary(
    *columns: EncodedColumn,
) -> tuple[tuple[str, ...], list[tuple[IntArray, NDArray[np.int8]]]]:
    """Sorted names over the valid categories, and per column (codes, status)."""
    names = sorted(
        {c for col in columns for c in col.categories if isinstance(c, str) and c.strip()}
    )
    position = {name: i for i, name in enumerate(names)}
    out = []
    for col in columns:
        lookup = np.empty(len(col.categories) + 1, dtype=np.int64)
        status = np.empty(len(col.categories) + 1, dtype=np.int8)
        for i, c in enumerate(col.categories):
            valid = isinstance(c, str) and bool(c.strip())
            lookup[i] = position[c] if valid else -1  # type: ignore[index]
            status[i] = _OK if valid else (_EMPTY if isinstance(c, str) else _NOT_STRING)
        lookup[-1], status[-1] = -1, _MISSING  # code -1 indexes the last slot
        out.append((lookup[col.codes], status[col.codes]))
    return tuple(names), out


def _winner_codes(column: EncodedColumn) -> tuple[NDArray[np.int8], NDArray[np.int8]]:
    lookup = np.empty(len(column.categories) + 1, dtype=np.int8)
    status = np.empty(len(column.categories) + 1, dtype=np.int8)
    for i, c in enumerate(column.categories):
        outcome = OUTCOME_BY_WINNER.get(c) if isinstance(c, str) else None
        lookup[i] = -1 if outcome is None else int(outcome)
        status[i] = _UNKNOWN if outcome is None else _OK
    lookup[-1], status[-1] = -1, _MISSING
    return lookup[column.codes], status[column.codes]


def _compact(
    models: tuple[str, ...], code_a: IntArray, code_b: IntArray
) -> tuple[tuple[str, ...], IntArray, IntArray]:
    """Drop names that only occurred in skipped rows, keeping the sorted order."""
    used = np.zeros(len(models), dtype=bool)
    used[code_a] = True
    used[code_b] = True
    if used.all():
        return models, code_a, code_b
    remap = np.cumsum(used) - 1
    kept = tuple(m for m, u in zip(models, used, strict=True) if u)
    return kept, remap[code_a], remap[code_b]


class _ErrorContext:
    """Turns per-field status codes into messages naming the row, field and value."""

    def __init__(
        self,
        columns: Mapping[str, EncodedColumn],
        tstamp: NDArray[np.float64],
        statuses: list[tuple[str, NDArray[np.int8]]],
    ) -> None:
        self.columns = columns
        self.tstamp = tstamp
        self.statuses = statuses

    def first_problem(self, row: int) -> tuple[str, int]:
        for name, status in self.statuses:
            if status[row] != _OK:
                return name, int(status[row])
        raise AssertionError("row has no problem")

    def error(self, row: int) -> InvalidRecordError:
        name, status = self.first_problem(row)
        return InvalidRecordError(self._message(row, name, status), row=row, field=name)

    def _message(self, row: int, name: str, status: int) -> str:
        if status == _NOT_RECORD:
            return "a battle record must be a mapping (or a Battle)"
        if status == _MISSING:
            return f"field {name!r} is missing"
        if status == _SAME_MODEL:
            model = self.columns["model_a"].value_at(row)
            return (
                f"field 'model_b' is the same model as model_a ({model!r}); "
                "a model cannot battle itself"
            )
        value = self.columns[name].value_at(row) if name in self.columns else None
        if status == _EMPTY:
            return f"field {name!r} is empty ({value!r})"
        if status == _NOT_STRING:
            return f"field {name!r} must be a string, got {value!r} ({type(value).__name__})"
        if name == "style":
            names = ", ".join(STYLE_COLUMNS)
            return f"field 'style' needs non-negative numbers for every one of {names}"
        if status == _UNKNOWN:
            allowed = ", ".join(repr(w) for w in OUTCOME_BY_WINNER)
            return f"field 'winner' has unknown value {value!r}; expected one of {allowed}"
        return f"field {name!r} must be a number"

    def report(self, bad: NDArray[np.bool_], n_rows: int) -> SkipReport:
        bad_rows = np.flatnonzero(bad)
        if bad_rows.size == 0:  # the usual case: no per-field pass over the rows
            return SkipReport(n_rows, 0, {}, ())
        reasons: dict[str, int] = {}
        for name, status in self.statuses:
            # Count each row once, under its first failing field.
            first_here = bad & (status != _OK)
            for code in np.unique(status[first_here]):
                key = f"{name}: {_REASONS[int(code)]}"
                reasons[key] = reasons.get(key, 0) + int(
                    np.count_nonzero(status[first_here] == code)
                )
            bad = bad & (status == _OK)
        examples = tuple(str(self.error(int(r))) for r in bad_rows[:MAX_REPORT_EXAMPLES])
        return SkipReport(n_rows, int(bad_rows.size), reasons, examples)
