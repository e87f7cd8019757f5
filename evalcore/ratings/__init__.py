"""Ratings engine: Elo, Bradley–Terry (ties as half wins, or Davidson), bootstrap intervals.

Typical use::

    from evalcore.ratings import PairCounts, RatingParams, compute_ratings

    counts, report = PairCounts.from_battles(records, skip_invalid=True)
    result = compute_ratings(counts, RatingParams(bootstrap_rounds=1000, seed=0))
    print(result.to_csv())

Everything counts-based works on pair × outcome counts, so a fit or a bootstrap round costs the
same for a thousand votes or a million. ``rate_battles`` goes from battles (any reader in
:mod:`evalcore.ratings.io`) to a result, and is the only way to run order-dependent online Elo.

Documented choices (details in the module named):

* Ties: ``tie`` and ``tie (bothbad)`` are half a win each way (``ties="half"``), or both-bad
  votes are dropped (``"exclude_bothbad"``), or ties are modelled (``method="davidson"``).
  (:mod:`~evalcore.ratings.bradley_terry`)
* No finite MLE (a disconnected comparison graph, a group that never lost): a clear error by
  default; ``ridge > 0`` adds a Gaussian prior and always gives finite ratings.
  (:mod:`~evalcore.ratings.graph`)
* Bootstrap: a multinomial over the pair × outcome cells, exactly the law of resampling votes;
  every round centred like the point fit, the anchor applied afterwards, so the anchor keeps an
  honest interval; rounds without a finite MLE get a tiny ridge and are counted.
  (:mod:`~evalcore.ratings.bootstrap`)
* ``min_votes`` hides models from the rows, ranks and matrices; they are still fitted.
  ``votes`` counts every battle of a model; ``win_rate`` leaves ties out.
  (:mod:`~evalcore.ratings.result`)
* Online Elo runs on battles sorted by ``tstamp`` (stable); its bootstrap replays battles drawn
  with replacement in drawn order, as FastChat does; on counts alone it is refused.
  (:mod:`~evalcore.ratings.elo`)
"""

from __future__ import annotations

from evalcore.ratings.battles import BattleFilter, BattleTable, SkipReport
from evalcore.ratings.counts import AggregatedBattles, PairCounts
from evalcore.ratings.elo import compute_online_elo
from evalcore.ratings.engine import compute_ratings, rate_battles
from evalcore.ratings.io import read_battles, read_counts, read_input
from evalcore.ratings.params import RatingParams, parse_anchor
from evalcore.ratings.result import CSV_COLUMNS, RatingMatrices, RatingRow, RatingsResult

__all__ = [
    "CSV_COLUMNS",
    "AggregatedBattles",
    "BattleFilter",
    "BattleTable",
    "PairCounts",
    "RatingMatrices",
    "RatingParams",
    "RatingRow",
    "RatingsResult",
    "SkipReport",
    "compute_online_elo",
    "compute_ratings",
    "parse_anchor",
    "rate_battles",
    "read_battles",
    "read_counts",
    "read_input",
]
