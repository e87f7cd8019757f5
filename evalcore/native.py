"""Small C kernels for evalcore, compiled once per machine with ``cc`` and loaded by ctypes.

``models_zoo/kernels/cpu_gemv.py`` builds its kernel here too. A source is built into ``$LADDER_KERNEL_CACHE`` (default ``~/.cache/ladder/kernels``),
keyed by a hash of the source and the flags, on first use, atomically (concurrent builders leave
one complete file); a library already there is used without looking for a compiler, so an image
can build its kernels in a build step that has ``cc`` and ship them without it. Without a compiler, when the build fails, or with
``LADDER_NATIVE=0``, :func:`load` returns None and the caller uses its numpy path, which must
compute the very same numbers: a kernel here is only ever a faster way to the same result.

Flags: no ``-march``, ``-ffp-contract=off`` and no fast-math, so floating-point code does the
IEEE operations it spells, in order, as numpy does.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import threading
from pathlib import Path

logger = logging.getLogger(__name__)

FLAGS = ("-O2", "-shared", "-fPIC", "-ffp-contract=off", "-fno-fast-math")

_LOADED: dict[str, ctypes.CDLL | None] = {}
_LOCK = threading.Lock()


def enabled() -> bool:
    """Whether compiled kernels may be used (``LADDER_NATIVE=0`` switches them off)."""
    return os.environ.get("LADDER_NATIVE", "1") != "0"


def _cache() -> Path:
    return Path(os.environ.get("LADDER_KERNEL_CACHE", Path.home() / ".cache/ladder/kernels"))


def _build(name: str, source: str, flags: tuple[str, ...]) -> Path:
    """The compiled library for ``source`` (built on first use)."""
    import shutil  # these only for a build: kept off the start-up path
    import subprocess
    import tempfile

    key = hashlib.sha256("\0".join((source, *flags)).encode()).hexdigest()[:16]
    cache = _cache()
    target = cache / f"{name}_{key}.so"
    if target.exists():  # built before, maybe where a compiler was (an image's build step)
        return target
    compiler = shutil.which(os.environ.get("CC", "cc"))
    if compiler is None:
        raise OSError("no C compiler (cc) on PATH")
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as work:
        path = Path(work) / f"{name}.c"
        path.write_text(source)
        built = Path(work) / f"{name}.so"
        try:
            subprocess.run(
                [compiler, *flags, "-o", str(built), str(path)],
                check=True,
                capture_output=True,
                timeout=120,
            )
        except subprocess.SubprocessError as error:  # failed or hung: no kernel
            raise OSError(f"{compiler} failed: {error}") from error
        os.replace(built, target)
    return target


def load(name: str, source: str, flags: tuple[str, ...] = FLAGS) -> ctypes.CDLL | None:
    """The library built from ``source`` with ``flags``, or None (no compiler, failed build,
    switched off); the caller then takes its plain path.

    The outcome is remembered per name for the life of the process."""
    if not enabled():
        return None
    with _LOCK:
        if name not in _LOADED:
            try:
                _LOADED[name] = ctypes.CDLL(str(_build(name, source, flags)))
            except OSError as error:
                logger.warning(
                    "native kernel %s unavailable, using the plain path: %s", name, error
                )
                _LOADED[name] = None
        return _LOADED[name]
