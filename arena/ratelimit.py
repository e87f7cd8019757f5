"""Fixed-window hourly rate limits in the Django cache (locmem embedded, Redis in production).

A limit is checked before the action and counted only after it succeeded, so a rejected or
repeated request (a double click) does not use up the voter's allowance.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

from django.core.cache import cache

from arena import conf
from arena.exceptions import RateLimited
from arena.voters import Voter

WINDOW_S = 3600


@dataclass(frozen=True)
class Limit:
    scope: str  # e.g. "vote:voter"
    identity: str
    per_hour: int

    def key(self, window: int) -> str:
        digest = hashlib.sha256(self.identity.encode()).hexdigest()[:24]
        return f"arena:rate:{self.scope}:{digest}:{window}"


def limits_for(action: str, voter: Voter) -> list[Limit]:
    """``action`` is "vote" or "battle"; a limit of 0 (or limits switched off) is no limit."""
    if not conf.get("ARENA_RATE_LIMITS_ENABLED"):
        return []
    prefix = f"ARENA_{action.upper()}_RATE"
    limits = [
        Limit(f"{action}:voter", voter.key, int(conf.get(f"{prefix}_PER_HOUR"))),
        Limit(f"{action}:ip", voter.ip, int(conf.get(f"{prefix}_PER_IP_PER_HOUR"))),
    ]
    return [limit for limit in limits if limit.per_hour > 0]


def check(action: str, limits: list[Limit], *, now: float | None = None) -> None:
    """Raise :class:`RateLimited` (429 with ``Retry-After``) when a limit is used up."""
    if not limits:
        return
    now = time.time() if now is None else now
    window = int(now // WINDOW_S)
    counts = cache.get_many([limit.key(window) for limit in limits])
    for limit in limits:
        if counts.get(limit.key(window), 0) >= limit.per_hour:
            retry_after = max(1, int((window + 1) * WINDOW_S - now))
            who = "this address" if limit.scope.endswith(":ip") else "you"
            raise RateLimited(
                f"too many {action}s: {who} may make {limit.per_hour} per hour; "
                f"try again in {retry_after} s",
                retry_after=retry_after,
            )


def count(limits: list[Limit], *, now: float | None = None) -> None:
    now = time.time() if now is None else now
    window = int(now // WINDOW_S)
    for limit in limits:
        key = limit.key(window)
        # add() is a no-op when the key exists; incr() is atomic on Redis and locmem.
        cache.add(key, 0, timeout=WINDOW_S + 60)
        try:
            cache.incr(key)
        except ValueError:  # expired between add() and incr()
            cache.set(key, 1, timeout=WINDOW_S + 60)
