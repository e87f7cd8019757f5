"""The column-wise readers: no per-record path for good files, file lines in errors, style."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from evalcore.errors import InvalidRecordError
from evalcore.ratings import BattleTable, PairCounts, read_battles
from tests.evalcore.ratings.test_io import write

STYLE = {"tokens_a": 120, "headers_a": 1, "bold_a": 2, "lists_a": 3}
STYLE_B = {"tokens_b": 80, "headers_b": 0, "bold_b": 1, "lists_b": 0}


def refuse_record_path(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("the per-record path was used")

    monkeypatch.setattr(BattleTable, "from_records", refuse)


@pytest.fixture
def no_record_path(monkeypatch):
    refuse_record_path(monkeypatch)


@pytest.mark.parametrize("file_format", ["csv", "jsonl", "parquet"])
def test_good_files_are_read_without_the_record_path(tmp_path, battles, file_format, monkeypatch):
    expected = PairCounts.from_battles(battles).counts.digest()
    path = write(tmp_path / f"b.{file_format}", battles, file_format)
    refuse_record_path(monkeypatch)
    table = read_battles(path)
    assert (
        PairCounts.from_codes(table.models, table.model_a, table.model_b, table.outcome).digest()
        == expected
    )
    assert table.tstamp.tolist() == [b["tstamp"] for b in battles]
    assert table.attributes["anony"].matches(True).sum() == 8
    assert table.attributes["turn"].matches(1).all()


@pytest.mark.parametrize("file_format", ["csv", "jsonl"])
def test_errors_name_the_file_line_and_the_field(tmp_path, battles, file_format):
    records = battles[:5] + [{**battles[5], "model_b": battles[5]["model_a"]}] + battles[6:]
    path = write(tmp_path / f"b.{file_format}", records, file_format)
    if file_format == "jsonl":  # blank lines are not records, but they are lines
        path.write_text("\n" + path.read_text().replace("\n", "\n\n", 2))
    with pytest.raises(InvalidRecordError) as caught:
        read_battles(path)
    error = caught.value
    assert (error.row, error.field) == (5, "model_b")
    line = 7 if file_format == "csv" else 9  # header / blank lines before record 5
    assert path.read_text().splitlines()[line - 1].count(battles[5]["model_a"]) == 2
    assert error.line == line
    assert str(error).endswith(f"(line {line})")


def test_a_json_value_of_the_wrong_type_is_named_exactly(tmp_path, battles):
    records = [dict(b) for b in battles]
    records[4]["model_a"] = 17
    path = write(tmp_path / "b.jsonl", records, "jsonl")
    with pytest.raises(InvalidRecordError) as caught:
        read_battles(path)
    assert (caught.value.row, caught.value.field, caught.value.line) == (4, "model_a", 5)
    assert "must be a string" in str(caught.value)


def test_a_bad_csv_timestamp_is_named_and_skippable(tmp_path, battles):
    records = [dict(b) for b in battles]
    records[2]["tstamp"] = "yesterday"
    path = write(tmp_path / "b.csv", records, "csv")
    with pytest.raises(InvalidRecordError) as caught:
        read_battles(path)
    assert (caught.value.row, caught.value.field, caught.value.line) == (2, "tstamp", 4)
    assert len(read_battles(path, skip_invalid=True)) == len(battles) - 1


@pytest.mark.parametrize("file_format", ["csv", "jsonl", "parquet", "json"])
def test_style_columns_are_read_in_every_format(tmp_path, battles, file_format):
    records = [{**b, **STYLE, **STYLE_B, "tokens_b": 80 + i} for i, b in enumerate(battles)]
    table = read_battles(write(tmp_path / f"b.{file_format}", records, file_format))
    assert table.style is not None
    assert table.style.shape == (len(battles), 2, 4)
    np.testing.assert_array_equal(table.style[3, 0], [120, 1, 2, 3])
    np.testing.assert_array_equal(table.style[3, 1], [83, 0, 1, 0])


def test_nested_style_objects_in_json_lines(tmp_path, battles, no_record_path):
    side = {"tokens": 10, "headers": 0, "bold": 1, "lists": 2}
    records = [{**b, "style": {"a": side, "b": {**side, "tokens": 20}}} for b in battles]
    path = tmp_path / "b.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    table = read_battles(path)
    assert table.style is not None
    np.testing.assert_array_equal(table.style[0], [[10, 0, 1, 2], [20, 0, 1, 2]])


def test_a_negative_style_count_is_an_error_naming_style(tmp_path, battles):
    records = [{**b, **STYLE, **STYLE_B} for b in battles]
    records[6]["lists_b"] = -2
    path = write(tmp_path / "b.csv", records, "csv")
    with pytest.raises(InvalidRecordError) as caught:
        read_battles(path)
    assert (caught.value.row, caught.value.field, caught.value.line) == (6, "style", 8)


@pytest.mark.parametrize("kind", ["int32", "int64", "float64", "float32", "uint8"])
def test_numpy_values_match_pyarrow_to_numpy_with_nulls_offsets_and_chunks(kind):
    import pyarrow as pa

    from evalcore.ratings.io import numpy_values

    rng = np.random.default_rng(4)
    chunks = []
    for size in (0, 1, 9, 64, 333):
        values = (rng.random(size) * 200).astype(kind)
        nulls = rng.random(size) < 0.3
        chunks.append(pa.array(values, mask=nulls).slice(size // 3))  # odd offsets
    chunks.append(pa.array((rng.random(50) * 200).astype(kind)))  # no validity buffer
    column = pa.chunked_array(chunks, type=chunks[0].type)
    expected = np.concatenate([c.to_numpy(zero_copy_only=False).astype(np.float64) for c in chunks])
    expected[np.isnan(expected)] = -1
    got = numpy_values(column, np.float64, -1)
    np.testing.assert_array_equal(got, expected)
    start = sum(len(c) for c in chunks[:4])
    single = numpy_values(chunks[4], np.float64, -1)  # one sliced array, not chunked
    np.testing.assert_array_equal(single, expected[start : start + len(chunks[4])])


def test_reading_a_csv_does_not_import_pandas(tmp_path):
    import subprocess
    import sys

    path = tmp_path / "battles.csv"
    path.write_text("model_a,model_b,winner,tstamp\na,b,model_a,1.5\nb,a,tie,\n", encoding="utf-8")
    code = (
        "import sys; from evalcore.ratings import read_battles; "
        "read_battles(sys.argv[1], attributes=()); print('pandas' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "False"


def test_parquet_read_in_small_batches_matches_the_record_path(tmp_path, monkeypatch):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from evalcore.ratings import io

    rng = np.random.default_rng(5)
    n = 500
    records = []
    for i in range(n):
        a, b = rng.choice(["m1", "m2", "m3", "m4"], size=2, replace=False)
        record = {
            "model_a": str(a),
            "model_b": str(b),
            "winner": str(rng.choice(["model_a", "model_b", "tie", "tie (bothbad)"])),
            "tstamp": None if i % 17 == 0 else float(i) + 0.25,
            "language": None if i % 5 == 0 else str(rng.choice(["en", "de"])),
            **{k: int(v) for k, v in STYLE.items()},
            **{k: int(v) + i % 3 for k, v in STYLE_B.items()},
        }
        if i % 41 == 0:
            record["tokens_b"] = None  # an invalid style row, skipped
        records.append(record)
    path = tmp_path / "battles.parquet"
    pq.write_table(pa.Table.from_pylist(records), path, row_group_size=128)
    monkeypatch.setattr(io, "PARQUET_BATCH_ROWS", 37)  # batches across row-group boundaries
    columnar = read_battles(path, skip_invalid=True)
    plain = BattleTable.from_records(records, skip_invalid=True)
    assert columnar.models == plain.models
    for name in ("model_a", "model_b", "outcome", "rows"):
        np.testing.assert_array_equal(getattr(columnar, name), getattr(plain, name))
    np.testing.assert_array_equal(columnar.tstamp, plain.tstamp)
    np.testing.assert_array_equal(columnar.style, plain.style)
    assert columnar.report.to_dict() == plain.report.to_dict()
    language = columnar.attributes["language"]
    expected = [plain.attributes["language"].value_at(r) for r in range(len(plain))]
    assert [language.value_at(r) for r in range(len(columnar))] == expected


def test_csv_reader_and_cli_do_not_import_pyarrow_compute_or_parquet(tmp_path):
    """Those two modules cost ~0.1 s of the CSV pipeline's 1.5 s; the CSV path needs neither."""
    path = tmp_path / "battles.csv"
    rows = ["a,b,model_a,1.5", "b,c,tie,2", "c,a,model_b,3", "a,c,model_b,4"]
    path.write_text("\n".join(["model_a,model_b,winner,tstamp", *rows * 20]) + "\n")
    _cli_in_a_fresh_interpreter(
        path,
        tmp_path,
        "loaded = [m for m in ('pyarrow.compute', 'pyarrow.parquet') if m in sys.modules]\n"
        "assert not loaded, loaded\n",
    )


def test_json_lines_reader_and_cli_do_not_import_pyarrow_parquet(tmp_path):
    """pyarrow.parquet (with pyarrow.fs and ssl) costs ~40 ms; JSON Lines needs compute only."""
    path = tmp_path / "battles.jsonl"
    rows = [
        '{"model_a": "a", "model_b": "b", "winner": "model_a", "tstamp": 1.5}',
        '{"model_a": "b", "model_b": "c", "winner": "tie", "tstamp": 2}',
        '{"model_a": "c", "model_b": "a", "winner": "model_b", "tstamp": 3}',
        '{"model_a": "a", "model_b": "c", "winner": "model_b", "tstamp": 4}',
    ]
    path.write_text("\n".join(rows * 20) + "\n")
    _cli_in_a_fresh_interpreter(
        path,
        tmp_path,
        "assert 'pyarrow.json' in sys.modules and 'pyarrow.parquet' not in sys.modules\n",
    )


def _cli_in_a_fresh_interpreter(path: Path, tmp_path: Path, check: str) -> None:
    """``python -m evalcore.ratings PATH`` (20 rounds, sandwich) in a new interpreter, then the
    ``check`` statements (with ``sys`` imported) in it; fails with that process's stderr."""
    script = (
        "import sys\n"
        "from evalcore.ratings.cli import main\n"
        f"assert main([{str(path)!r}, '--bootstrap', '20', '-o', {str(tmp_path / 'out.csv')!r},"
        " '--interval', 'sandwich']) == 0\n" + check
    )
    root = Path(__file__).resolve().parents[3]
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=root, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
