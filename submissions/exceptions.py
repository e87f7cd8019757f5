"""Domain errors of submissions; each has a stable code (see the API docs)."""

from __future__ import annotations

from typing import Any

from core.exceptions import DomainError


class SubmissionError(DomainError):
    """A submission refused at validation (400 unless a status is given)."""

    def __init__(
        self, code: str, message: str, *, field: str = "archive", status_code: int = 400
    ) -> None:
        super().__init__(message, code=code, status_code=status_code, fields={field: [message]})


def not_found(kind: str, key: Any) -> DomainError:
    return DomainError(f"no {kind} {key!r}", code=f"unknown_{kind}", status_code=404)
