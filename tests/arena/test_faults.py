"""Issue 18 regressions in the arena: unstorable model text, bad bodies, broker outages and
battles whose worker died during generation."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.test import Client

from arena import services
from arena.models import Battle, PooledAnswer, Prompt, PromptSet
from arena.voters import Voter
from contestants.models import Contestant
from tests.arena.conftest import ArenaClient
from tests.conftest import start_celery_worker

NUL_ANSWER = "before\x00after \ud800 end"


@pytest.fixture
def nul_generation(monkeypatch: pytest.MonkeyPatch) -> None:
    """A model whose output holds a NUL and a lone surrogate, as dense-tiny's demo answer did."""
    from arena import generation

    def generate(contestant: Contestant, messages: Any, *, seed: int, on_text: Any = None) -> Any:
        if on_text is not None:
            on_text(NUL_ANSWER[:7])  # a streamed partial text holds the NUL too
        return generation.GeneratedAnswer(NUL_ANSWER, {"finish_reason": "stop\x00"})

    monkeypatch.setattr(generation, "generate_answer", generate)


def nul_answers_are_stored_with_replacement_characters(contestants: list[Contestant]) -> None:
    voter = Voter(key=f"anon:{uuid.uuid4()}", ip="198.51.100.9")
    prompt_set = PromptSet.objects.create(name=f"nul-{uuid.uuid4().hex[:8]}")
    services.load_prompt_set(name=prompt_set.name, records=[{"text": "Say\x00 it"}])
    prompt = Prompt.objects.get(prompt_set=prompt_set)
    assert prompt.text == "Say\ufffd it"
    battle = services.create_battle(voter=voter, prompt=prompt.text)
    services.generate_battle_answers(battle_id=battle.pk)
    battle.refresh_from_db()
    assert battle.status == Battle.Status.READY
    assert battle.answer_a == battle.answer_b == "before\ufffdafter \ufffd end"
    assert set(PooledAnswer.objects.filter(prompt=prompt).values_list("text", flat=True)) == {
        "before\ufffdafter \ufffd end"
    }
    assert services.pregenerate_pool(prompt_set_id=prompt_set.pk) == 1  # the third contestant
    assert "\x00" not in "".join(PooledAnswer.objects.values_list("text", flat=True))


def test_model_output_with_nul_is_stored_on_sqlite(
    contestants: list[Contestant], nul_generation: None
) -> None:
    nul_answers_are_stored_with_replacement_characters(contestants)


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_model_output_with_nul_is_stored_on_postgres(
    postgres_and_redis: None, contestants: list[Contestant], nul_generation: None
) -> None:
    from django.db import connection

    assert connection.vendor == "postgresql"
    nul_answers_are_stored_with_replacement_characters(contestants)


@pytest.mark.parametrize("raw", ['{"prompt": "a\\u0000b"}', '{"prompt": "hello \\ud800"}'])
def test_prompt_with_nul_or_lone_surrogate_is_refused_with_400(
    api: ArenaClient, contestants: list[Contestant], raw: str
) -> None:
    response = api.post("/api/arena/battles", raw=raw)
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_input"
    assert "prompt" in response.json()["error"]["fields"]
    assert not Battle.objects.exists()


@pytest.mark.parametrize("path", ["/api/arena/battles", "/api/arena/battles/{id}/vote"])
def test_deeply_nested_json_is_a_400_parse_error(
    api: ArenaClient, make_battle: Callable[..., Battle], path: str
) -> None:
    battle = make_battle()
    response = api.post(path.format(id=battle.pk), raw="[" * 100_000)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "malformed_request"
    assert not hasattr(Battle.objects.get(pk=battle.pk), "vote")


def test_anonymous_multipart_vote_with_cookie_and_csrf_is_415(
    api: ArenaClient, make_battle: Callable[..., Battle]
) -> None:
    battle = make_battle()
    response = api.client.post(
        f"/api/arena/battles/{battle.pk}/vote",
        {"winner": "model_a"},  # the test client encodes a dict as multipart/form-data
        headers={"X-CSRFToken": api.token},
    )
    assert response.status_code == 415
    assert response.json()["error"]["code"] == "unsupported_media_type"
    assert not Battle.objects.filter(pk=battle.pk, vote__isnull=False).exists()


def test_battle_id_that_is_not_a_uuid_is_a_json_404(api: ArenaClient) -> None:
    for path in ("/api/arena/battles/not-a-uuid", "/api/arena/battles/%00/vote"):
        response = api.get(path)
        assert response.status_code == 404, path
        assert response.json()["error"]["code"] == "not_found"


@pytest.mark.django_db(transaction=True)
def test_battle_creation_while_the_broker_is_down_is_503_and_keeps_no_battle(
    contestants: list[Contestant], monkeypatch: pytest.MonkeyPatch
) -> None:
    from arena import tasks

    def broker_down(*args: object) -> None:
        raise ConnectionRefusedError("redis is down")

    monkeypatch.setattr(tasks.generate_answers, "delay", broker_down)
    api = ArenaClient()
    response = api.post("/api/arena/battles", {"prompt": "hi"})
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "generation_unavailable"
    assert not Battle.objects.exists()
    page = Client().post("/arena/", {"prompt": "hi", "action": "battle"})
    assert page.status_code == 503 and b"unavailable" in page.content


# --- A battle whose worker died during generation ------------------------------------------


def test_battle_generating_past_the_timeout_fails_visibly(
    make_battle: Callable[..., Battle], settings: Any
) -> None:
    from datetime import timedelta

    from django.utils import timezone

    settings.ARENA_GENERATION_TIMEOUT_S = 60
    old = make_battle(status=Battle.Status.GENERATING)
    Battle.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(seconds=61))
    fresh = make_battle(status=Battle.Status.GENERATING)
    assert services.fail_stale_battles() == [old.pk]
    old.refresh_from_db()
    assert old.status == Battle.Status.FAILED and "timed out" in old.error
    assert Battle.objects.get(pk=fresh.pk).status == Battle.Status.GENERATING
    page = Client().get(f"/arena/{old.pk}/")
    assert b"could not be generated" in page.content
    services.generate_battle_answers(battle_id=old.pk)  # a late redelivery changes nothing
    assert Battle.objects.get(pk=old.pk).status == Battle.Status.FAILED


def test_fail_stale_battles_runs_on_beat_outside_the_models_queue(settings: Any) -> None:
    entry = settings.CELERY_BEAT_SCHEDULE["fail-stale-battles"]
    assert entry["task"] == "arena.fail_stale_battles"
    assert entry["options"]["queue"] == "default"


TIMEOUT_S = 3


def kill(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(20)


@pytest.fixture
def doomed_workers() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for process in started:
        kill(process)


def killed_generation_fails_visibly_once(
    contestants: list[Contestant], workers: list[subprocess.Popen[str]], settings: Any
) -> None:
    from tests.submissions.test_real_worker import clean_broker, wait_for

    clean_broker()
    settings.ARENA_GENERATION_TIMEOUT_S = TIMEOUT_S
    workers.append(start_celery_worker({"ARENA_GENERATION_DELAY_S": "120"}, "doomed-arena"))
    voter = Voter(key=f"anon:{uuid.uuid4()}", ip="198.51.100.10")
    battle = services.create_battle(voter=voter, prompt="Will this ever finish?")
    assert battle.status == Battle.Status.GENERATING

    def received() -> bool:
        return any("arena.generate_answers" in line for line in workers[0].log)  # type: ignore[attr-defined]

    wait_for(received, 60, "the worker to take the generation task")
    kill(workers[0])  # kill -9 in the middle of generation
    time.sleep(TIMEOUT_S + 0.5)
    assert Battle.objects.get(pk=battle.pk).status == Battle.Status.GENERATING
    assert services.fail_stale_battles() == [battle.pk]
    assert services.fail_stale_battles() == []
    body = Client().get(f"/api/arena/battles/{battle.pk}").json()
    assert body["status"] == "failed"
    services.generate_battle_answers(battle_id=battle.pk)  # what a redelivery would run
    assert Battle.objects.get(pk=battle.pk).status == Battle.Status.FAILED


@pytest.mark.real_worker
def test_battle_of_a_killed_worker_fails_visibly_after_the_timeout(
    transactional_db: None,
    contestants: list[Contestant],
    doomed_workers: list[Any],
    settings: Any,
) -> None:
    if os.environ.get("DATABASE_URL"):
        pytest.skip("the embedded-default test runs in the unit tier (SQLite)")
    killed_generation_fails_visibly_once(contestants, doomed_workers, settings)


@pytest.mark.integration
def test_battle_of_a_killed_worker_fails_visibly_with_postgres_and_redis(
    postgres_and_redis: None,
    transactional_db: None,
    contestants: list[Contestant],
    doomed_workers: list[Any],
    settings: Any,
) -> None:
    killed_generation_fails_visibly_once(contestants, doomed_workers, settings)


def reset_producer_pools(app: Any) -> None:
    """Celery builds its connection and producer pools from broker_url on first use."""
    app._pool = None
    app.amqp._producer_pool = None


@pytest.mark.integration
def test_battle_creation_with_redis_unreachable_is_503_and_keeps_no_battle(
    postgres_and_redis: None, transactional_db: None, contestants: list[Contestant]
) -> None:
    """A real outage: the broker URL points at a closed port (the shared Redis keeps running)."""
    from config.celery import app

    previous = app.conf.broker_url, app.conf.broker_transport_options
    app.conf.broker_url = "redis://127.0.0.1:1/0"
    app.conf.broker_transport_options = {"max_retries": 1}
    reset_producer_pools(app)
    try:
        started = time.monotonic()
        response = ArenaClient().post("/api/arena/battles", {"prompt": "is anyone there?"})
        assert time.monotonic() - started < 30
    finally:
        app.conf.broker_url, app.conf.broker_transport_options = previous
        reset_producer_pools(app)
    assert response.status_code == 503, response.content[:300]
    assert response.json()["error"]["code"] == "generation_unavailable"
    assert not Battle.objects.exists()
