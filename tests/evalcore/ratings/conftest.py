"""The shared cast of the ratings tests: three models and a handful of battles among them."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture
def battles() -> list[dict[str, Any]]:
    """Nine battles among the cast; every model has won and lost, so the MLE is finite."""
    rows = [
        ("alpaca", "bison", "model_a", "coding"),
        ("bison", "alpaca", "model_b", "coding"),
        ("alpaca", "camel", "model_a", "writing"),
        ("camel", "alpaca", "model_a", "writing"),
        ("bison", "camel", "model_a", "coding"),
        ("camel", "bison", "tie", "coding"),
        ("bison", "camel", "model_b", "writing"),
        ("alpaca", "bison", "tie (bothbad)", "writing"),
        ("bison", "alpaca", "model_a", "coding"),
    ]
    return [
        {
            "model_a": a,
            "model_b": b,
            "winner": w,
            "tstamp": 1_700_000_000.0 + i,
            "judge": f"arena_user_{i % 2}",
            "language": "English" if i % 3 else "German",
            "category": c,
            "turn": 1,
            "anony": i != 4,
        }
        for i, (a, b, w, c) in enumerate(rows)
    ]
