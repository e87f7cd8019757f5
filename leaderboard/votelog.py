"""Reading the arena's vote log (``arena.Vote``) without depending on arena internals.

The arena app owns the model; it is looked up lazily through the app registry and its fields are
found by name, so this module works whatever the arena names its side fields (a vote points at a
battle with ``contestant_a``/``contestant_b``, or carries them itself).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from django.apps import apps
from django.core.exceptions import FieldDoesNotExist
from django.db import models
from django.db.models import Count, Max

SIDE_PATHS = (
    ("battle__contestant_a", "battle__contestant_b"),
    ("battle__model_a", "battle__model_b"),
    ("contestant_a", "contestant_b"),
    ("model_a", "model_b"),
)
WINNER_PATHS = ("winner", "battle__winner")
CATEGORY_PATHS = ("category", "battle__category")


@dataclass(frozen=True)
class VoteFields:
    """ORM paths to a vote's two contestants' names, its winner and (optional) category."""

    model_a: str
    model_b: str
    winner: str
    category: str | None


def vote_model() -> type[models.Model] | None:
    try:
        return apps.get_model("arena", "Vote")
    except LookupError:
        return None


def _resolve(model: type[models.Model], path: str) -> models.Field | None:  # type: ignore[type-arg]
    current, field = model, None
    for part in path.split("__"):
        try:
            field = current._meta.get_field(part)
        except FieldDoesNotExist:
            return None
        if field.is_relation and field.related_model is not None:
            current = field.related_model
    return field  # type: ignore[return-value]


def vote_fields(model: type[models.Model]) -> VoteFields:
    """Find the paths on the vote model; raises LookupError naming what is missing."""
    sides = next(
        (
            (a, b)
            for a, b in SIDE_PATHS
            if _resolve(model, a) is not None and _resolve(model, b) is not None
        ),
        None,
    )
    winner = next((p for p in WINNER_PATHS if _resolve(model, p) is not None), None)
    if sides is None or winner is None:
        raise LookupError(
            f"cannot find the contestants and winner of {model.__name__} "
            f"(looked for {SIDE_PATHS} and {WINNER_PATHS})"
        )
    category = next((p for p in CATEGORY_PATHS if _resolve(model, p) is not None), None)
    return VoteFields(f"{sides[0]}__name", f"{sides[1]}__name", winner, category)


def log_position() -> tuple[int, int | None]:
    """(number of votes, id of the newest vote) in the vote log; (0, None) without a log."""
    model = vote_model()
    if model is None:
        return 0, None
    summary = model.objects.aggregate(count=Count("pk"), last=Max("pk"))  # type: ignore[attr-defined]
    return int(summary["count"]), summary["last"]


def iter_votes(chunk_size: int = 20_000) -> Iterator[tuple[str, str, str, str]]:
    """(model_a name, model_b name, winner, category or "") for every vote, in id order."""
    model = vote_model()
    if model is None:
        return
    paths = vote_fields(model)
    columns = [paths.model_a, paths.model_b, paths.winner]
    if paths.category:
        columns.append(paths.category)
    queryset = model.objects.order_by("pk").values_list(*columns)  # type: ignore[attr-defined]
    for values in queryset.iterator(chunk_size=chunk_size):
        category = (values[3] or "") if paths.category else ""
        yield values[0], values[1], values[2], category
