"""The style-controlled table of a release: stored with it, served as JSON, CSV and a page."""

from __future__ import annotations

import csv
import io

import pytest
from django.test import Client

from evalcore.ratings import BattleTable
from evalcore.ratings.style import style_features
from leaderboard import publishing
from leaderboard.export import COLUMNS
from leaderboard.models import Release
from tests.leaderboard.conftest import COUNTS

pytestmark = pytest.mark.django_db

WINNERS = ("model_a", "model_b", "tie", "tie (bothbad)")


def styled_battles() -> BattleTable:
    """The fixture's counts as battles, with answers whose style differs by model."""
    records = []
    for a, b, *cells in COUNTS:
        for outcome, count in enumerate(cells):
            for i in range(count):
                long_a = "# Title\n- **point**\n" * (1 + i % 3) + "word " * (40 + 10 * i % 50)
                short_b = "word " * (20 + 7 * i % 30) + ("\n- item" if i % 2 else "")
                records.append(
                    {
                        "model_a": a,
                        "model_b": b,
                        "winner": WINNERS[outcome],
                        "style": {"a": style_features(long_a), "b": style_features(short_b)},
                    }
                )
    return BattleTable.from_records(records)


@pytest.fixture
def styled_release(counts: None, monkeypatch: pytest.MonkeyPatch) -> Release:
    plain = publishing.read_snapshot

    def with_style(*, category: str) -> publishing.Snapshot:
        snapshot = plain(category=category)
        return publishing.Snapshot(
            snapshot.category,
            snapshot.rows,
            snapshot.vote_count,
            snapshot.last_vote_id,
            styled=styled_battles(),
        )

    monkeypatch.setattr(publishing, "read_snapshot", with_style)
    release = publishing.publish_release()
    assert release is not None
    return release


def test_release_stores_the_style_controlled_table(styled_release: Release) -> None:
    style = styled_release.style_view
    assert style["params"]["style_control"] and style["params"]["interval"] == "sandwich"
    assert set(style["coefficients"]) == {"tokens", "headers", "bold", "lists"}
    header = next(csv.reader(io.StringIO(style["csv_text"])))
    assert header[8:10] == ["interval", "preliminary"]
    ranked = [r["model"] for r in style["rows"] if not r["below_min_votes"]]
    assert sorted(ranked) == ["alpha", "beta", "gamma"]
    assert styled_release.rows.count() == 4  # the default table is unchanged


def test_api_and_csv_serve_both_tables(styled_release: Release, client: Client) -> None:
    default = client.get("/api/leaderboards/latest").json()
    style = client.get("/api/leaderboards/latest?view=style").json()
    assert "view" not in default and default["columns"] == list(COLUMNS)
    assert style["view"] == "style" and style["interval_method"] == "sandwich"
    assert style["columns"] == [*COLUMNS, "interval", "preliminary"]
    assert {r["interval"] for r in style["rows"]} == {"sandwich"}
    assert style["style_coefficients"] == styled_release.style_view["coefficients"]
    response = client.get("/leaderboard/latest.csv?view=style")
    assert response.status_code == 200
    assert response.content.decode() == styled_release.style_view["csv_text"]
    assert response["Content-Disposition"].endswith('-style.csv"')
    assert client.get("/leaderboard/latest.csv").content.decode() == styled_release.csv_text
    detail = client.get(f"/api/leaderboards/{styled_release.number}?view=style").json()
    assert detail["rows"] == style["rows"]


def test_page_toggles_between_default_and_style(styled_release: Release, client: Client) -> None:
    default = client.get("/leaderboard/").content.decode()
    assert 'id="view-toggle"' in default and "?view=style" in default
    page = client.get("/leaderboard/?view=style").content.decode()
    assert "<strong>Style control</strong>" in page
    assert 'id="style-coefficients"' in page and "intervals: sandwich" in page
    assert "/leaderboard/releases/1.csv?view=style" in page


def test_style_view_errors_have_stable_codes(counts: None, client: Client) -> None:
    publishing.publish_release()
    missing = client.get("/api/leaderboards/latest?view=style")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "no_style_view"
    csv_missing = client.get("/leaderboard/latest.csv?view=style")
    assert csv_missing.status_code == 404
    assert csv_missing.json()["error"]["code"] == "no_style_view"
    bad = client.get("/api/leaderboards/latest?view=fancy")
    assert bad.status_code == 400
    assert bad.json()["error"]["code"] == "invalid_view"
    assert "view" in bad.json()["error"]["fields"]
    assert client.get("/leaderboard/?view=fancy").status_code == 400
