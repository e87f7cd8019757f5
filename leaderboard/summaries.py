"""Small derived views of a release, computed once at publish time and stored with it:
what changed since the previous release, and the matrices behind the heatmaps."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from leaderboard.ratings import CoreRow, CountRow

HEATMAP_MODELS = 20  # like the public arenas' top-N heatmaps; keeps the page small


def changes_since(
    previous_number: int | None, previous: Sequence[Mapping[str, Any]], current: Sequence[CoreRow]
) -> dict[str, Any]:
    """Rank moves, rating deltas, new and dropped models against the previous release's rows."""
    if previous_number is None:
        return {"previous": None, "new_models": [], "dropped_models": [], "moves": []}
    before = {row["model"]: row for row in previous}
    now = {row.model for row in current}
    moves = []
    for row in current:
        old = before.get(row.model)
        if old is None or old["rating"] is None or row.rating is None:
            continue
        moves.append(
            {
                "model": row.model,
                "rank_before": old["rank"],
                "rank": row.rank,
                "rank_change": None
                if old["rank"] is None or row.rank is None
                else old["rank"] - row.rank,
                "rating_delta": round(row.rating - old["rating"], 6),
            }
        )
    moves.sort(key=lambda m: (-abs(m["rank_change"] or 0), -abs(m["rating_delta"]), m["model"]))
    return {
        "previous": previous_number,
        "new_models": [row.model for row in current if row.model not in before],
        "dropped_models": sorted(set(before) - now),
        "moves": moves,
    }


def predicted_win_rate(rating: float, opponent: float, *, scale: float, base: float) -> float:
    """P(model beats opponent | decided) on the engine's rating scale."""
    exponent = (opponent - rating) / scale
    if exponent > 300:
        return 0.0
    return 1.0 / (1.0 + base**exponent)


def heatmap_data(
    counts: Sequence[CountRow], listed: Sequence[CoreRow], *, scale: float, base: float
) -> dict[str, Any]:
    """Battle counts, observed (non-tie) and predicted win rates among the top models."""
    top = [row for row in listed if not row.below_min_votes][:HEATMAP_MODELS]
    names = [row.model for row in top]
    index = {name: i for i, name in enumerate(names)}
    n = len(names)
    battles: list[list[int | None]] = [[None if i == j else 0 for j in range(n)] for i in range(n)]
    wins = [[0] * n for _ in range(n)]
    for a, b, a_wins, b_wins, ties, both_bad in counts:
        i, j = index.get(a), index.get(b)
        if i is None or j is None:
            continue
        battles[i][j] = battles[j][i] = a_wins + b_wins + ties + both_bad
        wins[i][j], wins[j][i] = a_wins, b_wins
    observed: list[list[float | None]] = [
        [
            None
            if i == j or wins[i][j] + wins[j][i] == 0
            else wins[i][j] / (wins[i][j] + wins[j][i])
            for j in range(n)
        ]
        for i in range(n)
    ]
    predicted: list[list[float | None]] = [
        [
            None
            if i == j
            else round(predicted_win_rate(top[i].rating, top[j].rating, scale=scale, base=base), 6)
            for j in range(n)
        ]
        for i in range(n)
    ]
    return {"models": names, "battles": battles, "observed": observed, "predicted": predicted}


def opponents(counts: Sequence[CountRow], model: str) -> list[dict[str, Any]]:
    """Per opponent of ``model``: battles, wins, losses, ties, observed non-tie win rate."""
    found = []
    for a, b, a_wins, b_wins, ties, both_bad in counts:
        if model not in (a, b):
            continue
        won, lost = (a_wins, b_wins) if a == model else (b_wins, a_wins)
        found.append(
            {
                "opponent": b if a == model else a,
                "battles": a_wins + b_wins + ties + both_bad,
                "wins": won,
                "losses": lost,
                "ties": ties + both_bad,
                "observed": won / (won + lost) if won + lost else None,
            }
        )
    return sorted(found, key=lambda o: (-o["battles"], o["opponent"]))
