"""The arena page: plain forms with CSRF, names hidden until the vote, model output escaped."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest
from django.test import Client

from arena.models import Battle, Vote
from contestants.models import Contestant
from tests.arena.conftest import NAMES

XSS = '<script>alert("pwned")</script><img src=x onerror=alert(1)> **bold**'


def assert_no_names(html: str) -> None:
    for name in NAMES:
        assert name not in html


def test_index_has_the_prompt_form_with_csrf(client: Client, db: None) -> None:
    response = client.get("/arena/")
    assert response.status_code == 200
    html = response.content.decode()
    assert 'name="csrfmiddlewaretoken"' in html and 'id="prompt"' in html
    assert "script-src 'self'" in response["Content-Security-Policy"]


def test_form_creates_a_battle_and_redirects_to_it(
    client: Client, contestants: list[Contestant]
) -> None:
    response = client.post("/arena/", {"prompt": "Tell me a joke", "action": "battle"})
    battle = Battle.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/arena/{battle.pk}/"
    assert battle.prompt == "Tell me a joke"


def test_form_without_csrf_token_is_refused(contestants: list[Contestant]) -> None:
    response = Client(enforce_csrf_checks=True).post("/arena/", {"prompt": "hi"})
    assert response.status_code == 403
    assert Battle.objects.count() == 0


@pytest.mark.parametrize(
    ("prompt", "message"), [("", "must not be empty"), ("y" * 4001, "the limit is 4000")]
)
def test_form_shows_a_friendly_error_for_a_bad_prompt(
    client: Client, contestants: list[Contestant], prompt: str, message: str
) -> None:
    response = client.post("/arena/", {"prompt": prompt, "action": "battle"})
    assert response.status_code == 400
    assert message in response.content.decode()


def test_form_shows_a_friendly_error_without_contestants(client: Client, db: None) -> None:
    response = client.post("/arena/", {"prompt": "hi", "action": "battle"})
    assert response.status_code == 503
    assert "at least two active models" in response.content.decode()


def test_battle_page_hides_names_until_the_vote_then_reveals_them(
    client: Client, make_battle: Callable[..., Battle]
) -> None:
    battle = make_battle()
    html = client.get(f"/arena/{battle.pk}/").content.decode()
    assert "Rayleigh scattering." in html
    assert_no_names(html)
    response = client.post(f"/arena/{battle.pk}/vote", {"winner": "model_a"})
    assert response.status_code == 302
    html = client.get(f"/arena/{battle.pk}/").content.decode()
    assert battle.model_a.name in html and battle.model_b.name in html
    assert "A is better" in html


def test_vote_form_errors_are_friendly(client: Client, make_battle: Callable[..., Battle]) -> None:
    battle = make_battle(status="generating")
    response = client.post(f"/arena/{battle.pk}/vote", {"winner": "model_a"})
    assert response.status_code == 409
    html = response.content.decode()
    assert "a vote needs both" in html
    assert_no_names(html)


def test_unknown_battle_page_is_a_friendly_404(client: Client, db: None) -> None:
    response = client.get(f"/arena/{uuid.uuid4()}/")
    assert response.status_code == 404
    assert "Battle not found" in response.content.decode()


def test_model_output_and_prompt_are_escaped_but_markdown_renders(
    client: Client, make_battle: Callable[..., Battle]
) -> None:
    battle = make_battle()
    Battle.objects.filter(pk=battle.pk).update(prompt=XSS, answer_a=XSS)
    html = client.get(f"/arena/{battle.pk}/").content.decode()
    assert "<script>alert" not in html and "<img" not in html
    assert "&lt;script&gt;" in html
    assert "<strong>bold</strong>" in html
    body = client.get(f"/api/arena/battles/{battle.pk}").json()
    assert "<script" not in body["answer_a"]["html"] and "<img" not in body["answer_a"]["html"]
    assert body["answer_a"]["text"] == XSS  # raw text for API clients, as JSON


def test_page_vote_counts_once_for_a_double_click(
    client: Client, make_battle: Callable[..., Battle]
) -> None:
    battle = make_battle()
    for _ in range(2):
        assert client.post(f"/arena/{battle.pk}/vote", {"winner": "tie"}).status_code == 302
    assert Vote.objects.count() == 1
