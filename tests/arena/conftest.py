"""Arena cast: three active contestants, ready battles, an API client that sends CSRF tokens."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client

from arena.models import Battle
from arena.voters import Voter
from contestants.models import Contestant

NAMES = ("alpha-7b", "beta-13b", "gamma-1b")


@pytest.fixture(autouse=True)
def _fresh_rate_limits(request: pytest.FixtureRequest, settings: Any) -> None:
    """A private locmem cache per test, so rate-limit counters never carry over.

    Never cache.clear(): on the production profile the cache is the Redis database that the
    broker uses too. Integration tests keep the real cache and use voters of their own.
    """
    if request.node.get_closest_marker("integration") is None:
        settings.CACHES = {
            "default": {
                "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
                "LOCATION": f"arena-test-{uuid.uuid4()}",
            }
        }


@pytest.fixture
def contestants(db: None) -> list[Contestant]:
    return [
        Contestant.objects.create(
            name=name,
            organization=f"{name.split('-')[0].title()} Labs",
            license="MIT",
            checkpoint_path=f"/nonexistent/{name}",
            status=Contestant.Status.ACTIVE,
        )
        for name in NAMES
    ]


@pytest.fixture
def voter() -> Voter:
    return Voter(key="anon:test-voter", ip="198.51.100.7")


@pytest.fixture
def make_battle(contestants: list[Contestant]) -> Callable[..., Battle]:
    def make(
        status: str = Battle.Status.READY, a: int = 0, b: int = 1, category: str = "", **extra: Any
    ) -> Battle:
        from django.utils import timezone

        done = timezone.now() if status == Battle.Status.READY else None
        return Battle.objects.create(
            prompt="Why is the sky blue?",
            model_a=contestants[a],
            model_b=contestants[b],
            answer_a="Rayleigh scattering." if done else "",
            answer_b="Because it reflects the sea." if done else "",
            answer_a_at=done,
            answer_b_at=done,
            status=status,
            language="English",
            category=category,
            **extra,
        )

    return make


class ArenaClient:
    """A browser-like API client: keeps cookies and sends the CSRF token like arena.js does."""

    def __init__(self) -> None:
        self.client = Client(enforce_csrf_checks=True)
        self.token = self.client.get("/api/arena/session").json()["csrf_token"]

    def post(self, path: str, body: Any = None, *, raw: str | None = None, **headers: str) -> Any:
        data = raw if raw is not None else json.dumps(body)
        return self.client.post(
            path,
            data,
            content_type="application/json",
            headers={"X-CSRFToken": self.token, **headers},
        )

    def get(self, path: str) -> Any:
        return self.client.get(path)


@pytest.fixture
def api(db: None) -> ArenaClient:
    return ArenaClient()
