"""Readers for battle files (JSON, JSON Lines, CSV, parquet) and aggregated-count files.

JSON is a list of records, as the public arena dumps are; JSON Lines one record per line; CSV a
header row then one record per row (empty cells are missing values). These go through the record
path of :class:`BattleTable`. Parquet is read column-wise with pyarrow (imported only here, only
for parquet) and validated without a Python loop over rows.

Row numbers in errors are 0-based record positions (the header and blank lines do not count).
A file whose records carry ``model_a_wins`` is an aggregated-counts file (:func:`read_input`).
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from evalcore.errors import InvalidInputError, InvalidRecordError, MissingDependencyError
from evalcore.ratings.battles import (
    ATTRIBUTE_FIELDS,
    REQUIRED_FIELDS,
    BattleTable,
    EncodedColumn,
)
from evalcore.ratings.counts import COUNT_FIELDS, PairCounts

FORMATS = ("json", "jsonl", "csv", "parquet")
_SUFFIXES = {
    ".json": "json",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
}
COUNTS_MARKER = "model_a_wins"


def detect_format(path: str | Path) -> str:
    """The format implied by the file suffix.

    Raises:
        InvalidInputError: the suffix is not one of the supported ones.
    """
    suffix = Path(path).suffix.lower()
    if suffix not in _SUFFIXES:
        known = ", ".join(sorted(_SUFFIXES))
        raise InvalidInputError(
            f"cannot tell the format of {str(path)!r} from its suffix; use one of {known}"
        )
    return _SUFFIXES[suffix]


def read_input(
    path: str | Path, *, file_format: str | None = None, skip_invalid: bool = False
) -> BattleTable | PairCounts:
    """Read a battles file, or an aggregated-counts file (recognised by ``model_a_wins``)."""
    file_format = _check_format(path, file_format)
    if file_format == "parquet":
        columns = _parquet_columns(path)
        if COUNTS_MARKER in columns:
            return PairCounts.from_rows(_parquet_rows(path))
        return _read_parquet_battles(path, columns, skip_invalid=skip_invalid)
    records = _read_records(path, file_format)
    if records and isinstance(records[0], Mapping) and COUNTS_MARKER in records[0]:
        return PairCounts.from_rows(records)
    if file_format == "csv":
        records = [_typed_csv_record(r) for r in records]
    return BattleTable.from_records(records, skip_invalid=skip_invalid)


def read_battles(
    path: str | Path, *, file_format: str | None = None, skip_invalid: bool = False
) -> BattleTable:
    """Read and validate a battles file.

    Args:
        path: the file; the format comes from the suffix unless ``file_format`` is given.
        file_format: one of ``json``, ``jsonl``, ``csv``, ``parquet``.
        skip_invalid: skip bad records (see ``table.report``) instead of raising.

    Raises:
        InvalidInputError: unreadable file, wrong top-level shape, or a missing column.
        InvalidRecordError: a bad record and ``skip_invalid`` is false.
        MissingDependencyError: parquet without pyarrow.
    """
    data = read_input(path, file_format=file_format, skip_invalid=skip_invalid)
    if isinstance(data, PairCounts):
        raise InvalidInputError(f"{str(path)!r} holds aggregated counts, not battles")
    return data


def read_counts(path: str | Path, *, file_format: str | None = None) -> PairCounts:
    """Read an aggregated-counts file (columns ``model_a, model_b, model_a_wins, model_b_wins,
    ties, both_bad``).

    Raises:
        InvalidInputError: unreadable file or wrong shape.
        InvalidRecordError: a bad row.
    """
    file_format = _check_format(path, file_format)
    rows = (
        list(_parquet_rows(path)) if file_format == "parquet" else _read_records(path, file_format)
    )
    return PairCounts.from_rows(rows)


def _check_format(path: str | Path, file_format: str | None) -> str:
    if file_format is None:
        return detect_format(path)
    if file_format not in FORMATS:
        raise InvalidInputError(
            f"unknown input format {file_format!r}; expected one of {', '.join(FORMATS)}"
        )
    return file_format


def _read_records(path: str | Path, file_format: str) -> list[Any]:
    try:
        with open(path, encoding="utf-8", newline="") as handle:
            if file_format == "json":
                return _json_records(handle.read(), path)
            if file_format == "jsonl":
                return list(_jsonl_records(handle))
            return _csv_records(handle, path)
    except OSError as error:
        raise InvalidInputError(f"cannot read {str(path)!r}: {error.strerror or error}") from None
    except UnicodeDecodeError as error:
        raise InvalidInputError(f"{str(path)!r} is not UTF-8 text: {error}") from None


def _json_records(text: str, path: str | Path) -> list[Any]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise InvalidInputError(f"{str(path)!r} is not valid JSON: {error}") from None
    if not isinstance(data, list):
        raise InvalidInputError(
            f"{str(path)!r} must hold a JSON list of records, got {type(data).__name__}"
        )
    return data


def _jsonl_records(handle: Any) -> Iterator[Any]:
    row = 0
    for line in handle:
        if not line.strip():
            continue
        try:
            yield json.loads(line)
        except json.JSONDecodeError as error:
            raise InvalidRecordError(f"not valid JSON ({error.msg})", row=row, field=None) from None
        row += 1


def _csv_records(handle: Any, path: str | Path) -> list[dict[str, str | None]]:
    reader = csv.DictReader(handle)
    header = reader.fieldnames or []
    counts_file = COUNTS_MARKER in header
    required = COUNT_FIELDS if counts_file else REQUIRED_FIELDS
    missing = [name for name in required if name not in header]
    if missing:
        raise InvalidInputError(
            f"{str(path)!r} has no column {missing[0]!r} (header: {', '.join(header)})"
        )
    # An empty cell is a missing value, like a JSON null.
    return [{k: (v if v != "" else None) for k, v in row.items()} for row in reader]


def _typed_csv_record(record: dict[str, Any]) -> dict[str, Any]:
    """CSV cells are text: parse the numeric and boolean battle fields."""
    tstamp = record.get("tstamp")
    if isinstance(tstamp, str):
        record["tstamp"] = _float_or_text(tstamp)
    turn = record.get("turn")
    if isinstance(turn, str) and turn.strip().lstrip("-").isdigit():
        record["turn"] = int(turn)
    anony = record.get("anony")
    if isinstance(anony, str) and anony.strip().lower() in _BOOLEANS:
        record["anony"] = _BOOLEANS[anony.strip().lower()]
    return record


_BOOLEANS = {"true": True, "false": False, "1": True, "0": False}


def _float_or_text(text: str) -> float | str:
    try:
        value = float(text)
    except ValueError:
        return text
    return value if math.isfinite(value) else text


def _pyarrow() -> tuple[Any, Any, Any]:
    try:
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.parquet as pq
    except ImportError:
        raise MissingDependencyError(
            "reading parquet needs pyarrow (pip install pyarrow)"
        ) from None
    return pa, pc, pq


def _parquet_columns(path: str | Path) -> list[str]:
    _, _, pq = _pyarrow()
    try:
        return list(pq.read_schema(path).names)
    except OSError as error:
        raise InvalidInputError(f"cannot read parquet file {str(path)!r}: {error}") from None


def _parquet_rows(path: str | Path) -> list[dict[str, Any]]:
    _, _, pq = _pyarrow()
    rows: list[dict[str, Any]] = pq.read_table(path).to_pylist()
    return rows


def _read_parquet_battles(
    path: str | Path, columns: list[str], *, skip_invalid: bool
) -> BattleTable:
    pa, pc, pq = _pyarrow()
    missing = [name for name in REQUIRED_FIELDS if name not in columns]
    if missing:
        raise InvalidInputError(
            f"{str(path)!r} has no column {missing[0]!r} (columns: {', '.join(columns)})"
        )
    wanted = [c for c in (*REQUIRED_FIELDS, "tstamp", *ATTRIBUTE_FIELDS) if c in columns]
    # Reading string columns as dictionaries skips materialising a million Python-side strings.
    categorical = [c for c in wanted if c != "tstamp"]
    table = pq.read_table(path, columns=wanted, read_dictionary=categorical)
    encoded = {
        name: _encode_arrow(table.column(name), pa, pc) for name in wanted if name != "tstamp"
    }
    tstamp = None
    if "tstamp" in wanted:
        try:
            as_float = pc.cast(table.column("tstamp"), pa.float64())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            raise InvalidInputError(
                f"column 'tstamp' of {str(path)!r} must be numeric (unix seconds)"
            ) from None
        tstamp = np.asarray(pc.fill_null(as_float, float("nan")).to_numpy(), dtype=np.float64)
    return BattleTable.from_columns(table.num_rows, encoded, tstamp, skip_invalid=skip_invalid)


def _encode_arrow(column: Any, pa: Any, pc: Any) -> EncodedColumn:
    """Dictionary-encode an arrow column into codes (null → −1) and its distinct values."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    try:
        encoded = array if pa.types.is_dictionary(array.type) else pc.dictionary_encode(array)
    except pa.ArrowNotImplementedError:
        return EncodedColumn.from_values(array.to_pylist())
    indices = encoded.indices
    if indices.null_count:
        indices = pc.fill_null(indices, -1)
    codes = np.asarray(indices.to_numpy(zero_copy_only=False), dtype=np.int64)
    return EncodedColumn(codes, tuple(encoded.dictionary.to_pylist()))
