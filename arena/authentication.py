"""The arena API follows the form's CSRF rule: a cookie-identified voter needs the CSRF token.

DRF's SessionAuthentication checks CSRF only for logged-in users, but an anonymous voter is
identified by a cookie too, so a cross-site form could vote in their name. Token clients send
no cookies and are exempt, as with any token API.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import exceptions
from rest_framework.authentication import SessionAuthentication, TokenAuthentication
from rest_framework.request import Request

from arena.voters import Voter, voter_for


class CsrfSessionAuthentication(SessionAuthentication):
    def authenticate(self, request: Request) -> tuple[Any, None] | None:
        # For safe methods the check is a no-op; for POST it raises PermissionDenied (403).
        self.enforce_csrf(request)
        return super().authenticate(request)


ARENA_AUTHENTICATION = [TokenAuthentication, CsrfSessionAuthentication]


def authenticate_voter(request: HttpRequest) -> Voter:
    """ARENA_AUTHENTICATION for a view that DRF does not wrap (the vote, see arena.api).

    A valid ``Authorization: Token`` header votes as its user and needs no CSRF token; a bad one
    raises AuthenticationFailed (401); any other request needs the CSRF token
    (PermissionDenied, 403) and votes as the session's user or its anonymous voter cookie.
    """
    if "HTTP_AUTHORIZATION" in request.META:  # else there is no token to look at
        token = TokenAuthentication()
        try:
            # DRF's authenticators read only headers and the session: a Django request will do.
            authenticated = token.authenticate(request)  # type: ignore[arg-type]
        except exceptions.AuthenticationFailed as error:
            error.auth_header = token.authenticate_header(request)  # type: ignore[attr-defined,arg-type]
            raise
        if authenticated is not None:
            return voter_for(request, user=authenticated[0])
    CsrfSessionAuthentication().enforce_csrf(request)  # type: ignore[arg-type]
    return voter_for(request)


class CsrfSessionScheme(OpenApiAuthenticationExtension):
    target_class = "arena.authentication.CsrfSessionAuthentication"
    name = "arenaVoterCookie"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {"type": "apiKey", "in": "cookie", "name": "ladder_voter"}
