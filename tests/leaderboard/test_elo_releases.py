"""Elo releases: replayed from the ordered vote log up to their last vote id, and reproducible."""

from __future__ import annotations

import json
from collections.abc import Callable
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.test import Client

from contestants.models import Contestant
from evalcore.ratings import RatingParams, rate_battles
from leaderboard import publishing, ratings
from leaderboard.export import core_columns_of
from leaderboard.models import Outcome, PairCount, PublishJob, Release
from tests.leaderboard.votes import battles, export_file, run_cli

pytestmark = pytest.mark.django_db


def publish_elo(category: str = "", **overrides: Any) -> Release:
    params = publishing.default_params(method="elo", **overrides)
    release = publishing.publish_release(category=category, params=params)
    assert release is not None
    return Release.objects.get(pk=release.pk)


def import_more(n: int, *, seed: int, first_tstamp: float = 1_800_000_000) -> None:
    from arena.dumps import import_battles

    assert import_battles(battles(n, seed=seed, first_tstamp=first_tstamp)).imported == n


def test_elo_release_publishes_from_the_ordered_vote_log(imported_votes: None) -> None:
    release = publish_elo()
    records = battles()
    expected = rate_battles(records, RatingParams.from_dict(release.params))
    assert release.method == "elo" and release.params["method"] == "elo"
    assert release.input_digest == expected.input_digest  # the ordered battle sequence
    assert release.last_vote_id == Outcome.objects.position()[1]
    assert release.vote_count == release.counted_votes == 500
    assert [r.model for r in expected.rows] == list(
        release.rows.ranked().values_list("model", flat=True)
    )
    assert list(release.rows.below_threshold().values_list("model", "votes")) == [("rare", 5)]
    # The stored counts are the counts of the same votes, as the arena keeps them.
    stored = PairCount.objects.filter(category="").values_list(
        "model_a__name", "model_b__name", "model_a_wins", "model_b_wins", "ties", "both_bad"
    )
    assert ratings.counts_from_json(release.input_counts) == sorted(stored)


def test_elo_digest_depends_on_the_vote_order_unlike_the_counts(imported_votes: None) -> None:
    params = publishing.default_params(method="elo")
    records = battles()
    swapped = [*records[1:], {**records[0], "tstamp": records[-1]["tstamp"] + 1}]
    table = ratings.battle_table(
        (r["model_a"], r["model_b"], r["winner"], r["tstamp"]) for r in records
    )
    moved = ratings.battle_table(
        (r["model_a"], r["model_b"], r["winner"], r["tstamp"]) for r in swapped
    )
    assert ratings.battle_counts(table) == ratings.battle_counts(moved)
    assert ratings.battles_digest(table, params) != ratings.battles_digest(moved, params)


@pytest.mark.parametrize(
    "overrides",
    [{}, {"ties": "exclude_bothbad", "anchor": {"model": "beta", "rating": 1000.0}}],
)
def test_elo_release_csv_is_byte_identical_on_verify(
    imported_votes: None, overrides: dict[str, Any]
) -> None:
    release = publish_elo(**overrides)
    result = publishing.verify_release(release=release)
    assert result.ok
    assert result.recomputed_csv.encode() == release.csv_text.encode()


def test_elo_release_does_not_depend_on_the_live_counts_or_contestant_facts(
    imported_votes: None,
) -> None:
    release = publish_elo()
    PairCount.objects.all().delete()
    Contestant.objects.filter(name="alpha").update(organization="Someone else")
    assert publishing.verify_release(release=Release.objects.get(pk=release.pk)).ok


def test_later_votes_do_not_change_the_verification_of_an_earlier_release(
    imported_votes: None,
) -> None:
    first = publish_elo()
    # Later votes, some stamped *before* every earlier one: in time order they would come
    # first, but they lie above the release's last vote id.
    import_more(60, seed=11, first_tstamp=1_600_000_000)
    second = publish_elo()
    assert second.number == 2 and second.last_vote_id > first.last_vote_id  # type: ignore[operator]
    assert second.input_digest != first.input_digest and second.counted_votes == 560
    for release in (first, second):
        result = publishing.verify_release(release=release)
        assert result.ok, result.recomputed_csv
    out = StringIO()
    call_command("verify_release", "1", stdout=out, stderr=StringIO())
    assert "byte-identical" in out.getvalue() and "reproduced" in out.getvalue()


def test_verify_detects_a_changed_vote_log(imported_votes: None) -> None:
    from evalcore.types import Outcome as Result

    release = publish_elo()
    outcome = Outcome.objects.order_by("pk").first()
    assert outcome is not None
    # Tampering behind the log's back (nothing in the code updates an outcome).
    changed = Result.B_WINS if outcome.outcome is not Result.B_WINS else Result.TIE
    Outcome.objects.filter(pk=outcome.pk).update(result=changed.value)
    result = publishing.verify_release(release=release)
    assert not result.digest_matches and not result.ok
    with pytest.raises(CommandError, match="does not reproduce"):
        call_command("verify_release", "1", stdout=StringIO(), stderr=StringIO())


def test_elo_release_without_its_votes_fails_verification_with_empty_input(
    imported_votes: None,
) -> None:
    release = publish_elo()
    Release.objects.filter(pk=release.pk).update(last_vote_id=0)
    with pytest.raises(CommandError, match="empty_input"):
        call_command("verify_release", "1", stdout=StringIO(), stderr=StringIO())


def test_unchanged_vote_log_publishes_no_new_elo_release(imported_votes: None) -> None:
    first = publish_elo()
    params = publishing.default_params(method="elo")
    assert publishing.publish_release(params=params) is None
    # A vote on another board moves the log position but not this board's sequence.
    assert publishing.publish_release(category="coding", params=params) is not None
    import_more(3, seed=5)
    again = publishing.publish_release(params=params)
    assert again is not None and again.number == first.number + 1


@pytest.mark.parametrize("category", ["", "coding"])
def test_elo_numbers_equal_the_ratings_cli_on_the_arena_export(
    imported_votes: None, tmp_path: Path, category: str
) -> None:
    release = publish_elo(category)
    export = export_file(tmp_path)
    assert run_cli(export, release.params, category) == core_columns_of(release.csv_text).encode()
    if not category:  # a category slice keeps the export's model list (engine), so only here
        cli = json.loads(run_cli(export, release.params, category, "--format=json"))
        assert cli["input_digest"] == release.input_digest


def test_elo_follows_the_engine_time_order_when_votes_arrive_out_of_order(
    cast: dict[str, Contestant], tmp_path: Path
) -> None:
    from arena.dumps import import_battles

    records = battles(300, seed=8)
    for number, record in enumerate(records):
        record["tstamp"] = None if number % 50 == 0 else 1_700_000_000 + (number * 37) % 300
    import_battles(records)
    release = publish_elo()
    assert (
        run_cli(export_file(tmp_path), release.params) == core_columns_of(release.csv_text).encode()
    )
    assert publishing.verify_release(release=release).ok


def test_publish_command_and_api_and_admin_accept_elo(
    imported_votes: None,
    client: Client,
    staff_token: str,
    django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    out = StringIO()
    call_command("publish_release", "--method", "elo", stdout=out, stderr=StringIO())
    assert "published release 1" in out.getvalue()
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            "/api/leaderboards/publish",
            {"method": "elo", "category": "coding"},
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Token {staff_token}",
        )
    assert response.status_code == 202
    job = PublishJob.objects.get(pk=response.json()["id"])
    assert job.status == "published" and job.release is not None
    assert job.release.method == "elo"
    admin = User.objects.create_superuser("admin", "a@example.com", "pw")
    client.force_login(admin)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            "/admin/leaderboard/release/publish/", {"category": "", "method": "elo", "force": "on"}
        )
    assert response.status_code == 302
    assert Release.objects.latest_for("").method == "elo"  # type: ignore[union-attr]
    assert Release.objects.latest_for("").number == 2  # type: ignore[union-attr]


def test_elo_release_page_explains_the_vote_log_and_the_cli_options(
    imported_votes: None, client: Client
) -> None:
    release = publish_elo()
    html = " ".join(client.get(f"/leaderboard/releases/{release.number}/").content.decode().split())
    assert f"up to vote id {release.last_vote_id}" in html
    assert "--method=elo" in html and "--k=4.0" in html
