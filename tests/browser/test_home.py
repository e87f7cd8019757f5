from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest


@pytest.mark.browser
def test_home_page_renders_and_links_to_the_arena(
    live_server: Any, page: Any, artifacts_dir: Path
) -> None:
    page.goto(live_server.url + "/")
    assert page.title() == "Home · Ladder"
    page.click("text=Arena >> nth=0")
    page.wait_for_url("**/arena/")
    page.screenshot(path=str(artifacts_dir / "arena.png"))
    assert (artifacts_dir / "arena.png").stat().st_size > 0
