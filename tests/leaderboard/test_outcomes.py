"""The outcome log and the one counting rule (leaderboard.services)."""

from __future__ import annotations

import itertools

import pytest
from django.contrib.admin.sites import site
from django.db import transaction
from django.test import RequestFactory
from django.utils import timezone

from contestants.models import Contestant
from evalcore.types import Outcome as Result
from leaderboard import services
from leaderboard.models import Outcome, PairCount

pytestmark = pytest.mark.django_db


def reference_count(
    a: str, b: str, winner: str, category: str
) -> dict[tuple[str, str, str], tuple[int, int, int, int]]:
    """The rule written plainly, as the old code had it: name order, winner mirrored."""
    if b < a:
        a, b = b, a
        winner = {"model_a": "model_b", "model_b": "model_a"}.get(winner, winner)
    cells = tuple(int(winner == w) for w in ("model_a", "model_b", "tie", "tie (bothbad)"))
    boards = ["", category] if category else [""]
    return {(a, b, board): cells for board in boards}  # type: ignore[misc]


@pytest.mark.parametrize(
    ("names", "result", "category"),
    list(itertools.product([("alpha", "beta"), ("beta", "alpha"), ("B", "a")], Result, ["", "x"])),
)
def test_counting_rule_matches_the_plain_reference(
    names: tuple[str, str], result: Result, category: str
) -> None:
    rows = services.counted(
        model_a=names[0], model_b=names[1], names=names, result=result, category=category
    )
    got = {(first, second, board): services.increments(r) for first, second, board, r in rows}
    assert got == reference_count(names[0], names[1], result.winner, category)


def test_mirrored_counts_swap_the_two_win_counters_only() -> None:
    assert services.mirrored_counts((5, 3, 2, 1)) == (3, 5, 2, 1)
    for result in Result:
        assert services.mirrored_counts(services.increments(result)) == services.increments(
            result.mirrored()
        )


def test_record_outcome_appends_the_voters_view_and_counts_in_name_order(
    cast: dict[str, Contestant],
) -> None:
    now = timezone.now()
    with transaction.atomic():
        outcome_id = services.record_outcome(
            model_a=cast["gamma"],
            model_b=cast["alpha"],
            result=Result.A_WINS,
            category="coding",
            style={"a": {"tokens": 120}, "b": {"tokens": 80}},
            tstamp=1_700_000_000.5,
            created_at=now,
        )
    outcome = Outcome.objects.get(pk=outcome_id)
    assert (outcome.model_a, outcome.model_b, outcome.outcome) == (
        cast["gamma"],
        cast["alpha"],
        Result.A_WINS,
    )  # as the voter saw it
    assert (outcome.winner, outcome.category, outcome.tstamp) == ("model_a", "coding", 1.7e9 + 0.5)
    assert outcome.style == {"a": {"tokens": 120}, "b": {"tokens": 80}}
    for board in ("", "coding"):
        row = PairCount.objects.get(model_a=cast["alpha"], model_b=cast["gamma"], category=board)
        assert (row.model_a_wins, row.model_b_wins, row.ties, row.both_bad) == (0, 1, 0, 0)


def test_record_outcome_ids_give_the_log_order(cast: dict[str, Contestant]) -> None:
    now = timezone.now()
    ids = [
        services.record_outcome(
            model_a=cast["alpha"], model_b=cast["beta"], result=result, created_at=now
        )
        for result in (Result.TIE, Result.B_WINS, Result.BOTH_BAD)
    ]
    assert ids == sorted(ids)
    assert list(Outcome.objects.up_to(ids[1]).battles()) == [
        ("alpha", "beta", "tie", None),
        ("alpha", "beta", "model_b", None),
    ]
    assert Outcome.objects.position() == (3, ids[2])
    assert Outcome.objects.on_board("coding").position() == (0, None)


def test_record_outcome_refuses_a_model_against_itself_and_a_bare_winner(
    cast: dict[str, Contestant],
) -> None:
    with pytest.raises(ValueError, match="cannot battle itself"):
        services.record_outcome(
            model_a=cast["alpha"],
            model_b=cast["alpha"],
            result=Result.TIE,
            created_at=timezone.now(),
        )
    with pytest.raises(ValueError, match="evalcore Outcome"):
        services.record_outcome(
            model_a=cast["alpha"],
            model_b=cast["beta"],
            result="tie",
            created_at=timezone.now(),  # type: ignore[arg-type]
        )
    assert not Outcome.objects.exists() and not PairCount.objects.exists()


def test_failing_counts_leave_no_outcome(
    cast: dict[str, Contestant], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(services, "_add_counts", broken)
    with pytest.raises(RuntimeError), transaction.atomic():
        services.record_outcome(
            model_a=cast["alpha"],
            model_b=cast["beta"],
            result=Result.TIE,
            created_at=timezone.now(),
        )
    assert not Outcome.objects.exists()


def test_outcome_log_is_read_only_in_the_admin(db: None) -> None:
    from django.contrib.auth.models import User

    request = RequestFactory().get("/admin/")
    request.user = User(is_staff=True, is_superuser=True)
    admin = site._registry[Outcome]
    assert not admin.has_add_permission(request)
    assert not admin.has_change_permission(request)
    assert not admin.has_delete_permission(request)


def test_the_generated_count_sql_follows_the_rule_table() -> None:
    sql = services.pair_counts_upsert_from("cast_vote")
    for cell in Result:
        mirrored = cell.mirrored().value
        assert f"(result = CASE WHEN flipped THEN {mirrored} ELSE {cell.value} END)::int" in sql
    assert sql.index("model_a_wins") < sql.index("model_b_wins") < sql.index("both_bad")
