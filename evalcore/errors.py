"""Domain errors raised by ``evalcore``.

Every error is a ``ValueError`` carrying a stable machine-readable ``code`` and a suggested
HTTP status, so the web layer can map it to its single error body without knowing the maths.
Messages name the offending row, field and value in plain words.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar


class EvalcoreError(ValueError):
    """Base class of all ``evalcore`` domain errors."""

    code: ClassVar[str] = "evalcore_error"
    http_status: ClassVar[int] = 400

    def __init__(self, message: str, *, fields: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fields: dict[str, str] = dict(fields or {})

    def to_dict(self) -> dict[str, object]:
        """The error as ``{"code", "message", "fields"}``."""
        return {"code": self.code, "message": self.message, "fields": dict(self.fields)}


class InvalidRecordError(EvalcoreError):
    """A battle or count record is malformed: bad winner, self-battle, empty name, missing field.

    ``row`` is the 0-based position of the record in its input; ``field`` the offending field;
    ``line`` the 1-based line of the file where the record starts, when read from a text file.
    """

    code = "invalid_record"

    def __init__(
        self, message: str, *, row: int | None, field: str | None, line: int | None = None
    ) -> None:
        where = f"row {row}" if row is not None else "input"
        fields = {field: message} if field else {}
        self.detail = message
        at_line = f" (line {line})" if line is not None else ""
        super().__init__(f"{where}: {message}{at_line}", fields=fields)
        self.row = row
        self.field = field
        self.line = line

    def at_line(self, line: int | None) -> InvalidRecordError:
        """The same error, naming the file line."""
        return InvalidRecordError(self.detail, row=self.row, field=self.field, line=line)


class InvalidParameterError(EvalcoreError):
    """A parameter is out of range or of the wrong kind."""

    code = "invalid_parameter"

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"`{field}` {message}", fields={field: message})
        self.field = field


class InvalidInputError(EvalcoreError):
    """An input file cannot be read: unknown format, not a list of records, missing column."""

    code = "invalid_input"


class EmptyInputError(EvalcoreError):
    """Nothing is left to rate (no valid battles, or every one filtered out)."""

    code = "empty_input"
    http_status = 422


class UnknownModelError(EvalcoreError):
    """A model name (e.g. the anchor) does not occur in the data."""

    code = "unknown_model"
    http_status = 404

    def __init__(self, model: str, *, field: str = "model") -> None:
        super().__init__(f"unknown model {model!r} in `{field}`", fields={field: model})
        self.model = model


class DisconnectedGraphError(EvalcoreError):
    """The comparison graph has several components, so their ratings are not comparable."""

    code = "disconnected_graph"
    http_status = 422

    def __init__(self, components: Sequence[Sequence[str]]) -> None:
        described = "; ".join(_describe_group(c) for c in components)
        super().__init__(
            f"the comparison graph has {len(components)} disconnected groups of models "
            f"({described}); ratings across groups are not comparable. Rate each group "
            "separately, or set a ridge prior (`ridge` > 0) to tie them to a common centre"
        )
        self.components = [list(c) for c in components]


class UnboundedRatingError(EvalcoreError):
    """A group of models never lost (or never won) against the rest: no finite MLE exists."""

    code = "unbounded_rating"
    http_status = 422

    def __init__(self, models: Sequence[str], *, direction: str) -> None:
        others = "any other model" if len(models) == 1 else "any model outside that group"
        super().__init__(
            f"{_describe_group(models)} never {direction} against {others}, so the "
            "maximum-likelihood rating is infinite. Set a ridge prior (`ridge` > 0, CLI "
            "--ridge) for finite, shrunk ratings, or collect more battles"
        )
        self.models = list(models)
        self.direction = direction


class EstimationError(EvalcoreError):
    """The data cannot identify a parameter, or the solver did not converge."""

    code = "estimation_failed"
    http_status = 422


class MissingDependencyError(EvalcoreError):
    """An optional dependency needed for this input format is not installed."""

    code = "missing_dependency"
    http_status = 500


def _describe_group(models: Sequence[str], limit: int = 5) -> str:
    shown = ", ".join(repr(m) for m in list(models)[:limit])
    more = f" and {len(models) - limit} more" if len(models) > limit else ""
    noun = "model" if len(models) == 1 else "models"
    return f"{noun} {shown}{more}"
