"""The arena API: status codes and error codes, CSRF, no names before the vote."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable

import pytest
from django.test import Client

from arena.models import Battle, Vote
from contestants.models import Contestant
from tests.arena.conftest import NAMES, ArenaClient


def error_code(response: object) -> str:
    return response.json()["error"]["code"]  # type: ignore[attr-defined]


def assert_no_names(payload: str) -> None:
    for name in NAMES:
        assert name not in payload


def test_create_battle_returns_201_with_id_and_status(
    api: ArenaClient, contestants: list[Contestant]
) -> None:
    response = api.post("/api/arena/battles", {"prompt": "Why is the sky blue?"})
    assert response.status_code == 201, response.content
    body = response.json()
    assert set(body) == {"id", "status"}
    battle = Battle.objects.get(pk=body["id"])
    assert body["status"] == battle.status
    assert battle.model_a != battle.model_b
    assert battle.language == "English"
    assert_no_names(response.content.decode())


@pytest.mark.parametrize(
    ("body", "field_message"),
    [
        ({"prompt": ""}, "must not be empty"),
        ({"prompt": "   "}, "must not be empty"),
        ({}, "must not be empty"),
        ({"prompt": "x" * 4001}, "4001 characters long; the limit is 4000"),
    ],
)
def test_bad_prompt_is_400_naming_the_problem(
    api: ArenaClient, contestants: list[Contestant], body: dict[str, str], field_message: str
) -> None:
    response = api.post("/api/arena/battles", body)
    assert response.status_code == 400
    assert error_code(response) == "invalid_input"
    assert field_message in response.json()["error"]["message"]
    assert Battle.objects.count() == 0


def test_prompt_limit_is_configurable(
    api: ArenaClient, contestants: list[Contestant], settings: object
) -> None:
    settings.ARENA_MAX_PROMPT_CHARS = 10  # type: ignore[attr-defined]
    assert api.post("/api/arena/battles", {"prompt": "x" * 11}).status_code == 400


@pytest.mark.parametrize("raw", ["{not json", "[1, 2]", '"a string"'])
def test_malformed_or_non_object_body_is_400(api: ArenaClient, raw: str) -> None:
    response = api.post("/api/arena/battles", raw=raw)
    assert response.status_code == 400
    assert error_code(response) in ("malformed_request", "invalid_input")


def test_battle_needs_two_active_contestants(api: ArenaClient, db: None) -> None:
    response = api.post("/api/arena/battles", {"prompt": "hello"})
    assert response.status_code == 503
    assert error_code(response) == "not_enough_contestants"


def test_battle_detail_has_answers_but_no_names_until_the_vote(
    api: ArenaClient, make_battle: Callable[..., Battle]
) -> None:
    battle = make_battle()
    response = api.get(f"/api/arena/battles/{battle.pk}")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ready"
    assert body["answer_a"]["text"] == "Rayleigh scattering."
    assert body["vote"] is None
    assert_no_names(response.content.decode())
    assert response["Cache-Control"] == "no-store"


def test_generating_battle_shows_no_answer_yet(
    api: ArenaClient, make_battle: Callable[..., Battle]
) -> None:
    body = api.get(f"/api/arena/battles/{make_battle(status='generating').pk}").json()
    assert body["status"] == "generating"
    assert body["answer_a"] is None and body["answer_b"] is None


def test_unknown_battle_is_404(api: ArenaClient, db: None) -> None:
    response = api.get(f"/api/arena/battles/{uuid.uuid4()}")
    assert response.status_code == 404
    assert error_code(response) == "battle_not_found"
    assert api.post(f"/api/arena/battles/{uuid.uuid4()}/vote", {"winner": "tie"}).status_code == 404


def test_non_uuid_battle_id_is_404(api: ArenaClient) -> None:
    assert api.get("/api/arena/battles/42").status_code == 404


def test_vote_returns_201_with_the_reveal(
    api: ArenaClient, make_battle: Callable[..., Battle]
) -> None:
    battle = make_battle()
    response = api.post(f"/api/arena/battles/{battle.pk}/vote", {"winner": "model_b"})
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["winner"] == "model_b"
    assert body["reveal"]["model_a"]["name"] == battle.model_a.name
    assert body["reveal"]["model_b"]["name"] == battle.model_b.name
    detail = api.get(f"/api/arena/battles/{battle.pk}").json()
    assert detail["status"] == "voted"
    assert detail["vote"]["reveal"] == body["reveal"]


def test_repeated_identical_vote_gets_the_same_answer(
    api: ArenaClient, make_battle: Callable[..., Battle]
) -> None:
    battle = make_battle()
    first = api.post(f"/api/arena/battles/{battle.pk}/vote", {"winner": "tie"})
    again = api.post(f"/api/arena/battles/{battle.pk}/vote", {"winner": "tie"})
    assert (first.status_code, again.status_code) == (201, 201)
    assert first.json() == again.json()
    assert Vote.objects.count() == 1


def test_different_second_vote_is_409_already_voted(
    api: ArenaClient, make_battle: Callable[..., Battle]
) -> None:
    battle = make_battle()
    api.post(f"/api/arena/battles/{battle.pk}/vote", {"winner": "tie"})
    response = api.post(f"/api/arena/battles/{battle.pk}/vote", {"winner": "model_a"})
    assert response.status_code == 409
    assert error_code(response) == "already_voted"


def test_vote_on_unfinished_battle_is_409_battle_not_ready(
    api: ArenaClient, make_battle: Callable[..., Battle]
) -> None:
    battle = make_battle(status="generating")
    response = api.post(f"/api/arena/battles/{battle.pk}/vote", {"winner": "tie"})
    assert response.status_code == 409
    assert error_code(response) == "battle_not_ready"


@pytest.mark.parametrize("winner", ["left", "", None, 1, ["tie"], "TIE"])
def test_bad_winner_is_400_naming_the_allowed_values(
    api: ArenaClient, make_battle: Callable[..., Battle], winner: object
) -> None:
    battle = make_battle()
    response = api.post(f"/api/arena/battles/{battle.pk}/vote", {"winner": winner})
    assert response.status_code == 400
    assert error_code(response) == "invalid_winner"
    message = response.json()["error"]["message"]
    assert "'model_a', 'model_b', 'tie', 'tie (bothbad)'" in message


def test_missing_winner_is_400(api: ArenaClient, make_battle: Callable[..., Battle]) -> None:
    response = api.post(f"/api/arena/battles/{make_battle().pk}/vote", {})
    assert response.status_code == 400 and error_code(response) == "invalid_winner"


def test_rate_limited_vote_is_429_with_retry_after(
    api: ArenaClient, make_battle: Callable[..., Battle], settings: object
) -> None:
    settings.ARENA_VOTE_RATE_PER_HOUR = 1  # type: ignore[attr-defined]
    first, second = make_battle(), make_battle()
    assert api.post(f"/api/arena/battles/{first.pk}/vote", {"winner": "tie"}).status_code == 201
    response = api.post(f"/api/arena/battles/{second.pk}/vote", {"winner": "tie"})
    assert response.status_code == 429
    assert error_code(response) == "rate_limited"
    assert 1 <= int(response["Retry-After"]) <= 3600


def test_battle_creation_is_rate_limited_too(
    api: ArenaClient, contestants: list[Contestant], settings: object
) -> None:
    settings.ARENA_BATTLE_RATE_PER_HOUR = 1  # type: ignore[attr-defined]
    assert api.post("/api/arena/battles", {"prompt": "one"}).status_code == 201
    response = api.post("/api/arena/battles", {"prompt": "two"})
    assert response.status_code == 429 and response.has_header("Retry-After")


def test_vote_without_csrf_token_is_403(make_battle: Callable[..., Battle], db: None) -> None:
    client = Client(enforce_csrf_checks=True)
    client.get("/api/arena/session")
    battle = make_battle()
    response = client.post(
        f"/api/arena/battles/{battle.pk}/vote",
        json.dumps({"winner": "tie"}),
        content_type="application/json",
    )
    assert response.status_code == 403
    assert "CSRF" in response.json()["error"]["message"]
    assert Vote.objects.count() == 0


def test_token_client_needs_no_csrf_and_votes_as_its_user(
    make_battle: Callable[..., Battle], django_user_model: object
) -> None:
    from rest_framework.authtoken.models import Token

    from arena.voters import Voter

    user = django_user_model.objects.create_user("ada", password="x")  # type: ignore[attr-defined]
    token = Token.objects.create(user=user)
    battle = make_battle()
    response = Client(enforce_csrf_checks=True).post(
        f"/api/arena/battles/{battle.pk}/vote",
        json.dumps({"winner": "model_a"}),
        content_type="application/json",
        headers={"Authorization": f"Token {token.key}"},
    )
    assert response.status_code == 201, response.content
    vote = Vote.objects.get()
    assert vote.user == user
    assert vote.judge == Voter(key=f"user:{user.pk}", ip="").judge


def test_anonymous_voter_keeps_one_identity_through_its_cookie(
    api: ArenaClient, make_battle: Callable[..., Battle]
) -> None:
    for _ in range(2):
        api.post(f"/api/arena/battles/{make_battle().pk}/vote", {"winner": "tie"})
    judges = set(Vote.objects.values_list("judge", flat=True))
    assert len(judges) == 1
    assert api.get("/api/arena/session").json()["judge"] in judges


def test_method_not_allowed_is_405(api: ArenaClient, make_battle: Callable[..., Battle]) -> None:
    response = api.get(f"/api/arena/battles/{make_battle().pk}/vote")
    assert response.status_code == 405
    assert error_code(response) == "method_not_allowed"


# --- The vote endpoint is a plain Django view (arena.api.BattleVoteView): same contract -------


@pytest.mark.parametrize(
    ("raw", "code"),
    [("{not json", "malformed_request"), ("[1, 2]", "invalid_input"), ('"tie"', "invalid_input")],
)
def test_vote_with_malformed_or_non_object_body_is_400(
    api: ArenaClient, make_battle: Callable[..., Battle], raw: str, code: str
) -> None:
    response = api.post(f"/api/arena/battles/{make_battle().pk}/vote", raw=raw)
    assert response.status_code == 400
    assert error_code(response) == code
    assert Vote.objects.count() == 0


def test_vote_with_empty_body_is_400_invalid_winner(
    api: ArenaClient, make_battle: Callable[..., Battle]
) -> None:
    response = api.post(f"/api/arena/battles/{make_battle().pk}/vote", raw="")
    assert response.status_code == 400 and error_code(response) == "invalid_winner"


def test_vote_as_a_form_is_415(api: ArenaClient, make_battle: Callable[..., Battle]) -> None:
    response = api.client.post(
        f"/api/arena/battles/{make_battle().pk}/vote",
        "winner=tie",
        content_type="application/x-www-form-urlencoded",
        headers={"X-CSRFToken": api.token},
    )
    assert response.status_code == 415
    assert error_code(response) == "unsupported_media_type"
    assert Vote.objects.count() == 0


def test_vote_with_a_bad_token_is_401_and_names_the_scheme(
    make_battle: Callable[..., Battle],
) -> None:
    response = Client(enforce_csrf_checks=True).post(
        f"/api/arena/battles/{make_battle().pk}/vote",
        json.dumps({"winner": "tie"}),
        content_type="application/json",
        headers={"Authorization": "Token not-a-real-token"},
    )
    assert response.status_code == 401
    assert error_code(response) == "authentication_failed"
    assert response["WWW-Authenticate"] == "Token"
    assert Vote.objects.count() == 0


def test_logged_in_user_votes_as_the_user_and_needs_csrf(
    make_battle: Callable[..., Battle], django_user_model: object
) -> None:
    from arena.voters import Voter

    user = django_user_model.objects.create_user("grace", password="x")  # type: ignore[attr-defined]
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    path = f"/api/arena/battles/{make_battle().pk}/vote"
    body = json.dumps({"winner": "model_b"})
    refused = client.post(path, body, content_type="application/json")
    assert refused.status_code == 403 and error_code(refused) == "permission_denied"
    token = client.get("/api/arena/session").json()["csrf_token"]
    response = client.post(
        path, body, content_type="application/json", headers={"X-CSRFToken": token}
    )
    assert response.status_code == 201, response.content
    vote = Vote.objects.get()
    assert vote.user == user
    assert vote.judge == Voter(key=f"user:{user.pk}", ip="").judge


def test_vote_405_names_the_allowed_method(
    api: ArenaClient, make_battle: Callable[..., Battle]
) -> None:
    response = api.client.put(f"/api/arena/battles/{make_battle().pk}/vote")
    assert response.status_code == 405
    assert error_code(response) == "method_not_allowed"
    assert response["Allow"] == "POST"


def test_new_anonymous_voter_gets_the_voter_cookie_from_its_first_vote(
    make_battle: Callable[..., Battle], db: None
) -> None:
    client = Client()  # no session call first: the vote itself makes the voter
    path = f"/api/arena/battles/{make_battle().pk}/vote"
    response = client.post(path, json.dumps({"winner": "tie"}), content_type="application/json")
    assert response.status_code == 201
    assert "ladder_voter" in response.cookies
    again = client.post(
        f"/api/arena/battles/{make_battle().pk}/vote",
        json.dumps({"winner": "tie"}),
        content_type="application/json",
    )
    assert again.status_code == 201 and "ladder_voter" not in again.cookies
    assert len(set(Vote.objects.values_list("judge", flat=True))) == 1


def test_openapi_schema_describes_the_vote_endpoint(api: ArenaClient) -> None:
    import yaml

    schema = yaml.safe_load(api.get("/api/schema/").content)
    operation = schema["paths"]["/api/arena/battles/{battle_id}/vote"]["post"]
    assert list(operation["requestBody"]["content"]) == ["application/json"]
    assert operation["responses"]["201"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/VoteResult"
    }
    winner = schema["components"]["schemas"]["Vote"]["properties"]["winner"]["$ref"]
    assert schema["components"]["schemas"][winner.split("/")[-1]]["enum"] == [
        "model_a",
        "model_b",
        "tie",
        "tie (bothbad)",
    ]
