from __future__ import annotations

import csv
import json

import pytest

from evalcore.errors import InvalidInputError, InvalidRecordError
from evalcore.ratings import BattleFilter, PairCounts, read_battles, read_counts, read_input

FIELDS = (
    "model_a",
    "model_b",
    "winner",
    "tstamp",
    "judge",
    "language",
    "category",
    "turn",
    "anony",
)


def write(path, records, file_format):
    if file_format == "json":
        path.write_text(json.dumps(records))
    elif file_format == "jsonl":
        path.write_text("\n".join(json.dumps(r) for r in records) + "\n\n")
    elif file_format == "csv":
        with open(path, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(records[0]))
            writer.writeheader()
            writer.writerows(records)
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(records), path)
    return path


@pytest.mark.parametrize("file_format", ["json", "jsonl", "csv", "parquet"])
def test_every_format_reads_to_the_same_table(tmp_path, battles, file_format):
    table = read_battles(write(tmp_path / f"battles.{file_format}", battles, file_format))
    assert len(table) == len(battles)
    assert (
        PairCounts.from_battles(table).counts.digest()
        == PairCounts.from_battles(battles).counts.digest()
    )
    assert table.tstamp.tolist() == [b["tstamp"] for b in battles]
    assert len(table.where(BattleFilter(category="coding", anony_only=True))) == 4


@pytest.mark.parametrize("file_format", ["json", "jsonl", "csv", "parquet"])
def test_bad_rows_are_named_or_skipped_in_every_format(tmp_path, battles, file_format):
    records = battles[:3] + [{**battles[3], "winner": "model_z"}] + battles[4:]
    path = write(tmp_path / f"battles.{file_format}", records, file_format)
    with pytest.raises(InvalidRecordError) as caught:
        read_battles(path)
    assert (caught.value.row, caught.value.field) == (3, "winner")
    table = read_battles(path, skip_invalid=True)
    assert len(table) == len(battles) - 1
    assert table.report.reasons == {"winner: unknown value": 1}


@pytest.mark.parametrize("file_format", ["csv", "parquet"])
def test_a_missing_column_is_named(tmp_path, battles, file_format):
    records = [{k: v for k, v in b.items() if k != "winner"} for b in battles]
    with pytest.raises(InvalidInputError, match="no column 'winner'"):
        read_battles(write(tmp_path / f"battles.{file_format}", records, file_format))


def test_a_json_record_without_a_field_is_named(tmp_path, battles):
    records = battles[:2] + [{k: v for k, v in battles[2].items() if k != "model_b"}]
    with pytest.raises(InvalidRecordError, match="row 2: field 'model_b' is missing"):
        read_battles(write(tmp_path / "b.json", records, "json"))


def test_empty_csv_cells_are_missing_values(tmp_path, battles):
    records = [{**b, "model_b": ""} if i == 1 else b for i, b in enumerate(battles)]
    with pytest.raises(InvalidRecordError, match="row 1: field 'model_b' is missing"):
        read_battles(write(tmp_path / "b.csv", records, "csv"))


def test_json_must_be_a_list(tmp_path):
    path = tmp_path / "b.json"
    path.write_text('{"model_a": "a"}')
    with pytest.raises(InvalidInputError, match="JSON list"):
        read_battles(path)


def test_invalid_json_line_is_named(tmp_path, battles):
    path = tmp_path / "b.jsonl"
    path.write_text(json.dumps(battles[0]) + "\n{oops\n")
    with pytest.raises(InvalidRecordError, match="row 1: not valid JSON"):
        read_battles(path)


def test_unknown_suffix_and_missing_file_are_input_errors(tmp_path):
    with pytest.raises(InvalidInputError, match="suffix"):
        read_battles(tmp_path / "battles.txt")
    with pytest.raises(InvalidInputError, match="cannot read"):
        read_battles(tmp_path / "nothing.json")


@pytest.mark.parametrize("file_format", ["json", "csv", "parquet"])
def test_aggregated_counts_files_are_recognised(tmp_path, battles, file_format):
    counts, _ = PairCounts.from_battles(battles)
    path = write(tmp_path / f"counts.{file_format}", counts.to_rows(), file_format)
    assert read_counts(path).digest() == counts.digest()
    assert isinstance(read_input(path), PairCounts)
    with pytest.raises(InvalidInputError, match="aggregated counts"):
        read_battles(path)
