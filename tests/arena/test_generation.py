"""Answers from tiny checkpoints through the tasks (eager Celery), and the prompt pool."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from arena import services
from arena.demo import load_demo_prompt_set
from arena.models import Battle, PooledAnswer, Prompt, PromptSet
from arena.voters import Voter
from contestants.models import Contestant
from tests.arena.conftest import ArenaClient


@pytest.fixture(scope="session")
def tiny_checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from models_zoo.testing import make_tiny_checkpoint

    root = tmp_path_factory.mktemp("arena-tiny")
    return {arch: make_tiny_checkpoint(root / arch, arch=arch) for arch in ("dense", "gpt2")}


@pytest.fixture
def tiny_contestants(
    db: None, tiny_checkpoints: dict[str, Path], settings: Any
) -> list[Contestant]:
    settings.ARENA_MAX_NEW_TOKENS = 12
    return [
        Contestant.objects.create(
            name=f"tiny-{arch}",
            checkpoint_path=str(path),
            serving={"device": "cpu"},
            status="active",
        )
        for arch, path in tiny_checkpoints.items()
    ]


def test_live_battle_is_generated_by_the_task(
    api: ArenaClient, tiny_contestants: list[Contestant], django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = api.post("/api/arena/battles", {"prompt": "The with statement"})
    assert response.status_code == 201 and response.json()["status"] == "generating"
    assert len(callbacks) == 1
    body = api.get(f"/api/arena/battles/{response.json()['id']}").json()
    assert body["status"] == "ready"
    assert isinstance(body["answer_a"]["text"], str) and isinstance(body["answer_b"]["text"], str)
    vote = api.post(f"/api/arena/battles/{body['id']}/vote", {"winner": "model_a"})
    assert vote.status_code == 201


def test_generation_failure_marks_the_battle_failed_without_leaking_details(
    api: ArenaClient, contestants: list[Contestant], django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        battle_id = api.post("/api/arena/battles", {"prompt": "hi"}).json()["id"]
    battle = Battle.objects.get(pk=battle_id)
    assert battle.status == Battle.Status.FAILED
    assert "FileNotFoundError" in battle.error
    response = api.get(f"/api/arena/battles/{battle_id}")
    assert response.json()["status"] == "failed"
    assert "nonexistent" not in response.content.decode()
    vote = api.post(f"/api/arena/battles/{battle_id}/vote", {"winner": "tie"})
    assert vote.status_code == 409


def test_redelivered_generation_task_is_a_no_op(
    make_battle: Callable[..., Battle], monkeypatch: pytest.MonkeyPatch
) -> None:
    battle = make_battle(status=Battle.Status.READY)
    import arena.generation

    def must_not_run(*args: object, **kwargs: object) -> list[str]:
        raise AssertionError("generated again")

    monkeypatch.setattr(arena.generation, "generate_answer_records", must_not_run)
    services.generate_battle_answers(battle_id=battle.pk)
    battle.refresh_from_db()
    assert battle.status == Battle.Status.READY


def test_pool_pregeneration_answers_every_prompt_with_every_model(
    tiny_contestants: list[Contestant],
) -> None:
    prompt_set, added = services.load_prompt_set(
        name="mini", records=[{"text": "Why?", "category": "knowledge"}, {"text": "How?"}]
    )
    assert added == 2
    from arena.tasks import pregenerate_pool

    assert pregenerate_pool.delay(prompt_set.pk).get() == 4
    assert PooledAnswer.objects.count() == 4
    assert services.pregenerate_pool(prompt_set_id=prompt_set.pk) == 0  # idempotent


def test_pool_mode_battles_start_instantly_on_pooled_prompts(
    api: ArenaClient, tiny_contestants: list[Contestant], settings: Any
) -> None:
    prompt_set, _ = services.load_prompt_set(
        name="mini", records=[{"text": "Why is the sky blue?", "category": "knowledge"}]
    )
    services.pregenerate_pool(prompt_set_id=prompt_set.pk)
    settings.ARENA_MODE = "pool"
    response = api.post("/api/arena/battles", {"random": True})
    assert response.status_code == 201 and response.json()["status"] == "ready"
    battle = Battle.objects.get(pk=response.json()["id"])
    assert battle.pooled and battle.category == "knowledge"
    typed = api.post("/api/arena/battles", {"prompt": "Something else"})
    assert typed.status_code == 400 and typed.json()["error"]["code"] == "pool_only"
    same = api.post("/api/arena/battles", {"prompt": "Why is the sky blue?"})
    assert same.json()["status"] == "ready"
    vote = api.post(f"/api/arena/battles/{battle.pk}/vote", {"winner": "tie"})
    assert vote.status_code == 201


def test_pool_mode_without_answers_is_a_friendly_503(
    api: ArenaClient, contestants: list[Contestant], settings: Any
) -> None:
    settings.ARENA_MODE = "pool"
    services.load_prompt_set(name="empty", records=[{"text": "Why?"}])
    response = api.post("/api/arena/battles", {"random": True})
    assert response.status_code == 503 and response.json()["error"]["code"] == "pool_empty"


def test_live_mode_random_prompt_reuses_pooled_answers(
    contestants: list[Contestant], voter: Voter
) -> None:
    prompt_set, _ = services.load_prompt_set(name="one", records=[{"text": "Pooled?"}])
    prompt = prompt_set.prompts.get()
    for contestant in contestants:
        PooledAnswer.objects.create(
            prompt=prompt, contestant=contestant, text="answer", max_new_tokens=8
        )
    battle = services.create_battle(voter=voter, random_prompt=True)
    assert battle.status == Battle.Status.READY and battle.prompt == "Pooled?"


def test_demo_prompt_set_loads_once(db: None) -> None:
    count = load_demo_prompt_set()
    assert count >= 40
    assert load_demo_prompt_set() == count
    assert PromptSet.objects.count() == 1 and Prompt.objects.count() == count
    assert Prompt.objects.filter(language="French").exists()
    assert set(Prompt.objects.values_list("category", flat=True)) >= {"coding", "writing"}


def test_load_prompt_set_command(db: None, tmp_path: Path) -> None:
    from io import StringIO

    from django.core.management import call_command

    path = tmp_path / "prompts.jsonl"
    path.write_text('{"text": "One?"}\n\n"Two?"\n')
    out = StringIO()
    call_command("load_prompt_set", str(path), "--name", "cli", "--category", "misc", stdout=out)
    assert "2 new prompts" in out.getvalue()
    assert set(Prompt.objects.values_list("category", flat=True)) == {"misc"}
