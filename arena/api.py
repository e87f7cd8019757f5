"""The arena JSON API (DRF): create a battle, poll it, vote, export the votes."""

from __future__ import annotations

import uuid

from django.http import HttpRequest, StreamingHttpResponse
from django.middleware.csrf import get_token
from django.urls import reverse
from django.views.decorators.http import require_GET
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.decorators import api_view, authentication_classes
from rest_framework.request import Request
from rest_framework.response import Response

from arena import dumps, services
from arena.authentication import ARENA_AUTHENTICATION
from arena.exceptions import BattleNotFound
from arena.models import Battle
from arena.serializers import (
    BattleCreatedSerializer,
    BattleCreateSerializer,
    BattleSerializer,
    SessionSerializer,
    VoteResultSerializer,
    VoteSerializer,
    battle_data,
    vote_data,
)
from arena.voters import remember_voter, voter_for


@extend_schema(responses=SessionSerializer)
@api_view(["GET"])
@authentication_classes(ARENA_AUTHENTICATION)
def session(request: Request) -> Response:
    """Sets the CSRF and voter cookies for API clients; send the token as ``X-CSRFToken``."""
    voter = voter_for(request)
    response = Response({"csrf_token": get_token(request), "judge": voter.judge})
    remember_voter(request, response)
    return response


@extend_schema(request=BattleCreateSerializer, responses={201: BattleCreatedSerializer})
@api_view(["POST"])
@authentication_classes(ARENA_AUTHENTICATION)
def battle_create(request: Request) -> Response:
    serializer = BattleCreateSerializer(data=request.data)
    serializer.is_valid(raise_exception=True)
    battle = services.create_battle(
        voter=voter_for(request),
        prompt=serializer.validated_data["prompt"],
        random_prompt=serializer.validated_data["random"],
    )
    location = reverse("arena-api:battle-detail", args=[battle.pk])
    response = Response(
        {"id": str(battle.pk), "status": battle.status},
        status=status.HTTP_201_CREATED,
        headers={"Location": location},
    )
    remember_voter(request, response)
    return response


@extend_schema(responses=BattleSerializer)
@api_view(["GET"])
@authentication_classes(ARENA_AUTHENTICATION)
def battle_detail(request: Request, battle_id: uuid.UUID) -> Response:
    battle = Battle.objects.for_voter().filter(pk=battle_id).first()
    if battle is None:
        raise BattleNotFound(f"there is no battle with id {battle_id}")
    return Response(battle_data(battle), headers={"Cache-Control": "no-store"})


@extend_schema(request=VoteSerializer, responses={201: VoteResultSerializer})
@api_view(["POST"])
@authentication_classes(ARENA_AUTHENTICATION)
def battle_vote(request: Request, battle_id: uuid.UUID) -> Response:
    serializer = VoteSerializer(data=request.data)
    serializer.is_valid(raise_exception=True)
    vote, _ = services.record_vote(
        battle_id=battle_id, winner=serializer.validated_data["winner"], voter=voter_for(request)
    )
    # A repeated identical vote (double click, retry) gets the very same answer.
    response = Response(vote_data(vote), status=status.HTTP_201_CREATED)
    remember_voter(request, response)
    return response


@require_GET
def export(request: HttpRequest, fmt: str) -> StreamingHttpResponse:
    """Every vote in the public arena battle schema, in vote order (streamed)."""
    content_type = {"jsonl": "application/x-ndjson", "csv": "text/csv"}[fmt]
    response = StreamingHttpResponse(dumps.export_lines(fmt), content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="arena-battles.{fmt}"'
    return response
