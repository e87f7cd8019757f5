from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from contestants.models import Contestant
from leaderboard import publishing
from leaderboard.models import PairCount

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
COUNTS = [
    ("alpha", "beta", 30, 18, 5, 2),
    ("alpha", "gamma", 40, 10, 4, 1),
    ("beta", "gamma", 28, 20, 6, 3),
]


@pytest.fixture
def release(settings: Any) -> None:
    settings.LEADERBOARD_RATING_PARAMS = {"bootstrap_rounds": 30, "min_votes": 5}
    made = {
        name: Contestant.objects.create(name=name, organization=f"{name} org", checkpoint_path="")
        for name in ("alpha", "beta", "gamma")
    }
    for a, b, wins_a, wins_b, ties, both_bad in COUNTS:
        PairCount.objects.create(
            model_a=made[a],
            model_b=made[b],
            model_a_wins=wins_a,
            model_b_wins=wins_b,
            ties=ties,
            both_bad=both_bad,
        )
    assert publishing.publish_release() is not None


def test_leaderboard_page_shows_charts_sorts_and_links_to_a_model(
    live_server: Any, page: Any, artifacts_dir: Path, release: None
) -> None:
    page.goto(live_server.url + "/leaderboard/")
    assert page.title().startswith("Leaderboard")
    assert page.locator("#leaderboard tbody tr").count() == 3
    for chart in ("ratings", "predicted", "observed", "battles"):
        box = page.locator(f"#chart-{chart} svg").bounding_box()
        assert box is not None and box["width"] > 100 and box["height"] > 30
    page.screenshot(path=str(artifacts_dir / "leaderboard.png"), full_page=True)

    page.click("#leaderboard th a[data-sort=model]")
    page.click("#leaderboard th a[data-sort=model]")  # second click: descending
    names = page.locator("#leaderboard tbody tr td:nth-child(3)").all_inner_texts()
    assert names == ["gamma", "beta", "alpha"]

    page.click("text=alpha")
    page.wait_for_url("**/leaderboard/models/alpha/")
    assert page.locator("#chart-history svg polyline").count() == 1
    page.screenshot(path=str(artifacts_dir / "model.png"), full_page=True)


def test_csv_download_from_the_page(live_server: Any, page: Any, release: None) -> None:
    page.goto(live_server.url + "/leaderboard/")
    with page.expect_download() as download_info:
        page.click("text=Download CSV")
    download = download_info.value
    assert download.suggested_filename == "ladder-leaderboard-release-1.csv"
    assert Path(download.path()).read_text(encoding="utf-8").startswith("rank,rank_ub,model")
