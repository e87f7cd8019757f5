"""On PostgreSQL, concurrent votes are neither lost nor doubled (integration tier)."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection

from arena import services
from arena.models import Battle, Vote
from arena.voters import Voter
from leaderboard.models import PairCount


def run_concurrently(jobs: list[Callable[[], Any]]) -> list[Any]:
    results: list[Any] = [None] * len(jobs)
    barrier = threading.Barrier(len(jobs))

    def run(index: int) -> None:
        barrier.wait()
        try:
            results[index] = jobs[index]()
        except Exception as error:  # noqa: BLE001 - returned and asserted by the test
            results[index] = error
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(jobs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_concurrent_first_votes_on_a_new_pair_all_count(
    postgres_and_redis: None, make_battle: Callable[..., Battle]
) -> None:
    assert connection.vendor == "postgresql"
    battles = [make_battle(category="coding") for _ in range(12)]
    jobs = [
        (lambda b=b, i=i: services.record_vote(battle_id=b.pk, winner="model_a", voter=Voter(f"anon:{i}", "192.0.2.1")))
        for i, b in enumerate(battles)
    ]  # fmt: skip
    results = run_concurrently(jobs)
    assert all(isinstance(r, tuple) and r[1] for r in results), results
    assert Vote.objects.count() == 12
    for category in ("", "coding"):
        row = PairCount.objects.get(category=category)
        assert row.total == 12  # the first-insert race lost no increment


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_concurrent_identical_votes_store_one_vote_on_postgres(
    postgres_and_redis: None, make_battle: Callable[..., Battle]
) -> None:
    battle = make_battle()
    voter = Voter("anon:same", "192.0.2.1")
    jobs = [
        lambda: services.record_vote(battle_id=battle.pk, winner="tie", voter=voter)
        for _ in range(8)
    ]
    results = run_concurrently(jobs)
    assert all(isinstance(r, tuple) for r in results), results
    assert sum(created for _, created in results) == 1
    assert len({vote.pk for vote, _ in results}) == 1
    assert Vote.objects.count() == 1
    assert PairCount.objects.get(category="").ties == 1


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_concurrent_different_votes_keep_exactly_one(
    postgres_and_redis: None, make_battle: Callable[..., Battle]
) -> None:
    from arena.exceptions import AlreadyVoted

    battle = make_battle()
    winners = ["model_a", "model_b", "tie", "tie (bothbad)"] * 2
    jobs = [
        (lambda w=w, i=i: services.record_vote(battle_id=battle.pk, winner=w, voter=Voter(f"anon:{i}", "192.0.2.1")))
        for i, w in enumerate(winners)
    ]  # fmt: skip
    results = run_concurrently(jobs)
    stored = Vote.objects.get()
    for winner, result in zip(winners, results):
        if winner == stored.winner:
            assert isinstance(result, tuple)
        else:
            assert isinstance(result, AlreadyVoted), result
    assert PairCount.objects.get(category="").total == 1


@pytest.mark.integration
@pytest.mark.django_db
def test_rate_limit_counts_in_the_shared_redis(
    postgres_and_redis: None, make_battle: Callable[..., Battle], settings: Any
) -> None:
    import time
    import uuid

    import redis

    from arena import ratelimit
    from arena.exceptions import RateLimited

    settings.ARENA_VOTE_RATE_PER_HOUR = 2
    assert settings.ARENA_RATE_LIMIT_REDIS_URL == os.environ["REDIS_URL"]
    voter = Voter(f"anon:{uuid.uuid4()}", f"198.18.{uuid.uuid4().int % 250}.1")
    first = make_battle()
    services.record_vote(battle_id=first.pk, winner="tie", voter=voter)
    services.record_vote(battle_id=first.pk, winner="tie", voter=voter)  # a repeat: given back
    services.record_vote(battle_id=make_battle().pk, winner="tie", voter=voter)
    with pytest.raises(RateLimited):
        services.record_vote(battle_id=make_battle().pk, winner="tie", voter=voter)
    key = ratelimit.limits_for("vote", voter)[0].key(int(time.time() // ratelimit.WINDOW_S))
    client = redis.Redis.from_url(settings.ARENA_RATE_LIMIT_REDIS_URL)
    assert int(client.get(key) or 0) == 2  # the refused vote gave its place back too
    assert 0 < client.ttl(key) <= ratelimit.COUNTER_TTL_S


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_one_statement_vote_mirrors_into_name_order_on_each_board(
    postgres_and_redis: None, make_battle: Callable[..., Battle]
) -> None:
    overall_only = make_battle(a=2, b=0)  # gamma on the left, alpha on the right
    voter = Voter("anon:pg-boards", "192.0.2.1")
    vote, created = services.record_vote(battle_id=overall_only.pk, winner="model_a", voter=voter)
    assert created and vote.pk == Vote.objects.get().pk
    alpha, gamma = overall_only.model_b, overall_only.model_a
    row = PairCount.objects.get(model_a=alpha, model_b=gamma, category="")
    assert (row.model_a_wins, row.model_b_wins, row.ties, row.both_bad) == (0, 1, 0, 0)
    assert not PairCount.objects.exclude(category="").exists()
    coding = make_battle(a=0, b=2, category="coding")
    services.record_vote(battle_id=coding.pk, winner="tie (bothbad)", voter=voter)
    for category, expected in (("", (0, 1, 0, 1)), ("coding", (0, 0, 0, 1))):
        row = PairCount.objects.get(model_a=alpha, model_b=gamma, category=category)
        assert (row.model_a_wins, row.model_b_wins, row.ties, row.both_bad) == expected


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_failure_in_the_pair_counts_stores_no_vote_on_postgres(
    postgres_and_redis: None, make_battle: Callable[..., Battle]
) -> None:
    from django.db import DataError

    battle = make_battle(category="coding")
    full = 2**31 - 1  # the counters are 32-bit integers: one more vote overflows them
    first, second = sorted((battle.model_a, battle.model_b), key=lambda c: c.name)
    PairCount.objects.create(
        model_a=first,
        model_b=second,
        model_a_wins=full,
        model_b_wins=full,
        ties=full,
        both_bad=full,
    )
    voter = Voter("anon:pg-fail", "192.0.2.1")
    with pytest.raises(DataError):
        services.record_vote(battle_id=battle.pk, winner="model_a", voter=voter)
    assert Vote.objects.count() == 0  # the vote and its counts are one statement
    assert PairCount.objects.get().total == 4 * full
    PairCount.objects.all().delete()
    services.record_vote(battle_id=battle.pk, winner="model_a", voter=voter)
    assert Vote.objects.count() == 1 and PairCount.objects.count() == 2


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_one_statement_vote_and_record_outcome_count_alike(postgres_and_redis: None) -> None:
    """The SQL generated in leaderboard.services and the Python rule (record_outcome) write the
    same outcome rows and the same counts, for names whose order differs between byte order and
    a locale's (upper case, accents, punctuation) and for every outcome, board and side."""
    import random

    from django.db import transaction
    from django.utils import timezone

    from contestants.models import Contestant
    from evalcore.types import Outcome as Result
    from leaderboard.models import Outcome
    from leaderboard.publishing import rebuild_pair_counts
    from leaderboard.services import record_outcome

    names = ["alpha", "Beta", "gamma_1", "gamma-2", "émile", "Zed", "b"]
    cast = [Contestant.objects.create(name=n, checkpoint_path="", status="active") for n in names]
    rng, now = random.Random(5), timezone.now()
    cases = []
    for i in range(60):
        a, b = rng.sample(cast, 2)
        result, category = rng.choice(list(Result)), rng.choice(["", "", "coding", "Émoji"])
        battle = Battle.objects.create(
            model_a=a, model_b=b, status="ready", category=category, answer_a_at=now,
            answer_b_at=now,
        )  # fmt: skip
        services.record_vote(
            battle_id=battle.pk, winner=result.winner, voter=Voter(f"anon:{i}", "192.0.2.3")
        )
        cases.append((a, b, result, category))

    def state() -> tuple[list[tuple[Any, ...]], dict[tuple[Any, ...], tuple[int, ...]]]:
        outcomes = list(
            Outcome.objects.order_by("pk").values_list("model_a", "model_b", "result", "category")
        )
        counts = {
            (row.model_a_id, row.model_b_id, row.category): (
                row.model_a_wins, row.model_b_wins, row.ties, row.both_bad
            )
            for row in PairCount.objects.all()
        }  # fmt: skip
        return outcomes, counts

    sql_outcomes, sql_counts = state()
    assert sql_outcomes == [(a.pk, b.pk, r.value, c) for a, b, r, c in cases]
    assert rebuild_pair_counts() == []  # the Python rule recounts the SQL's counts exactly
    with transaction.atomic():  # the same outcomes again, through the Python path
        for a, b, result, category in cases:
            record_outcome(model_a=a, model_b=b, result=result, category=category, created_at=now)
    outcomes, counts = state()
    assert outcomes == sql_outcomes + sql_outcomes
    assert counts == {key: tuple(2 * n for n in cells) for key, cells in sql_counts.items()}
