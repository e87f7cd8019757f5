"""Rate limits: only actions that happened use up an allowance; Redis down lets votes through."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from django.core.cache import cache

from arena import ratelimit, services
from arena.exceptions import BattleNotFound, BattleNotReady, NotEnoughContestants, RateLimited
from arena.models import Battle, Vote
from arena.voters import Voter


def counted(action: str, voter: Voter) -> int:
    key = ratelimit.limits_for(action, voter)[0].key(int(time.time() // ratelimit.WINDOW_S))
    return int(cache.get(key) or 0)


def test_failed_votes_give_their_place_back(
    make_battle: Callable[..., Battle], voter: Voter, settings: Any
) -> None:
    settings.ARENA_VOTE_RATE_PER_HOUR = 1
    with pytest.raises(BattleNotFound):
        services.record_vote(battle_id=uuid.uuid4(), winner="tie", voter=voter)
    with pytest.raises(BattleNotReady):
        services.record_vote(
            battle_id=make_battle(status="generating").pk, winner="tie", voter=voter
        )
    assert counted("vote", voter) == 0
    services.record_vote(battle_id=make_battle().pk, winner="tie", voter=voter)
    assert counted("vote", voter) == 1


def test_refused_vote_does_not_count_against_the_next_window(
    make_battle: Callable[..., Battle], voter: Voter, settings: Any
) -> None:
    settings.ARENA_VOTE_RATE_PER_HOUR = 1
    services.record_vote(battle_id=make_battle().pk, winner="tie", voter=voter)
    for _ in range(3):
        with pytest.raises(RateLimited):
            services.record_vote(battle_id=make_battle().pk, winner="tie", voter=voter)
    assert counted("vote", voter) == 1  # still at the limit, not past it


def test_battle_that_cannot_start_does_not_use_the_allowance(
    voter: Voter, settings: Any, db: None
) -> None:
    settings.ARENA_BATTLE_RATE_PER_HOUR = 1
    for _ in range(2):
        with pytest.raises(NotEnoughContestants):
            services.create_battle(voter=voter, prompt="Why is the sky blue?")
    assert counted("battle", voter) == 0


def test_limits_are_counted_in_redis_when_configured(
    make_battle: Callable[..., Battle], voter: Voter, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[str, list[str]]] = []

    class Recording(ratelimit.CacheCounters):
        def increment(self, keys: list[str]) -> list[int]:
            calls.append(("increment", keys))
            return super().increment(keys)

        def decrement(self, keys: list[str]) -> None:
            calls.append(("decrement", keys))
            super().decrement(keys)

    settings.ARENA_RATE_LIMIT_REDIS_URL = "redis://redis.invalid:6379/0"
    monkeypatch.setattr(ratelimit, "_redis_counters", lambda url: Recording())
    battle = make_battle()
    services.record_vote(battle_id=battle.pk, winner="tie", voter=voter)
    services.record_vote(battle_id=battle.pk, winner="tie", voter=voter)
    assert [name for name, _ in calls] == ["increment", "increment", "decrement"]
    assert len(calls[0][1]) == 2  # the voter's counter and the address's, in one call


def test_votes_go_through_when_redis_does_not_answer(
    make_battle: Callable[..., Battle],
    voter: Voter,
    settings: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    ratelimit._redis_counters.cache_clear()
    settings.ARENA_RATE_LIMIT_REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    try:
        with caplog.at_level(logging.ERROR, logger="arena.ratelimit"):
            vote, created = services.record_vote(
                battle_id=make_battle().pk, winner="model_a", voter=voter
            )
    finally:
        ratelimit._redis_counters.cache_clear()
    assert created and Vote.objects.filter(pk=vote.pk).exists()
    assert "rate limits not applied" in caplog.text
