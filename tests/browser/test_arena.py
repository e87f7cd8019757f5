"""A voter's whole battle in a real browser, with a real worker generating the answers."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from contestants.models import Contestant


@pytest.fixture
def tiny_contestants(transactional_db: None, tmp_path: Path) -> list[Contestant]:
    from models_zoo.testing import make_tiny_checkpoint

    return [
        Contestant.objects.create(
            name=f"tiny-{arch}-contestant",
            organization="Ladder tests",
            checkpoint_path=str(make_tiny_checkpoint(tmp_path / arch, arch=arch, seed=seed)),
            serving={"device": "cpu"},
            status=Contestant.Status.ACTIVE,
        )
        for seed, arch in enumerate(("dense", "gpt2"))
    ]


@pytest.mark.browser
@pytest.mark.real_worker
def test_prompt_answers_vote_reveal_and_new_battle(
    tiny_contestants: list[Contestant],
    celery_worker_process: subprocess.Popen[str],
    live_server: Any,
    page: Any,
    artifacts_dir: Path,
) -> None:
    names = [contestant.name for contestant in tiny_contestants]
    page.goto(live_server.url + "/arena/")
    page.fill("#prompt", "Explain what a Python generator is.")
    page.click("#start-battle")
    page.wait_for_url(re.compile(r".*/arena/[0-9a-f-]{36}/$"))
    page.wait_for_selector('.answer-body[data-side="a"][data-filled]', timeout=120_000)
    page.wait_for_selector('.answer-body[data-side="b"][data-filled]', timeout=120_000)
    page.wait_for_selector("#vote-form button:not([disabled])")
    html = page.content()
    assert not any(name in html for name in names), "a model name reached the page before the vote"
    page.screenshot(path=str(artifacts_dir / "answers.png"), full_page=True)
    left, right = page.locator("#answer-a").bounding_box(), page.locator("#answer-b").bounding_box()
    assert abs(left["y"] - right["y"]) < 2 and right["x"] > left["x"] + left["width"] - 1
    page.set_viewport_size({"width": 390, "height": 844})  # a phone: the answers stack
    left, right = page.locator("#answer-a").bounding_box(), page.locator("#answer-b").bounding_box()
    assert right["y"] >= left["y"] + left["height"] - 1
    page.screenshot(path=str(artifacts_dir / "phone.png"), full_page=True)
    page.set_viewport_size({"width": 1280, "height": 800})

    page.keyboard.press("1")  # "A is better"
    page.wait_for_selector("#reveal:not([hidden])")
    revealed = {page.inner_text("#reveal-a"), page.inner_text("#reveal-b")}
    assert revealed == set(names)
    assert page.inner_text("#reveal-winner") == "A is better"
    page.screenshot(path=str(artifacts_dir / "reveal.png"), full_page=True)
    assert (artifacts_dir / "reveal.png").stat().st_size > 0

    page.click("#new-battle")
    page.wait_for_url(re.compile(r".*/arena/$"))
    assert page.is_visible("#prompt")
    assert celery_worker_process.poll() is None
