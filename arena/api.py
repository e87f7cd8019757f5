"""The arena JSON API (DRF): create a battle, poll it, vote, export the votes."""

from __future__ import annotations

import uuid
from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.http.request import RawPostDataException
from django.middleware.csrf import get_token
from django.urls import reverse
from django.views.decorators.http import require_GET
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, status
from rest_framework.decorators import api_view, authentication_classes
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from arena import conversations, dumps, services
from arena.authentication import ARENA_AUTHENTICATION, authenticate_voter
from arena.exceptions import BattleNotFound
from arena.models import Battle
from arena.serializers import (
    BattleCreatedSerializer,
    BattleCreateSerializer,
    BattleSerializer,
    FollowUpCreatedSerializer,
    FollowUpSerializer,
    SessionSerializer,
    VoteResultSerializer,
    VoteSerializer,
    battle_data,
    vote_data,
)
from arena.voters import remember_voter, voter_for
from core import jsonbody
from core.exceptions import DomainError, RequestTooLarge, error_response
from core.schema import errors


@extend_schema(responses=SessionSerializer)
@api_view(["GET"])
@authentication_classes(ARENA_AUTHENTICATION)
def session(request: Request) -> Response:
    """Sets the CSRF and voter cookies for API clients; send the token as ``X-CSRFToken``."""
    voter = voter_for(request)
    response = Response({"csrf_token": get_token(request), "judge": voter.judge})
    remember_voter(request, response)
    return response


@extend_schema(
    request=BattleCreateSerializer,
    responses={201: BattleCreatedSerializer, **errors(400, 401, 403, 415, 429, 503)},
)
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


@extend_schema(responses={200: BattleSerializer, **errors(404)})
@api_view(["GET"])
@authentication_classes(ARENA_AUTHENTICATION)
def battle_detail(request: Request, battle_id: uuid.UUID) -> Response:
    battle = Battle.objects.for_voter().filter(pk=battle_id).first()
    if battle is None:
        raise BattleNotFound(f"there is no battle with id {battle_id}")
    return Response(battle_data(battle), headers={"Cache-Control": "no-store"})


@extend_schema(
    request=FollowUpSerializer,
    responses={202: FollowUpCreatedSerializer, **errors(400, 401, 403, 404, 409, 429, 503)},
    description=(
        "A follow-up message once both answers of the turn are complete and before the vote; "
        "each model continues its own conversation. 409 battle_generating, battle_closed, "
        "max_turns; 400 message_too_long, context_budget."
    ),
)
@api_view(["POST"])
@authentication_classes(ARENA_AUTHENTICATION)
def battle_follow_up(request: Request, battle_id: uuid.UUID) -> Response:
    serializer = FollowUpSerializer(data=request.data)
    serializer.is_valid(raise_exception=True)
    battle = conversations.follow_up(
        battle_id=battle_id, message=serializer.validated_data["message"]
    )
    body = {"id": str(battle.pk), "status": battle.status, "turn": battle.turn}
    return Response(body, status=status.HTTP_202_ACCEPTED)


class BattleVoteView(APIView):
    """``POST /api/arena/battles/{id}/vote``, the arena's hot path.

    DRF describes this view (the OpenAPI schema, authentication, parser and renderer below) but
    does not serve it: ``dispatch`` skips DRF's request wrapper, content negotiation and
    serializer, which took a fifth of the web CPU of a vote (bench/arena_votes.py), and applies
    the same rules with DRF's own authenticators and the project's error contract
    (tests/arena/test_api.py holds it to the other endpoints' behaviour).
    """

    authentication_classes = ARENA_AUTHENTICATION
    parser_classes = [jsonbody.DepthLimitedJSONParser]
    renderer_classes = [JSONRenderer]

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:  # type: ignore[override]
        try:
            if request.method != "POST":
                raise exceptions.MethodNotAllowed(str(request.method))
            return self.post(request, **kwargs)
        except (DomainError, exceptions.APIException) as error:
            response = error_response(error)
            if isinstance(error, exceptions.MethodNotAllowed):
                response["Allow"] = "POST"
            return response

    @extend_schema(
        request=VoteSerializer,
        responses={201: VoteResultSerializer, **errors(400, 401, 403, 404, 409, 413, 415, 429)},
        description=(
            "The one vote of a ready battle; the answer reveals both models. Repeating the "
            "stored vote returns the same answer; a different one is 409 already_voted."
        ),
    )
    def post(self, request: HttpRequest, battle_id: uuid.UUID) -> HttpResponse:
        voter = authenticate_voter(request)
        vote, _ = services.record_vote(battle_id=battle_id, winner=_winner_in(request), voter=voter)
        # A repeated identical vote (double click, retry) gets the very same answer.
        response = JsonResponse(vote_data(vote), status=201)
        remember_voter(request, response)
        return response


def _winner_in(request: HttpRequest) -> Any:
    """The ``winner`` of a JSON object body (record_vote checks the value); None without one."""
    try:
        body = request.body
    except RequestDataTooBig:
        raise RequestTooLarge() from None
    except RawPostDataException:  # a form body the CSRF check read first: not JSON anyway
        raise exceptions.UnsupportedMediaType(str(request.content_type)) from None
    if not body:
        return None
    if request.content_type != "application/json":
        raise exceptions.UnsupportedMediaType(request.content_type)
    try:
        data = jsonbody.loads(body)
    except ValueError as error:  # also UnicodeDecodeError
        raise exceptions.ParseError(f"JSON parse error - {error}") from None
    if not isinstance(data, dict):
        raise exceptions.ValidationError(
            {"non_field_errors": [f"expected a JSON object, got {type(data).__name__}"]}
        )
    return data.get("winner")


@require_GET
def export(request: HttpRequest, fmt: str) -> StreamingHttpResponse:
    """Every vote in the public arena battle schema, in vote order (streamed)."""
    content_type = {"jsonl": "application/x-ndjson", "csv": "text/csv"}[fmt]
    response = StreamingHttpResponse(dumps.export_lines(fmt), content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="arena-battles.{fmt}"'
    return response
