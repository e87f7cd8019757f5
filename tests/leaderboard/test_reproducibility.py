from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from contestants.models import Contestant
from leaderboard import publishing
from leaderboard.models import PairCount, Release
from leaderboard.ratings import cli_arguments

pytestmark = pytest.mark.django_db


def test_rerunning_recorded_params_on_recorded_counts_gives_identical_csv_bytes(
    counts: None,
) -> None:
    release = publishing.publish_release()
    assert release is not None
    # The live tables move on; the release must not depend on them.
    PairCount.objects.all().delete()
    Contestant.objects.filter(name="alpha").update(organization="Someone else", license="GPL")
    stored = Release.objects.get(pk=release.pk)
    result = publishing.verify_release(release=stored)
    assert result.ok
    assert result.recomputed_csv.encode() == stored.csv_text.encode()


def test_verify_release_detects_a_tampered_csv(counts: None) -> None:
    release = publishing.publish_release()
    assert release is not None
    Release.objects.filter(pk=release.pk).update(csv_text=release.csv_text.replace("1,", "2,", 1))
    result = publishing.verify_release(release=Release.objects.get(pk=release.pk))
    assert result.digest_matches and not result.csv_matches


def test_verify_release_command_reports_byte_identical(counts: None) -> None:
    publishing.publish_release()
    out = StringIO()
    call_command("verify_release", "1", stdout=out, stderr=StringIO())
    assert "byte-identical" in out.getvalue() and "reproduced" in out.getvalue()


def test_verify_release_command_fails_on_a_difference(counts: None) -> None:
    release = publishing.publish_release()
    assert release is not None
    Release.objects.filter(pk=release.pk).update(input_digest="0" * 64)
    with pytest.raises(CommandError, match="does not reproduce"):
        call_command("verify_release", "1", stdout=StringIO(), stderr=StringIO())


@pytest.mark.parametrize(
    ("number", "code"), [("7", "unknown_release"), ("x1", "invalid_release_number")]
)
def test_verify_release_command_rejects_bad_numbers(counts: None, number: str, code: str) -> None:
    with pytest.raises(CommandError, match=code):
        call_command("verify_release", number, stdout=StringIO(), stderr=StringIO())


def test_same_counts_in_another_database_order_give_the_same_release(
    counts: None, add_counts: object
) -> None:
    first = publishing.publish_release()
    assert first is not None
    rows = list(PairCount.objects.values())
    PairCount.objects.all().delete()
    for row in reversed(rows):  # new ids, reversed insertion order
        row.pop("id")
        PairCount.objects.create(**row)
    again = publishing.publish_release(force=True)
    assert again is not None
    assert again.input_digest == first.input_digest
    assert again.csv_text == first.csv_text


def test_new_releases_record_the_current_sampler_and_old_ones_still_verify(
    counts: None,
) -> None:
    """A release recorded before the sampler versions (no ``bootstrap_sampler`` key) was drawn
    with version 1 and recomputes byte for byte; new releases record version 3, and a release
    made with version 2 still verifies."""
    new = publishing.publish_release()
    assert new is not None and new.params["bootstrap_sampler"] == 3
    assert new.params["bootstrap_rounds"] > 0
    old = publishing.publish_release(params=publishing.default_params(bootstrap_sampler=1))
    assert old is not None and old.csv_text != new.csv_text  # other draws, other bounds
    recorded = {k: v for k, v in old.params.items() if k != "bootstrap_sampler"}
    Release.objects.filter(pk=old.pk).update(params=recorded)
    stored = Release.objects.get(pk=old.pk)
    assert publishing.verify_release(release=stored).ok
    assert "--bootstrap-sampler=1" in cli_arguments(stored.params)
    assert "--bootstrap-sampler=3" in cli_arguments(new.params)
    assert publishing.verify_release(release=Release.objects.get(pk=new.pk)).ok
    second = publishing.publish_release(params=publishing.default_params(bootstrap_sampler=2))
    assert second is not None and second.params["bootstrap_sampler"] == 2
    assert second.csv_text not in (old.csv_text, new.csv_text)
    assert publishing.verify_release(release=Release.objects.get(pk=second.pk)).ok
