"""Who votes: the logged-in user, else an anonymous signed cookie; plus the client address.

The judge written to a vote is a keyed hash of the voter key, so exports never reveal user ids
or cookies, and the same voter always gets the same judge.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponseBase

VOTER_COOKIE = "ladder_voter"
VOTER_COOKIE_SALT = "arena.voter"
VOTER_COOKIE_MAX_AGE = 365 * 24 * 3600
_NEW_TOKEN_ATTRIBUTE = "_arena_new_voter_token"


@dataclass(frozen=True)
class Voter:
    key: str  # "user:<pk>" or "anon:<token>"; never leaves the server
    ip: str
    user_id: int | None = None

    @property
    def judge(self) -> str:
        digest = hmac.new(
            settings.SECRET_KEY.encode(), f"arena-judge:{self.key}".encode(), hashlib.sha256
        ).hexdigest()
        return f"arena_user_{digest[:16]}"


def voter_for(request: HttpRequest, user: Any = None) -> Voter:
    """The voter of a request; a new anonymous voter gets a cookie via :func:`remember_voter`.

    ``user`` is the user authenticated otherwise (an API token); by default the request's.
    """
    ip = str(request.META.get("REMOTE_ADDR") or "unknown")
    if user is None:
        user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        return Voter(key=f"user:{user.pk}", ip=ip, user_id=user.pk)
    token = request.get_signed_cookie(VOTER_COOKIE, default=None, salt=VOTER_COOKIE_SALT)
    if not token:
        token = getattr(request, _NEW_TOKEN_ATTRIBUTE, None) or secrets.token_urlsafe(18)
        setattr(request, _NEW_TOKEN_ATTRIBUTE, token)
    return Voter(key=f"anon:{token}", ip=ip)


def remember_voter(request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
    """Set the anonymous voter cookie when :func:`voter_for` made a new voter."""
    token = getattr(request, _NEW_TOKEN_ATTRIBUTE, None)
    if token:
        response.set_signed_cookie(
            VOTER_COOKIE,
            token,
            salt=VOTER_COOKIE_SALT,
            max_age=VOTER_COOKIE_MAX_AGE,
            httponly=True,
            samesite="Lax",
            secure=request.is_secure(),
        )
    return response
