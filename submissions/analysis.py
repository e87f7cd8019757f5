"""The analysis page's data: few-shot average vs arena rating, rating vs training compute.

Ratings come from the latest overall leaderboard release when there is one. The charts are
server-side SVG; the saturating curve ``rating = a - b·exp(-c·x)`` is fitted with scipy.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape

from contestants.models import Contestant

logger = logging.getLogger(__name__)

WIDTH, HEIGHT, MARGIN = 560, 340, 56


@dataclass(frozen=True)
class Point:
    name: str
    x: float
    y: float


@dataclass(frozen=True)
class Curve:
    a: float
    b: float
    c: float
    do_not_call_in_templates = True  # a template reads a, b, c; it must not call the curve

    def __call__(self, x: float) -> float:
        return self.a - self.b * math.exp(-self.c * x)


def latest_ratings() -> dict[str, float]:
    """Model name → rating in the latest overall release ({} when there is none)."""
    try:
        from leaderboard.models import Release, ReleaseRow
    except ImportError:
        return {}
    release = Release.objects.light().latest_for("")
    if release is None:
        return {}
    rows = ReleaseRow.objects.filter(release=release).values_list("model", "rating")
    return {name: float(rating) for name, rating in rows}


def analysis_points(ratings: dict[str, float]) -> tuple[list[Point], list[Point]]:
    """(few-shot average, rating) and (training FLOPs, rating) points of rated contestants."""
    fewshot, compute = [], []
    for contestant in Contestant.objects.with_evaluation().filter(name__in=list(ratings)):
        rating = ratings[contestant.name]
        if contestant.fewshot_average is not None:
            fewshot.append(Point(contestant.name, contestant.fewshot_average, rating))
        flops = contestant.training_flops
        if flops:
            compute.append(Point(contestant.name, flops, rating))
    return fewshot, compute


def fit_saturating(points: Sequence[Point]) -> Curve | None:
    """Least-squares ``a - b·exp(-c·x)``; ``None`` with fewer than 3 points or no convergence."""
    if len({p.x for p in points}) < 3:
        return None
    import numpy as np
    from scipy.optimize import curve_fit

    xs = np.array([p.x for p in points])
    ys = np.array([p.y for p in points])

    def model(x: np.ndarray, a: float, b: float, c: float) -> np.ndarray:
        return a - b * np.exp(-c * x)

    span = float(ys.max() - ys.min()) or 1.0
    start = (float(ys.max()) + span, 2 * span, 1.0 / max(float(xs.std()), 1e-6))
    try:
        params, _ = curve_fit(model, xs, ys, p0=start, bounds=([-1e6, 0, 0], [1e6, 1e7, 1e4]))
    except (RuntimeError, ValueError) as error:
        logger.info("saturating fit failed: %s", error)
        return None
    return Curve(*(float(v) for v in params))


def scatter_svg(
    points: Sequence[Point],
    *,
    x_label: str,
    y_label: str,
    log_x: bool = False,
    curve: Callable[[float], float] | None = None,
) -> str:
    """A self-contained SVG scatter plot (labels escaped)."""
    if not points:
        return ""
    fx = (lambda v: math.log10(v)) if log_x else (lambda v: v)
    xs, ys = [fx(p.x) for p in points], [p.y for p in points]
    x0, x1 = _padded(min(xs), max(xs))
    y0, y1 = _padded(min(ys), max(ys))

    def sx(v: float) -> float:
        return MARGIN + (v - x0) / (x1 - x0) * (WIDTH - 2 * MARGIN)

    def sy(v: float) -> float:
        return HEIGHT - MARGIN - (v - y0) / (y1 - y0) * (HEIGHT - 2 * MARGIN)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(y_label)} against {escape(x_label)}" class="chart">',
        f'<rect x="{MARGIN}" y="{MARGIN}" width="{WIDTH - 2 * MARGIN}" '
        f'height="{HEIGHT - 2 * MARGIN}" fill="#fff" stroke="#dfe3ea"/>',
        *_ticks(x0, x1, y0, y1, sx, sy, log_x),
        f'<text x="{WIDTH / 2}" y="{HEIGHT - 12}" text-anchor="middle">{escape(x_label)}</text>',
        f'<text x="14" y="{HEIGHT / 2}" text-anchor="middle" '
        f'transform="rotate(-90 14 {HEIGHT / 2})">{escape(y_label)}</text>',
    ]
    if curve is not None:
        steps = [x0 + (x1 - x0) * i / 60 for i in range(61)]
        path = " ".join(f"{sx(x):.1f},{sy(min(max(curve(x), y0), y1)):.1f}" for x in steps)
        parts.append(f'<polyline points="{path}" fill="none" stroke="#c2410c" stroke-width="2"/>')
    for point, x, y in zip(points, xs, ys, strict=True):
        parts.append(
            f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="4" fill="#2952cc">'
            f"<title>{escape(point.name)}: {point.x:.4g}, {point.y:.1f}</title></circle>"
        )
    parts.append("</svg>")
    return "".join(parts)


def _padded(low: float, high: float) -> tuple[float, float]:
    pad = (high - low) * 0.08 or max(abs(low) * 0.1, 1.0)
    return low - pad, high + pad


def _ticks(
    x0: float,
    x1: float,
    y0: float,
    y1: float,
    sx: Callable[[float], float],
    sy: Callable[[float], float],
    log_x: bool,
) -> list[str]:
    out = []
    for i in range(5):
        x = x0 + (x1 - x0) * i / 4
        label = f"1e{x:.1f}" if log_x else f"{x:.3g}"
        out.append(
            f'<text x="{sx(x):.1f}" y="{HEIGHT - MARGIN + 16}" text-anchor="middle" '
            f'font-size="11">{label}</text>'
        )
        y = y0 + (y1 - y0) * i / 4
        out.append(
            f'<text x="{MARGIN - 6}" y="{sy(y):.1f}" text-anchor="end" font-size="11">{y:.0f}</text>'
        )
    return out
