"""Reading the arena's vote log (``arena.Vote``) without depending on arena internals.

The arena app owns the model; it is looked up lazily through the app registry and its fields are
found by name, so this module works whatever the arena names its side fields (a vote points at a
battle with ``contestant_a``/``contestant_b``, or carries them itself).

Votes are append-only and never edited, so "every vote with id <= N" is a fixed sequence once all
ids up to N have committed; :func:`settled_position` makes sure they have, and Elo releases read
their battles with :func:`iter_battles` up to that id.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from django.apps import apps
from django.core.exceptions import FieldDoesNotExist
from django.db import connection, models, transaction
from django.db.models import Count, Max

SIDE_PATHS = (
    ("battle__contestant_a", "battle__contestant_b"),
    ("battle__model_a", "battle__model_b"),
    ("contestant_a", "contestant_b"),
    ("model_a", "model_b"),
)
WINNER_PATHS = ("winner", "battle__winner")
CATEGORY_PATHS = ("category", "battle__category")
TSTAMP_PATHS = ("tstamp", "battle__tstamp")
BattleRow = tuple[str, str, str, float | None]


@dataclass(frozen=True)
class VoteFields:
    """ORM paths to a vote's two contestants' names, its winner, (optional) category and time."""

    model_a: str
    model_b: str
    winner: str
    category: str | None
    tstamp: str | None = None


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
    tstamp = next((p for p in TSTAMP_PATHS if _resolve(model, p) is not None), None)
    return VoteFields(f"{sides[0]}__name", f"{sides[1]}__name", winner, category, tstamp)


def log_position(*, up_to: int | None = None) -> tuple[int, int | None]:
    """(number of votes, id of the newest vote) in the vote log, or in its ids <= ``up_to``;
    (0, None) without a log."""
    model = vote_model()
    if model is None:
        return 0, None
    votes = model.objects.all()  # type: ignore[attr-defined]
    if up_to is not None:
        votes = votes.filter(pk__lte=up_to)
    summary = votes.aggregate(count=Count("pk"), last=Max("pk"))
    return int(summary["count"]), summary["last"]


def settled_position() -> tuple[int, int | None]:
    """:func:`log_position`, once every vote with a lower id has committed (or rolled back).

    On PostgreSQL a vote takes its id from a sequence when its INSERT runs, so a slow voting
    transaction can commit id 10 after id 11 is visible; a release reading "ids <= 11" would then
    miss a vote that a later re-run sees. A SHARE lock waits for the voting transactions in
    flight and holds off new ones for the one aggregate query (milliseconds). SQLite runs one
    writer at a time, so its ids already commit in order.
    """
    model = vote_model()
    if model is None:
        return 0, None
    # Outside a transaction (task, command) the lock ends with this block; inside one it lasts
    # until that one commits.
    with transaction.atomic():
        if connection.vendor == "postgresql":
            table = connection.ops.quote_name(model._meta.db_table)
            with connection.cursor() as cursor:
                cursor.execute(f"LOCK TABLE {table} IN SHARE MODE")
        return log_position()


def iter_battles(
    *, category: str, up_to: int | None, chunk_size: int = 20_000
) -> Iterator[BattleRow]:
    """(model_a name, model_b name, winner, tstamp) of each vote with id <= ``up_to`` on the
    ``category`` board ("" = every vote), in id order; nothing when ``up_to`` is None."""
    model = vote_model()
    if model is None or up_to is None:
        return
    paths = vote_fields(model)
    queryset = model.objects.filter(pk__lte=up_to).order_by("pk")  # type: ignore[attr-defined]
    if category:
        if paths.category is None:
            return
        queryset = queryset.filter(**{paths.category: category})
    columns = [paths.model_a, paths.model_b, paths.winner]
    if paths.tstamp:
        columns.append(paths.tstamp)
    for values in queryset.values_list(*columns).iterator(chunk_size=chunk_size):
        # Without a time field every tstamp is None, and the engine keeps the id order.
        yield values[0], values[1], values[2], (values[3] if paths.tstamp else None)


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
