"""Resumable evaluation: per-request log-likelihoods cached on disk.

``CachedLM`` wraps a ``LanguageModel``. Results are keyed by (model key, request digest): the
model key hashes the model's ``digest`` and its ``scoring`` settings (special tokens, dtype,
chat format ...), the request digest hashes the (context, continuation) pair. Each model key
has one append-only JSON-lines file; missing requests are scored in slices of ``flush_every``
and each slice is appended and fsynced before the next, so a killed worker loses at most one
slice and a rerun scores only what is missing. Floats round-trip exactly through JSON, and the
serving backend's scores do not depend on which requests are scored together
(``models_zoo.scoring``), so a resumed run gives the same document as an uninterrupted one.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from evalcore.digests import text_digest

FLUSH_EVERY = 64


def request_digest(context: str, continuation: str) -> str:
    """The cache key of one request."""
    return text_digest(json.dumps([context, continuation], ensure_ascii=False))


def model_key(model: object) -> str:
    """The cache key of a model: its digest and everything that changes its scores.

    Raises:
        ValueError: If the model has no ``digest`` (nothing would tell two models apart).
    """
    digest = getattr(model, "digest", None)
    if not digest:
        raise ValueError("a results cache needs a model with a digest")
    scoring = getattr(model, "scoring", None) or {}
    return text_digest(json.dumps({"digest": digest, "scoring": scoring}, sort_keys=True))


class CachedLM:
    """A ``LanguageModel`` whose log-likelihoods are read from / appended to ``cache_dir``."""

    def __init__(self, model: Any, cache_dir: str | Path, *, flush_every: int = FLUSH_EVERY):
        self.model = model
        self.flush_every = flush_every
        self.path = Path(cache_dir) / f"{model_key(model)}.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.values = _read(self.path)
        _end_line(self.path)
        self.hits = 0
        self.misses = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)

    @property
    def scoring(self) -> dict[str, Any]:
        """The model's scoring settings plus this run's cache counts."""
        inner = getattr(self.model, "scoring", None) or {}
        cache = {"file": str(self.path), "hits": self.hits, "misses": self.misses}
        return {**inner, "cache": cache}

    def loglikelihood(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        """Cached scores; the missing ones are scored and appended slice by slice."""
        keys = [request_digest(c, x) for c, x in pairs]
        missing = sorted({k: i for i, k in enumerate(keys) if k not in self.values}.values())
        self.hits += len(pairs) - len(missing)
        self.misses += len(missing)
        for start in range(0, len(missing), self.flush_every):
            part = missing[start : start + self.flush_every]
            scores = self.model.loglikelihood([pairs[i] for i in part])
            self._append({keys[i]: float(v) for i, v in zip(part, scores, strict=True)})
        return [self.values[k] for k in keys]

    def generate(
        self, prompts: Sequence[str], *, max_new_tokens: int, stop: Sequence[str]
    ) -> list[str]:
        """Not cached: passed through."""
        return list(self.model.generate(prompts, max_new_tokens=max_new_tokens, stop=stop))

    def _append(self, scores: dict[str, float]) -> None:
        with self.path.open("a", encoding="utf-8") as handle:
            handle.writelines(json.dumps({"r": k, "ll": v}) + "\n" for k, v in scores.items())
            handle.flush()
            os.fsync(handle.fileno())
        self.values.update(scores)


def _end_line(path: Path) -> None:
    """Close a line cut short by a kill, so the next entry starts on its own line."""
    if path.is_file() and path.stat().st_size:
        with path.open("rb+") as handle:
            handle.seek(-1, os.SEEK_END)
            if handle.read(1) != b"\n":
                handle.write(b"\n")


def _read(path: Path) -> dict[str, float]:
    """Entries of a cache file; a line cut short by a kill is ignored."""
    values: dict[str, float] = {}
    if not path.is_file():
        return values
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            entry = json.loads(line)
            values[str(entry["r"])] = float(entry["ll"])
        except (ValueError, KeyError, TypeError):
            continue
    return values
