"""The ratings result: rows, matrices and provenance, with byte-reproducible CSV and JSON.

Floats are written with fixed decimals (ratings and bounds 2, win rates and matrix entries 4), so
the same counts and parameters always give the same bytes even if the last bits of a fit differ
between BLAS builds. NaN (no interval, or no decided battle) is an empty CSV cell and JSON null.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from evalcore.errors import EmptyInputError
from evalcore.ratings.battles import BattleFilter, SkipReport
from evalcore.ratings.counts import PairCounts
from evalcore.ratings.params import RatingParams

CSV_COLUMNS = ("rank", "rank_ub", "model", "rating", "ci_lower", "ci_upper", "votes", "win_rate")
# Added when the parameters use the listing / interval options (RatingParams.uses_listing_columns):
# ``interval`` names the method of ci_lower/ci_upper; ``preliminary`` is true or false.
LISTING_COLUMNS = ("interval", "preliminary")
RESULT_FORMAT = "ladder.ratings.v1"
RATING_DECIMALS = 2
RATE_DECIMALS = 4

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


@dataclass(frozen=True)
class RatingRow:
    """One leaderboard line.

    ``rank`` is 1 + the number of shown models with a strictly higher rating; ``rank_ub`` is 1 +
    the number whose lower bound exceeds this model's upper bound. ``votes`` counts every battle
    of the model; ``win_rate`` is wins / (wins + losses), ties left out (NaN without any).
    """

    rank: int
    rank_ub: int
    model: str
    rating: float
    ci_lower: float
    ci_upper: float
    votes: int
    win_rate: float
    preliminary: bool = False


@dataclass(frozen=True, eq=False)
class RatingMatrices:
    """Pairwise matrices over the shown models, in row order; the diagonal is NaN (or 0 battles).

    ``win_fraction[i, j]``: share of the decided battles between i and j that i won (both
    seatings pooled). ``predicted[i, j]``: ``1 / (1 + base^((R_j − R_i)/scale))``, i.e. the
    probability that i beats j given a decision.
    """

    models: tuple[str, ...]
    battles: IntArray
    win_fraction: FloatArray
    predicted: FloatArray

    def to_dict(self) -> dict[str, Any]:
        return {
            "models": list(self.models),
            "battles": self.battles.tolist(),
            "win_fraction": [[_number(v, RATE_DECIMALS) for v in row] for row in self.win_fraction],
            "predicted": [[_number(v, RATE_DECIMALS) for v in row] for row in self.predicted],
        }


@dataclass(frozen=True, eq=False)
class RatingsResult:
    """Ratings of one computation, with everything needed to reproduce and audit it."""

    rows: tuple[RatingRow, ...]
    params: RatingParams
    input_digest: str
    matrices: RatingMatrices
    below_min_votes: tuple[str, ...]
    diagnostics: Mapping[str, Any] = field(default_factory=dict)
    selection: BattleFilter | None = None
    skipped: SkipReport | None = None
    deprecated: tuple[str, ...] = ()  # fitted, left out of the rows
    # Every interval computed, by method, for the shown models: {method: {model: (low, high)}}.
    intervals: Mapping[str, Mapping[str, tuple[float, float]]] = field(default_factory=dict)
    style_coefficients: Mapping[str, float] = field(default_factory=dict)

    @property
    def columns(self) -> tuple[str, ...]:
        """The CSV columns (and row keys of the JSON) of this result."""
        if self.params.uses_listing_columns:
            return CSV_COLUMNS + LISTING_COLUMNS
        return CSV_COLUMNS

    @property
    def interval_method(self) -> str:
        """The method of ``ci_lower``/``ci_upper``, or "" when none was computed."""
        return self.params.interval if self.params.interval in self.intervals else ""

    def row_for(self, model: str) -> RatingRow:
        """The row of ``model``; ``KeyError`` if it is not shown."""
        for row in self.rows:
            if row.model == model:
                return row
        raise KeyError(model)

    def to_csv(self) -> str:
        """CSV with exactly :attr:`columns`, fixed decimals, ``\\n`` line ends."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(self.columns)
        for row in self.rows:
            writer.writerow(self._formatted(row))
        return buffer.getvalue()

    def _formatted(self, row: RatingRow) -> list[str]:
        cells = _formatted(row)
        if self.params.uses_listing_columns:
            cells += [self.interval_method, "true" if row.preliminary else "false"]
        return cells

    def _json_row(self, row: RatingRow) -> dict[str, Any]:
        values = _json_row(row)
        if self.params.uses_listing_columns:
            values += [self.interval_method, row.preliminary]
        return dict(zip(self.columns, values, strict=True))

    def to_json(self, *, indent: int | None = None) -> str:
        """The whole result (rows, matrices, params, digest, diagnostics) as JSON."""
        document = {
            "format": RESULT_FORMAT,
            "input_digest": self.input_digest,
            "params": self.params.to_dict(),
            "selection": None if self.selection is None else self.selection.to_dict(),
            "rows": [self._json_row(row) for row in self.rows],
            "below_min_votes": list(self.below_min_votes),
            "matrices": self.matrices.to_dict(),
            "diagnostics": dict(self.diagnostics),
            "skipped": None if self.skipped is None else self.skipped.to_dict(),
        }
        if self.params.uses_listing_columns:
            document["deprecated"] = list(self.deprecated)
            document["intervals"] = {
                method: {
                    model: [_number(low, RATING_DECIMALS), _number(high, RATING_DECIMALS)]
                    for model, (low, high) in bounds.items()
                }
                for method, bounds in sorted(self.intervals.items())
            }
            document["style_coefficients"] = dict(self.style_coefficients)
        return json.dumps(document, indent=indent, ensure_ascii=False, allow_nan=False) + "\n"

    def to_table(self) -> str:
        """A fixed-width text table for terminals."""
        header = list(self.columns)
        cells = [header] + [[c or "-" for c in self._formatted(row)] for row in self.rows]
        widths = [max(len(line[i]) for line in cells) for i in range(len(header))]
        lines = []
        for line in cells:
            padded = [
                value.ljust(width) if i == 2 else value.rjust(width)
                for i, (value, width) in enumerate(zip(line, widths, strict=True))
            ]
            lines.append("  ".join(padded).rstrip())
        return "\n".join(lines) + "\n"


def build_result(
    counts: PairCounts,
    params: RatingParams,
    ratings: FloatArray,
    intervals: Mapping[str, tuple[FloatArray, FloatArray]] | tuple[FloatArray, FloatArray] | None,
    *,
    input_digest: str,
    diagnostics: Mapping[str, Any],
    style_coefficients: Mapping[str, float] | None = None,
) -> RatingsResult:
    """Anchor, apply the listing rules, rank and tabulate ratings in ``counts.models`` order.

    ``intervals`` holds (lower, upper) per method and ``params.interval`` picks the published
    one; a bare (lower, upper) pair is taken as that method's, None as no interval.
    Deprecated models and (unless they are listed as preliminary) models under ``min_votes``
    are fitted but left out of the rows, ranks and matrices.

    Raises:
        UnknownModelError: the anchor model is not in the data.
        EmptyInputError: no model is left to list.
    """
    ratings, shifted = _anchored(counts, params, ratings, intervals)
    nan = np.full(counts.n_models, np.nan)
    lower, upper = shifted.get(params.interval, (nan, nan))
    votes = counts.votes_per_model()
    deprecated, enough, listed = _listing(counts, params, votes)
    order, rank, rank_ub = _ranking(
        counts, ratings, lower, upper, listed, has_bounds=params.interval in shifted
    )
    wins, losses = counts.decided_per_model()
    win_rate = _ratio(wins, wins + losses)
    rows = tuple(
        RatingRow(
            rank=int(rank[n]),
            rank_ub=int(rank_ub[n]),
            model=counts.models[i],
            rating=float(ratings[i]),
            ci_lower=float(lower[i]),
            ci_upper=float(upper[i]),
            votes=int(votes[i]),
            win_rate=float(win_rate[i]),
            preliminary=not bool(enough[i]),
        )
        for n, i in enumerate(order.tolist())
    )
    return RatingsResult(
        rows=rows,
        params=params,
        input_digest=input_digest,
        matrices=_matrices(counts, ratings, order, params),
        below_min_votes=tuple(counts.models[i] for i in np.flatnonzero(~deprecated & ~listed)),
        diagnostics=dict(diagnostics),
        deprecated=tuple(counts.models[i] for i in np.flatnonzero(deprecated)),
        intervals={
            name: {counts.models[i]: (float(low[i]), float(high[i])) for i in order.tolist()}
            for name, (low, high) in shifted.items()
        },
        style_coefficients=dict(style_coefficients or {}),
    )


def _anchored(
    counts: PairCounts,
    params: RatingParams,
    ratings: FloatArray,
    intervals: Mapping[str, tuple[FloatArray, FloatArray]] | tuple[FloatArray, FloatArray] | None,
) -> tuple[FloatArray, dict[str, tuple[FloatArray, FloatArray]]]:
    """Ratings and every method's bounds shifted by the anchor (if any), bounds by method."""
    shift = 0.0
    if params.anchor is not None:
        model, target = params.anchor
        shift = target - float(ratings[counts.index_of(model, field="anchor")])
    if intervals is None or isinstance(intervals, tuple):
        intervals = {} if intervals is None else {params.interval: intervals}
    shifted = {name: (low + shift, high + shift) for name, (low, high) in intervals.items()}
    return ratings + shift, shifted


def _listing(
    counts: PairCounts, params: RatingParams, votes: IntArray
) -> tuple[NDArray[np.bool_], NDArray[np.bool_], NDArray[np.bool_]]:
    """Per model: deprecated, has ``min_votes`` votes, and listed in the rows.

    Raises:
        EmptyInputError: no model is left to list.
    """
    deprecated = np.isin(np.asarray(counts.models, dtype=object), list(params.deprecated))
    enough = votes >= params.min_votes
    listed = ~deprecated & (enough | (params.below_min_votes_policy == "preliminary"))
    if not listed.any():
        raise EmptyInputError(
            f"no model to list: none has min_votes={params.min_votes} votes, or all are deprecated"
        )
    return deprecated, enough, listed


def _ranking(
    counts: PairCounts,
    ratings: FloatArray,
    lower: FloatArray,
    upper: FloatArray,
    listed: NDArray[np.bool_],
    *,
    has_bounds: bool,
) -> tuple[IntArray, IntArray, IntArray]:
    """The listed models in table order (rating down, then name), their ranks and upper ranks."""
    shown = np.flatnonzero(listed)
    # Rank on the displayed (rounded) numbers: robust to last-bit noise, consistent with output.
    shown_rating, shown_lower, shown_upper = (
        np.round(v, RATING_DECIMALS) for v in (ratings, lower, upper)
    )
    names = np.asarray(counts.models, dtype=object)
    order = shown[np.lexsort((names[shown], -shown_rating[shown]))]
    rank = _count_above(shown_rating[order], shown_rating[order]) + 1
    rank_ub = _count_above(shown_lower[order], shown_upper[order]) + 1 if has_bounds else rank
    return order, rank, rank_ub


def _count_above(lower: FloatArray, upper: FloatArray) -> IntArray:
    """For each i: how many j have ``lower[j] > upper[i]``."""
    ranked = np.sort(lower)
    return np.asarray(ranked.size - np.searchsorted(ranked, upper, side="right"), dtype=np.int64)


def _ratio(numerator: NDArray[Any], denominator: NDArray[Any]) -> FloatArray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, numerator / np.maximum(denominator, 1), np.nan)


def _matrices(
    counts: PairCounts, ratings: FloatArray, order: IntArray, params: RatingParams
) -> RatingMatrices:
    battles = counts.battle_matrix()[np.ix_(order, order)]
    wins = counts.win_matrix()[np.ix_(order, order)]
    win_fraction = _ratio(wins, wins + wins.T)
    r = ratings[order]
    exponent = np.clip((r[None, :] - r[:, None]) / params.scale * math.log(params.base), -700, 700)
    predicted = 1.0 / (1.0 + np.exp(exponent))
    np.fill_diagonal(win_fraction, np.nan)
    np.fill_diagonal(predicted, np.nan)
    models = tuple(counts.models[i] for i in order.tolist())
    return RatingMatrices(models, battles, win_fraction, predicted)


def _number(value: float, decimals: int) -> float | None:
    if math.isnan(value):
        return None
    return round(value, decimals) + 0.0  # + 0.0 turns -0.0 into 0.0


def _text(value: float, decimals: int) -> str:
    if math.isnan(value):
        return ""
    return f"{round(value, decimals) + 0.0:.{decimals}f}"


def _formatted(row: RatingRow) -> list[str]:
    return [
        str(row.rank),
        str(row.rank_ub),
        row.model,
        _text(row.rating, RATING_DECIMALS),
        _text(row.ci_lower, RATING_DECIMALS),
        _text(row.ci_upper, RATING_DECIMALS),
        str(row.votes),
        _text(row.win_rate, RATE_DECIMALS),
    ]


def _json_row(row: RatingRow) -> list[Any]:
    return [
        row.rank,
        row.rank_ub,
        row.model,
        _number(row.rating, RATING_DECIMALS),
        _number(row.ci_lower, RATING_DECIMALS),
        _number(row.ci_upper, RATING_DECIMALS),
        row.votes,
        _number(row.win_rate, RATE_DECIMALS),
    ]
