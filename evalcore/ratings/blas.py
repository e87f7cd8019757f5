"""Keep BLAS/LAPACK single-threaded around the many small solves of a fit.

The Newton systems are models × models (≈100 × 100), far too small to gain from threads, and a
threaded OpenBLAS spin-waits: on a busy 2-core machine a batch of 100 such solves measured 2.3 s
threaded against 0.05 s single-threaded. ``threadpoolctl`` (pure Python, installed with
scikit-learn) is used when it is available; without it this is a no-op.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


@contextlib.contextmanager
def single_threaded_blas() -> Iterator[None]:
    """Limit BLAS to one thread inside the block, if ``threadpoolctl`` is installed."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - depends on the environment
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield
