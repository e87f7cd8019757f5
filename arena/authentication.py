"""The arena API follows the form's CSRF rule: a cookie-identified voter needs the CSRF token.

DRF's SessionAuthentication checks CSRF only for logged-in users, but an anonymous voter is
identified by a cookie too, so a cross-site form could vote in their name. Token clients send
no cookies and are exempt, as with any token API.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework.authentication import SessionAuthentication, TokenAuthentication
from rest_framework.request import Request


class CsrfSessionAuthentication(SessionAuthentication):
    def authenticate(self, request: Request) -> tuple[Any, None] | None:
        # For safe methods the check is a no-op; for POST it raises PermissionDenied (403).
        self.enforce_csrf(request)
        return super().authenticate(request)


ARENA_AUTHENTICATION = [TokenAuthentication, CsrfSessionAuthentication]


class CsrfSessionScheme(OpenApiAuthenticationExtension):
    target_class = "arena.authentication.CsrfSessionAuthentication"
    name = "arenaVoterCookie"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {"type": "apiKey", "in": "cookie", "name": "ladder_voter"}
