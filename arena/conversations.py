"""Multi-turn battles: each model continues its own conversation; answers stream as they grow.

A battle's current turn is ``prompt`` + ``answer_a``/``answer_b``; earlier complete turns are in
``history_a``/``history_b`` as ``[{role, content}, ...]``. After both answers of a turn are
complete (status ready, no vote) the voter may send a follow-up: the turn moves into the
histories, ``turn`` grows by one and both answers are generated again. A vote after any
complete turn ends the battle (``record_vote`` needs status ready; a follow-up needs no vote,
and both checks happen in one conditional UPDATE, so the two can never interleave).

Limits, each a DomainError with a stable code: ``ARENA_MAX_TURNS`` (409 ``max_turns``),
``ARENA_MAX_PROMPT_CHARS`` per message (400 ``message_too_long``), ``ARENA_MAX_CONVERSATION_CHARS``
per side, the context budget the web can check without a tokenizer (400 ``context_budget``;
the worker also drops older turns when a model's own context is shorter), a follow-up after the
vote (409 ``battle_closed``) or while answers are generated (409 ``battle_generating``).
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from arena.exceptions import (
    BattleClosed,
    BattleGenerating,
    BattleNotFound,
    BattleNotReady,
    ContextBudget,
    GenerationUnavailable,
    MaxTurns,
    MessageTooLong,
)
from arena.models import Battle
from core.queue import enqueue
from core.text import storable_json, storable_text
from evalcore.ratings.style import style_features

logger = logging.getLogger(__name__)
Message = dict[str, str]


def conversation(battle: Battle, side: str) -> list[Message]:
    """The ``side`` model's whole conversation: history, the current prompt and its answer."""
    messages = [dict(message) for message in getattr(battle, f"history_{side}")]
    messages.append({"role": "user", "content": battle.prompt})
    answer = battle.answer(side)
    if answer is not None:
        messages.append({"role": "assistant", "content": answer})
    return messages


def _characters(messages: list[Message]) -> int:
    return sum(len(message["content"]) for message in messages)


def _check_follow_up(battle: Battle, message: str) -> None:
    limit = int(settings.ARENA_MAX_PROMPT_CHARS)
    if not message.strip() or len(message) > limit:
        raise MessageTooLong(
            f"message must be 1 to {limit} characters, got {len(message)}",
            fields={"message": [f"must be 1 to {limit} characters"]},
        )
    if battle.is_decided:
        raise BattleClosed("this battle has its vote; start a new battle to keep chatting")
    if battle.status == Battle.Status.GENERATING:
        raise BattleGenerating("the answers to the last message are still being generated")
    if battle.status != Battle.Status.READY:
        raise BattleNotReady("the answers of this battle failed to generate; start a new one")
    max_turns = int(settings.ARENA_MAX_TURNS)
    if battle.turn >= max_turns:
        raise MaxTurns(f"a battle has at most {max_turns} turns; please vote now")
    budget = int(settings.ARENA_MAX_CONVERSATION_CHARS)
    longest = max(_characters(conversation(battle, side)) for side in ("a", "b"))
    if longest + len(message) > budget:
        raise ContextBudget(
            f"the conversation would reach {longest + len(message)} characters, over the "
            f"{budget}-character budget per model; please vote now",
            fields={"message": [f"the conversation may hold at most {budget} characters"]},
        )


def follow_up(*, battle_id: uuid.UUID, message: str) -> Battle:
    """Start the next turn of a ready battle with ``message``; answers are queued at commit.

    Raises BattleNotFound, MessageTooLong, BattleClosed, BattleGenerating, BattleNotReady,
    MaxTurns or ContextBudget.
    """

    battle = Battle.objects.for_voter().filter(pk=battle_id).first()
    if battle is None:
        raise BattleNotFound(f"there is no battle with id {battle_id}")
    message = message.strip()
    _check_follow_up(battle, message)
    fields: dict[str, Any] = {
        "history_a": conversation(battle, "a"),
        "history_b": conversation(battle, "b"),
        "prompt": storable_text(message),
        "answer_a": "",
        "answer_b": "",
        "answer_a_at": None,
        "answer_b_at": None,
        "generation_a": {},
        "generation_b": {},
        "style_a": None,
        "style_b": None,
        "status": Battle.Status.GENERATING,
        "turn": battle.turn + 1,
        "pooled": False,
        "ready_at": None,
    }
    with transaction.atomic():
        # Only from the state checked above: ready, this turn, and still without a vote.
        moved = Battle.objects.filter(
            pk=battle.pk, status=Battle.Status.READY, turn=battle.turn, vote__isnull=True
        ).update(**fields)
        if not moved:
            battle.refresh_from_db()
            _check_follow_up(battle, message)  # raises the error of the state it is in now
            raise BattleGenerating("this battle changed meanwhile; reload it")
        for name, value in fields.items():
            setattr(battle, name, value)
        transaction.on_commit(lambda: queue_generation(battle))
    return battle


class _PartialWriter:
    """Writes the streamed text of one side to the battle, at most every few tenths of a second."""

    def __init__(self, battle: Battle, side: str) -> None:
        self.battle, self.side = battle, side
        self.interval = float(settings.ARENA_STREAM_INTERVAL_S)
        self.last = 0.0

    def __call__(self, text: str) -> None:
        now = time.monotonic()
        if now - self.last < self.interval:
            return
        self.last = now
        Battle.objects.filter(
            pk=self.battle.pk, status=Battle.Status.GENERATING, turn=self.battle.turn
        ).update(**{f"answer_{self.side}": storable_text(text)})


def generate_side(battle: Battle, side: str) -> str:
    """Generate (streaming) and store the ``side`` answer of the battle's current turn."""
    from arena.generation import generate_answer

    contestant = getattr(battle, f"model_{side}")
    messages = conversation(battle, side)
    seed = (battle.pk.int + battle.turn) % 2**31
    made = generate_answer(contestant, messages, seed=seed, on_text=_PartialWriter(battle, side))
    text = storable_text(made.text)
    # Style features of everything this side has answered so far (all turns), stored with the
    # answer so the vote can copy them into its outcome without parsing text again.
    answered = [
        m["content"] for m in getattr(battle, f"history_{side}") if m["role"] == "assistant"
    ]
    fields = {
        f"answer_{side}": text,
        f"answer_{side}_at": timezone.now(),
        f"generation_{side}": storable_json(made.record),
        f"style_{side}": style_features("\n\n".join([*answered, text])),
    }
    Battle.objects.filter(pk=battle.pk, turn=battle.turn).update(**fields)
    setattr(battle, f"answer_{side}", text)
    setattr(battle, f"answer_{side}_at", fields[f"answer_{side}_at"])
    return text


def queue_generation(battle: Battle, *, new: bool = False) -> None:
    """Send the generation task; with the broker down, answer 503 (GenerationUnavailable).

    A new battle is removed again; a follow-up turn of an existing one is marked failed, so its
    page says so instead of spinning.
    """
    try:
        enqueue("arena.generate_answers", str(battle.pk))
    except Exception as error:
        # Broker down: nothing would ever generate the answers. The battle goes again and the
        # request answers 503 (this runs on commit, which raises into create_battle's caller
        # outside an outer transaction, and gives the rate-limit place back on the way).
        logger.exception("battle %s: could not queue answer generation", battle.pk)
        if new:
            Battle.objects.filter(pk=battle.pk).delete()
        else:
            Battle.objects.filter(pk=battle.pk).update(
                status=Battle.Status.FAILED, error=f"queueing failed: {error}"[:2000]
            )
        raise GenerationUnavailable(
            "answer generation is unavailable right now (the task queue is down); "
            "please try again shortly"
        ) from error
