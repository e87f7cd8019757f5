"""API input shapes, and the battle as voters see it: never a model name before the vote."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from arena.forms import prompt_problem
from arena.models import Battle, Vote
from arena.rendering import render_markdown
from contestants.models import Contestant
from leaderboard.services import WINNERS


class BattleCreateSerializer(serializers.Serializer[Any]):
    prompt = serializers.CharField(required=False, allow_blank=True, trim_whitespace=True)
    random = serializers.BooleanField(required=False, default=False)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        prompt = attrs.get("prompt", "")
        if attrs["random"]:
            attrs["prompt"] = ""
            return attrs
        problem = prompt_problem(prompt)
        if problem:
            hint = " (or send random: true)" if not prompt else ""
            raise serializers.ValidationError({"prompt": [problem + hint]})
        return attrs


class FollowUpSerializer(serializers.Serializer[Any]):
    message = serializers.CharField(trim_whitespace=True, help_text="The next user message.")


# The vote's body, for the schema only: arena.api.BattleVoteView reads it without DRF, and
# record_vote answers any other winner with invalid_winner.
class VoteSerializer(serializers.Serializer[Any]):
    winner = serializers.ChoiceField(choices=WINNERS)


def answer_data(battle: Battle, side: str) -> dict[str, str] | None:
    text = battle.answer(side)
    if text is None:
        return None
    return {"text": text, "html": str(render_markdown(text))}


def partial_data(battle: Battle, side: str) -> str | None:
    """The text streamed so far while ``side`` is generated (plain text, rendered by the page)."""
    return battle.partial(side)


def earlier_turns(battle: Battle) -> list[dict[str, Any]]:
    """The battle's complete earlier turns, for display: prompt and both answers (rendered)."""
    turns = []
    history_a, history_b = battle.history_a, battle.history_b
    for index in range(0, min(len(history_a), len(history_b)) - 1, 2):
        answer_a, answer_b = history_a[index + 1]["content"], history_b[index + 1]["content"]
        turns.append(
            {
                "prompt": history_a[index]["content"],
                "prompt_html": str(render_markdown(history_a[index]["content"])),
                "answer_a": {"text": answer_a, "html": str(render_markdown(answer_a))},
                "answer_b": {"text": answer_b, "html": str(render_markdown(answer_b))},
            }
        )
    return turns


def contestant_data(contestant: Contestant) -> dict[str, str]:
    return {
        "name": contestant.name,
        "organization": contestant.organization,
        "license": contestant.license,
    }


def reveal_data(battle: Battle) -> dict[str, dict[str, str]]:
    return {"model_a": contestant_data(battle.model_a), "model_b": contestant_data(battle.model_b)}


def battle_data(battle: Battle) -> dict[str, Any]:
    """A battle for the voter; the two names appear only once the battle has its vote."""
    return {
        "id": str(battle.pk),
        "status": battle.public_status,
        "prompt": battle.prompt,
        "prompt_html": str(render_markdown(battle.prompt)),
        "answer_a": answer_data(battle, "a"),
        "answer_b": answer_data(battle, "b"),
        "partial_a": partial_data(battle, "a"),
        "partial_b": partial_data(battle, "b"),
        "turn": battle.turn,
        "earlier_turns": earlier_turns(battle),
        "created_at": battle.created_at.isoformat(),
        "vote": vote_data(battle.vote) if battle.is_decided else None,
    }


def vote_data(vote: Vote) -> dict[str, Any]:
    return {
        "battle": str(vote.battle_id),
        "winner": vote.winner,
        "tstamp": vote.tstamp,
        "reveal": reveal_data(vote.battle),
    }


# --- Response shapes, for the OpenAPI schema (the views build the same dicts above) ---------


class AnswerSerializer(serializers.Serializer[Any]):
    text = serializers.CharField()
    html = serializers.CharField(help_text="Markdown rendered and sanitised; never raw HTML.")


class ContestantRevealSerializer(serializers.Serializer[Any]):
    name = serializers.CharField()
    organization = serializers.CharField()
    license = serializers.CharField()


class RevealSerializer(serializers.Serializer[Any]):
    model_a = ContestantRevealSerializer()
    model_b = ContestantRevealSerializer()


class VoteResultSerializer(serializers.Serializer[Any]):
    battle = serializers.UUIDField()
    winner = serializers.ChoiceField(choices=WINNERS)
    tstamp = serializers.FloatField(help_text="Unix seconds.")
    reveal = RevealSerializer()


class EarlierTurnSerializer(serializers.Serializer[Any]):
    prompt = serializers.CharField()
    prompt_html = serializers.CharField()
    answer_a = AnswerSerializer()
    answer_b = AnswerSerializer()


class BattleSerializer(serializers.Serializer[Any]):
    id = serializers.UUIDField()
    status = serializers.ChoiceField(choices=["generating", "ready", "failed", "voted"])
    prompt = serializers.CharField()
    prompt_html = serializers.CharField()
    answer_a = AnswerSerializer(allow_null=True, help_text="null while it is being generated")
    answer_b = AnswerSerializer(allow_null=True, help_text="null while it is being generated")
    partial_a = serializers.CharField(allow_null=True, help_text="text so far while generating")
    partial_b = serializers.CharField(allow_null=True, help_text="text so far while generating")
    turn = serializers.IntegerField(help_text="1 for the first prompt, +1 per follow-up")
    earlier_turns = EarlierTurnSerializer(many=True)
    created_at = serializers.DateTimeField()
    vote = VoteResultSerializer(allow_null=True, help_text="null until the vote; then the names")


class BattleCreatedSerializer(serializers.Serializer[Any]):
    id = serializers.UUIDField()
    status = serializers.ChoiceField(choices=["generating", "ready"])


class FollowUpCreatedSerializer(serializers.Serializer[Any]):
    id = serializers.UUIDField()
    status = serializers.ChoiceField(choices=["generating"])
    turn = serializers.IntegerField()


class SessionSerializer(serializers.Serializer[Any]):
    csrf_token = serializers.CharField(help_text="Send it as the X-CSRFToken header.")
    judge = serializers.CharField(help_text="Your hashed voter id, as in the export.")
