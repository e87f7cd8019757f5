"""Plain value types shared across ``evalcore``.

The battle schema follows the public arena dumps: one record per vote, with ``model_a``,
``model_b`` and ``winner`` in ``{"model_a", "model_b", "tie", "tie (bothbad)"}``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Outcome(enum.IntEnum):
    """Result of one battle, seen from ``model_a``.

    The integer values are part of the on-disk and hashing contract: do not reorder.
    """

    A_WINS = 0
    B_WINS = 1
    TIE = 2
    BOTH_BAD = 3

    @property
    def winner(self) -> str:
        """The arena ``winner`` string for this outcome."""
        return _WINNER_BY_OUTCOME[self]

    def mirrored(self) -> Outcome:
        """The same battle with the two seats swapped."""
        if self is Outcome.A_WINS:
            return Outcome.B_WINS
        if self is Outcome.B_WINS:
            return Outcome.A_WINS
        return self

    @classmethod
    def from_winner(cls, value: str) -> Outcome:
        """Parse an arena ``winner`` value.

        Raises:
            ValueError: ``value`` is not one of the four arena winner strings.
        """
        try:
            return OUTCOME_BY_WINNER[value]
        except (KeyError, TypeError):
            allowed = ", ".join(repr(v) for v in OUTCOME_BY_WINNER)
            raise ValueError(f"unknown winner {value!r}; expected one of {allowed}") from None


OUTCOME_BY_WINNER: dict[str, Outcome] = {
    "model_a": Outcome.A_WINS,
    "model_b": Outcome.B_WINS,
    "tie": Outcome.TIE,
    "tie (bothbad)": Outcome.BOTH_BAD,
}
_WINNER_BY_OUTCOME: dict[Outcome, str] = {v: k for k, v in OUTCOME_BY_WINNER.items()}


@dataclass(frozen=True, slots=True)
class Battle:
    """One vote between two models, as a plain record."""

    model_a: str
    model_b: str
    outcome: Outcome
    tstamp: float | None = None  # unix seconds; orders online Elo
    judge: str | None = None
    language: str | None = None
    category: str | None = None
    turn: int | None = None
    anony: bool | None = None

    @property
    def winner(self) -> str:
        """The arena ``winner`` string of this battle."""
        return self.outcome.winner
