"""Server-side SVG charts: pure string building, every label escaped, no JavaScript.

Each function returns a complete ``<svg>`` element as a string, sized in CSS pixels through its
``viewBox`` so it scales with the page. Missing values (``None``) are drawn as empty cells or
skipped points, never as zero.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

FONT = 'font-family="system-ui,sans-serif" font-size="11"'
ACCENT = "#2952cc"
MUTED = "#5b6475"


@dataclass(frozen=True)
class Interval:
    """One model's point estimate and interval for the forest plot."""

    label: str
    value: float
    lower: float | None
    upper: float | None


def _number(value: float) -> str:
    return f"{value:.1f}"


def _ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values covering [low, high]."""
    if high <= low:
        return [low]
    raw = (high - low) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.ceil(low / step) * step
    return [first + i * step for i in range(int((high - first) / step) + 1)]


def _svg(width: float, height: float, title: str, body: list[str]) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {_number(width)} {_number(height)}" '
        f'width="{_number(width)}" height="{_number(height)}" role="img" '
        f'aria-label="{escape(title)}" class="chart">'
        f"<title>{escape(title)}</title>" + "".join(body) + "</svg>"
    )


def forest_plot(items: Sequence[Interval], *, title: str = "Ratings with intervals") -> str:
    """Horizontal interval bars with a dot at each rating, one row per model, top to bottom."""
    row, left, right, top = 18.0, 190.0, 30.0, 24.0
    width = 760.0
    plot = width - left - right
    values = [v for i in items for v in (i.value, i.lower, i.upper) if v is not None]
    if not values:
        return _svg(width, 40, title, [f'<text x="10" y="24" {FONT}>No data</text>'])
    low, high = min(values), max(values)
    pad = max((high - low) * 0.05, 1.0)
    low, high = low - pad, high + pad
    height = top + row * len(items) + 24

    def x(value: float) -> float:
        return left + (value - low) / (high - low) * plot

    body = []
    for tick in _ticks(low, high):
        body.append(
            f'<line x1="{_number(x(tick))}" y1="{top - 6}" x2="{_number(x(tick))}" '
            f'y2="{_number(height - 20)}" stroke="#dfe3ea"/>'
            f'<text x="{_number(x(tick))}" y="{top - 10}" text-anchor="middle" {FONT} '
            f'fill="{MUTED}">{tick:g}</text>'
        )
    for index, item in enumerate(items):
        y = top + row * index + row / 2
        body.append(
            f'<text x="{left - 8}" y="{_number(y + 4)}" text-anchor="end" {FONT}>'
            f"{escape(item.label)}</text>"
        )
        if item.lower is not None and item.upper is not None:
            body.append(
                f'<line x1="{_number(x(item.lower))}" y1="{_number(y)}" '
                f'x2="{_number(x(item.upper))}" y2="{_number(y)}" stroke="{ACCENT}" '
                f'stroke-width="2"/>'
            )
        body.append(
            f'<circle cx="{_number(x(item.value))}" cy="{_number(y)}" r="3.5" fill="{ACCENT}">'
            f"<title>{escape(item.label)}: {item.value:.1f}</title></circle>"
        )
    return _svg(width, height, title, body)


def _cell_colour(fraction: float) -> str:
    """Diverging red (0) → white (0.5) → blue (1)."""
    fraction = min(max(fraction, 0.0), 1.0)
    if fraction < 0.5:
        t = fraction / 0.5
        red, green, blue = 214 + (255 - 214) * t, 96 + (255 - 96) * t, 77 + (255 - 77) * t
    else:
        t = (fraction - 0.5) / 0.5
        red, green, blue = 255 - (255 - 41) * t, 255 - (255 - 82) * t, 255 - (255 - 204) * t
    return f"rgb({round(red)},{round(green)},{round(blue)})"


def heatmap(
    labels: Sequence[str],
    matrix: Sequence[Sequence[float | None]],
    *,
    title: str,
    percent: bool = True,
) -> str:
    """Square matrix: row model vs column model. ``percent`` values are fractions in [0, 1];
    otherwise they are counts, shaded on a log scale."""
    n = len(labels)
    cell, left, top = 30.0, 170.0, 150.0
    width, height = left + cell * n + 10, top + cell * n + 10
    peak = max((v for r in matrix for v in r if v is not None), default=0.0)
    body = []
    for j, label in enumerate(labels):
        cx = left + cell * j + cell / 2
        body.append(
            f'<text transform="translate({_number(cx + 4)},{top - 6}) rotate(-60)" {FONT}>'
            f"{escape(label)}</text>"
        )
    for i, label in enumerate(labels):
        y = top + cell * i
        body.append(
            f'<text x="{left - 6}" y="{_number(y + cell / 2 + 4)}" text-anchor="end" {FONT}>'
            f"{escape(label)}</text>"
        )
        for j in range(n):
            value = matrix[i][j]
            if value is None:
                continue
            if percent:
                fill, text = _cell_colour(value), f"{value * 100:.0f}"
            else:
                shade = math.log1p(value) / math.log1p(peak) if peak > 0 else 0.0
                fill, text = _cell_colour(0.5 + shade / 2), _compact(value)
            x = left + cell * j
            body.append(
                f'<rect x="{_number(x)}" y="{_number(y)}" width="{cell}" height="{cell}" '
                f'fill="{fill}" stroke="#fff"><title>{escape(labels[i])} vs '
                f"{escape(labels[j])}: {text}</title></rect>"
                f'<text x="{_number(x + cell / 2)}" y="{_number(y + cell / 2 + 4)}" '
                f'text-anchor="middle" font-size="9">{text}</text>'
            )
    return _svg(width, height, title, body)


def _compact(value: float) -> str:
    if value >= 1_000_000:
        return f"{value / 1_000_000:.1f}M"
    if value >= 1_000:
        return f"{value / 1_000:.0f}k"
    return f"{value:.0f}"


def history_chart(
    points: Sequence[tuple[int, float, float | None, float | None]],
    *,
    title: str = "Rating across releases",
) -> str:
    """Line through (release number, rating) with the interval as a shaded band."""
    width, height, left, right, top, bottom = 760.0, 260.0, 60.0, 20.0, 20.0, 36.0
    if not points:
        return _svg(width, 40, title, [f'<text x="10" y="24" {FONT}>No releases yet</text>'])
    numbers = [p[0] for p in points]
    values = [v for p in points for v in p[1:] if v is not None]
    low_x, high_x = min(numbers), max(numbers)
    if high_x == low_x:
        low_x, high_x = low_x - 1, high_x + 1
    low_y, high_y = min(values), max(values)
    pad = max((high_y - low_y) * 0.1, 5.0)
    low_y, high_y = low_y - pad, high_y + pad

    def x(value: float) -> float:
        return left + (value - low_x) / (high_x - low_x) * (width - left - right)

    def y(value: float) -> float:
        return top + (high_y - value) / (high_y - low_y) * (height - top - bottom)

    body = []
    for tick in _ticks(low_y, high_y, 4):
        body.append(
            f'<line x1="{left}" y1="{_number(y(tick))}" x2="{width - right}" '
            f'y2="{_number(y(tick))}" stroke="#dfe3ea"/><text x="{left - 6}" '
            f'y="{_number(y(tick) + 4)}" text-anchor="end" {FONT} fill="{MUTED}">{tick:g}</text>'
        )
    banded = [p for p in points if p[2] is not None and p[3] is not None]
    if banded:
        upper = [f"{_number(x(p[0]))},{_number(y(p[3]))}" for p in banded]  # type: ignore[arg-type]
        lower = [f"{_number(x(p[0]))},{_number(y(p[2]))}" for p in reversed(banded)]  # type: ignore[arg-type]
        body.append(f'<polygon points="{" ".join(upper + lower)}" fill="{ACCENT}" opacity="0.15"/>')
    for number, _, lower_value, upper_value in banded:  # whiskers: visible even for one release
        body.append(
            f'<line x1="{_number(x(number))}" y1="{_number(y(lower_value))}" '  # type: ignore[arg-type]
            f'x2="{_number(x(number))}" y2="{_number(y(upper_value))}" '  # type: ignore[arg-type]
            f'stroke="{ACCENT}" stroke-opacity="0.5"/>'
        )
    line = " ".join(f"{_number(x(p[0]))},{_number(y(p[1]))}" for p in points)
    body.append(f'<polyline points="{line}" fill="none" stroke="{ACCENT}" stroke-width="2"/>')
    for number, rating, _, _ in points:
        body.append(
            f'<circle cx="{_number(x(number))}" cy="{_number(y(rating))}" r="3" fill="{ACCENT}">'
            f"<title>release {number}: {rating:.1f}</title></circle>"
        )
    for tick in _ticks(low_x, high_x, min(8, max(1, int(high_x - low_x)))):
        if float(tick).is_integer() and min(numbers) <= tick <= max(numbers):
            body.append(
                f'<text x="{_number(x(tick))}" y="{height - bottom + 16}" text-anchor="middle" '
                f'{FONT} fill="{MUTED}">{tick:g}</text>'
            )
    body.append(
        f'<text x="{_number(width / 2)}" y="{height - 4}" text-anchor="middle" {FONT} '
        f'fill="{MUTED}">release</text>'
    )
    return _svg(width, height, title, body)
