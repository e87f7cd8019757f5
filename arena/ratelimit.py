"""Fixed-window hourly rate limits, counted in Redis (production) or the Django cache (embedded).

A request takes its place first: each counter of its limits goes up by one, atomically, and the
request is refused (429 with ``Retry-After``) when a counter passes its limit. A request that is
refused, fails, or changes nothing (a repeated vote, a double click) gives its place back, so
only actions that happened use up the allowance. Counting first cannot overshoot a limit under
concurrent requests, and an allowed vote costs one Redis round trip (INCR and EXPIRE NX of each
counter in one pipeline); the Django cache API would take three round trips per counter.

When Redis does not answer, the limits are not applied (logged): a vote is worth more than the
limit on it.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from typing import Protocol

import redis
from django.conf import settings
from django.core.cache import cache as django_cache

from arena.exceptions import RateLimited
from arena.voters import Voter

logger = logging.getLogger(__name__)

WINDOW_S = 3600
COUNTER_TTL_S = WINDOW_S + 60  # a window's counters outlive it a little, never for good
REDIS_TIMEOUT_S = 0.5


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
    if not settings.ARENA_RATE_LIMITS_ENABLED:
        return []
    prefix = f"ARENA_{action.upper()}_RATE"
    limits = [
        Limit(f"{action}:voter", voter.key, int(getattr(settings, f"{prefix}_PER_HOUR"))),
        Limit(f"{action}:ip", voter.ip, int(getattr(settings, f"{prefix}_PER_IP_PER_HOUR"))),
    ]
    return [limit for limit in limits if limit.per_hour > 0]


class Counters(Protocol):
    def increment(self, keys: list[str]) -> list[int]: ...

    def decrement(self, keys: list[str]) -> None: ...


@dataclass
class Reservation:
    """A request's place in its limits; :meth:`release` gives it back (once)."""

    counters: Counters | None = None
    keys: list[str] = field(default_factory=list)

    def release(self) -> None:
        keys, self.keys = self.keys, []
        if keys and self.counters is not None:
            _decrement(self.counters, keys)


def reserve(action: str, limits: list[Limit], *, now: float | None = None) -> Reservation:
    """Take a place in every limit; raise :class:`RateLimited` when one is used up."""
    if not limits:
        return Reservation()
    now = time.time() if now is None else now
    window = int(now // WINDOW_S)
    keys = [limit.key(window) for limit in limits]
    counters = _counters()
    try:
        counts = counters.increment(keys)
    except redis.RedisError as error:
        logger.error("rate limits not applied: Redis did not answer (%s)", error)
        return Reservation()
    for limit, counted in zip(limits, counts, strict=True):
        if counted > limit.per_hour:
            _decrement(counters, keys)
            retry_after = max(1, int((window + 1) * WINDOW_S - now))
            who = "this address" if limit.scope.endswith(":ip") else "you"
            raise RateLimited(
                f"too many {action}s: {who} may make {limit.per_hour} per hour; "
                f"try again in {retry_after} s",
                retry_after=retry_after,
            )
    return Reservation(counters, keys)


@contextmanager
def reserved(action: str, voter: Voter) -> Iterator[Reservation]:
    """A place in ``voter``'s limits for ``action``, given back if the block raises."""
    reservation = reserve(action, limits_for(action, voter))
    try:
        yield reservation
    except BaseException:
        reservation.release()
        raise


def _decrement(counters: Counters, keys: list[str]) -> None:
    try:
        counters.decrement(keys)
    except redis.RedisError as error:  # the place stays taken until the window ends
        logger.error("rate limits: could not give a place back (%s)", error)


class RedisCounters:
    def __init__(self, url: str) -> None:
        self.client = redis.Redis.from_url(
            url, socket_timeout=REDIS_TIMEOUT_S, socket_connect_timeout=REDIS_TIMEOUT_S
        )

    def increment(self, keys: list[str]) -> list[int]:
        pipeline = self.client.pipeline(transaction=False)
        for key in keys:
            pipeline.incr(key)
            pipeline.expire(key, COUNTER_TTL_S, nx=True)  # the first count starts the clock
        return [int(count) for count in pipeline.execute()[::2]]

    def decrement(self, keys: list[str]) -> None:
        pipeline = self.client.pipeline(transaction=False)
        for key in keys:
            pipeline.decr(key)
        pipeline.execute()


class CacheCounters:
    """The Django cache (locmem in the embedded profile, where one web process runs)."""

    def increment(self, keys: list[str]) -> list[int]:
        counts = []
        for key in keys:
            django_cache.add(key, 0, timeout=COUNTER_TTL_S)  # a no-op when the key exists
            try:
                counts.append(django_cache.incr(key))  # atomic on locmem and Redis
            except ValueError:  # expired between add() and incr()
                django_cache.set(key, 1, timeout=COUNTER_TTL_S)
                counts.append(1)
        return counts

    def decrement(self, keys: list[str]) -> None:
        for key in keys:
            try:
                django_cache.decr(key)
            except ValueError:  # expired meanwhile: nothing to give back
                pass


def _counters() -> Counters:
    url = settings.ARENA_RATE_LIMIT_REDIS_URL
    return _redis_counters(str(url)) if url else CacheCounters()


@cache
def _redis_counters(url: str) -> RedisCounters:
    return RedisCounters(url)  # one connection pool per process (redis-py is fork-aware)
