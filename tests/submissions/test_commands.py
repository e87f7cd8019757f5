from __future__ import annotations

import io

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from rest_framework.authtoken.models import Token

pytestmark = pytest.mark.django_db


def create_token(*args: str) -> str:
    out = io.StringIO()
    call_command("create_api_token", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue().strip()


def test_create_api_token_creates_the_user_and_prints_a_stable_token() -> None:
    key = create_token("newteam")
    assert Token.objects.get(user__username="newteam").key == key
    assert not User.objects.get(username="newteam").has_usable_password()
    assert create_token("newteam") == key


def test_rotate_replaces_the_token() -> None:
    key = create_token("team2")
    assert create_token("team2", "--rotate") != key
