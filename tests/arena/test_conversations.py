"""Multi-turn battles on tiny models (eager Celery): follow-ups, limits, streaming, records."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from arena import conversations
from arena.models import Battle
from contestants.models import Contestant
from tests.arena.conftest import ArenaClient


@pytest.fixture(scope="session")
def chat_checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from models_zoo.testing import make_tiny_chat_checkpoint, make_tiny_checkpoint

    root = tmp_path_factory.mktemp("arena-chat")
    return {
        "chat": make_tiny_chat_checkpoint(root / "chat"),
        "base": make_tiny_checkpoint(root / "base", arch="dense"),
    }


@pytest.fixture
def chat_contestants(
    db: None, chat_checkpoints: dict[str, Path], settings: Any
) -> list[Contestant]:
    settings.ARENA_MAX_NEW_TOKENS = 10
    settings.ARENA_STREAM_INTERVAL_S = 0.0
    return [
        Contestant.objects.create(
            name=f"tiny-{kind}",
            checkpoint_path=str(path),
            status="active",
            serving={"device": "cpu", "temperature": 0.0 if kind == "chat" else 1.0},
        )
        for kind, path in chat_checkpoints.items()
    ]


def _start(api: ArenaClient, capture: Any, prompt: str = "Name a colour.") -> str:
    with capture(execute=True):
        response = api.post("/api/arena/battles", {"prompt": prompt})
    assert response.status_code == 201
    return str(response.json()["id"])


def _follow_up(api: ArenaClient, capture: Any, battle_id: str, message: str) -> Any:
    with capture(execute=True):
        return api.post(f"/api/arena/battles/{battle_id}/messages", {"message": message})


def test_two_turn_battle_each_model_continues_its_own_conversation(
    api: ArenaClient, chat_contestants: list[Contestant], django_capture_on_commit_callbacks: Any
) -> None:
    capture = django_capture_on_commit_callbacks
    battle_id = _start(api, capture)
    first = api.get(f"/api/arena/battles/{battle_id}").json()
    assert first["status"] == "ready" and first["turn"] == 1 and first["earlier_turns"] == []
    response = _follow_up(api, capture, battle_id, "And another?")
    assert response.status_code == 202
    assert response.json() == {"id": battle_id, "status": "generating", "turn": 2}
    second = api.get(f"/api/arena/battles/{battle_id}").json()
    assert second["status"] == "ready" and second["turn"] == 2
    assert second["prompt"] == "And another?"
    [earlier] = second["earlier_turns"]
    assert earlier["prompt"] == "Name a colour."
    assert earlier["answer_a"]["text"] == first["answer_a"]["text"]
    assert earlier["answer_b"]["text"] == first["answer_b"]["text"]
    battle = Battle.objects.get(pk=battle_id)
    for side in ("a", "b"):
        assert conversations.conversation(battle, side) == [
            {"role": "user", "content": "Name a colour."},
            {"role": "assistant", "content": first[f"answer_{side}"]["text"]},
            {"role": "user", "content": "And another?"},
            {"role": "assistant", "content": second[f"answer_{side}"]["text"]},
        ]
    # Each answer records how it was made: the chat model through its template.
    records = {battle.model_a.name: battle.generation_a, battle.model_b.name: battle.generation_b}
    assert records["tiny-chat"]["template"] == "chat_template"
    assert records["tiny-base"]["template"] == "plain"
    assert all(len(record["prompt_sha256"]) == 64 for record in records.values())
    assert records["tiny-base"]["temperature"] == 1.0 and records["tiny-chat"]["temperature"] == 0
    # Names stay hidden until the vote; the vote after turn 2 ends the battle.
    assert "tiny-" not in api.get(f"/api/arena/battles/{battle_id}").content.decode()
    assert api.post(f"/api/arena/battles/{battle_id}/vote", {"winner": "tie"}).status_code == 201
    closed = _follow_up(api, capture, battle_id, "One more?")
    assert closed.status_code == 409 and closed.json()["error"]["code"] == "battle_closed"


def test_models_whose_context_is_the_answer_length_still_answer(
    api: ArenaClient,
    chat_contestants: list[Contestant],
    settings: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    # make run: the trained demo models have a 128-token context, ARENA_MAX_NEW_TOKENS is 128;
    # battles with them used to fail (ContextTooLong, "room for 1 before its answer").
    from models_zoo.testing import TINY_CONTEXT

    settings.ARENA_MAX_NEW_TOKENS = TINY_CONTEXT
    battle_id = _start(api, django_capture_on_commit_callbacks)
    data = api.get(f"/api/arena/battles/{battle_id}").json()
    assert data["status"] == "ready"
    assert data["answer_a"] is not None and data["answer_b"] is not None
    battle = Battle.objects.get(pk=battle_id)
    for record in (battle.generation_a, battle.generation_b):
        assert record["prompt_tokens"] + record["max_new_tokens"] == TINY_CONTEXT


def test_partial_text_is_visible_while_an_answer_streams(
    api: ArenaClient,
    chat_contestants: list[Contestant],
    django_capture_on_commit_callbacks: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[dict[str, Any]] = []
    write = conversations._PartialWriter.__call__

    def write_then_look(self: conversations._PartialWriter, text: str) -> None:
        write(self, text)  # the real write, then what a voter's poll sees at that moment
        seen.append(api.get(f"/api/arena/battles/{self.battle.pk}").json())

    monkeypatch.setattr(conversations._PartialWriter, "__call__", write_then_look)
    battle_id = _start(api, django_capture_on_commit_callbacks)
    assert seen, "no partial text was written"
    assert all(body["status"] == "generating" and body["vote"] is None for body in seen)
    final = api.get(f"/api/arena/battles/{battle_id}").json()
    partials = [body["partial_a"] for body in seen if body["partial_a"]]
    partials += [body["partial_b"] for body in seen if body["partial_b"]]
    assert partials
    answers = (final["answer_a"]["text"], final["answer_b"]["text"])
    assert all(any(answer.startswith(p.strip()) for answer in answers) for p in partials)
    assert final["partial_a"] is None and final["partial_b"] is None


@pytest.mark.parametrize(
    ("status", "code", "http"),
    [
        (Battle.Status.GENERATING, "battle_generating", 409),
        (Battle.Status.FAILED, "battle_not_ready", 409),
    ],
)
def test_follow_up_refused_unless_ready(
    api: ArenaClient, make_battle: Callable[..., Battle], status: str, code: str, http: int
) -> None:
    battle = make_battle(status=status)
    response = api.post(f"/api/arena/battles/{battle.pk}/messages", {"message": "more?"})
    assert response.status_code == http and response.json()["error"]["code"] == code
    battle.refresh_from_db()
    assert battle.turn == 1 and battle.history_a == []


def test_follow_up_limits(
    api: ArenaClient, make_battle: Callable[..., Battle], settings: Any
) -> None:
    battle = make_battle()
    url = f"/api/arena/battles/{battle.pk}/messages"
    settings.ARENA_MAX_PROMPT_CHARS = 20
    too_long = api.post(url, {"message": "x" * 21})
    assert too_long.status_code == 400
    assert too_long.json()["error"]["code"] == "message_too_long"
    assert "message" in too_long.json()["error"]["fields"]
    settings.ARENA_MAX_PROMPT_CHARS = 4000
    settings.ARENA_MAX_CONVERSATION_CHARS = 60
    budget = api.post(url, {"message": "y" * 30})
    assert budget.status_code == 400 and budget.json()["error"]["code"] == "context_budget"
    settings.ARENA_MAX_TURNS = 1
    turns = api.post(url, {"message": "ok?"})
    assert turns.status_code == 409 and turns.json()["error"]["code"] == "max_turns"
    battle.refresh_from_db()
    assert battle.turn == 1 and battle.status == Battle.Status.READY


def test_follow_up_bad_input(api: ArenaClient, make_battle: Callable[..., Battle]) -> None:
    battle = make_battle()
    url = f"/api/arena/battles/{battle.pk}/messages"
    blank = api.post(url, {"message": "  "})
    assert blank.status_code == 400 and "message" in blank.json()["error"]["fields"]
    missing = api.post(url, {})
    assert missing.status_code == 400 and "message" in missing.json()["error"]["fields"]
    bad_json = api.post(url, raw="{nope")
    assert bad_json.status_code == 400
    not_object = api.post(url, [1, 2])
    assert not_object.status_code == 400
    unknown = api.post(
        "/api/arena/battles/00000000-0000-4000-8000-000000000000/messages", {"message": "x"}
    )
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "battle_not_found"
    assert api.get(url).status_code == 405


def test_follow_up_moves_the_turn_into_the_histories(
    api: ArenaClient,
    make_battle: Callable[..., Battle],
    django_capture_on_commit_callbacks: Any,
) -> None:
    battle = make_battle()
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = api.post(f"/api/arena/battles/{battle.pk}/messages", {"message": "Why?"})
    assert response.status_code == 202 and len(callbacks) == 1  # generation queued at commit
    battle.refresh_from_db()
    assert battle.turn == 2 and battle.status == Battle.Status.GENERATING
    assert battle.history_a == [
        {"role": "user", "content": "Why is the sky blue?"},
        {"role": "assistant", "content": "Rayleigh scattering."},
    ]
    assert battle.history_b[1] == {"role": "assistant", "content": "Because it reflects the sea."}
    assert battle.answer("a") is None and battle.prompt == "Why?"
    vote = api.post(f"/api/arena/battles/{battle.pk}/vote", {"winner": "tie"})
    assert vote.status_code == 409  # no vote on a turn whose answers are not complete


def test_battle_page_shows_earlier_turns_and_follow_up_form(
    make_battle: Callable[..., Battle], client: Any
) -> None:
    battle = make_battle(
        history_a=[{"role": "user", "content": "First q"}, {"role": "assistant", "content": "A1"}],
        history_b=[{"role": "user", "content": "First q"}, {"role": "assistant", "content": "B1"}],
        turn=2,
    )
    page = client.get(f"/arena/{battle.pk}/").content.decode()
    assert "Turn 1" in page and "First q" in page and "A1" in page and "B1" in page
    assert 'id="follow-up-form"' in page
    response = client.post(f"/arena/{battle.pk}/follow-up", {"message": "x" * 5000})
    assert response.status_code == 400


def test_conversations_round_trip_through_the_public_dump(
    make_battle: Callable[..., Battle], voter: Any, tmp_path: Path
) -> None:
    from arena import dumps, services

    battle = make_battle(
        history_a=[{"role": "user", "content": "First q"}, {"role": "assistant", "content": "A1"}],
        history_b=[{"role": "user", "content": "First q"}, {"role": "assistant", "content": "B1"}],
        turn=2,
    )
    services.record_vote(battle_id=battle.pk, winner="model_b", voter=voter)
    [record] = list(dumps.export_records())
    assert record["turn"] == 2
    assert record["conversation_a"] == [
        {"role": "user", "content": "First q"},
        {"role": "assistant", "content": "A1"},
        {"role": "user", "content": "Why is the sky blue?"},
        {"role": "assistant", "content": "Rayleigh scattering."},
    ]
    assert record["conversation_b"][-1] == {
        "role": "assistant",
        "content": "Because it reflects the sea.",
    }
    csv_path = tmp_path / "dump.csv"
    csv_path.write_text("".join(dumps.export_lines("csv")), encoding="utf-8")
    for source in ([dict(record, question_id="json-copy")], None):
        records = source if source is not None else list(dumps.read_records(csv_path))
        if source is None:
            records[0]["question_id"] = "csv-copy"
        report = dumps.import_battles(records, strict=True)
        assert report.imported == 1
        copy = Battle.objects.get(import_key=f"qid:{records[0]['question_id']}")
        assert copy.turn == 2
        assert conversations.conversation(copy, "a") == record["conversation_a"]
        assert conversations.conversation(copy, "b") == record["conversation_b"]


@pytest.mark.parametrize(
    "conversation_b",
    [
        [{"role": "user", "content": "other"}, {"role": "assistant", "content": "x"}],
        [{"role": "robot", "content": "x"}],
        "not json",
        {"role": "user"},
    ],
)
def test_import_refuses_bad_conversations(conversation_b: Any) -> None:
    from arena import dumps

    record = {
        "model_a": "m1",
        "model_b": "m2",
        "winner": "tie",
        "conversation_a": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}],
        "conversation_b": conversation_b,
    }
    with pytest.raises(dumps.InvalidBattleRecord):
        dumps.clean_record(record)


def test_the_vote_outcome_carries_style_features_of_every_turn(
    api: ArenaClient, chat_contestants: list[Contestant], django_capture_on_commit_callbacks: Any
) -> None:
    from evalcore.ratings.style import style_features
    from leaderboard.models import Outcome

    capture = django_capture_on_commit_callbacks
    battle_id = _start(api, capture)
    first = api.get(f"/api/arena/battles/{battle_id}").json()
    _follow_up(api, capture, battle_id, "And another?")
    second = api.get(f"/api/arena/battles/{battle_id}").json()
    assert api.post(f"/api/arena/battles/{battle_id}/vote", {"winner": "tie"}).status_code == 201
    outcome = Outcome.objects.get(pk=Battle.objects.get(pk=battle_id).vote.pk)
    for side in ("a", "b"):
        both = f"{first[f'answer_{side}']['text']}\n\n{second[f'answer_{side}']['text']}"
        assert outcome.style[side] == style_features(both)
