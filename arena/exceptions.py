"""Arena domain errors: each has a stable ``code`` and HTTP status (see core.exceptions)."""

from __future__ import annotations

from core.exceptions import DomainError, RateLimited
from leaderboard.services import WINNERS

__all__ = [
    "AlreadyVoted",
    "BattleNotFound",
    "BattleNotReady",
    "InvalidWinner",
    "NotEnoughContestants",
    "PoolEmpty",
    "PoolOnly",
    "RateLimited",
]


class BattleNotFound(DomainError):
    code = "battle_not_found"
    status_code = 404


class BattleNotReady(DomainError):
    code = "battle_not_ready"
    status_code = 409


class AlreadyVoted(DomainError):
    code = "already_voted"
    status_code = 409


class InvalidWinner(DomainError):
    code = "invalid_winner"
    status_code = 400

    def __init__(self, value: object) -> None:
        allowed = ", ".join(repr(w) for w in WINNERS)
        super().__init__(
            f"winner must be one of {allowed}; got {value!r}",
            fields={"winner": [f"must be one of {allowed}"]},
        )


class NotEnoughContestants(DomainError):
    code = "not_enough_contestants"
    status_code = 503


class PoolOnly(DomainError):
    """Pool mode: only prompts with pre-generated answers can start a battle."""

    code = "pool_only"
    status_code = 400


class PoolEmpty(DomainError):
    code = "pool_empty"
    status_code = 503
