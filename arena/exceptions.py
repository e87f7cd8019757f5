"""Arena domain errors: each has a stable ``code`` and HTTP status (see core.exceptions)."""

from __future__ import annotations

from core.exceptions import DomainError, RateLimited
from leaderboard.services import WINNERS

__all__ = [
    "AlreadyVoted",
    "BattleClosed",
    "BattleGenerating",
    "BattleNotFound",
    "BattleNotReady",
    "ContextBudget",
    "InvalidWinner",
    "MaxTurns",
    "MessageTooLong",
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


class GenerationUnavailable(DomainError):
    """The answer-generation task could not be queued (the broker is down): no battle is kept."""

    code = "generation_unavailable"
    status_code = 503


# --- Multi-turn battles (arena.conversations) ----------------------------------------------


class BattleClosed(DomainError):
    """A follow-up after the vote: the vote ends the battle."""

    code = "battle_closed"
    status_code = 409


class BattleGenerating(DomainError):
    """A follow-up while the answers to the last message are still being generated."""

    code = "battle_generating"
    status_code = 409


class MaxTurns(DomainError):
    code = "max_turns"
    status_code = 409


class MessageTooLong(DomainError):
    code = "message_too_long"
    status_code = 400


class ContextBudget(DomainError):
    """The conversation would exceed the per-model context budget."""

    code = "context_budget"
    status_code = 400
