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


# The vote's body, for the schema only: arena.api.BattleVoteView reads it without DRF, and
# record_vote answers any other winner with invalid_winner.
class VoteSerializer(serializers.Serializer[Any]):
    winner = serializers.ChoiceField(choices=WINNERS)


def answer_data(battle: Battle, side: str) -> dict[str, str] | None:
    text = battle.answer(side)
    if text is None:
        return None
    return {"text": text, "html": str(render_markdown(text))}


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


class BattleSerializer(serializers.Serializer[Any]):
    id = serializers.UUIDField()
    status = serializers.ChoiceField(choices=["generating", "ready", "failed", "voted"])
    prompt = serializers.CharField()
    prompt_html = serializers.CharField()
    answer_a = AnswerSerializer(allow_null=True, help_text="null while it is being generated")
    answer_b = AnswerSerializer(allow_null=True, help_text="null while it is being generated")
    created_at = serializers.DateTimeField()
    vote = VoteResultSerializer(allow_null=True, help_text="null until the vote; then the names")


class BattleCreatedSerializer(serializers.Serializer[Any]):
    id = serializers.UUIDField()
    status = serializers.ChoiceField(choices=["generating", "ready"])


class SessionSerializer(serializers.Serializer[Any]):
    csrf_token = serializers.CharField(help_text="Send it as the X-CSRFToken header.")
    judge = serializers.CharField(help_text="Your hashed voter id, as in the export.")
