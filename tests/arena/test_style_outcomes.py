"""Style features go from the stored answers into each vote's outcome, and into releases."""

from __future__ import annotations

from collections.abc import Callable

from arena import services
from arena.models import Battle
from arena.voters import Voter
from evalcore.ratings.style import style_features
from leaderboard import publishing
from leaderboard.models import Outcome

LONG = "# Answer\n\n- **one** point\n- two\n\n" + "detail " * 60
SHORT = "Short answer."


def styled_battle(make_battle: Callable[..., Battle], a: int, b: int, long_side: str) -> Battle:
    answers = {"a": LONG, "b": SHORT} if long_side == "a" else {"a": SHORT, "b": LONG}
    battle = make_battle(a=a, b=b)
    Battle.objects.filter(pk=battle.pk).update(
        answer_a=answers["a"],
        answer_b=answers["b"],
        style_a=style_features(answers["a"]),
        style_b=style_features(answers["b"]),
    )
    return battle


def test_a_vote_copies_the_answers_style_into_its_outcome(
    make_battle: Callable[..., Battle],
) -> None:
    battle = styled_battle(make_battle, 0, 1, "a")
    vote, _ = services.record_vote(
        battle_id=battle.pk, winner="model_a", voter=Voter("anon:1", "192.0.2.1")
    )
    outcome = Outcome.objects.get(pk=vote.pk)
    assert outcome.style == {"a": style_features(LONG), "b": style_features(SHORT)}
    plain = make_battle(a=1, b=2)
    other, _ = services.record_vote(
        battle_id=plain.pk, winner="tie", voter=Voter("anon:2", "192.0.2.1")
    )
    assert Outcome.objects.get(pk=other.pk).style is None


def test_a_release_publishes_the_style_controlled_table_from_styled_outcomes(
    make_battle: Callable[..., Battle],
) -> None:
    # The longer answer wins three times in four, whichever model wrote it.
    for number in range(48):
        a, b = number % 3, (number + 1) % 3
        long_side = "a" if number % 2 else "b"
        battle = styled_battle(make_battle, a, b, long_side)
        wins_long = number % 4 != 0
        winner = f"model_{long_side}" if wins_long else f"model_{'b' if long_side == 'a' else 'a'}"
        services.record_vote(
            battle_id=battle.pk, winner=winner, voter=Voter(f"anon:{number}", "192.0.2.1")
        )
    params = publishing.default_params(bootstrap_rounds=20, min_votes=1)
    release = publishing.publish_release(params=params)
    assert release is not None
    style = release.style_view
    assert style["coefficients"]["tokens"] > 0
    assert len([r for r in style["rows"] if not r["below_min_votes"]]) == 3
    assert style["params"]["style_control"] is True
