"""Command line: ``python -m evalcore.ratings BATTLES_FILE [options]``.

Reads battles (JSON list, JSON Lines, CSV or parquet) or an aggregated-counts file, rates them
and writes CSV (columns ``rank,rank_ub,model,rating,ci_lower,ci_upper,votes,win_rate``), JSON
(the full result) or a text table. Exit status: 0 on success, 2 on bad input or parameters.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from evalcore.errors import EvalcoreError, InvalidParameterError
from evalcore.ratings.battles import BattleFilter
from evalcore.ratings.counts import PairCounts
from evalcore.ratings.engine import compute_ratings, rate_battles
from evalcore.ratings.io import FORMATS, read_input
from evalcore.ratings.params import (
    BELOW_MIN_VOTES,
    INTERVALS,
    METHODS,
    TIE_POLICIES,
    RatingParams,
    parse_anchor,
)
from evalcore.ratings.result import RatingsResult
from evalcore.ratings.sampling import CURRENT_SAMPLER, SAMPLERS

OUTPUT_FORMATS = ("csv", "json", "table")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m evalcore.ratings",
        description="Rate models from pairwise battles (Bradley-Terry, Davidson or online Elo).",
    )
    _add_fit_arguments(parser)
    _add_selection_arguments(parser)
    _add_model_arguments(parser)
    _add_scale_arguments(parser)
    _add_io_arguments(parser)
    return parser


def _add_fit_arguments(parser: argparse.ArgumentParser) -> None:
    """The input file, the method, the bootstrap, the anchor and the vote minimum."""
    parser.add_argument("battles_file", metavar="BATTLES_FILE", help="battles or aggregated counts")
    parser.add_argument("--method", choices=METHODS, default="bt")
    parser.add_argument(
        "--bootstrap", type=int, default=1000, metavar="N", help="bootstrap rounds (0: none)"
    )
    parser.add_argument("--seed", type=int, default=0, metavar="S")
    parser.add_argument(
        "--bootstrap-sampler",
        type=int,
        choices=SAMPLERS,
        default=CURRENT_SAMPLER,
        help="version of the bootstrap draws (1: releases made before versions existed)",
    )
    parser.add_argument("--anchor", metavar="MODEL=RATING", help="shift so MODEL gets RATING")
    parser.add_argument(
        "--min-votes", type=int, default=0, metavar="N", help="hide models with fewer votes"
    )


def _add_selection_arguments(parser: argparse.ArgumentParser) -> None:
    """Slices of the battles and the listing rules."""
    parser.add_argument("--category", metavar="C", help="only battles with this category")
    parser.add_argument("--language", metavar="L", help="only battles in this language")
    parser.add_argument("--judge", metavar="J", help="only battles by this judge")
    parser.add_argument("--anony-only", action="store_true", help="only anonymous battles")
    parser.add_argument(
        "--below-min-votes",
        choices=BELOW_MIN_VOTES,
        default="hide",
        help="hide models under --min-votes, or list them marked preliminary",
    )
    parser.add_argument(
        "--deprecated",
        action="append",
        default=[],
        metavar="MODEL",
        help="fit MODEL but leave it out of the table (repeatable)",
    )
    parser.add_argument(
        "--first-vote-per-conversation",
        action="store_true",
        help="keep only the first vote of each conversation_id",
    )


def _add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """Interval method, reweighting and style control."""
    parser.add_argument(
        "--interval",
        choices=INTERVALS,
        default="bootstrap",
        help="method of ci_lower/ci_upper (sandwich: closed form, bt only)",
    )
    parser.add_argument(
        "--reweight", action="store_true", help="weight pairs by 1/max(n_pair, floor)"
    )
    parser.add_argument("--reweight-floor", type=int, default=50, metavar="C")
    parser.add_argument(
        "--style-control",
        action="store_true",
        help="contextual Bradley-Terry on the answers' style columns (needs --interval sandwich)",
    )
    parser.add_argument("--style-penalty", type=float, default=0.001, metavar="L")


def _add_scale_arguments(parser: argparse.ArgumentParser) -> None:
    """Tie policy, prior, confidence and the rating scale."""
    parser.add_argument("--ties", choices=TIE_POLICIES, default="half")
    parser.add_argument(
        "--ridge", type=float, default=0.0, help="Gaussian prior strength (0: plain MLE)"
    )
    parser.add_argument("--confidence", type=float, default=0.95)
    parser.add_argument("--k", type=float, default=4.0, help="online Elo K-factor")
    parser.add_argument("--scale", type=float, default=400.0)
    parser.add_argument("--base", type=float, default=10.0)
    parser.add_argument("--init", type=float, default=1000.0)


def _add_io_arguments(parser: argparse.ArgumentParser) -> None:
    """Input and output handling."""
    parser.add_argument(
        "--skip-invalid", action="store_true", help="skip bad records instead of failing"
    )
    parser.add_argument(
        "--input-format", choices=FORMATS, help="override the format from the suffix"
    )
    parser.add_argument("--format", choices=OUTPUT_FORMATS, default="csv", dest="output_format")
    parser.add_argument("-o", "--output", metavar="OUT", help="write here instead of stdout")
    progress = parser.add_mutually_exclusive_group()
    progress.add_argument("--progress", dest="progress", action="store_true", default=None)
    progress.add_argument("--no-progress", dest="progress", action="store_false")


def params_from_args(args: argparse.Namespace) -> RatingParams:
    return RatingParams(
        method=args.method,
        bootstrap_rounds=args.bootstrap,
        seed=args.seed,
        bootstrap_sampler=args.bootstrap_sampler,
        anchor=parse_anchor(args.anchor) if args.anchor else None,
        ties=args.ties,
        min_votes=args.min_votes,
        below_min_votes_policy=args.below_min_votes,
        deprecated=tuple(args.deprecated),
        first_vote_per_conversation=args.first_vote_per_conversation,
        interval=args.interval,
        reweight=args.reweight,
        reweight_floor=args.reweight_floor,
        style_control=args.style_control,
        style_penalty=args.style_penalty,
        ridge=args.ridge,
        confidence=args.confidence,
        k=args.k,
        scale=args.scale,
        base=args.base,
        init=args.init,
    )


def run(args: argparse.Namespace) -> RatingsResult:
    """Read, rate and return the result for parsed arguments."""
    params = params_from_args(args)
    selection = BattleFilter(args.category, args.language, args.judge, args.anony_only)
    progress = sys.stderr.isatty() if args.progress is None else args.progress
    data = read_input(
        args.battles_file,
        file_format=args.input_format,
        skip_invalid=args.skip_invalid,
        attributes=needed_attributes(args),
    )
    if isinstance(data, PairCounts):
        if params.style_control or params.first_vote_per_conversation:
            raise InvalidParameterError(
                "style_control" if params.style_control else "first_vote_per_conversation",
                "needs battles; the input holds aggregated counts",
            )
        if not selection.is_empty():
            raise InvalidParameterError(
                "category", "slices need battles; the input holds aggregated counts"
            )
        return compute_ratings(data, params, progress=progress)
    return rate_battles(
        data, params, selection=None if selection.is_empty() else selection, progress=progress
    )


def needed_attributes(args: argparse.Namespace) -> tuple[str, ...]:
    """The attribute columns this run uses; the readers skip the others."""
    wanted = [name for name in ("category", "language", "judge") if getattr(args, name)]
    if args.anony_only:
        wanted.append("anony")
    if args.first_vote_per_conversation:
        wanted.append("conversation_id")
    return tuple(wanted)


def render(result: RatingsResult, output_format: str) -> str:
    if output_format == "json":
        return result.to_json()
    if output_format == "table":
        return result.to_table()
    return result.to_csv()


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result = run(args)
    except EvalcoreError as error:
        print(f"error [{error.code}]: {error.message}", file=sys.stderr)
        return 2
    text = render(result, args.output_format)
    if args.output:
        with open(args.output, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
    else:
        sys.stdout.write(text)
    _summarise(result)
    return 0


def _summarise(result: RatingsResult) -> None:
    skipped = result.skipped
    note = (
        f"; skipped {skipped.skipped_rows} invalid rows {dict(skipped.reasons)}"
        if skipped and skipped.skipped_rows
        else ""
    )
    hidden = f"; {len(result.below_min_votes)} below --min-votes" if result.below_min_votes else ""
    print(f"rated {len(result.rows)} models{hidden}{note}", file=sys.stderr)
