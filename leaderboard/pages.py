"""Template contexts for the HTML pages (no HTTP here: views parse and respond)."""

from __future__ import annotations

from html import escape
from typing import Any
from urllib.parse import quote, urlencode

from django.urls import reverse
from django.utils.safestring import SafeString, mark_safe

from leaderboard import charts
from leaderboard.exceptions import style_view_of
from leaderboard.models import Release
from leaderboard.ratings import cli_arguments, counts_from_json
from leaderboard.summaries import opponents, predicted_win_rate

TABLE_FIELDS = (
    "position",
    "rank",
    "rank_ub",
    "model",
    "rating",
    "ci_lower",
    "ci_upper",
    "votes",
    "win_rate",
    "organization",
    "license",
    "fewshot_average",
    "fewshot_std",
    "parameters",
    "training_tokens",
    "eval_cost_usd",
    "eval_energy_kwh",
    "eval_co2e_g",
    "preliminary",
)
HEADERS = (
    ("rank", "Rank", True),
    ("rank_ub", "Rank (UB)", True),
    ("model", "Model", False),
    ("rating", "Rating", True),
    ("votes", "Votes", True),
    ("fewshot_average", "Few-shot avg", True),
    ("training_flops", "Train compute (6·N·D)", True),
    ("eval_cost_usd", "Eval cost / energy / CO₂e", True),
    ("organization", "Organization", False),
    ("license", "License", False),
)
SORT_KEYS = (
    "rank",
    "rank_ub",
    "model",
    "rating",
    "votes",
    "win_rate",
    "fewshot_average",
    "training_flops",
    "eval_cost_usd",
    "organization",
    "license",
)
FOREST_MODELS = 40


def _sort(rows: list[dict[str, Any]], key: str, descending: bool) -> list[dict[str, Any]]:
    if key not in SORT_KEYS:
        return rows
    present = [r for r in rows if r[key] is not None]
    missing = [r for r in rows if r[key] is None]

    def order(row: dict[str, Any]) -> Any:
        value = row[key]
        return (value.lower() if isinstance(value, str) else value, row["position"])

    return sorted(present, key=order, reverse=descending) + missing


def model_url(name: str, category: str = "", *, prefix: str | None = None) -> str:
    """The model page's URL; pass ``prefix`` (from :func:`model_prefix`) in loops."""
    url = (prefix or model_prefix()) + quote(name, safe="/") + "/"
    return url + (f"?{urlencode({'category': category})}" if category else "")


def model_prefix() -> str:
    return reverse("leaderboard:model", args=["-"])[: -len("-/")]


def _decorate(row: dict[str, Any], category: str, prefix: str) -> dict[str, Any]:
    row["url"] = model_url(row["model"], category, prefix=prefix)
    lower, upper = row["ci_lower"], row["ci_upper"]
    row["plus"] = None if upper is None else upper - row["rating"]
    row["minus"] = None if lower is None else row["rating"] - lower
    # Training compute ≈ 6·N·D (Kaplan et al. 2020), from the model card facts in the release.
    n, d = row["parameters"], row["training_tokens"]
    row["training_flops"] = None if n is None or d is None else 6.0 * n * d
    return row


def _fewshot_cell(row: dict[str, Any]) -> str:
    if row["fewshot_average"] is None:
        return '<span class="muted">–</span>'
    std = row["fewshot_std"]
    spread = "" if std is None else f' <span class="muted">± {100 * std:.1f}</span>'
    return f"{100 * row['fewshot_average']:.1f}{spread}"


def _compute_cell(row: dict[str, Any]) -> str:
    flops = row["training_flops"]
    if flops is None:
        return '<span class="muted">–</span>'
    ratio = row["training_tokens"] / row["parameters"] if row["parameters"] else None
    per_param = "" if ratio is None else f' <span class="muted">{ratio:.1f} tok/param</span>'
    return f"{flops:.2e}{per_param}"


def _cost_cell(row: dict[str, Any]) -> str:
    if row["eval_cost_usd"] is None:
        return '<span class="muted">–</span>'
    parts = [f"${row['eval_cost_usd']:.4f}"]
    if row["eval_energy_kwh"] is not None:
        parts.append(f"{1000 * row['eval_energy_kwh']:.2f} Wh")
    if row["eval_co2e_g"] is not None:
        parts.append(f"{row['eval_co2e_g']:.2f} g")
    return " / ".join(parts)


def _number(value: float | None, digits: int = 1) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def _mark(row: dict[str, Any]) -> str:
    if not row["preliminary"]:
        return ""
    return ' <span class="pill preliminary" title="fewer votes than the listing minimum">preliminary</span>'


def interval_method(release: Release) -> str:
    """How the release's intervals were made: "bootstrap" or "sandwich" (or "" for none)."""
    params = release.params
    method = params.get("interval", "bootstrap")
    if method == "bootstrap" and not params.get("bootstrap_rounds"):
        return ""
    return str(method)


def table_html(rows: list[dict[str, Any]]) -> SafeString:
    """The ranked table's body. Built in Python: the template engine needs ~0.2 ms per row,
    which is most of the page's budget at 500 models; every text cell is escaped."""
    lines = []
    for row in rows:
        interval = ""
        if row["plus"] is not None and row["minus"] is not None:
            interval = (
                f' <span class="muted">+{_number(row["plus"])}/−{_number(row["minus"])}</span>'
            )
        lines.append(
            f'<tr><td class="num">{row["rank"]}</td><td class="num">{row["rank_ub"]}</td>'
            f'<td><a href="{escape(row["url"])}">{escape(row["model"])}</a>{_mark(row)}</td>'
            f'<td class="num">{_number(row["rating"])}{interval}</td>'
            f'<td class="num">{row["votes"]}</td>'
            f'<td class="num">{_fewshot_cell(row)}</td><td class="num">{_compute_cell(row)}</td>'
            f'<td class="num">{_cost_cell(row)}</td>'
            f"<td>{escape(row['organization'])}</td><td>{escape(row['license'])}</td></tr>"
        )
    return mark_safe("\n".join(lines))  # noqa: S308 - every text cell escaped above


def _forest(rows: list[dict[str, Any]]) -> SafeString:
    top = sorted(rows, key=lambda r: r["position"])[:FOREST_MODELS]
    items = [charts.Interval(r["model"], r["rating"], r["ci_lower"], r["ci_upper"]) for r in top]
    return mark_safe(charts.forest_plot(items))  # noqa: S308 - every label escaped in charts


def _heatmaps(release: Release) -> dict[str, SafeString]:
    data = release.charts or {}
    labels = data.get("models", [])
    if len(labels) < 2:
        return {}
    return {
        name: mark_safe(charts.heatmap(labels, data[key], title=title, percent=percent))  # noqa: S308
        for name, key, title, percent in (
            ("predicted", "predicted", "Predicted win rate (row beats column, %)", True),
            ("observed", "observed", "Observed win rate without ties (row beats column, %)", True),
            ("battles", "battles", "Battle counts", False),
        )
    }


def release_context(
    release: Release, *, sort: str = "rank", descending: bool = False, view: str = "default"
) -> dict[str, Any]:
    """The page of a release; ``view="style"`` shows its style-controlled table instead."""
    style = release.style_view or {}
    if view == "style":
        raw = style_view_of(release)["rows"]
        queryset: Any = [{k: row[k] for k in (*TABLE_FIELDS, "below_min_votes")} for row in raw]
    else:
        queryset = release.rows.order_by("position").values(*TABLE_FIELDS, "below_min_votes")
    prefix = model_prefix()
    values = [_decorate(dict(row), release.category, prefix) for row in queryset]
    listed = [r for r in values if not r["below_min_votes"]]
    return {
        "release": release,
        "view": view,
        "has_style_view": bool(style),
        "style_coefficients": style.get("coefficients", {}),
        "rows_html": table_html(_sort(listed, sort, descending)),
        "below": [r for r in values if r["below_min_votes"]],
        "sort": sort if sort in SORT_KEYS else "rank",
        "descending": descending,
        "headers": HEADERS,
        "forest": _forest(listed),
        "heatmaps": _heatmaps(release) if view == "default" else {},
        "changes": change_summary(release.changes),
        "csv_url": _with_view(release_csv_url(release), view),
        "min_votes": release.params.get("min_votes", 0),
        "interval_method": "sandwich" if view == "style" else interval_method(release),
        "reproduce": " ".join(
            [
                "python -m evalcore.ratings battles.jsonl",
                *cli_arguments(release.params, release.category),
            ]
        ),
    }


def _with_view(url: str, view: str) -> str:
    if view == "default":
        return url
    return url + ("&" if "?" in url else "?") + urlencode({"view": view})


def release_csv_url(release: Release) -> str:
    url = reverse("leaderboard:release-csv", args=[str(release.number)])
    return url + (f"?{urlencode({'category': release.category})}" if release.category else "")


def change_summary(changes: dict[str, Any], *, limit: int = 5) -> dict[str, Any]:
    moves = changes.get("moves", [])
    moved = [m for m in moves if m.get("rank_change")]
    return {
        "previous": changes.get("previous"),
        "new_models": changes.get("new_models", []),
        "dropped_models": changes.get("dropped_models", []),
        "rank_moves": len(moved),
        "top_moves": moved[:limit],
        "largest_delta": max(moves, key=lambda m: abs(m["rating_delta"]), default=None),
    }


def model_context(name: str, history: list[dict[str, Any]], latest: Release) -> dict[str, Any]:
    points = [(h["release__number"], h["rating"], h["ci_lower"], h["ci_upper"]) for h in history]
    ratings = dict(latest.rows.values_list("model", "rating"))
    scale, base = latest.params.get("scale", 400.0), latest.params.get("base", 10.0)
    against = opponents(counts_from_json(latest.input_counts), name)
    for row in against:
        if name in ratings and row["opponent"] in ratings:
            row["predicted"] = predicted_win_rate(
                ratings[name], ratings[row["opponent"]], scale=scale, base=base
            )
    return {
        "name": name,
        "history": list(reversed(history)),
        "chart": mark_safe(charts.history_chart(points, title=f"{name}: rating across releases")),  # noqa: S308
        "latest": latest,
        "opponents": against,
    }
