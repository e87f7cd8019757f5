"""The storable-text rule: text from a model or a user is made storable before any write.

PostgreSQL refuses a NUL (U+0000) in a text or jsonb value, and no UTF-8 database (nor
SQLite's driver) can encode a lone surrogate (U+D800-U+DFFF, which ``json.loads`` happily
produces from ``"\\ud800"``). Both are replaced with U+FFFD, the replacement character, so the
text keeps its length and its other characters; every write of model output (battle answers,
pooled answers) and of user text (prompts, results documents) goes through this module.
"""

from __future__ import annotations

import re
from typing import Any

REPLACEMENT = "\ufffd"
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def storable_text(text: str) -> str:
    """``text`` with each NUL and lone surrogate replaced by U+FFFD (the same object if none)."""
    if _UNSTORABLE.search(text) is None:
        return text
    return _UNSTORABLE.sub(REPLACEMENT, text)


def storable_json(value: Any) -> Any:
    """A JSON value with :func:`storable_text` applied to every string, keys included."""
    if isinstance(value, str):
        return storable_text(value)
    if isinstance(value, dict):
        return {storable_text(str(key)): storable_json(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [storable_json(item) for item in value]
    return value


def has_unstorable(text: str) -> bool:
    """Whether ``text`` holds a NUL or a lone surrogate (a path, a lookup key)."""
    return _UNSTORABLE.search(text) is not None
