"""The release against the arena's public-schema export of the same votes, and the counts rebuild."""

from __future__ import annotations

from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command

from leaderboard import publishing
from leaderboard.export import core_columns_of
from leaderboard.models import PairCount
from tests.leaderboard.votes import run_cli

pytestmark = pytest.mark.django_db


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
