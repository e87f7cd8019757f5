"""The one weight digest of Ladder: SHA-256 over the names and bytes of safetensors files.

Pure standard library, so the web process (upload checks, ``submissions.checkpoint``) and the
worker (``models_zoo.checkpoint.weights_digest``, used by serving and the demo set-up) share it
without importing torch.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

_BLOCK = 1 << 20


def files_digest(paths: Iterable[Path]) -> str:
    """Hex SHA-256 over ``name + NUL + bytes`` of each file, in name order."""
    digest = hashlib.sha256()
    for path in sorted(paths, key=lambda p: p.name):
        digest.update(path.name.encode() + b"\0")
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(_BLOCK), b""):
                digest.update(block)
    return digest.hexdigest()


def text_digest(text: str) -> str:
    """Hex SHA-256 of a UTF-8 string (request and prompt keys)."""
    return hashlib.sha256(text.encode()).hexdigest()
