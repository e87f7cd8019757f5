from __future__ import annotations

import csv
import io

import pytest

from leaderboard.export import COLUMNS, EXTRA_COLUMNS, core_columns_of, release_csv

CORE = (
    "rank,rank_ub,model,rating,ci_lower,ci_upper,votes,win_rate\r\n"
    "1,1,alpha,1100.5,1090.1,1110.2,30,0.6\r\n"
    '2,1,"beta, the model",1000.0,980.0,1020.0,25,0.5\r\n'
)


def test_release_csv_appends_extra_columns_after_the_core_ones() -> None:
    extras = {
        "alpha": ["Org A", "MIT", 0.5, None, 1.25, None, None, 1000, None],
        "beta, the model": ["Org, B", "", None, None, None, None, None, None, None],
    }
    text = release_csv(CORE, extras)
    rows = list(csv.reader(io.StringIO(text)))
    assert tuple(rows[0]) == COLUMNS
    assert rows[1][8:] == ["Org A", "MIT", "0.5", "", "1.25", "", "", "1000", ""]
    assert rows[2][2] == "beta, the model" and rows[2][8] == "Org, B"


def test_core_columns_round_trip_to_the_engine_bytes() -> None:
    extras = {"alpha": ["x"] * len(EXTRA_COLUMNS), "beta, the model": ['q"uote'] * 9}
    assert core_columns_of(release_csv(CORE, extras)) == CORE


def test_release_csv_keeps_the_engine_line_endings() -> None:
    core = CORE.replace("\r\n", "\n")
    text = release_csv(core, {})
    assert "\r" not in text and text.count("\n") == 3


def test_release_csv_refuses_an_empty_engine_output() -> None:
    with pytest.raises(ValueError):
        release_csv("", {})
