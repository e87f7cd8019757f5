"""Arena settings, read with defaults so the app runs before settings.py names them.

Every value can be set in ``config/settings.py`` under the same name; a 0 rate means unlimited.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

DEFAULTS: dict[str, Any] = {
    # "live": typed prompts, answers generated on the models queue; "pool": battles only on
    # prompts whose answers were pre-generated (instant start).
    "ARENA_MODE": "live",
    "ARENA_MAX_PROMPT_CHARS": 4000,
    "ARENA_MAX_NEW_TOKENS": 128,
    "ARENA_TEMPERATURE": 0.7,
    "ARENA_RATE_LIMITS_ENABLED": True,
    # Counters in this Redis (one round trip a vote); None: in the Django cache.
    "ARENA_RATE_LIMIT_REDIS_URL": None,
    "ARENA_VOTE_RATE_PER_HOUR": 60,  # per voter (session cookie or user)
    "ARENA_VOTE_RATE_PER_IP_PER_HOUR": 600,  # several voters can share one address (NAT)
    "ARENA_BATTLE_RATE_PER_HOUR": 120,
    "ARENA_BATTLE_RATE_PER_IP_PER_HOUR": 1200,
}
MODES = ("live", "pool")


def get(name: str) -> Any:
    return getattr(settings, name, DEFAULTS[name])


def mode() -> str:
    value = get("ARENA_MODE")
    if value not in MODES:
        raise ImproperlyConfigured(f"ARENA_MODE must be one of {MODES}, got {value!r}")
    return str(value)
