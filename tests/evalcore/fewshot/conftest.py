"""Fixtures for the few-shot runner: the real FewGLUE folder and fake models."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import pytest

from evalcore.fewshot.data import DATA_DIR_ENV, DEFAULT_DATA_DIR
from evalcore.fewshot.registry import get_task


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The shared FewGLUE folder; tests that read it skip in a clone without ../shared."""
    import os

    path = Path(os.environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR)
    if not (path / "RTE" / "val.jsonl").is_file():
        pytest.skip(f"FewGLUE data not found at {path}")
    return path


class HashLM:
    """Deterministic pseudo-random scores; counts the requests it receives."""

    name = "hash-lm"
    digest = "sha256:fake"

    def __init__(self) -> None:
        self.requests: list[tuple[str, str]] = []

    def loglikelihood(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        self.requests.extend(pairs)
        return [
            -int(hashlib.sha256((c + "|" + x).encode()).hexdigest()[:8], 16) / 2**32 * 5
            for c, x in pairs
        ]

    def generate(
        self, prompts: Sequence[str], *, max_new_tokens: int, stop: Sequence[str]
    ) -> list[str]:
        return ["" for _ in prompts]


class OracleLM(HashLM):
    """Knows the gold answer of every test and pool doc of the given tasks, for every pattern:
    it scores the gold continuation 0 and every other one -10."""

    name = "oracle-lm"

    def __init__(self, docs_by_task: dict[str, list]) -> None:
        super().__init__()
        self.gold: dict[str, set[str]] = {}
        for task, docs in docs_by_task.items():
            spec = get_task(task)
            for pattern in spec.patterns:
                for doc in docs:
                    answer = pattern.continuation(doc, doc.label)
                    self.gold.setdefault(pattern.prompt(doc), set()).add(answer)

    def loglikelihood(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        self.requests.extend(pairs)
        out = []
        for context, continuation in pairs:
            query = context.rsplit("\n\n", 1)[-1]
            golds = self.gold.get(query) or self.gold.get(context, set())
            out.append(0.0 if continuation in golds else -10.0)
        return out
