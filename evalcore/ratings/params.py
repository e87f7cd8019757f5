"""Rating parameters: one frozen, self-validating record of how a leaderboard was computed."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

from evalcore.errors import InvalidParameterError
from evalcore.ratings.sampling import CURRENT_SAMPLER, LEGACY_SAMPLER, SAMPLERS

Method = Literal["bt", "elo", "davidson"]
TiePolicy = Literal["half", "exclude_bothbad"]
Interval = Literal["bootstrap", "sandwich"]
BelowMinVotes = Literal["hide", "preliminary"]
METHODS: tuple[str, ...] = ("bt", "elo", "davidson")
TIE_POLICIES: tuple[str, ...] = ("half", "exclude_bothbad")
INTERVALS: tuple[str, ...] = ("bootstrap", "sandwich")
BELOW_MIN_VOTES: tuple[str, ...] = ("hide", "preliminary")


@dataclass(frozen=True)
class RatingParams:
    """How to turn battles into ratings.

    Attributes:
        method: ``"bt"`` Bradley–Terry MLE (default), ``"davidson"`` Bradley–Terry with
            Davidson's tie parameter, ``"elo"`` online Elo in time order.
        bootstrap_rounds: rounds for the percentile intervals; 0 skips them (CIs are NaN).
        seed: seed of the bootstrap generator; same seed, same intervals.
        bootstrap_sampler: version of the counts bootstrap's random draws
            (:mod:`~evalcore.ratings.sampling`; online Elo's replay bootstrap has one): 3 (new
            parameter sets) hashes (seed, round, cell) into counter-based integer draws, in a
            small C kernel or identically in numpy; 2 draws every round from its own numpy
            stream, two threads at once; 1 is one sequential stream. All have the exact law of
            resampling the votes; they give different draws. A recorded parameter set without
            this key predates the versions and used 1 (:meth:`from_dict`), so it still
            recomputes byte for byte.
        anchor: ``(model, rating)``: shift every rating so ``model`` gets ``rating``. Applied
            after the bootstrap, so it moves all bounds by the same constant.
        ties: ``"half"``: ``tie`` and ``tie (bothbad)`` are both half a win each way (ties in
            Davidson); ``"exclude_bothbad"``: both-bad votes are dropped before fitting.
        min_votes: models with fewer votes are fitted but not ranked with the others: hidden
            (``below_min_votes``) or listed as preliminary, as ``below_min_votes_policy`` says.
        below_min_votes_policy: ``"hide"`` (default) or ``"preliminary"``: ranked and shown,
            with ``preliminary=True`` on their rows (LMArena's "preliminary" mark).
        deprecated: models kept in the fit (their battles inform everybody else's rating) but
            left out of the rows, ranks and matrices (``result.deprecated``).
        first_vote_per_conversation: for multi-turn battles, keep only the first vote of each
            ``conversation_id`` (input order); applies where battles are rated.
        interval: which interval the published ``ci_lower``/``ci_upper`` are: ``"bootstrap"``
            percentiles, or ``"sandwich"``: normal intervals from the robust covariance
            H⁻¹·G·H⁻¹ (:mod:`~evalcore.ratings.sandwich`), which costs one solve.
        reweight: weight each pair's votes by 1/max(n_pair, ``reweight_floor``) (normalised to
            a mean weight of 1 per vote), in the point fit, the bootstrap and the sandwich, so
            over-sampled pairs do not dominate (LMArena uses a floor of 50).
        style_control: contextual Bradley–Terry: strengths plus coefficients on the answers'
            style features (:mod:`~evalcore.ratings.style`); needs battles with style columns.
        style_penalty: L2 penalty on the style coefficients only, on the per-vote (mean) scale
            of the likelihood: ``style_penalty/2·Σγ²`` next to the mean log-likelihood. The
            default 0.001 is about 0.5 % of a coefficient's per-vote curvature (≈ 0.2), so it
            bounds the coefficients without shrinking them noticeably; arena-rank's default,
            1.0, shrinks them several-fold.
        ridge: Gaussian prior strength on natural-log strengths, penalty ``ridge/2·Σ s²``. 0 is
            the plain MLE and refuses data without a finite one; > 0 always gives finite ratings.
        confidence: coverage of the percentile interval.
        k, scale, base, init: Elo K-factor, and the rating scale shared by all methods:
            ``rating = init + scale·log_base(strength)``, centred on ``init``.
    """

    method: Method = "bt"
    bootstrap_rounds: int = 1000
    seed: int = 0
    bootstrap_sampler: int = CURRENT_SAMPLER
    anchor: tuple[str, float] | None = None
    ties: TiePolicy = "half"
    min_votes: int = 0
    below_min_votes_policy: BelowMinVotes = "hide"
    deprecated: tuple[str, ...] = ()
    first_vote_per_conversation: bool = False
    interval: Interval = "bootstrap"
    reweight: bool = False
    reweight_floor: int = 50
    style_control: bool = False
    style_penalty: float = 0.001
    ridge: float = 0.0
    confidence: float = 0.95
    k: float = 4.0
    scale: float = 400.0
    base: float = 10.0
    init: float = 1000.0

    def __post_init__(self) -> None:
        _check_choice("method", self.method, METHODS)
        _check_choice("ties", self.ties, TIE_POLICIES)
        _check_int("bootstrap_rounds", self.bootstrap_rounds, minimum=0)
        _check_int("seed", self.seed, minimum=0)
        if self.bootstrap_sampler not in SAMPLERS or isinstance(self.bootstrap_sampler, bool):
            raise InvalidParameterError(
                "bootstrap_sampler",
                f"must be one of {', '.join(map(str, SAMPLERS))}; got {self.bootstrap_sampler!r}",
            )
        _check_int("min_votes", self.min_votes, minimum=0)
        _check_choice("below_min_votes_policy", self.below_min_votes_policy, BELOW_MIN_VOTES)
        _check_choice("interval", self.interval, INTERVALS)
        _check_int("reweight_floor", self.reweight_floor, minimum=1)
        _check_bool("first_vote_per_conversation", self.first_vote_per_conversation)
        _check_bool("reweight", self.reweight)
        _check_bool("style_control", self.style_control)
        _check_number("style_penalty", self.style_penalty, lambda v: v >= 0, "must be >= 0")
        object.__setattr__(self, "deprecated", _parse_names("deprecated", self.deprecated))
        self._check_combinations()
        _check_number("ridge", self.ridge, lambda v: v >= 0, "must be >= 0")
        _check_number("confidence", self.confidence, lambda v: 0 < v < 1, "must be between 0 and 1")
        _check_number("k", self.k, lambda v: v > 0, "must be > 0")
        _check_number("scale", self.scale, lambda v: v > 0, "must be > 0")
        _check_number("base", self.base, lambda v: v > 1, "must be > 1")
        _check_number("init", self.init, lambda v: True, "")
        if self.anchor is not None:
            object.__setattr__(self, "anchor", _parse_anchor(self.anchor))

    def _check_combinations(self) -> None:
        if self.interval == "sandwich" and self.method != "bt":
            raise InvalidParameterError(
                "interval", f"'sandwich' needs method 'bt', got method {self.method!r}"
            )
        if self.style_control and (self.method != "bt" or self.interval != "sandwich"):
            raise InvalidParameterError(
                "style_control",
                "needs method 'bt' and interval 'sandwich' (a per-vote bootstrap of the "
                f"contextual fit is not offered); got {self.method!r} and {self.interval!r}",
            )
        if self.reweight and self.method == "elo":
            raise InvalidParameterError("reweight", "online Elo cannot be reweighted")

    @property
    def uses_listing_columns(self) -> bool:
        """Whether outputs carry the ``interval`` and ``preliminary`` columns.

        Parameter sets that releases made before these options existed keep the original eight
        columns, so those releases still reproduce byte for byte.
        """
        return (
            self.interval != "bootstrap"
            or self.below_min_votes_policy != "hide"
            or bool(self.deprecated)
            or self.first_vote_per_conversation
            or self.reweight
            or self.style_control
        )

    @property
    def rating_per_log_unit(self) -> float:
        """Rating points per natural-log unit of strength: ``scale / ln(base)``."""
        return self.scale / math.log(self.base)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; ``from_dict(to_dict())`` round-trips."""
        data = asdict(self)
        data["deprecated"] = list(self.deprecated)
        if self.anchor is not None:
            data["anchor"] = {"model": self.anchor[0], "rating": self.anchor[1]}
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RatingParams:
        """Rebuild from :meth:`to_dict` output; missing keys take the defaults, except
        ``bootstrap_sampler``: a parameter set recorded without it used version 1.

        Raises:
            InvalidParameterError: an unknown key or an invalid value.
        """
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InvalidParameterError(unknown[0], "is not a rating parameter")
        values = {"bootstrap_sampler": LEGACY_SAMPLER, **data}
        anchor = values.get("anchor")
        if isinstance(anchor, Mapping):
            values["anchor"] = (anchor.get("model"), anchor.get("rating"))
        return cls(**values)


def parse_anchor(text: str) -> tuple[str, float]:
    """Parse the CLI form ``MODEL=RATING`` (the model name may itself contain ``=``)."""
    model, sep, rating = text.rpartition("=")
    if not sep or not model:
        raise InvalidParameterError("anchor", f"must look like MODEL=RATING, got {text!r}")
    try:
        value = float(rating)
    except ValueError:
        raise InvalidParameterError("anchor", f"rating must be a number, got {rating!r}") from None
    return _parse_anchor((model, value))


def _parse_anchor(anchor: object) -> tuple[str, float]:
    if not isinstance(anchor, tuple | list) or len(anchor) != 2:
        raise InvalidParameterError("anchor", f"must be (model, rating), got {anchor!r}")
    model, rating = anchor
    if not isinstance(model, str) or not model:
        raise InvalidParameterError("anchor", f"model must be a non-empty string, got {model!r}")
    _check_number("anchor", rating, lambda v: True, "")
    return (model, float(rating))


def _parse_names(name: str, value: object) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, tuple | list):
        raise InvalidParameterError(name, f"must be a list of model names, got {value!r}")
    for item in value:
        if not isinstance(item, str) or not item:
            raise InvalidParameterError(name, f"model names must be non-empty strings: {item!r}")
    return tuple(sorted(set(value)))


def _check_bool(name: str, value: object) -> None:
    if not isinstance(value, bool):
        raise InvalidParameterError(name, f"must be true or false, got {value!r}")


def _check_choice(name: str, value: object, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise InvalidParameterError(name, f"must be one of {', '.join(allowed)}; got {value!r}")


def _check_int(name: str, value: object, *, minimum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise InvalidParameterError(name, f"must be an integer >= {minimum}, got {value!r}")


def _check_number(name: str, value: object, ok: Any, message: str) -> None:
    if (
        not isinstance(value, int | float)
        or isinstance(value, bool)
        or not math.isfinite(value)
        or not ok(value)
    ):
        raise InvalidParameterError(name, f"{message or 'must be a finite number'}, got {value!r}")
