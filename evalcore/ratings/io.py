"""Readers for battle files (JSON, JSON Lines, CSV, parquet) and aggregated-count files.

JSON is a list of records, as the public arena dumps are; JSON Lines one record per line; CSV a
header row then one record per row (empty cells are missing values). CSV, JSON Lines and parquet
are read column-wise with pyarrow (imported only here) and validated without a Python loop over
rows; a file pyarrow cannot take as typed columns (a value of the wrong JSON type, a ragged CSV
row, quoted line breaks) goes through the record path of :class:`BattleTable`, which names the
bad row exactly. A plain JSON list always takes the record path.

Row numbers in errors are 0-based record positions (the header and blank lines do not count);
for CSV and JSON Lines the error also names the file line where the record starts.
A file whose records carry ``model_a_wins`` is an aggregated-counts file (:func:`read_input`).
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from evalcore.errors import (
    InvalidInputError,
    InvalidParameterError,
    InvalidRecordError,
    MissingDependencyError,
)
from evalcore.ratings.battles import (
    ATTRIBUTE_FIELDS,
    REQUIRED_FIELDS,
    STYLE_COLUMNS,
    STYLE_NAMES,
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
    path: str | Path,
    *,
    file_format: str | None = None,
    skip_invalid: bool = False,
    attributes: Sequence[str] = ATTRIBUTE_FIELDS,
) -> BattleTable | PairCounts:
    """Read a battles file, or an aggregated-counts file (recognised by ``model_a_wins``).

    ``attributes`` are the optional columns to keep (judge, language, ...); the column-wise
    readers skip the others, which saves time and memory when only the ratings are needed.
    """
    file_format = _check_format(path, file_format)
    unknown = [name for name in attributes if name not in ATTRIBUTE_FIELDS]
    if unknown:
        raise InvalidParameterError(
            "attributes", f"{unknown[0]!r} is not one of {', '.join(ATTRIBUTE_FIELDS)}"
        )
    if file_format == "parquet":
        columns = _parquet_columns(path)
        if COUNTS_MARKER in columns:
            return PairCounts.from_rows(_parquet_rows(path))
        return _read_parquet_battles(path, columns, attributes, skip_invalid=skip_invalid)
    if file_format in ("csv", "jsonl"):
        return _with_line_numbers(path, file_format, attributes, skip_invalid=skip_invalid)
    records = _read_records(path, file_format)
    if records and isinstance(records[0], Mapping) and COUNTS_MARKER in records[0]:
        return PairCounts.from_rows(records)
    if file_format == "csv":
        records = [_typed_csv_record(r) for r in records]
    return BattleTable.from_records(records, skip_invalid=skip_invalid)


def read_battles(
    path: str | Path,
    *,
    file_format: str | None = None,
    skip_invalid: bool = False,
    attributes: Sequence[str] = ATTRIBUTE_FIELDS,
) -> BattleTable:
    """Read and validate a battles file.

    Args:
        path: the file; the format comes from the suffix unless ``file_format`` is given.
        file_format: one of ``json``, ``jsonl``, ``csv``, ``parquet``.
        skip_invalid: skip bad records (see ``table.report``) instead of raising.
        attributes: the optional attribute columns to keep (default: all).

    Raises:
        InvalidInputError: unreadable file, wrong top-level shape, or a missing column.
        InvalidRecordError: a bad record and ``skip_invalid`` is false.
        MissingDependencyError: parquet without pyarrow.
    """
    data = read_input(
        path, file_format=file_format, skip_invalid=skip_invalid, attributes=attributes
    )
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


def _with_line_numbers(
    path: str | Path, file_format: str, attributes: Sequence[str], *, skip_invalid: bool
) -> BattleTable | PairCounts:
    """Read CSV or JSON Lines; a bad record's error names its file line."""
    try:
        return _read_text_battles(path, file_format, attributes, skip_invalid=skip_invalid)
    except InvalidRecordError as error:
        if error.row is None or error.line is not None:
            raise
        raise error.at_line(_line_of(path, file_format, error.row)) from None


def _read_text_battles(
    path: str | Path, file_format: str, attributes: Sequence[str], *, skip_invalid: bool
) -> BattleTable | PairCounts:
    if file_format == "csv":
        header = _csv_header(path)
        if COUNTS_MARKER in header:
            return PairCounts.from_rows(_read_records(path, "csv"))
        table = _read_csv_columns(path, header, attributes, skip_invalid=skip_invalid)
    else:
        first = _first_json_line(path)
        if isinstance(first, Mapping) and COUNTS_MARKER in first:
            return PairCounts.from_rows(_read_records(path, "jsonl"))
        table = _read_jsonl_columns(path, attributes, skip_invalid=skip_invalid)
    if table is not None:
        _arrow().default_memory_pool().release_unused()  # the arrow columns are gone
        return table
    # pyarrow could not take the file as typed columns: the record path names the bad row.
    records = _read_records(path, file_format)
    if file_format == "csv":
        records = [_typed_csv_record(r) for r in records]
    return BattleTable.from_records(records, skip_invalid=skip_invalid)


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
    for name in STYLE_COLUMNS:
        value = record.get(name)
        if isinstance(value, str):
            record[name] = _float_or_text(value)
    return record


def _csv_cell(name: str, value: object) -> object:
    """One category of a CSV attribute column, typed as the record path types it."""
    if not isinstance(value, str):
        return value
    if name == "turn" and value.strip().lstrip("-").isdigit():
        return int(value)
    if name == "anony" and value.strip().lower() in _BOOLEANS:
        return _BOOLEANS[value.strip().lower()]
    return value


_BOOLEANS = {"true": True, "false": False, "1": True, "0": False}


def _float_or_text(text: str) -> float | str:
    try:
        value = float(text)
    except ValueError:
        return text
    return value if math.isfinite(value) else text


def _arrow() -> Any:
    """pyarrow itself: all the CSV path needs (compute and parquet add ~0.1 s of imports)."""
    try:
        import pyarrow as pa
    except ImportError:
        raise MissingDependencyError(
            "reading parquet needs pyarrow (pip install pyarrow)"
        ) from None
    return pa


def _compute() -> Any:
    """``pyarrow.compute``, imported where a kernel is needed."""
    _arrow()
    import pyarrow.compute as pc

    return pc


def _pyarrow() -> tuple[Any, Any, Any]:
    pa, pc = _arrow(), _compute()
    import pyarrow.parquet as pq

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
    path: str | Path, columns: list[str], attributes: Sequence[str], *, skip_invalid: bool
) -> BattleTable:
    pa, pc, pq = _pyarrow()
    missing = [name for name in REQUIRED_FIELDS if name not in columns]
    if missing:
        raise InvalidInputError(
            f"{str(path)!r} has no column {missing[0]!r} (columns: {', '.join(columns)})"
        )
    wanted = [c for c in (*REQUIRED_FIELDS, "tstamp", *attributes) if c in columns]
    numeric = [c for c in ("tstamp", *STYLE_COLUMNS) if c in columns]
    # Reading string columns as dictionaries skips materialising a million Python-side strings.
    categorical = [c for c in wanted if c != "tstamp"]
    try:
        reader = pq.ParquetFile(path, read_dictionary=categorical)
    except OSError as error:
        raise InvalidInputError(f"cannot read parquet file {str(path)!r}: {error}") from None
    table, tstamp, style, tstamp_not_numeric = _parquet_in_batches(reader, categorical, numeric)
    if tstamp_not_numeric:
        raise InvalidInputError(f"column 'tstamp' of {str(path)!r} must be numeric (unix seconds)")
    encoded = {name: _encode_arrow(table.column(name), pa) for name in categorical}
    del table
    n_rows = reader.metadata.num_rows
    style = None if style is None else _style_sides(style)  # absent columns stay NaN: invalid
    return BattleTable.from_columns(n_rows, encoded, tstamp, skip_invalid=skip_invalid, style=style)


PARQUET_BATCH_ROWS = 1 << 16


def _parquet_in_batches(
    reader: Any, categorical: list[str], numeric: list[str]
) -> tuple[Any, Any, Any, bool]:
    """Decode a parquet file batch by batch.

    Returns the categorical columns as one arrow table (dictionary-encoded, small); ``tstamp``
    (N,) or None; the style counts (N, len(STYLE_COLUMNS)) if any style column is present (NaN
    where absent, null, not a number or negative), else None; and whether ``tstamp`` is of a
    type that is not a number. Reading the whole table first held the decoded arrow columns and
    their numpy copies at once (about 100 MB more at the peak for a million styled votes).
    """
    pa, pc, _ = _pyarrow()
    n = reader.metadata.num_rows
    tstamp = np.full(n, np.nan) if "tstamp" in numeric else None
    styled = [name for name in numeric if name != "tstamp"]
    style = np.full((n, len(STYLE_COLUMNS)), np.nan) if styled else None
    batches, start, tstamp_not_numeric = [], 0, False
    for batch in reader.iter_batches(
        batch_size=PARQUET_BATCH_ROWS, columns=categorical + numeric, use_pandas_metadata=False
    ):
        stop = start + batch.num_rows
        if tstamp is not None:
            values, invalid = _arrow_numbers(batch.column("tstamp"), pa, pc)
            tstamp[start:stop] = values
            tstamp_not_numeric |= bool(invalid.any())
        for name in styled:
            values, invalid = _arrow_numbers(batch.column(name), pa, pc)
            style[start:stop, STYLE_COLUMNS.index(name)] = _counts(values, invalid)  # type: ignore[index]
        batches.append(batch.select(categorical))
        start = stop
    schema = reader.schema_arrow
    empty = pa.schema([schema.field(name) for name in categorical])
    table = pa.Table.from_batches(batches, schema=batches[0].schema if batches else empty)
    return table.unify_dictionaries(), tstamp, style, tstamp_not_numeric


def _arrow_numbers(column: Any, pa: Any, pc: Any) -> tuple[Any, Any]:
    """Floats of a numeric arrow column (NaN where null); a non-numeric column is all invalid."""
    try:
        values = pc.cast(column, pa.float64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return np.full(len(column), np.nan), np.ones(len(column), dtype=bool)
    return numpy_values(values, np.float64, np.nan), np.zeros(len(column), dtype=bool)


def _encode_arrow(column: Any, pa: Any) -> EncodedColumn:
    """Dictionary-encode an arrow column into codes (null → −1) and its distinct values."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    try:
        encoded = (
            array if pa.types.is_dictionary(array.type) else _compute().dictionary_encode(array)
        )
    except pa.ArrowNotImplementedError:
        return EncodedColumn.from_values(array.to_pylist())
    codes = numpy_values(encoded.indices, np.int64, -1)
    return EncodedColumn(codes, tuple(encoded.dictionary.to_pylist()))


_NUMPY_TYPES = {
    **{f"int{bits}": np.dtype(f"<i{bits // 8}") for bits in (8, 16, 32, 64)},
    **{f"uint{bits}": np.dtype(f"<u{bits // 8}") for bits in (8, 16, 32, 64)},
    "float": np.dtype("<f4"),
    "double": np.dtype("<f8"),
}


def numpy_values(column: Any, dtype: Any, null: float | int) -> Any:
    """A fixed-width numeric arrow array (or chunked array) as a new numpy array of ``dtype``,
    ``null`` where the arrow value is null.

    Read straight from the arrow buffers: pyarrow's ``to_numpy`` imports pandas on first use,
    which cost 0.5 s of CPU, a third of the CSV pipeline's budget, for no work done.
    """
    chunks = column.chunks if hasattr(column, "chunks") else [column]
    out = np.empty(sum(len(chunk) for chunk in chunks), dtype=dtype)
    start = 0
    for chunk in chunks:
        n, offset = len(chunk), chunk.offset
        width = _NUMPY_TYPES[str(chunk.type)]
        data = np.frombuffer(chunk.buffers()[1], dtype=width, count=offset + n)[offset:]
        target = out[start : start + n]
        target[:] = data
        if chunk.null_count:
            bits = np.frombuffer(chunk.buffers()[0], dtype=np.uint8)
            valid = np.unpackbits(bits, count=offset + n, bitorder="little")[offset:]
            target[valid == 0] = null
        start += n
    return out


def _csv_header(path: str | Path) -> list[str]:
    try:
        with open(path, encoding="utf-8", newline="") as handle:
            header = next(csv.reader(handle), [])
    except OSError as error:
        raise InvalidInputError(f"cannot read {str(path)!r}: {error.strerror or error}") from None
    except UnicodeDecodeError as error:
        raise InvalidInputError(f"{str(path)!r} is not UTF-8 text: {error}") from None
    required = COUNT_FIELDS if COUNTS_MARKER in header else REQUIRED_FIELDS
    missing = [name for name in required if name not in header]
    if missing:
        raise InvalidInputError(
            f"{str(path)!r} has no column {missing[0]!r} (header: {', '.join(header)})"
        )
    return header


def _first_json_line(path: str | Path) -> Any:
    try:
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                if line.strip():
                    try:
                        return json.loads(line)
                    except json.JSONDecodeError:
                        return None  # the record path reports it with its row
    except OSError as error:
        raise InvalidInputError(f"cannot read {str(path)!r}: {error.strerror or error}") from None
    except UnicodeDecodeError as error:
        raise InvalidInputError(f"{str(path)!r} is not UTF-8 text: {error}") from None
    return None


def _read_csv_columns(
    path: str | Path, header: list[str], attributes: Sequence[str], *, skip_invalid: bool
) -> BattleTable | None:
    """Columnar CSV read, or None when pyarrow cannot parse it (the record path then reports)."""
    pa = _arrow()
    import pyarrow.csv as pacsv

    wanted = [c for c in (*REQUIRED_FIELDS, "tstamp", *attributes, *STYLE_COLUMNS)]
    wanted = [c for c in wanted if c in header]
    numeric = {"tstamp", *STYLE_COLUMNS}
    table = None
    # Numbers parse straight to float64; only a file with a cell that is not a number is read
    # again with those columns as text, to find and name that cell.
    for number_type in (pa.float64(), pa.string()):
        types = {
            c: number_type if c in numeric else pa.dictionary(pa.int32(), pa.string())
            for c in wanted
        }
        options = pacsv.ConvertOptions(
            column_types=types,
            include_columns=wanted,
            strings_can_be_null=True,
            quoted_strings_can_be_null=True,
            null_values=[""],
        )
        try:
            table = pacsv.read_csv(path, convert_options=options).unify_dictionaries()
            break
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
            continue
    if table is None:
        return None
    encoded = {}
    for name in wanted:
        if name in numeric:
            continue
        column = _encode_arrow(table.column(name), pa)
        if name in ("turn", "anony"):
            typed = tuple(_csv_cell(name, value) for value in column.categories)
            column = EncodedColumn(column.codes, typed)
        encoded[name] = column
    tstamp, tstamp_invalid = None, None
    if "tstamp" in wanted:
        tstamp, tstamp_invalid = _text_numbers(table.column("tstamp"), pa)
        tstamp_invalid |= ~np.isnan(tstamp) & ~np.isfinite(tstamp)
        tstamp[tstamp_invalid] = np.nan
    style = _style_block(table.num_rows, wanted, lambda name: _text_numbers(table.column(name), pa))
    return BattleTable.from_columns(
        table.num_rows,
        encoded,
        tstamp,
        tstamp_invalid=tstamp_invalid,
        skip_invalid=skip_invalid,
        style=style,
    )


def _text_numbers(column: Any, pa: Any) -> tuple[Any, Any]:
    """Floats of a text column (NaN where null) and a mask of the cells that are not numbers;
    a column that arrow already parsed as float64 is taken as it is."""
    if column.type == pa.float64():
        floats = numpy_values(column, np.float64, np.nan)
        return floats, np.zeros(floats.size, dtype=bool)
    try:
        values = _compute().cast(column, pa.float64())
        floats = numpy_values(values, np.float64, np.nan)
        return floats, np.zeros(floats.size, dtype=bool)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    # Some cell is not a number: parse cell by cell (only files with a bad cell get here).
    parsed = [None if v is None else _float_or_text(v) for v in column.to_pylist()]
    invalid = np.array([isinstance(v, str) for v in parsed], dtype=bool)
    floats = np.array(
        [v if isinstance(v, float) else float("nan") for v in parsed], dtype=np.float64
    )
    return floats, invalid


def _style_block(n_rows: int, present: Sequence[str], numbers: Any) -> Any:
    """(N, 2, K) style counts from the flat style columns, NaN where missing or invalid; None
    when no style column has a value. ``numbers(name)`` gives a column's (values, not a number)
    arrays, one column at a time."""
    if not any(name in present for name in STYLE_COLUMNS):
        return None
    style = np.full((n_rows, len(STYLE_COLUMNS)), np.nan)
    for k, name in enumerate(STYLE_COLUMNS):
        if name in present:
            style[:, k] = _counts(*numbers(name))
    return _style_sides(style)


def _counts(values: Any, invalid: Any) -> Any:
    """A style column's counts, NaN (in place) where not a number, not finite or negative."""
    values[invalid | ~np.isfinite(values) | (values < 0)] = np.nan
    return values


def _style_sides(style: Any) -> Any:
    """(N, len(STYLE_COLUMNS)) counts as (N, 2, K); None when no cell holds a count."""
    if np.isnan(style).all():
        return None
    return style.reshape(style.shape[0], 2, len(STYLE_NAMES))


SAMPLE_BYTES = 1 << 16


def _jsonl_schema(pa: Any, present: set[str]) -> Any:
    """Types of the battle fields: the required ones, and the others seen in ``present``.

    Arrow's JSON reader pays for every field of an explicit schema on every line, present or
    not, so only fields that occur are declared; a known field that first appears later in the
    file is still read (``unexpected_field_behavior="infer"``) and checked like the others.
    """
    text = pa.string()
    side = pa.struct([(name, pa.float64()) for name in STYLE_NAMES])
    types = {
        **{name: text for name in REQUIRED_FIELDS},
        "tstamp": pa.float64(),
        "judge": text,
        "language": text,
        "category": text,
        "turn": pa.int64(),
        "anony": pa.bool_(),
        "conversation_id": text,
        **{name: pa.float64() for name in STYLE_COLUMNS},
        "style": pa.struct([("a", side), ("b", side)]),
    }
    keep = set(REQUIRED_FIELDS) | {"tstamp"} | present
    return pa.schema([(name, kind) for name, kind in types.items() if name in keep])


def _sampled_keys(path: str | Path) -> set[str]:
    """The keys of the records in the first ``SAMPLE_BYTES`` of a JSON Lines file."""
    keys: set[str] = set()
    with open(path, encoding="utf-8") as handle:
        for line in handle.readlines(SAMPLE_BYTES):
            try:
                record = json.loads(line) if line.strip() else None
            except json.JSONDecodeError:
                continue
            if isinstance(record, Mapping):
                keys.update(record)
    return keys


def _read_jsonl_columns(
    path: str | Path, attributes: Sequence[str], *, skip_invalid: bool
) -> BattleTable | None:
    """Columnar JSON Lines read of the battle fields, or None when a value has another type.

    The wanted attributes are always declared; style fields when the first records have them.
    Other fields are not parsed into columns (arrow pays for every declared field per line).
    """
    pa, pc = _arrow(), _compute()  # not parquet (~40 ms of imports)
    import pyarrow.json as pajson

    styled = {"style", *STYLE_COLUMNS} & _sampled_keys(path)
    schema = _jsonl_schema(pa, set(attributes) | styled)
    options = pajson.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore")
    try:
        table = _read_json_encoded(pajson.open_json(path, parse_options=options), pa, pc)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        return None
    if table is None or table.num_rows == 0:
        return None
    names = [n for n in (*REQUIRED_FIELDS, *attributes) if n in table.schema.names]
    encoded = {name: _encode_arrow(table.column(name), pa) for name in names}
    tstamp = numpy_values(table.column("tstamp"), np.float64, np.nan)

    def numbers(column: Any) -> tuple[Any, Any]:
        return _arrow_numbers(column, pa, pc)

    present = [c for c in STYLE_COLUMNS if c in table.schema.names]
    style = _style_block(table.num_rows, present, lambda name: numbers(table.column(name)))
    nested = table.column("style") if "style" in table.schema.names else None
    if style is None and nested is not None and nested.null_count < len(nested):
        side = {s: pc.struct_field(nested, s) for s in ("a", "b")}
        columns = [numbers(pc.struct_field(side[s], n))[0] for s in ("a", "b") for n in STYLE_NAMES]
        style = np.stack(columns, axis=1)
        style[~np.isfinite(style) | (style < 0)] = np.nan
        style = style.reshape(table.num_rows, 2, len(STYLE_NAMES))
    return BattleTable.from_columns(
        table.num_rows, encoded, tstamp, skip_invalid=skip_invalid, style=style
    )


def _read_json_encoded(reader: Any, pa: Any, pc: Any) -> Any:
    """The batches of a streaming JSON reader with every text column dictionary-encoded as it
    arrives, so a million strings are never held at once; None if a type is unexpected."""
    if not _jsonl_types_ok(reader.schema, pa):
        return None
    batches = []
    for batch in reader:
        columns = [
            pc.dictionary_encode(column) if pa.types.is_string(column.type) else column
            for column in batch.columns
        ]
        batches.append(pa.RecordBatch.from_arrays(columns, names=batch.schema.names))
    if not batches:
        return None
    return pa.Table.from_batches(batches).unify_dictionaries()


def _jsonl_types_ok(schema: Any, pa: Any) -> bool:
    """Whether the (partly inferred) types are the ones the record path would accept as is."""
    expected = _jsonl_schema(pa, set(schema.names))
    for field in schema:
        if field.name not in expected.names:
            continue  # not a battle field: ignored
        wanted = expected.field(field.name).type
        if field.type != wanted and not pa.types.is_null(field.type):
            if not (pa.types.is_integer(field.type) and pa.types.is_floating(wanted)):
                return False
    return True


def _line_of(path: str | Path, file_format: str, row: int) -> int | None:
    """The 1-based file line where record ``row`` starts (blank lines are not records)."""
    with open(path, encoding="utf-8", newline="") as handle:
        if file_format == "jsonl":
            record = -1
            for number, line in enumerate(handle, start=1):
                if line.strip():
                    record += 1
                    if record == row:
                        return number
            return None
        reader = csv.reader(handle)
        next(reader, None)
        record = -1
        while True:
            start = reader.line_num + 1
            fields = next(reader, None)
            if fields is None:
                return None
            if fields:  # DictReader skips empty rows too
                record += 1
                if record == row:
                    return start
