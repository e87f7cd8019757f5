"""The arena page: plain POST forms with CSRF; arena.js polls the API and votes in place."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from arena import conversations, services
from arena.exceptions import BattleNotFound
from arena.forms import BattleForm, VoteForm
from arena.models import Battle
from arena.serializers import answer_data, earlier_turns, partial_data
from arena.voters import remember_voter, voter_for
from core.exceptions import DomainError

# Only our own script runs; model output is sanitised HTML and could never add a script anyway.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
View = Callable[..., HttpResponse]
WINNER_LABELS = {
    "model_a": "A is better",
    "model_b": "B is better",
    "tie": "Tie",
    "tie (bothbad)": "Both are bad",
}


def arena_page(view: View) -> View:
    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        response = view(request, *args, **kwargs)
        response["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
        remember_voter(request, response)
        return response

    return never_cache(wrapper)


def _error_page(
    request: HttpRequest, template: str, context: dict[str, Any], error: DomainError
) -> HttpResponse:
    response = render(
        request, template, {**context, "error": error.message}, status=error.status_code
    )
    for header, value in error.headers.items():
        response[header] = value
    return response


@arena_page
@require_http_methods(["GET", "POST"])
def index(request: HttpRequest) -> HttpResponse:
    form = BattleForm(request.POST or None)
    context = {
        "form": form,
        "max_chars": settings.ARENA_MAX_PROMPT_CHARS,
        "pool_mode": settings.ARENA_MODE == "pool",
    }
    if request.method != "POST":
        return render(request, "arena/index.html", context)
    if not form.is_valid():
        return render(
            request, "arena/index.html", {**context, "error": form.errors["prompt"][0]}, status=400
        )
    try:
        created = services.create_battle(
            voter=voter_for(request),
            prompt=form.cleaned_data["prompt"],
            random_prompt=form.random_prompt,
        )
    except DomainError as error:
        return _error_page(request, "arena/index.html", context, error)
    return redirect("arena:battle", battle_id=created.pk)


def _battle_context(battle_id: uuid.UUID) -> dict[str, Any]:
    battle = Battle.objects.for_voter().filter(pk=battle_id).first()
    if battle is None:
        raise BattleNotFound(f"there is no battle with id {battle_id}")
    vote = battle.vote if battle.is_decided else None
    return {
        "battle": battle,
        "answer_a": answer_data(battle, "a"),
        "answer_b": answer_data(battle, "b"),
        "partial_a": partial_data(battle, "a"),
        "partial_b": partial_data(battle, "b"),
        "earlier_turns": earlier_turns(battle),
        "can_follow_up": battle.turn < int(settings.ARENA_MAX_TURNS),
        "max_chars": settings.ARENA_MAX_PROMPT_CHARS,
        # Names go into the page only once the battle has its vote.
        "vote": vote,
        "reveal": (battle.model_a, battle.model_b) if vote is not None else None,
        "winner_label": WINNER_LABELS[vote.winner] if vote is not None else "",
    }


@arena_page
def battle(request: HttpRequest, battle_id: uuid.UUID) -> HttpResponse:
    try:
        context = _battle_context(battle_id)
    except BattleNotFound as error:
        return _error_page(request, "arena/missing.html", {}, error)
    return render(request, "arena/battle.html", context)


@arena_page
@require_POST
def vote(request: HttpRequest, battle_id: uuid.UUID) -> HttpResponse:
    form = VoteForm(request.POST)
    form.is_valid()
    try:
        services.record_vote(
            battle_id=battle_id,
            winner=form.cleaned_data.get("winner", ""),
            voter=voter_for(request),
        )
    except BattleNotFound as error:
        return _error_page(request, "arena/missing.html", {}, error)
    except DomainError as error:
        return _error_page(request, "arena/battle.html", _battle_context(battle_id), error)
    return redirect("arena:battle", battle_id=battle_id)


@arena_page
@require_POST
def follow_up(request: HttpRequest, battle_id: uuid.UUID) -> HttpResponse:
    """The follow-up form without JavaScript (arena.js posts to the API instead)."""
    try:
        conversations.follow_up(battle_id=battle_id, message=request.POST.get("message", ""))
    except BattleNotFound as error:
        return _error_page(request, "arena/missing.html", {}, error)
    except DomainError as error:
        return _error_page(request, "arena/battle.html", _battle_context(battle_id), error)
    return redirect("arena:battle", battle_id=battle_id)
