"""The release against the arena's public-schema export of the same votes, and the counts rebuild."""

from __future__ import annotations

import random
import subprocess
import sys
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command

from leaderboard import publishing
from leaderboard.export import core_columns_of
from leaderboard.models import PairCount
from leaderboard.ratings import cli_arguments

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[2]
STRENGTH = {"alpha": 1.6, "beta": 0.9, "gamma": 0.2, "delta": 0.0, "rare": 0.5}


def battles(n: int = 500, seed: int = 3) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    common = ["alpha", "beta", "gamma", "delta"]
    records = []
    for i in range(n):
        a, b = rng.sample(common, 2) if i % 100 else ("rare", rng.choice(common))
        p = STRENGTH[a] / (STRENGTH[a] + STRENGTH[b] + 0.3) if STRENGTH[b] else 0.7
        roll = rng.random()
        winner = (
            "model_a"
            if roll < p
            else "tie"
            if roll < p + 0.1
            else "tie (bothbad)"
            if roll < p + 0.15
            else "model_b"
        )
        records.append(
            {
                "model_a": a,
                "model_b": b,
                "winner": winner,
                "tstamp": 1_700_000_000 + i,
                "anony": True,
                "category": "coding" if i % 3 == 0 else "",
                "question_id": f"q{i}",
            }
        )
    return records


@pytest.fixture
def imported_votes() -> None:
    from arena.dumps import import_battles

    report = import_battles(battles())
    assert report.read == 500


def run_cli(path: Path, params: dict[str, Any], category: str = "") -> bytes:
    command = [sys.executable, "-m", "evalcore.ratings", str(path), "--no-progress"]
    completed = subprocess.run(
        command + cli_arguments(params, category), cwd=ROOT, capture_output=True, check=True
    )
    return completed.stdout


@pytest.mark.parametrize("category", ["", "coding"])
def test_cli_on_the_arena_export_gives_the_release_core_columns_byte_for_byte(
    imported_votes: None, tmp_path: Path, category: str
) -> None:
    from arena.dumps import export_lines

    release = publishing.publish_release(category=category)
    assert release is not None
    export = tmp_path / "battles.jsonl"
    export.write_text("".join(export_lines("jsonl")), encoding="utf-8")
    assert run_cli(export, release.params, category) == core_columns_of(release.csv_text).encode()
    assert release.last_vote_id is not None and release.vote_count == 500


def test_rebuild_finds_no_difference_when_counts_match_the_votes(imported_votes: None) -> None:
    assert publishing.rebuild_pair_counts() == []


def test_rebuild_reports_and_with_apply_repairs_drifted_counts(imported_votes: None) -> None:
    row = PairCount.objects.filter(category="").order_by("pk").first()
    assert row is not None
    expected = (row.model_a_wins, row.model_b_wins, row.ties, row.both_bad)
    PairCount.objects.filter(pk=row.pk).update(model_a_wins=row.model_a_wins + 5)
    out = StringIO()
    call_command("rebuild_pair_counts", stdout=out, stderr=StringIO())
    assert "1 rows differ" in out.getvalue()
    (difference,) = publishing.rebuild_pair_counts()
    assert difference.rebuilt == expected and difference.stored[0] == expected[0] + 5
    call_command("rebuild_pair_counts", "--apply", stdout=StringIO(), stderr=StringIO())
    assert publishing.rebuild_pair_counts() == []
    row.refresh_from_db()
    assert row.model_a_wins == expected[0]


def test_rebuild_recreates_deleted_category_counts(imported_votes: None) -> None:
    deleted, _ = PairCount.objects.filter(category="coding").delete()
    assert deleted > 0
    differences = publishing.rebuild_pair_counts(apply=True)
    assert len(differences) == deleted
    assert PairCount.objects.filter(category="coding").count() == deleted
