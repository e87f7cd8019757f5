from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from evalcore.ratings import PairCounts, RatingParams, compute_ratings
from evalcore.ratings.cli import main

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def battles_file(tmp_path, battles):
    path = tmp_path / "battles.json"
    path.write_text(json.dumps(battles))
    return path


def test_csv_output_matches_the_library(tmp_path, battles_file, battles, capsys):
    out = tmp_path / "ratings.csv"
    assert main([str(battles_file), "--bootstrap", "50", "--seed", "3", "-o", str(out)]) == 0
    counts, _ = PairCounts.from_battles(battles)
    expected = compute_ratings(counts, RatingParams(bootstrap_rounds=50, seed=3)).to_csv()
    assert out.read_text() == expected
    assert "rated 3 models" in capsys.readouterr().err


def test_json_and_table_formats(battles_file, capsys):
    assert (
        main([str(battles_file), "--bootstrap", "0", "--format", "json", "--anchor", "bison=1200"])
        == 0
    )
    document = json.loads(capsys.readouterr().out)
    assert {r["model"]: r["rating"] for r in document["rows"]}["bison"] == 1200.0
    assert main([str(battles_file), "--bootstrap", "0", "--format", "table"]) == 0
    assert capsys.readouterr().out.splitlines()[0].split()[:3] == ["rank", "rank_ub", "model"]


def test_slices_methods_and_min_votes(battles_file, capsys):
    assert (
        main([str(battles_file), "--bootstrap", "0", "--category", "coding", "--format", "json"])
        == 0
    )
    document = json.loads(capsys.readouterr().out)
    assert document["selection"]["category"] == "coding"
    assert sum(r["votes"] for r in document["rows"]) == 10
    assert (
        main([str(battles_file), "--method", "elo", "--bootstrap", "20", "--min-votes", "6"]) == 0
    )
    out = capsys.readouterr()
    assert [line.split(",")[2] for line in out.out.splitlines()[1:]] == [
        "alpaca",
        "bison",
    ] or "alpaca" in out.out
    assert "below --min-votes" in out.err
    assert main([str(battles_file), "--method", "davidson", "--bootstrap", "10"]) == 0


def test_bad_input_exits_2_with_the_error_code(tmp_path, battles, capsys):
    path = tmp_path / "bad.jsonl"
    bad = [*battles, {"model_a": "alpaca", "model_b": "alpaca", "winner": "tie"}]
    path.write_text("\n".join(json.dumps(b) for b in bad))
    assert main([str(path), "--bootstrap", "0"]) == 2
    assert "error [invalid_record]: row 9: field 'model_b'" in capsys.readouterr().err
    assert main([str(path), "--bootstrap", "0", "--skip-invalid"]) == 0
    assert "skipped 1 invalid rows" in capsys.readouterr().err
    assert main([str(path), "--skip-invalid", "--anchor", "nobody=1000"]) == 2
    assert "unknown_model" in capsys.readouterr().err


def test_counts_input_cannot_be_sliced(tmp_path, battles, capsys):
    counts, _ = PairCounts.from_battles(battles)
    path = tmp_path / "counts.json"
    path.write_text(json.dumps(counts.to_rows()))
    assert main([str(path), "--bootstrap", "0"]) == 0
    capsys.readouterr()
    assert main([str(path), "--category", "coding"]) == 2
    assert "invalid_parameter" in capsys.readouterr().err


def test_python_dash_m_entry_point(battles_file):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "evalcore.ratings",
            str(battles_file),
            "--bootstrap",
            "10",
            "--progress",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.startswith("rank,rank_ub,model,rating,ci_lower,ci_upper,votes,win_rate\n")
    assert "bootstrap" in done.stderr  # the progress bar
