"""Training text: a user corpus file, or English text that ships with every Python install."""

from __future__ import annotations

import logging
from pathlib import Path

logger = logging.getLogger(__name__)


def default_corpus_text() -> str:
    """English prose from the interpreter's own documentation topics (``pydoc_data``), ~450 KB.

    Works offline on any machine with a standard CPython install. If a distribution strips
    ``pydoc_data``, the docstrings of a few standard-library modules are used instead.
    """
    try:
        from pydoc_data.topics import topics
    except ImportError:  # pragma: no cover - only on stripped Python builds
        logger.warning("pydoc_data is missing; training on standard-library docstrings")
        import argparse
        import collections
        import json
        import logging as logging_module
        import pathlib

        modules = (argparse, collections, json, logging_module, pathlib)
        return "\n\n".join(module.__doc__ or "" for module in modules)
    return "\n\n".join(topics[name].strip() for name in sorted(topics))


def load_corpus(path: Path | str | None) -> str:
    """Read ``path`` as UTF-8 text, or return :func:`default_corpus_text` when it is ``None``.

    Raises:
        ValueError: If the file is empty.
    """
    if path is None:
        return default_corpus_text()
    text = Path(path).read_text(encoding="utf-8", errors="replace")
    if not text.strip():
        raise ValueError(f"corpus file {str(path)!r} is empty")
    return text
