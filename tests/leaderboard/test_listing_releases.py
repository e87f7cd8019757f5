"""Releases with the issue-16 parameters: sandwich intervals, preliminary marks, deprecated
models, reweighting; recorded in the params, shown on the page and in the API, reproducible."""

from __future__ import annotations

import csv
import io

import pytest
from django.test import Client

from leaderboard import publishing
from leaderboard.export import COLUMNS, EXTRA_COLUMNS
from leaderboard.models import Release

pytestmark = pytest.mark.django_db

LISTING = {
    "interval": "sandwich",
    "below_min_votes_policy": "preliminary",
    "deprecated": ["gamma"],
    "reweight": True,
}


def publish_listing(settings: object) -> Release:
    settings.LEADERBOARD_RATING_PARAMS = {  # type: ignore[attr-defined]
        **settings.LEADERBOARD_RATING_PARAMS,  # type: ignore[attr-defined]
        **LISTING,
    }
    release = publishing.publish_release()
    assert release is not None
    return release


def test_release_records_the_listing_parameters_and_csv_names_the_interval(
    counts: None, settings: object
) -> None:
    release = publish_listing(settings)
    for key, value in LISTING.items():
        assert release.params[key] == value
    rows = list(csv.reader(io.StringIO(release.csv_text)))
    core = [c for c in COLUMNS if c not in EXTRA_COLUMNS]
    assert rows[0] == [*core, "interval", "preliminary", *EXTRA_COLUMNS]
    by_model = {row[2]: row for row in rows[1:]}
    assert set(by_model) == {"alpha", "beta", "delta"}  # gamma: deprecated, still fitted
    assert {row[8] for row in rows[1:]} == {"sandwich"}
    assert by_model["delta"][9] == "true" and by_model["alpha"][9] == "false"
    assert release.rows.get(model="delta").preliminary
    assert not release.rows.filter(model="gamma").exists()
    assert release.diagnostics["deprecated"] == ["gamma"]
    assert set(release.diagnostics["intervals"]) == {"bootstrap", "sandwich"}


def test_listing_release_verifies_byte_for_byte(counts: None, settings: object) -> None:
    release = publish_listing(settings)
    check = publishing.verify_release(release=release)
    assert check.ok, check.recomputed_csv


def test_api_and_page_show_the_interval_method_and_preliminary_marks(
    counts: None, settings: object, client: Client
) -> None:
    publish_listing(settings)
    body = client.get("/api/leaderboards/latest").json()
    assert body["interval_method"] == "sandwich"
    assert body["columns"] == [*COLUMNS, "interval", "preliminary"]
    flags = {row["model"]: (row["interval"], row["preliminary"]) for row in body["rows"]}
    assert flags == {
        "alpha": ("sandwich", False),
        "beta": ("sandwich", False),
        "delta": ("sandwich", True),
    }
    html = client.get("/leaderboard/").content.decode()
    assert 'id="interval-method">intervals: sandwich' in html
    assert "pairs reweighted 1/max(n, 50)" in html
    assert html.count('class="pill preliminary"') == 1
    assert "--interval=sandwich" in html and "--deprecated=gamma" in html


def test_a_bad_listing_setting_is_an_invalid_parameter(counts: None, settings: object) -> None:
    settings.LEADERBOARD_RATING_PARAMS = {"interval": "jackknife"}  # type: ignore[attr-defined]
    with pytest.raises(publishing.DomainError) as error:
        publishing.publish_release()
    assert error.value.code == "invalid_parameter"
    assert "interval" in error.value.fields
