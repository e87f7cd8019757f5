"""The one place the leaderboard talks to the ratings engine (``evalcore.ratings``).

Everything the app needs from a computation is normalised into :class:`Computed`, so the rest of
the app never depends on the engine's result classes. Bradley–Terry and Davidson are computed
from pair-count rows (:func:`compute`); online Elo from the ordered battles of the outcome log
(:func:`battle_table`, :func:`compute_battles`), because its result depends on their order.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from evalcore.ratings import (
    BattleTable,
    PairCounts,
    RatingParams,
    RatingsResult,
    compute_ratings,
    rate_battles,
)
from evalcore.ratings.sampling import LEGACY_SAMPLER
from evalcore.types import Outcome
from leaderboard.export import EXTRA_COLUMNS, release_csv

CountRow = tuple[str, str, int, int, int, int]
BattleRow = tuple[str, str, str, float | None]  # model_a, model_b, winner, tstamp (unix s)


@dataclass(frozen=True)
class CoreRow:
    rank: int | None
    rank_ub: int | None
    model: str
    rating: float | None
    ci_lower: float | None
    ci_upper: float | None
    votes: int
    win_rate: float | None
    below_min_votes: bool = False
    preliminary: bool = False  # ranked, with fewer than min_votes votes (listing rule)


@dataclass(frozen=True)
class Computed:
    """Ratings of one release: rows in display order, the engine's CSV, and diagnostics."""

    rows: list[CoreRow]
    core_csv: str
    input_digest: str
    diagnostics: dict[str, Any] = field(default_factory=dict)


def canonical_counts_json(rows: Sequence[CountRow]) -> str:
    """The stored form of a release's input: sorted rows, compact, UTF-8 names kept."""
    return json.dumps([list(r) for r in rows], ensure_ascii=False, separators=(",", ":"))


def counts_from_json(text: str) -> list[CountRow]:
    return [
        (str(a), str(b), int(w), int(lo), int(t), int(bb))
        for a, b, w, lo, t, bb in json.loads(text)
    ]


def pair_counts(rows: Sequence[CountRow]) -> PairCounts:
    return PairCounts.from_rows(rows)


def input_digest(rows: Sequence[CountRow]) -> str:
    return pair_counts(rows).digest()


def params_from_dict(data: Mapping[str, Any]) -> RatingParams:
    return RatingParams.from_dict(data)


def _optional_float(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


def compute(rows: Sequence[CountRow], params: RatingParams, *, progress: bool = False) -> Computed:
    """Run the engine on pair-count rows.

    Models under ``min_votes`` come after the ranked rows, in name order, with their votes and
    win rate but no rating: the engine fits them but does not report them.

    Raises:
        evalcore.errors.EvalcoreError: the data cannot be rated with these parameters.
    """
    counts = pair_counts(rows)
    return _computed(compute_ratings(counts, params, progress=progress), counts)


def battle_table(battles: Iterable[BattleRow]) -> BattleTable:
    """The engine's validated table of battles given in vote order.

    Raises:
        evalcore.errors.EvalcoreError: a malformed battle, or no battle at all.
    """
    return BattleTable.from_records(
        {"model_a": a, "model_b": b, "winner": winner, "tstamp": tstamp}
        for a, b, winner, tstamp in battles
    )


def styled_table(outcomes: Iterable[tuple[str, str, int, Any]]) -> BattleTable:
    """The engine's table of outcomes (model_a, model_b, result code, style features).

    Raises:
        evalcore.errors.EvalcoreError: a malformed outcome, or none at all.
    """
    return BattleTable.from_records(
        {"model_a": a, "model_b": b, "winner": Outcome(result).winner, "style": style}
        for a, b, result, style in outcomes
    )


def battle_counts(table: BattleTable) -> list[CountRow]:
    """The pair-count rows of ``table``, in the canonical (sorted) form releases store."""
    counts = PairCounts.from_battles(table).counts
    return [
        (r["model_a"], r["model_b"], r["model_a_wins"], r["model_b_wins"], r["ties"], r["both_bad"])
        for r in counts.to_rows()
    ]


def battles_digest(table: BattleTable, params: RatingParams) -> str:
    """The engine's input digest for ``table``: for Elo, a digest of the ordered battle sequence.

    Taken from a replay without bootstrap rounds (cheap next to the bootstrap), so it is exactly
    the digest the engine records, whatever order and tie policy it applies.
    """
    return rate_battles(table, replace(params, bootstrap_rounds=0)).input_digest


def compute_battles(
    table: BattleTable, params: RatingParams, *, progress: bool = False
) -> Computed:
    """Run the engine on battles (``rate_battles``); the only way to run online Elo.

    Raises:
        evalcore.errors.EvalcoreError: the data cannot be rated with these parameters.
    """
    result = rate_battles(table, params, progress=progress)
    return _computed(result, PairCounts.from_battles(table).counts)


def _listing_arguments(params: Mapping[str, Any]) -> list[str]:
    """CLI options for the listing, interval and reweighting parameters that differ from the
    defaults (releases made before they existed record none of them)."""
    arguments = []
    if params.get("below_min_votes_policy", "hide") != "hide":
        arguments.append(f"--below-min-votes={params['below_min_votes_policy']}")
    arguments += [f"--deprecated={name}" for name in params.get("deprecated", [])]
    if params.get("first_vote_per_conversation"):
        arguments.append("--first-vote-per-conversation")
    if params.get("interval", "bootstrap") != "bootstrap":
        arguments.append(f"--interval={params['interval']}")
    if params.get("reweight"):
        arguments += ["--reweight", f"--reweight-floor={params['reweight_floor']}"]
    return arguments


def _computed(result: RatingsResult, counts: PairCounts) -> Computed:
    listed = [
        CoreRow(
            rank=r.rank,
            rank_ub=r.rank_ub,
            model=r.model,
            rating=float(r.rating),
            ci_lower=_optional_float(r.ci_lower),
            ci_upper=_optional_float(r.ci_upper),
            votes=r.votes,
            win_rate=_optional_float(r.win_rate),
            preliminary=r.preliminary,
        )
        for r in result.rows
    ]
    votes = counts.votes_per_model()
    wins, losses = counts.decided_per_model()
    below = []
    for name in sorted(result.below_min_votes):
        i = counts.index_of(name)
        decided = int(wins[i] + losses[i])
        win_rate = int(wins[i]) / decided if decided else None
        below.append(CoreRow(None, None, name, None, None, None, int(votes[i]), win_rate, True))
    diagnostics = dict(result.diagnostics)
    if result.params.uses_listing_columns:
        # Every interval computed (bootstrap and sandwich), so both can be shown side by side.
        diagnostics["intervals"] = {
            method: {
                model: [round(low, 2), round(high, 2)] for model, (low, high) in bounds.items()
            }
            for method, bounds in sorted(result.intervals.items())
        }
        diagnostics["deprecated"] = list(result.deprecated)
    return Computed(
        rows=listed + below,
        core_csv=result.to_csv(),
        input_digest=result.input_digest,
        diagnostics=diagnostics,
    )


def compute_style_view(
    table: BattleTable, params: RatingParams, facts: Mapping[str, Sequence[object]]
) -> dict[str, Any]:
    """The style-controlled table of a release, from battles with style features.

    Contextual Bradley–Terry with sandwich intervals and the release's listing rules;
    ``facts`` are the model-card columns (``export.EXTRA_COLUMNS`` order) copied into rows and
    CSV as for the default table.

    Raises:
        evalcore.errors.EvalcoreError: the battles cannot be rated with style control.
    """
    styled = replace(
        params, method="bt", style_control=True, interval="sandwich", bootstrap_rounds=0
    )
    result = rate_battles(table, styled)
    computed = _computed(result, PairCounts.from_battles(table).counts)
    rows = []
    for position, row in enumerate(computed.rows):
        extra = dict(zip(EXTRA_COLUMNS, facts.get(row.model, [None] * len(EXTRA_COLUMNS))))
        rows.append({"position": position, **asdict(row), **extra})
    return {
        "params": styled.to_dict(),
        "input_digest": result.input_digest,
        "coefficients": dict(result.style_coefficients),
        "csv_text": release_csv(computed.core_csv, facts),
        "rows": rows,
    }


def cli_arguments(params: Mapping[str, Any], category: str = "") -> list[str]:
    """The ``python -m evalcore.ratings`` options that reproduce a release's core columns."""
    arguments = [
        f"--method={params['method']}",
        f"--bootstrap={params['bootstrap_rounds']}",
        f"--seed={params['seed']}",
        f"--bootstrap-sampler={params.get('bootstrap_sampler', LEGACY_SAMPLER)}",
        f"--ties={params['ties']}",
        f"--min-votes={params['min_votes']}",
        f"--ridge={params['ridge']!r}",
        f"--confidence={params['confidence']!r}",
        f"--scale={params['scale']!r}",
        f"--base={params['base']!r}",
        f"--init={params['init']!r}",
    ]
    anchor = params.get("anchor")
    if anchor:
        arguments.append(f"--anchor={anchor['model']}={anchor['rating']!r}")
    if params["method"] == "elo":
        arguments.append(f"--k={params['k']!r}")
    arguments += _listing_arguments(params)
    if category:
        arguments.append(f"--category={category}")
    return arguments
