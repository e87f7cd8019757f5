"""Read side: look-ups by URL parameters, raising the domain errors the views and API share."""

from __future__ import annotations

from typing import Any

from contestants.models import Contestant
from leaderboard.exceptions import UnknownModel, UnknownRelease, parse_release_number
from leaderboard.models import PairCount, Release, ReleaseQuerySet, ReleaseRow


def _label(category: str) -> str:
    return f" in category {category!r}" if category else ""


PAYLOADS = ("input_counts", "csv_text", "style_view")


def _queryset(with_payload: str | None) -> ReleaseQuerySet:
    """Releases without their large fields, except the one named in ``with_payload``."""
    if with_payload == "all":
        return Release.objects.all()
    return Release.objects.defer(*(p for p in PAYLOADS if p != with_payload))


def latest_release(category: str = "", *, with_payload: str | None = None) -> Release:
    queryset = _queryset(with_payload)
    release = queryset.latest_for(category)
    if release is None:
        needed = votes_until_first_release(category)
        raise UnknownRelease(
            f"no release has been published yet{_label(category)}; the first release needs "
            f"{needed} more vote{'' if needed == 1 else 's'}",
            fields={"category": category, "votes_needed": needed},
        )
    return release


def contestant_votes(category: str = "") -> dict[int, int]:
    """Votes per contestant id on a board (from the pair counts)."""
    votes: dict[int, int] = {}
    rows = PairCount.objects.filter(category=category).values_list(
        "model_a_id", "model_b_id", "model_a_wins", "model_b_wins", "ties", "both_bad"
    )
    for a, b, *outcomes in rows:
        for contestant in (a, b):
            votes[contestant] = votes.get(contestant, 0) + sum(outcomes)
    return votes


def votes_until_first_release(category: str = "") -> int:
    """Votes still missing before a release can be published: one model must reach min_votes
    (each vote counts for both of its models)."""
    from leaderboard.publishing import default_params

    min_votes = int(default_params().min_votes)
    most = max(contestant_votes(category).values(), default=0)
    return max(0, min_votes - most)


def _percent(fraction: float | None) -> float | None:
    return None if fraction is None else 100 * fraction


def board_before_first_release(category: str = "") -> dict[str, Any]:
    """The active contestants with their few-shot scores and votes, for the empty board."""
    votes = contestant_votes(category)
    contestants = [
        {
            "name": contestant.name,
            "organization": contestant.organization,
            "fewshot": _percent(contestant.fewshot_average),  # type: ignore[attr-defined]
            "fewshot_std": _percent(contestant.fewshot_std),  # type: ignore[attr-defined]
            "parameters": contestant.parameters,
            "votes": votes.get(contestant.pk, 0),
        }
        for contestant in Contestant.objects.active().with_evaluation().order_by("name")
    ]
    return {"contestants": contestants, "votes_needed": votes_until_first_release(category)}


def release_by_number(
    number: str, category: str = "", *, with_payload: str | None = None
) -> Release:
    """``number`` as written in the URL; malformed → 400, unknown → 404."""
    value = parse_release_number(number)
    queryset = _queryset(with_payload)
    release = queryset.for_category(category).filter(number=value).first()
    if release is None:
        raise UnknownRelease(
            f"release {value} does not exist{_label(category)}", fields={"number": number}
        )
    return release


def model_history(name: str, category: str = "") -> list[dict[str, Any]]:
    """The model's row in every release of the category, oldest first."""
    rows = list(
        ReleaseRow.objects.filter(model=name, release__category=category)
        .order_by("release__number")
        .values(
            "release__number",
            "release__created_at",
            "rank",
            "rating",
            "ci_lower",
            "ci_upper",
            "votes",
            "below_min_votes",
        )
    )
    if not rows:
        raise UnknownModel(
            f"model {name!r} is in no release{_label(category)}", fields={"model": name}
        )
    return rows
