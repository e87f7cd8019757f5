"""Progress that reads well both on a terminal and in a log file.

On a terminal: a tqdm bar (redrawn at most twice a second). Otherwise (``make run`` piped to a
file, a worker's log): no carriage-return redraws at all, but one plain log line every
``interval_s`` seconds and one at the end, e.g.
``training dense-tiny: 120/400 (30%), 11.8/s, about 24 s left, loss=3.412``.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, TextIO, TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")
LOG_INTERVAL_S = 5.0


def is_terminal(stream: TextIO | None = None) -> bool:
    stream = stream if stream is not None else sys.stderr
    return bool(getattr(stream, "isatty", lambda: False)())


class Progress:
    """Iterate with progress: a tqdm bar on a terminal, periodic log lines otherwise."""

    def __init__(
        self,
        iterable: Iterable[T],
        *,
        description: str,
        total: int | None = None,
        enabled: bool = True,
        interval_s: float = LOG_INTERVAL_S,
        terminal: bool | None = None,
    ) -> None:
        self.iterable: Iterable[Any] = iterable
        self.description, self.enabled, self.interval_s = description, enabled, interval_s
        self.total = total if total is not None else _length(iterable)
        self.terminal = is_terminal() if terminal is None else terminal
        self.postfix = ""
        self.count = 0
        self._bar: Any = None
        self.lines: list[str] = []  # the log lines written (tests read them)

    def __iter__(self) -> Iterator[Any]:
        if self.enabled and self.terminal:
            from tqdm import tqdm

            self._bar = tqdm(
                self.iterable, desc=self.description, total=self.total, mininterval=0.5
            )
            yield from self._bar
            return
        started = last = time.monotonic()
        for item in self.iterable:
            yield item
            self.count += 1
            now = time.monotonic()
            if self.enabled and now - last >= self.interval_s:
                last = now
                self._log(now - started)
        if self.enabled:
            self._log(time.monotonic() - started, done=True)

    def set_postfix(self, **values: Any) -> None:
        """Extra facts for the line (``loss=...``), as tqdm's ``set_postfix``."""
        self.postfix = ", ".join(f"{key}={value}" for key, value in values.items())
        if self._bar is not None:
            self._bar.set_postfix(**values)

    def _log(self, elapsed: float, *, done: bool = False) -> None:
        rate = self.count / elapsed if elapsed > 0 else 0.0
        parts = [f"{self.count}/{self.total}" if self.total else str(self.count)]
        if self.total:
            parts[0] += f" ({100 * self.count / self.total:.0f}%)"
        parts.append(f"{rate:.1f}/s")
        if done:
            parts.append(f"done in {elapsed:.0f} s")
        elif self.total and rate > 0:
            parts.append(f"about {(self.total - self.count) / rate:.0f} s left")
        if self.postfix:
            parts.append(self.postfix)
        line = f"{self.description}: {', '.join(parts)}"
        self.lines.append(line)
        print(line, file=sys.stderr, flush=True)


def _length(iterable: Iterable[Any]) -> int | None:
    try:
        return len(iterable)  # type: ignore[arg-type]
    except TypeError:
        return None


def quiet_library_bars() -> None:
    """Off a terminal, silence transformers' own per-load bars ("Loading weights" redraws)."""
    if is_terminal():
        return
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
