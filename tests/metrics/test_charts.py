"""The SVG charts: well-formed, accessible, escaped, no script, honest about missing values."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.utils.safestring import SafeString

from metrics import charts, kpis

SVG = "{http://www.w3.org/2000/svg}"


def parse(svg: str) -> ET.Element:
    root = ET.fromstring(svg)  # noqa: S314 - our own output, parsed to prove it is well-formed
    assert root.tag == f"{SVG}svg"
    return root


def texts(root: ET.Element) -> list[str]:
    return [el.text or "" for el in root.iter(f"{SVG}text")]


def no_script(root: ET.Element) -> None:
    for el in root.iter():
        assert not el.tag.endswith("script")
        assert not [name for name in el.attrib if name.lower().startswith("on")], el.attrib


def series(minutes: int = 60) -> list[dict]:
    start = datetime(2026, 3, 1, 11, 31, tzinfo=UTC)
    return [
        {"minute": start + timedelta(minutes=i), "completed": 2 if i % 10 == 0 else 0, "failed": 1 if i == 59 else 0}
        for i in range(minutes)
    ]


def test_the_throughput_chart_is_an_image_whose_label_states_the_totals():
    svg = charts.throughput_chart(series())
    assert isinstance(svg, SafeString)
    root = parse(svg)
    assert root.get("role") == "img"
    assert root.get("aria-label") == (
        "Throughput over the last 60 minutes: 12 completed, 1 failed; busiest minute 2 finished."
    )
    assert root.find(f"{SVG}title").text == "Tasks completed and failed per minute, last 60 minutes"
    no_script(root)


def test_the_throughput_chart_draws_both_series_with_legend_and_axes():
    root = parse(charts.throughput_chart(series()))
    lines = root.findall(f"{SVG}polyline")
    assert [line.find(f"{SVG}title").text for line in lines] == ["completed", "failed"]
    assert [len(line.get("points").split()) for line in lines] == [60, 60]
    assert [line.get("stroke") for line in lines] == [charts.COMPLETED_COLOUR, charts.FAILED_COLOUR]
    words = texts(root)
    assert {"completed", "failed", "minute (UTC)", "tasks per minute"} <= set(words)
    assert {"11:31", "11:41", "12:30"} <= set(words)  # every tenth minute, and the last
    assert {"0", "1", "2"} <= set(words)  # the y axis: 0 to the peak of 2, in whole tasks
    assert "0.5" not in words


def test_the_chart_of_a_quiet_hour_is_flat_at_zero():
    quiet = [{**p, "completed": 0, "failed": 0} for p in series()]
    root = parse(charts.throughput_chart(quiet))
    assert "0 completed, 0 failed" in root.get("aria-label")
    ys = {pt.split(",")[1] for line in root.findall(f"{SVG}polyline") for pt in line.get("points").split()}
    assert len(ys) == 1


def test_the_run_time_chart_has_one_bar_a_bucket():
    counts = [3, 0, 1, 0, 0, 2]
    buckets = [
        {"bucket": b.label, "min_s": b.min_s, "max_s": b.max_s, "count": n}
        for b, n in zip(kpis.RUN_TIME_BUCKETS, counts, strict=True)
    ]
    root = parse(charts.run_time_chart(buckets))
    assert root.get("role") == "img"
    assert root.get("aria-label") == (
        "Run times of the 6 tasks completed in the last hour: "
        "< 1 s: 3, 1-5 s: 0, 5-30 s: 1, 30 s-2 min: 0, 2-10 min: 0, ≥ 10 min: 2."
    )
    bars = root.findall(f"{SVG}rect")
    assert [bar.find(f"{SVG}title").text for bar in bars] == [
        f"{b.label}: {n}" for b, n in zip(kpis.RUN_TIME_BUCKETS, counts, strict=True)
    ]
    widths = [float(bar.get("width")) for bar in bars]
    assert widths[0] > widths[5] > widths[2] > widths[1] == 0


def test_every_text_of_a_bar_chart_is_escaped():
    evil = '<script>alert("x")</script> & "quoted"'
    svg = charts.bar_chart([(evil, 3)], title=f"Title {evil}", value_label=f"rows {evil}")
    assert "<script" not in svg
    root = parse(svg)
    no_script(root)
    assert root.find(f"{SVG}title").text == f"Title {evil}"
    assert evil in root.get("aria-label")
    assert root.find(f"{SVG}rect/{SVG}title").text == f"{evil}: 3"
    assert f"rows {evil}" in texts(root)


def test_every_text_of_a_line_chart_is_escaped():
    evil = '"><script>alert(1)</script>'
    svg = charts.line_chart(
        labels=[evil, "b"],
        series=[charts.Series(evil, [1, 2], '"red" onload="alert(1)')],
        title=evil,
        summary=evil,
        x_label=evil,
        y_label=evil,
    )
    assert "<script" not in svg
    root = parse(svg)
    no_script(root)
    assert root.get("aria-label") == evil
    assert texts(root).count(evil) == 4  # the first tick, the legend, both axis labels


def test_a_bar_chart_takes_any_label_and_value_column():
    rows = [("alpha", 10), (42, Decimal("2.5")), (None, 0.25), ("negative", -5)]
    root = parse(charts.bar_chart(rows, title="Query", value_label="value"))
    words = texts(root)
    assert {"alpha", "42", "None", "negative", "10", "2.5", "0.25", "-5"} <= set(words)
    bars = {bar.find(f"{SVG}title").text.split(":")[0]: bar for bar in root.findall(f"{SVG}rect")}
    zero = float(root.find(f"{SVG}line").get("x1"))
    assert float(bars["negative"].get("x")) + float(bars["negative"].get("width")) == pytest.approx(zero)
    assert float(bars["alpha"].get("x")) == pytest.approx(zero)


def test_a_value_that_is_not_a_number_draws_no_bar_and_reads_as_a_dash():
    rows = [("null", None), ("text", "abc"), ("nan", float("nan")), ("inf", float("inf")), ("ok", 1)]
    svg = charts.bar_chart(rows, title="Query", value_label="value")
    root = parse(svg)
    assert [bar.find(f"{SVG}title").text for bar in root.findall(f"{SVG}rect")] == ["ok: 1"]
    assert texts(root).count("—") == 4
    coordinates = [el.get(a) for el in root.iter() for a in ("x", "y", "width") if el.get(a)]
    assert not [c for c in coordinates if c.lower() in ("nan", "inf", "-inf")]


def test_extreme_values_keep_every_coordinate_finite():
    svg = charts.bar_chart([("low", -1.7e308), ("high", 1.7e308)], title="Extremes", value_label="v")
    root = parse(svg)
    for bar in root.findall(f"{SVG}rect"):
        assert float(bar.get("width")) >= 0
        assert math.isfinite(float(bar.get("x")))


def test_a_long_result_is_cut_and_the_summary_says_so():
    root = parse(charts.bar_chart([(f"row {i}", i) for i in range(60)], title="Many", value_label="n", max_bars=50))
    assert len(root.findall(f"{SVG}rect")) == 50
    assert root.get("aria-label").endswith("(first 50 of 60 shown)")


def test_a_long_label_is_shortened_on_screen_and_whole_in_its_tooltip():
    label = "x" * 100
    root = parse(charts.bar_chart([(label, 1)], title="Long", value_label="n", label_chars=20))
    assert "x" * 19 + "…" in texts(root)
    assert root.find(f"{SVG}rect/{SVG}title").text == f"{label}: 1"


def test_an_empty_bar_chart_says_no_data():
    root = parse(charts.bar_chart([], title="Nothing", value_label="n"))
    assert "No data" in texts(root)
    assert root.get("aria-label") == "Nothing: no data"


@pytest.mark.parametrize(
    ("value", "ceiling"), [(0, 1), (-3, 1), (0.3, 0.5), (1, 1), (1.1, 2), (2, 2), (2.2, 2.5), (3, 5), (7, 10), (42, 50)]
)
def test_axes_end_on_round_numbers(value, ceiling):
    assert charts.nice_ceiling(value) == pytest.approx(ceiling)


@pytest.mark.parametrize(
    ("peak", "integers", "ticks"),
    [
        (0, True, [0, 1]),
        (2, True, [0, 1, 2]),
        (3, True, [0, 1, 2, 3]),
        (7, True, [0, 2, 4, 6, 8]),
        (10, True, [0, 5, 10]),
        (42, True, [0, 20, 40, 60]),
        (1, False, [0, 0.25, 0.5, 0.75, 1]),
        (0.3, False, [0, 0.1, 0.2, 0.3]),
    ],
)
def test_axis_ticks_are_round_and_whole_for_counts(peak, integers, ticks):
    assert charts.axis_ticks(peak, integers=integers) == pytest.approx(ticks)


@pytest.mark.parametrize(
    ("value", "text"),
    [(None, "—"), (0, "0"), (1234, "1,234"), (0.25, "0.25"), (1 / 3, "0.333"), (-1.7e308, "-1.7e+308")],
)
def test_values_read_plainly(value, text):
    assert charts.format_value(value) == text
