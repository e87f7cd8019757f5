"""record_vote: one vote per battle, written with the pair counts, never lost or doubled."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest
from django.db import connection

from arena import services
from arena.exceptions import (
    AlreadyVoted,
    BattleNotFound,
    BattleNotReady,
    InvalidWinner,
    RateLimited,
)
from arena.models import Battle, Vote
from arena.voters import Voter
from contestants.models import Contestant
from leaderboard.models import PairCount


def counts(a: Contestant, b: Contestant, category: str = "") -> tuple[int, int, int, int]:
    first, second = sorted((a, b), key=lambda c: c.name)
    row = PairCount.objects.get(model_a=first, model_b=second, category=category)
    return row.model_a_wins, row.model_b_wins, row.ties, row.both_bad


def test_vote_is_stored_with_pair_counts_and_closes_the_battle(
    make_battle: Callable[..., Battle], voter: Voter
) -> None:
    battle = make_battle()
    vote, created = services.record_vote(battle_id=battle.pk, winner="model_a", voter=voter)
    assert created
    assert vote.judge == voter.judge and vote.judge.startswith("arena_user_")
    assert vote.tstamp is not None
    battle.refresh_from_db()
    assert battle.is_decided and battle.public_status == "voted"
    assert counts(battle.model_a, battle.model_b) == (1, 0, 0, 0)


def test_vote_is_mirrored_into_name_order(make_battle: Callable[..., Battle], voter: Voter) -> None:
    battle = make_battle(a=2, b=0)  # gamma on the left, alpha on the right
    services.record_vote(battle_id=battle.pk, winner="model_a", voter=voter)
    alpha, gamma = battle.model_b, battle.model_a
    assert counts(alpha, gamma) == (0, 1, 0, 0)


def test_vote_with_category_counts_on_overall_and_category_boards(
    make_battle: Callable[..., Battle], voter: Voter
) -> None:
    battle = make_battle(category="coding")
    services.record_vote(battle_id=battle.pk, winner="tie (bothbad)", voter=voter)
    assert counts(battle.model_a, battle.model_b) == (0, 0, 0, 1)
    assert counts(battle.model_a, battle.model_b, "coding") == (0, 0, 0, 1)


def test_repeated_identical_vote_returns_the_same_vote_and_counts_once(
    make_battle: Callable[..., Battle], voter: Voter
) -> None:
    battle = make_battle()
    first, _ = services.record_vote(battle_id=battle.pk, winner="tie", voter=voter)
    again, created = services.record_vote(battle_id=battle.pk, winner="tie", voter=voter)
    assert not created and again.pk == first.pk
    assert Vote.objects.count() == 1
    assert counts(battle.model_a, battle.model_b) == (0, 0, 1, 0)


def test_different_second_vote_is_already_voted(
    make_battle: Callable[..., Battle], voter: Voter
) -> None:
    battle = make_battle()
    services.record_vote(battle_id=battle.pk, winner="model_a", voter=voter)
    with pytest.raises(AlreadyVoted) as error:
        services.record_vote(battle_id=battle.pk, winner="model_b", voter=voter)
    assert error.value.status_code == 409
    assert counts(battle.model_a, battle.model_b) == (1, 0, 0, 0)


@pytest.mark.parametrize("status", [Battle.Status.GENERATING, Battle.Status.FAILED])
def test_vote_on_unfinished_battle_is_not_ready_and_stores_nothing(
    make_battle: Callable[..., Battle], voter: Voter, status: str
) -> None:
    battle = make_battle(status=status)
    with pytest.raises(BattleNotReady):
        services.record_vote(battle_id=battle.pk, winner="model_a", voter=voter)
    assert Vote.objects.count() == 0 and PairCount.objects.count() == 0


def test_vote_on_unknown_battle_is_not_found(db: None, voter: Voter) -> None:
    with pytest.raises(BattleNotFound):
        services.record_vote(battle_id=uuid.uuid4(), winner="model_a", voter=voter)


def test_bad_winner_names_the_allowed_values(db: None, voter: Voter) -> None:
    with pytest.raises(InvalidWinner) as error:
        services.record_vote(battle_id=uuid.uuid4(), winner="left", voter=voter)
    assert "'model_a', 'model_b', 'tie', 'tie (bothbad)'" in error.value.message


@pytest.fixture
def two_statement_path(db: None) -> None:
    """Tests of the SQLite path (read, then insert + counts in a transaction); PostgreSQL's
    one-statement vote has its own in test_postgres.py."""
    if connection.vendor == "postgresql":
        pytest.skip("PostgreSQL votes in one statement (tests/arena/test_postgres.py)")


def test_failure_in_pair_counts_rolls_back_the_vote(
    make_battle: Callable[..., Battle],
    voter: Voter,
    monkeypatch: pytest.MonkeyPatch,
    two_statement_path: None,
) -> None:
    battle = make_battle()

    def broken(**kwargs: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(services, "record_outcome", broken)
    with pytest.raises(RuntimeError):
        services.record_vote(battle_id=battle.pk, winner="model_a", voter=voter)
    battle.refresh_from_db()
    assert battle.status == Battle.Status.READY
    assert Vote.objects.count() == 0


def test_per_voter_rate_limit_counts_only_new_votes(
    make_battle: Callable[..., Battle], voter: Voter, settings: object
) -> None:
    settings.ARENA_VOTE_RATE_PER_HOUR = 2  # type: ignore[attr-defined]
    battles = [make_battle() for _ in range(3)]
    services.record_vote(battle_id=battles[0].pk, winner="model_a", voter=voter)
    services.record_vote(battle_id=battles[0].pk, winner="model_a", voter=voter)  # a repeat
    services.record_vote(battle_id=battles[1].pk, winner="model_a", voter=voter)
    with pytest.raises(RateLimited) as error:
        services.record_vote(battle_id=battles[2].pk, winner="model_a", voter=voter)
    assert 1 <= error.value.retry_after <= 3600
    other = Voter(key="anon:someone-else", ip="203.0.113.9")
    services.record_vote(battle_id=battles[2].pk, winner="model_a", voter=other)


def test_per_ip_rate_limit_applies_across_voters(
    make_battle: Callable[..., Battle], settings: object
) -> None:
    settings.ARENA_VOTE_RATE_PER_IP_PER_HOUR = 1  # type: ignore[attr-defined]
    first, second = make_battle(), make_battle()
    services.record_vote(battle_id=first.pk, winner="tie", voter=Voter("anon:1", "192.0.2.1"))
    with pytest.raises(RateLimited):
        services.record_vote(battle_id=second.pk, winner="tie", voter=Voter("anon:2", "192.0.2.1"))


def test_rate_limits_can_be_switched_off(
    make_battle: Callable[..., Battle], voter: Voter, settings: object
) -> None:
    settings.ARENA_VOTE_RATE_PER_HOUR = 1  # type: ignore[attr-defined]
    settings.ARENA_RATE_LIMITS_ENABLED = False  # type: ignore[attr-defined]
    for _ in range(3):
        services.record_vote(battle_id=make_battle().pk, winner="tie", voter=voter)
    assert Vote.objects.count() == 3


def test_judge_is_a_stable_keyed_hash_of_the_voter() -> None:
    first = Voter(key="user:1", ip="192.0.2.1")
    assert first.judge == Voter(key="user:1", ip="192.0.2.2").judge
    assert first.judge != Voter(key="user:2", ip="192.0.2.1").judge
    assert "user" not in first.judge.removeprefix("arena_user_")
    assert len(first.judge) == len("arena_user_") + 16


@pytest.mark.django_db(transaction=True)
def test_concurrent_identical_votes_store_one_vote(
    make_battle: Callable[..., Battle], voter: Voter
) -> None:
    import threading

    battle = make_battle()
    results: list[object] = []

    def cast() -> None:
        try:
            results.append(services.record_vote(battle_id=battle.pk, winner="model_b", voter=voter))
        except Exception as error:  # noqa: BLE001 - collected and asserted below
            results.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=cast) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(isinstance(result, tuple) for result in results), results
    assert sum(created for _, created in results) == 1  # type: ignore[misc]
    assert Vote.objects.count() == 1
    assert counts(battle.model_a, battle.model_b) == (0, 1, 0, 0)


def test_vote_that_loses_the_race_to_a_concurrent_vote_answers_like_a_repeat(
    make_battle: Callable[..., Battle],
    voter: Voter,
    monkeypatch: pytest.MonkeyPatch,
    two_statement_path: None,
) -> None:
    battle = make_battle(category="coding")
    first, _ = services.record_vote(battle_id=battle.pk, winner="tie", voter=voter)
    read = services._battle_for_vote

    def read_before_the_other_commit(battle_id: uuid.UUID) -> tuple[Battle, int | None]:
        return read(battle_id)[0], None  # as if the other vote committed after our read

    monkeypatch.setattr(services, "_battle_for_vote", read_before_the_other_commit)
    again, created = services.record_vote(battle_id=battle.pk, winner="tie", voter=voter)
    assert not created and again.pk == first.pk
    with pytest.raises(AlreadyVoted):
        services.record_vote(battle_id=battle.pk, winner="model_a", voter=voter)
    assert Vote.objects.count() == 1
    assert counts(battle.model_a, battle.model_b) == (0, 0, 1, 0)
    assert counts(battle.model_a, battle.model_b, "coding") == (0, 0, 1, 0)


def test_vote_reveals_both_contestants_of_the_battle(
    make_battle: Callable[..., Battle], voter: Voter
) -> None:
    battle = make_battle(a=2, b=1, category="coding")
    vote, _ = services.record_vote(battle_id=battle.pk, winner="model_b", voter=voter)
    assert vote.battle.category == "coding"
    for side, expected in (("model_a", battle.model_a), ("model_b", battle.model_b)):
        shown = getattr(vote.battle, side)
        assert (shown.pk, shown.name, shown.organization, shown.license) == (
            expected.pk,
            expected.name,
            expected.organization,
            expected.license,
        )
