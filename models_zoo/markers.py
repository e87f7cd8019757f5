"""Completion markers: a small JSON file that a finished step writes last.

A directory whose marker is missing, unreadable or records other facts holds an interrupted or
outdated result, which the caller discards and redoes (demo training, GGUF conversion).
Pure Python: the web process may check a marker.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def write_marker(path: Path, facts: Mapping[str, Any]) -> None:
    """Record ``facts`` at ``path`` (call it once the step's result is complete)."""
    path.write_text(json.dumps(dict(facts), sort_keys=True), encoding="utf-8")


def marker_matches(path: Path, facts: Mapping[str, Any]) -> bool:
    """Whether the marker at ``path`` records exactly ``facts``."""
    if not path.is_file():
        return False
    try:
        recorded = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return False
    return bool(recorded == dict(facts))
