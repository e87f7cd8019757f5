"""Domain errors of the leaderboard; the project handler turns them into the one error body."""

from __future__ import annotations

from typing import Any

from rest_framework import status

from core.exceptions import DomainError
from evalcore.errors import EvalcoreError


class UnknownRelease(DomainError):
    code = "unknown_release"
    status_code = status.HTTP_404_NOT_FOUND


class InvalidReleaseNumber(DomainError):
    code = "invalid_release_number"
    status_code = status.HTTP_400_BAD_REQUEST


class UnknownModel(DomainError):
    code = "unknown_model"
    status_code = status.HTTP_404_NOT_FOUND


class NothingToPublish(DomainError):
    code = "no_votes"
    status_code = status.HTTP_422_UNPROCESSABLE_ENTITY


class UnknownPublishJob(DomainError):
    code = "unknown_publish_job"
    status_code = status.HTTP_404_NOT_FOUND


class InvalidView(DomainError):
    code = "invalid_view"
    status_code = status.HTTP_400_BAD_REQUEST


class NoStyleView(DomainError):
    code = "no_style_view"
    status_code = status.HTTP_404_NOT_FOUND


VIEWS = ("default", "style")


def parse_view(text: str | None) -> str:
    """``?view=``: "default" (absent or empty) or "style" (the style-controlled table)."""
    value = (text or "default").strip()
    if value not in VIEWS:
        message = f"must be one of {', '.join(VIEWS)}, got {value[:40]!r}"
        raise InvalidView(f"`view` {message}", fields={"view": message})
    return value


def style_view_of(release: Any) -> dict[str, Any]:
    """The release's style-controlled table, or ``no_style_view``."""
    if not release.style_view:
        raise NoStyleView(
            f"release {release.number} has no style-controlled table: its battles carried no "
            "style features",
            fields={"view": "style"},
        )
    return dict(release.style_view)


def from_engine(error: EvalcoreError) -> DomainError:
    """The engine's error, with its stable code, status and fields, as a domain error."""
    return DomainError(
        error.message, code=error.code, status_code=error.http_status, fields=dict(error.fields)
    )


def parse_release_number(text: str, *, field: str = "number") -> int:
    """A release number from a URL: a positive integer, else :class:`InvalidReleaseNumber`."""
    if not text.isascii() or not text.isdigit() or int(text) < 1 or len(text) > 9:
        raise InvalidReleaseNumber(
            f"`{field}` must be a positive whole number, got {text!r}", fields={field: text}
        )
    return int(text)


class InvalidCategory(DomainError):
    code = "invalid_category"
    status_code = status.HTTP_400_BAD_REQUEST


def parse_category(text: str | None, *, field: str = "category") -> str:
    """A board category from a query string: "" (overall) or a name of at most 50 characters."""
    value = (text or "").strip()
    if len(value) > 50 or any(not c.isprintable() for c in value):
        raise InvalidCategory(
            f"`{field}` must be at most 50 printable characters, got {value[:60]!r}",
            fields={field: value[:60]},
        )
    return value
