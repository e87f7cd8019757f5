"""JSON request bodies with a nesting limit.

``json.loads`` raises RecursionError (not ValueError) on deep nesting, such as 100,000 ``[``,
and a document a little under the interpreter's limit still breaks any recursive walk of it
later; every JSON body is refused past ``MAX_DEPTH`` levels as a parse error instead.
"""

from __future__ import annotations

import json
from typing import IO, Any

from rest_framework import exceptions
from rest_framework.parsers import JSONParser

MAX_DEPTH = 64


class JSONTooDeep(ValueError):
    pass


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def loads(raw: str | bytes, *, strict: bool = True) -> Any:
    """``json.loads`` that raises ValueError, never RecursionError; ``strict`` refuses NaN."""
    try:
        value = json.loads(raw, parse_constant=_refuse_constant if strict else None)
    except RecursionError:
        raise JSONTooDeep(f"the JSON is nested more than {MAX_DEPTH} levels deep") from None
    check_depth(value)
    return value


def check_depth(value: Any, limit: int = MAX_DEPTH) -> None:
    """Raise JSONTooDeep when ``value`` nests lists and objects more than ``limit`` deep."""
    level: list[Any] = [value]
    for _ in range(limit + 1):
        level = [
            child
            for item in level
            if isinstance(item, dict | list)
            for child in (item.values() if isinstance(item, dict) else item)
        ]
        if not level:
            return
    raise JSONTooDeep(f"the JSON is nested more than {limit} levels deep")


class DepthLimitedJSONParser(JSONParser):
    """DRF's JSON parser, with the nesting limit and a ParseError for any undecodable body."""

    def parse(
        self,
        stream: IO[Any],
        media_type: str | None = None,
        parser_context: dict[str, Any] | None = None,
    ) -> Any:
        encoding = (parser_context or {}).get("encoding") or "utf-8"
        try:
            return loads(stream.read().decode(encoding))
        except ValueError as error:  # also UnicodeDecodeError
            raise exceptions.ParseError(f"JSON parse error - {error}") from None
