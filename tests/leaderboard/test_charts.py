from __future__ import annotations

import xml.etree.ElementTree as ET

from leaderboard import charts

SVG = "{http://www.w3.org/2000/svg}"


def parse(svg: str) -> ET.Element:
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG}svg"
    return root


def test_forest_plot_draws_one_interval_and_point_per_model() -> None:
    items = [
        charts.Interval("alpha", 1100.0, 1080.0, 1120.0),
        charts.Interval("beta", 1000.0, 990.0, 1010.0),
        charts.Interval("gamma", 900.0, None, None),
    ]
    root = parse(charts.forest_plot(items))
    assert len(root.findall(f"{SVG}circle")) == 3
    bars = [line for line in root.findall(f"{SVG}line") if line.get("stroke") == charts.ACCENT]
    assert len(bars) == 2  # gamma has no interval
    labels = [t.text for t in root.findall(f"{SVG}text")]
    assert {"alpha", "beta", "gamma"} <= set(labels)


def test_forest_plot_places_higher_ratings_further_right() -> None:
    root = parse(
        charts.forest_plot(
            [charts.Interval("a", 1200, 1190, 1210), charts.Interval("b", 800, 790, 810)]
        )
    )
    a, b = (float(c.get("cx", "0")) for c in root.findall(f"{SVG}circle"))
    assert a > b


def test_chart_labels_are_escaped() -> None:
    svg = charts.forest_plot([charts.Interval('<script>"x"&', 1000, 990, 1010)])
    assert "<script>" not in svg
    assert "&lt;script&gt;" in svg
    parse(svg)


def test_heatmap_has_a_cell_per_off_diagonal_value_and_skips_missing() -> None:
    matrix = [[None, 0.7, None], [0.3, None, 0.5], [None, 0.5, None]]
    root = parse(charts.heatmap(["a", "b", "c"], matrix, title="Observed"))
    assert len(root.findall(f"{SVG}rect")) == 4
    cell_texts = {t.text for t in root.findall(f"{SVG}text") if t.get("font-size") == "9"}
    assert cell_texts == {"70", "30", "50"}


def test_count_heatmap_writes_compact_counts() -> None:
    root = parse(
        charts.heatmap(["a", "b"], [[None, 12500], [12500, None]], title="Battles", percent=False)
    )
    assert {t.text for t in root.findall(f"{SVG}text") if t.get("font-size") == "9"} == {"12k"}


def test_history_chart_draws_line_and_interval_band() -> None:
    root = parse(charts.history_chart([(1, 1000.0, 990.0, 1010.0), (2, 1010.0, 1001.0, 1019.0)]))
    assert root.find(f"{SVG}polyline") is not None
    band = root.find(f"{SVG}polygon")
    assert band is not None and len(band.get("points", "").split()) == 4


def test_charts_without_data_still_render() -> None:
    parse(charts.forest_plot([]))
    parse(charts.history_chart([]))
