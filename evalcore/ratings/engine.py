"""Entry points: :func:`compute_ratings` (counts → ratings), :func:`rate_battles` (battles →)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

import numpy as np

from evalcore.errors import EmptyInputError, InvalidInputError, InvalidParameterError
from evalcore.ratings.battles import STYLE_COLUMNS, BattleFilter, BattleTable
from evalcore.ratings.blas import single_threaded_blas
from evalcore.ratings.bootstrap import bootstrap_strengths, percentile_interval
from evalcore.ratings.bradley_terry import PairOutcomes, StrengthFit, fit_strengths
from evalcore.ratings.counts import PairCounts
from evalcore.ratings.elo import bootstrap_elo, outcome_scores, replay_elo
from evalcore.ratings.params import RatingParams
from evalcore.ratings.result import RatingsResult, build_result
from evalcore.ratings.sandwich import normal_interval, pair_sandwich
from evalcore.ratings.style import STYLE_FEATURES, fit_style, style_design
from evalcore.types import Battle, Outcome

SEQUENCE_DIGEST_VERSION = "ladder.battle-sequence.v1"
STYLE_DIGEST_VERSION = "ladder.styled-battles.v1"


def compute_ratings(
    counts: PairCounts, params: RatingParams, *, progress: bool = False
) -> RatingsResult:
    """Bradley–Terry (or Davidson) ratings with bootstrap intervals, from pair counts.

    Args:
        counts: pair × outcome counts (e.g. ``PairCounts.from_battles(records).counts``).
        params: method, bootstrap, anchor, tie policy, ``min_votes``, ridge, rating scale.
        progress: show a bootstrap progress bar on stderr.

    Returns:
        The result; identical counts and params always give an identical result.

    Raises:
        InvalidParameterError: ``method="elo"``: online Elo depends on battle order, which counts
            do not carry; use :func:`rate_battles` or ``compute_online_elo``.
        UnknownModelError: the anchor model is not in the data.
        DisconnectedGraphError, UnboundedRatingError: no finite MLE and ``ridge`` is 0.
        EstimationError: Davidson without ties, or no convergence.
        EmptyInputError: nothing to fit, or no model reaches ``min_votes``.
    """
    if params.method == "elo":
        raise InvalidParameterError(
            "method",
            "'elo' depends on the order of the battles, which counts do not carry; rate the "
            "battles with rate_battles() (sorted by tstamp) or compute_online_elo()",
        )
    if params.anchor is not None:
        counts.index_of(params.anchor[0], field="anchor")
    floor = params.reweight_floor if params.reweight else None
    outcomes = PairOutcomes.from_counts(counts, params.ties, reweight_floor=floor)
    if outcomes.cells.sum() == 0:
        raise EmptyInputError("no battles left to fit after the tie policy")
    intervals: dict[str, tuple[Any, Any]] = {}
    with single_threaded_blas():
        fit = fit_strengths(outcomes, method=params.method, ridge=params.ridge)
        diagnostics = _fit_diagnostics(fit, outcomes, params)
        if params.bootstrap_rounds > 0:
            intervals["bootstrap"] = _bootstrap_bounds(
                outcomes, fit, params, diagnostics, progress=progress
            )
        if params.method == "bt":
            sandwich = pair_sandwich(outcomes, fit.strengths, ridge=params.ridge)
            low, high = normal_interval(fit.strengths, sandwich.covariance, params.confidence)
            intervals["sandwich"] = (_to_rating(low, params), _to_rating(high, params))
    return build_result(
        counts,
        params,
        _to_rating(fit.strengths, params),
        intervals,
        input_digest=counts.digest(),
        diagnostics=diagnostics,
    )


def _bootstrap_bounds(
    outcomes: PairOutcomes,
    fit: StrengthFit,
    params: RatingParams,
    diagnostics: dict[str, Any],
    *,
    progress: bool,
) -> tuple[Any, Any]:
    """Percentile bounds on the rating scale; records what the rounds ran into."""
    draws = bootstrap_strengths(
        outcomes,
        fit,
        method=params.method,
        ridge=params.ridge,
        rounds=params.bootstrap_rounds,
        seed=params.seed,
        sampler=params.bootstrap_sampler,
        progress=progress,
    )
    diagnostics["bootstrap"] = {
        "rounds": params.bootstrap_rounds,
        "degenerate_rounds": draws.degenerate_rounds,
        "unbounded_in_rounds": draws.unbounded_in_rounds,
        "unconverged_rounds": draws.unconverged_rounds,
    }
    low, high = percentile_interval(draws.strengths, params.confidence)
    return _to_rating(low, params), _to_rating(high, params)


def rate_battles(
    battles: BattleTable | Iterable[Mapping[str, Any] | Battle],
    params: RatingParams,
    *,
    selection: BattleFilter | None = None,
    skip_invalid: bool = False,
    progress: bool = False,
) -> RatingsResult:
    """Ratings straight from battles: validate, slice, aggregate, fit (or replay Elo).

    Args:
        battles: a table from a reader, or battle records.
        params: as for :func:`compute_ratings`; ``method="elo"`` is allowed here.
        selection: category / language / judge / anonymous-only slice.
        skip_invalid: for records, skip bad ones (counted in ``result.skipped``) instead of
            raising; a table was validated when it was read.
        progress: show a bootstrap progress bar on stderr.

    Raises:
        InvalidRecordError: a bad record and ``skip_invalid`` is false.
        EmptyInputError: nothing left after the slice.
        And whatever :func:`compute_ratings` raises.
    """
    table = (
        battles
        if isinstance(battles, BattleTable)
        else BattleTable.from_records(battles, skip_invalid=skip_invalid)
    )
    if selection is not None:
        table = table.where(selection)
    if params.first_vote_per_conversation:
        table = table.first_vote_per_conversation()
    counts = PairCounts.from_battles(table).counts
    if params.style_control:
        result = _rate_style(table, counts, params)
    elif params.method == "elo":
        result = _rate_online_elo(table, counts, params, progress=progress)
    else:
        result = compute_ratings(counts, params, progress=progress)
    return replace(result, selection=selection, skipped=table.report)


def _rate_online_elo(
    table: BattleTable, counts: PairCounts, params: RatingParams, *, progress: bool
) -> RatingsResult:
    if params.anchor is not None:
        counts.index_of(params.anchor[0], field="anchor")
    if params.ties == "exclude_bothbad":
        table = table.take(np.flatnonzero(table.outcome != int(Outcome.BOTH_BAD)))
    ordered = table.in_time_order()
    if len(ordered) == 0:
        raise EmptyInputError("no battles left to replay after the tie policy")
    a, b, score = ordered.model_a, ordered.model_b, outcome_scores(ordered.outcome)
    constants = {"k": params.k, "scale": params.scale, "base": params.base, "init": params.init}
    ratings = replay_elo(a, b, score, len(ordered.models), **constants)
    diagnostics: dict[str, Any] = {
        "battles_replayed": len(ordered),
        "battles_without_tstamp": int(np.count_nonzero(np.isnan(ordered.tstamp))),
    }
    intervals = {}
    if params.bootstrap_rounds > 0:
        draws = bootstrap_elo(
            a,
            b,
            score,
            len(ordered.models),
            rounds=params.bootstrap_rounds,
            seed=params.seed,
            progress=progress,
            **constants,
        )
        intervals["bootstrap"] = percentile_interval(draws, params.confidence)
        diagnostics["bootstrap"] = {"rounds": params.bootstrap_rounds}
    # Elo depends on order, so the digest covers the time-ordered sequence, not just the counts.
    return build_result(
        counts,
        params,
        ratings,
        intervals,
        input_digest=sequence_digest(ordered),
        diagnostics=diagnostics,
    )


def _rate_style(table: BattleTable, counts: PairCounts, params: RatingParams) -> RatingsResult:
    """Style-controlled ratings (contextual Bradley–Terry, sandwich intervals)."""
    if table.style is None:
        raise InvalidInputError(
            "style control needs the answers' style features: columns "
            f"{', '.join(STYLE_COLUMNS)} (or a 'style' object per battle)"
        )
    if params.anchor is not None:
        counts.index_of(params.anchor[0], field="anchor")
    if params.ties == "exclude_bothbad":
        table = table.take(np.flatnonzero(table.outcome != int(Outcome.BOTH_BAD)))
    if len(table) == 0:
        raise EmptyInputError("no battles left to fit after the tie policy")
    style = table.style
    assert style is not None  # checked above; taking rows keeps the column
    fitted = PairCounts.from_battles(table).counts
    plain = fit_strengths(PairOutcomes.from_counts(fitted, "half"), method="bt", ridge=params.ridge)
    weights = _vote_weights(table, params)
    with single_threaded_blas():
        fit = fit_style(
            table.model_a,
            table.model_b,
            STYLE_SCORE[table.outcome],
            style_design(style),
            n_models=len(table.models),
            weights=weights,
            penalty=params.style_penalty,
            ridge=params.ridge,
            start=plain.strengths,
        )
    low, high = normal_interval(fit.strengths, fit.sandwich.covariance, params.confidence)
    # table.take keeps the vocabulary, so ``fitted``, ``counts`` and the fit share model codes.
    diagnostics: dict[str, Any] = {"votes_fitted": len(table), "newton_steps": fit.iterations}
    return build_result(
        counts,
        params,
        _to_rating(fit.strengths, params),
        {"sandwich": (_to_rating(low, params), _to_rating(high, params))},
        input_digest=style_digest(table),
        diagnostics=diagnostics,
        style_coefficients={
            name: float(f"{value:.6g}")
            for name, value in zip(STYLE_FEATURES, fit.coefficients, strict=True)
        },
    )


STYLE_SCORE = np.array([1.0, 0.0, 0.5, 0.5])  # by Outcome: a wins, b wins, tie, both bad


def _vote_weights(table: BattleTable, params: RatingParams) -> Any:
    """Per-vote weights 1/max(n_pair, floor), mean 1, or None without reweighting."""
    if not params.reweight:
        return None
    m = len(table.models)
    pair = np.minimum(table.model_a, table.model_b) * m + np.maximum(table.model_a, table.model_b)
    _, inverse, per_pair = np.unique(pair, return_inverse=True, return_counts=True)
    raw = 1.0 / np.maximum(per_pair[inverse], params.reweight_floor)
    return raw * (raw.size / raw.sum())


def style_digest(table: BattleTable) -> str:
    """SHA-256 over the battles in table order, with their style counts."""
    hasher = hashlib.sha256(STYLE_DIGEST_VERSION.encode() + b"\n")
    hasher.update(sequence_digest(table).encode() + b"\n")
    assert table.style is not None
    # The array's own buffer: ``tobytes()`` would copy 64 MB per million votes at the peak.
    hasher.update(np.ascontiguousarray(table.style, dtype="<f8").data)
    return hasher.hexdigest()


def sequence_digest(table: BattleTable) -> str:
    """SHA-256 over the battles in table order (names, seats and outcomes)."""
    hasher = hashlib.sha256(SEQUENCE_DIGEST_VERSION.encode() + b"\n")
    hasher.update(json.dumps(list(table.models), ensure_ascii=False).encode() + b"\n")
    for column in (table.model_a, table.model_b, table.outcome):
        hasher.update(np.ascontiguousarray(column, dtype="<i8").data)
    return hasher.hexdigest()


def _to_rating(strengths: np.ndarray[Any, np.dtype[np.float64]], params: RatingParams) -> Any:
    return params.init + params.rating_per_log_unit * strengths


def _fit_diagnostics(
    fit: StrengthFit, outcomes: PairOutcomes, params: RatingParams
) -> dict[str, Any]:
    diagnostics: dict[str, Any] = {
        "votes_fitted": int(round(float(outcomes.cells.sum()))),
        "pairs": int(outcomes.first.size),
    }
    if fit.log_tie is not None:
        diagnostics["davidson_nu"] = float(f"{np.exp(fit.log_tie):.6g}")
    return diagnostics
