"""An optional progress bar: tqdm on stderr when enabled, nothing at all otherwise."""

from __future__ import annotations

from types import TracebackType
from typing import Any


class ProgressBar:
    """Context manager around ``tqdm``; tqdm is imported only when the bar is enabled."""

    def __init__(self, *, total: int, description: str, enabled: bool) -> None:
        self._bar: Any = None
        if enabled:
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=description, unit="round", leave=False)

    def update(self, amount: int) -> None:
        if self._bar is not None:
            self._bar.update(amount)

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._bar is not None:
            self._bar.close()
