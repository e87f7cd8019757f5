from __future__ import annotations

import csv
import io
import xml.etree.ElementTree as ET

import pytest
from django.test import Client

from contestants.models import Contestant
from contestants.services import record_evaluation
from leaderboard import publishing
from leaderboard.export import COLUMNS
from leaderboard.models import Release

pytestmark = pytest.mark.django_db


@pytest.fixture
def published(counts: None) -> Release:
    release = publishing.publish_release()
    assert release is not None
    return release


def svg_ids(html: str) -> list[str]:
    return [chunk.split(">", 1)[0] for chunk in html.split('<div class="card" id="chart-')[1:]]


def test_leaderboard_shows_the_latest_release_table_and_all_charts(
    client: Client, published: Release
) -> None:
    response = client.get("/leaderboard/")
    html = response.content.decode()
    assert response.status_code == 200
    assert "Release 1" in html and published.input_digest[:12] in html
    assert html.index(">alpha<") < html.index(">beta<") < html.index(">gamma<")
    assert "Alpha Labs" in html and "Apache-2.0" in html
    assert [i.strip('"') for i in svg_ids(html)] == ["ratings", "predicted", "observed", "battles"]
    for start in [i for i in range(len(html)) if html.startswith("<svg", i)]:
        ET.fromstring(html[start : html.index("</svg>", start) + 6])  # each chart is valid SVG
    assert "/leaderboard/releases/1.csv" in html


def test_models_under_min_votes_are_listed_apart_on_the_page(
    client: Client, published: Release
) -> None:
    html = client.get("/leaderboard/").content.decode()
    table, below = html.split('id="below-min-votes"')
    assert ">delta<" not in table.split('id="leaderboard"')[1]
    assert ">delta<" in below and "Fewer than 10 votes" in html


def test_table_sorts_by_a_column_on_request(client: Client, published: Release) -> None:
    html = client.get("/leaderboard/?sort=model&dir=desc").content.decode()
    table = html.split('id="leaderboard"')[1].split("</table>")[0]
    assert table.index(">gamma<") < table.index(">beta<") < table.index(">alpha<")
    html = client.get("/leaderboard/?sort=nonsense").content.decode()
    assert html.index(">alpha<") < html.index(">gamma<")


def test_leaderboard_before_any_release_says_so(client: Client, db: None) -> None:
    response = client.get("/leaderboard/")
    assert response.status_code == 200 and b"No release has been published yet" in response.content


def test_release_list_shows_changes_since_previous(
    client: Client, published: Release, add_counts: object
) -> None:
    add_counts([("gamma", "alpha", 80, 5, 0, 0), ("gamma", "beta", 60, 5, 0, 0)])  # type: ignore[operator]
    publishing.publish_release()
    html = client.get("/leaderboard/releases/").content.decode()
    assert html.index("releases/2/") < html.index("releases/1/")
    assert "first release" in html and "gamma" in html and "↑" in html


def test_release_page_shows_that_release(client: Client, published: Release) -> None:
    publishing.publish_release(force=True)
    html = client.get("/leaderboard/releases/1/").content.decode()
    assert "Release 1" in html and "latest" not in html.split("</h1>")[1].split("</div>")[0]


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/leaderboard/releases/9/", 404, "unknown_release"),
        ("/leaderboard/releases/x/", 400, "invalid_release_number"),
        ("/leaderboard/models/nobody/", 404, "unknown_model"),
        ("/leaderboard/?category=" + "c" * 60, 400, "invalid_category"),
    ],
)
def test_bad_page_requests_show_an_error_page(
    client: Client, published: Release, path: str, status: int, code: str
) -> None:
    response = client.get(path)
    assert response.status_code == status and f'data-code="{code}"' in response.content.decode()


def test_pages_refuse_post_with_405(client: Client, published: Release) -> None:
    for path in ("/leaderboard/", "/leaderboard/releases/", "/leaderboard/latest.csv"):
        assert client.post(path).status_code == 405


def test_model_page_has_history_chart_and_opponents(
    client: Client, published: Release, add_counts: object
) -> None:
    add_counts([("gamma", "alpha", 5, 0, 0, 0)])  # type: ignore[operator]
    publishing.publish_release()
    html = client.get("/leaderboard/models/alpha/").content.decode()
    chart = html.split('id="chart-history">')[1].split("</div>")[0]
    root = ET.fromstring(chart)
    assert root.find("{http://www.w3.org/2000/svg}polyline") is not None
    assert root.find("{http://www.w3.org/2000/svg}polygon") is not None  # the interval band
    opponents = html.split('id="opponents"')[1].split("</table>")[0]
    assert ">beta<" in opponents and ">gamma<" in opponents
    assert ">73%<" in opponents  # vs gamma: 40 wins, 15 losses after the extra votes


def test_latest_csv_download(client: Client, published: Release) -> None:
    response = client.get("/leaderboard/latest.csv")
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert (
        response["Content-Disposition"] == 'attachment; filename="ladder-leaderboard-release-1.csv"'
    )
    assert response.content == published.csv_text.encode("utf-8")
    header = next(csv.reader(io.StringIO(response.content.decode("utf-8"))))
    assert tuple(header) == COLUMNS


def test_numbered_and_category_csv_downloads(
    client: Client, published: Release, add_counts: object
) -> None:
    add_counts([("alpha", "beta", 12, 3, 1, 0), ("beta", "gamma", 9, 4, 0, 1)], category="fr")  # type: ignore[operator]
    publishing.publish_release(category="fr")
    response = client.get("/leaderboard/releases/1.csv?category=fr")
    assert response["Content-Disposition"].endswith('ladder-leaderboard-fr-release-1.csv"')
    assert response.content == Release.objects.get(category="fr").csv_text.encode()
    assert client.get("/leaderboard/releases/1.csv").content == published.csv_text.encode()


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/leaderboard/releases/5.csv", 404, "unknown_release"),
        ("/leaderboard/releases/five.csv", 400, "invalid_release_number"),
        ("/leaderboard/latest.csv?category=nope", 404, "unknown_release"),
    ],
)
def test_bad_csv_requests_answer_the_error_body(
    client: Client, published: Release, path: str, status: int, code: str
) -> None:
    response = client.get(path)
    assert response.status_code == status and response.json()["error"]["code"] == code


def test_table_shows_fewshot_compute_and_evaluation_cost_beside_ratings(
    client: Client, cast: dict[str, Contestant], counts: None
) -> None:
    Contestant.objects.filter(name="alpha").update(parameters=1_000_000, training_tokens=20_000_000)
    record_evaluation(
        contestant_id=cast["alpha"].pk,
        fewshot_average=0.6125,
        fewshot_std=0.021,
        eval_cost_usd=0.0123,
        eval_energy_kwh=0.0045,
        eval_co2e_g=2.16,
    )
    publishing.publish_release()
    html = client.get("/leaderboard/").content.decode()
    table = html.split('id="leaderboard"')[1].split("</table>")[0]
    for header in ("Few-shot avg", "Train compute (6·N·D)", "Eval cost / energy / CO₂e"):
        assert header in table
    alpha = table.split(">alpha<")[1].split("</tr>")[0]
    assert "61.3" in alpha and "± 2.1" in alpha
    assert "1.20e+14" in alpha and "20.0 tok/param" in alpha
    assert "$0.0123 / 4.50 Wh / 2.16 g" in alpha
    html = client.get("/leaderboard/?sort=fewshot_average&dir=desc").content.decode()
    table = html.split('id="leaderboard"')[1].split("</table>")[0]
    assert table.index(">alpha<") < table.index(">beta<")
