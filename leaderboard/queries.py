"""Read side: look-ups by URL parameters, raising the domain errors the views and API share."""

from __future__ import annotations

from typing import Any

from leaderboard.exceptions import UnknownModel, UnknownRelease, parse_release_number
from leaderboard.models import Release, ReleaseQuerySet, ReleaseRow


def _label(category: str) -> str:
    return f" in category {category!r}" if category else ""


PAYLOADS = ("input_counts", "csv_text")


def _queryset(with_payload: str | None) -> ReleaseQuerySet:
    """Releases without their large fields, except the one named in ``with_payload``."""
    if with_payload == "all":
        return Release.objects.all()
    return Release.objects.defer(*(p for p in PAYLOADS if p != with_payload))


def latest_release(category: str = "", *, with_payload: str | None = None) -> Release:
    queryset = _queryset(with_payload)
    release = queryset.latest_for(category)
    if release is None:
        raise UnknownRelease(
            f"no release has been published yet{_label(category)}", fields={"category": category}
        )
    return release


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
