from __future__ import annotations

import numpy as np
import pytest

from evalcore.errors import EmptyInputError, InvalidRecordError
from evalcore.ratings import BattleFilter, BattleTable, PairCounts

GOOD = {"model_a": "a", "model_b": "b", "winner": "model_a"}


@pytest.mark.parametrize(
    ("bad", "field", "words"),
    [
        (
            {"model_a": "a", "model_b": "b", "winner": "model_c"},
            "winner",
            "unknown value 'model_c'",
        ),
        ({"model_a": "a", "model_b": "a", "winner": "tie"}, "model_b", "cannot battle itself"),
        ({"model_a": "", "model_b": "b", "winner": "tie"}, "model_a", "is empty"),
        ({"model_a": "a", "model_b": "  ", "winner": "tie"}, "model_b", "is empty"),
        ({"model_a": "a", "winner": "tie"}, "model_b", "is missing"),
        ({"model_a": "a", "model_b": "b"}, "winner", "is missing"),
        ({"model_a": 7, "model_b": "b", "winner": "tie"}, "model_a", "must be a string, got 7"),
        ({**GOOD, "tstamp": "yesterday"}, "tstamp", "must be a number"),
        ("not a record", "record", "must be a mapping"),
    ],
)
def test_bad_record_raises_naming_row_and_field(bad, field, words):
    with pytest.raises(InvalidRecordError) as caught:
        BattleTable.from_records([GOOD, GOOD, bad, GOOD])
    error = caught.value
    assert (error.row, error.field) == (2, field)
    assert str(error).startswith("row 2: ")
    assert words in str(error)
    assert error.code == "invalid_record"


def test_first_bad_row_is_reported():
    records = [GOOD, {"model_a": "a", "model_b": "b", "winner": "?"}, {"model_a": "a"}]
    with pytest.raises(InvalidRecordError) as caught:
        BattleTable.from_records(records)
    assert caught.value.row == 1


def test_skip_invalid_counts_each_bad_row_once_by_first_problem():
    records = [
        GOOD,
        {"model_a": "a", "model_b": "a", "winner": "nope"},  # model_b problem comes first
        {"model_a": "", "model_b": "b", "winner": "tie"},
        {"model_a": "a", "model_b": "b", "winner": "nope"},
        {"model_a": "b", "model_b": "c", "winner": "tie"},
    ]
    counts, report = PairCounts.from_battles(records, skip_invalid=True)
    assert report.total_rows == 5 and report.skipped_rows == 3 and report.kept_rows == 2
    assert report.reasons == {
        "model_b: same model as model_a": 1,
        "model_a: empty": 1,
        "winner: unknown value": 1,
    }
    assert report.examples[0].startswith("row 1: ")
    assert counts.models == ("a", "b", "c")
    assert counts.total_votes == 2


def test_models_only_seen_in_skipped_rows_are_dropped():
    table = BattleTable.from_records(
        [GOOD, {"model_a": "zz", "model_b": "yy", "winner": "??"}], skip_invalid=True
    )
    assert table.models == ("a", "b")
    assert table.rows.tolist() == [0]


def test_nothing_valid_is_an_empty_input_error():
    with pytest.raises(EmptyInputError):
        BattleTable.from_records([{"model_a": "a"}], skip_invalid=True)


def test_filters_select_category_language_judge_and_anonymous(battles):
    table = BattleTable.from_records(battles)
    assert len(table.where(BattleFilter(category="coding"))) == 5
    assert len(table.where(BattleFilter(language="German"))) == 3
    assert len(table.where(BattleFilter(judge="arena_user_0", category="coding"))) == 3
    assert len(table.where(BattleFilter(anony_only=True))) == 8
    with pytest.raises(EmptyInputError, match="category='poetry'"):
        table.where(BattleFilter(category="poetry"))


def test_time_order_is_stable_and_puts_missing_tstamps_last():
    records = [
        {**GOOD, "tstamp": 3.0},
        {**GOOD, "winner": "model_b"},
        {**GOOD, "tstamp": 1.0},
        {**GOOD, "tstamp": 3.0, "winner": "tie"},
    ]
    ordered = BattleTable.from_records(records).in_time_order()
    assert ordered.rows.tolist() == [2, 0, 3, 1]
    assert np.isnan(ordered.tstamp[-1])
