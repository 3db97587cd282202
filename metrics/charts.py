"""Charts as server-rendered SVG: no JavaScript, no chart library, readable by screen readers.

Pure functions from numbers to an SVG string. Every text that reaches the markup (titles,
labels, legend names, colours) goes through :func:`django.utils.html.escape` first, and the
result is marked safe only once it is whole, so a label read from the database (a task title,
a saved query's column) cannot inject markup. Each chart is ``role="img"`` with an
``aria-label`` that states the figures in words, and a ``<title>``.

:func:`bar_chart` takes generic (label, value) pairs, so the SQL explorer can draw any result
of one label column and one numeric column with it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

# The stylesheet's ok / bad / accent colours (config/static/agency/app.css), AA contrast on white.
COMPLETED_COLOUR = "#116329"
FAILED_COLOUR = "#a40e26"
BAR_COLOUR = "#0b5cad"
TEXT_COLOUR = "#57606a"
GRID_COLOUR = "#d0d7de"
AXIS_COLOUR = "#8c959f"
FONT_SIZE = 11
# A rough width of one character at FONT_SIZE, to size the label column of a bar chart.
CHAR_W = 6.5
MISSING = "—"


@dataclass(frozen=True)
class Series:
    """One line of a line chart: a name for the legend, one value per x label, a colour."""

    name: str
    values: Sequence[float]
    colour: str


def _num(value: float) -> str:
    """A coordinate: short, and never in exponent notation (which SVG does not read everywhere)."""
    return f"{value:.1f}".rstrip("0").rstrip(".") if value != int(value) else str(int(value))


def format_value(value: float | None) -> str:
    """A data value as people read it: 1,234, 0.25 (at most 3 decimals), 1.7e+308; — if missing."""
    if value is None:
        return MISSING
    if abs(value) >= 1e15:
        return f"{value:.4g}"
    if value == int(value):
        return f"{int(value):,}"
    return f"{value:,.3f}".rstrip("0").rstrip(".")


def _as_number(value: Any) -> float | None:
    """A cell of a query result as a finite float, or None when it is not a number (NULL, text, NaN)."""
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float | Decimal):
        number = float(value)
        return number if math.isfinite(number) else None
    return None


def nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 (times a power of ten) not below ``value``: round axis ends."""
    if value <= 0:
        return 1
    magnitude = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if step * magnitude >= value:
            return step * magnitude
    return 10 * magnitude  # pragma: no cover - the loop always returns


def axis_ticks(peak: float, *, integers: bool = False) -> list[float]:
    """Round values from 0 up to ``peak`` or just above it, about four steps; whole steps for counts."""
    step = nice_ceiling(peak / 4) if peak > 0 else 1
    if integers:
        step = 5 if step == 2.5 else max(step, 1)  # no "1.25 tasks" on an axis of counts
    count = max(math.ceil(peak / step - 1e-9), 1)
    return [step * k for k in range(count + 1)]


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _text(x: float, y: float, content: str, *, anchor: str = "start", extra: str = "") -> str:
    return (
        f'<text x="{_num(x)}" y="{_num(y)}" text-anchor="{anchor}" font-size="{FONT_SIZE}" '
        f'fill="{TEXT_COLOUR}"{extra}>{escape(content)}</text>'
    )


def _open_svg(width: int, height: int, *, title: str, summary: str) -> list[str]:
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" '
        f'height="{height}" role="img" aria-label="{escape(summary)}">',
        f"<title>{escape(title)}</title>",
        f"<desc>{escape(summary)}</desc>",
    ]


def line_chart(
    *,
    labels: Sequence[str],
    series: Sequence[Series],
    title: str,
    summary: str,
    x_label: str,
    y_label: str,
    width: int = 640,
    height: int = 240,
    tick_every: int = 10,
) -> SafeString:
    """Several series over the same x labels (one value per label each), with legend and axes.

    Every ``tick_every``-th label (and the last) is written under the x axis; the y axis runs
    from 0 to a round number at or above the largest value (:func:`axis_ticks`).
    """
    left, right, top, bottom = 48, 16, 30, 40
    plot_w, plot_h = width - left - right, height - top - bottom
    n = len(labels)
    values = [v for s in series for v in s.values]
    ticks = axis_ticks(max(values, default=0), integers=all(v == int(v) for v in values))
    y_max = ticks[-1]

    def x_at(i: int) -> float:
        return left + (plot_w / 2 if n <= 1 else i * plot_w / (n - 1))

    def y_at(v: float) -> float:
        return top + plot_h - (v / y_max) * plot_h

    parts = _open_svg(width, height, title=title, summary=summary)
    for v in ticks:  # horizontal grid lines with their values
        y = y_at(v)
        parts.append(
            f'<line x1="{left}" y1="{_num(y)}" x2="{left + plot_w}" y2="{_num(y)}" stroke="{GRID_COLOUR}" '
            'stroke-width="1"/>'
        )
        parts.append(_text(left - 6, y + 4, format_value(v), anchor="end"))
    parts.append(
        f'<line class="axis" x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" '
        f'stroke="{AXIS_COLOUR}"/>'
    )
    for i, label in enumerate(labels):
        if i % tick_every == 0 or i == n - 1:
            parts.append(_text(x_at(i), top + plot_h + 14, label, anchor="middle"))
    for s in series:
        points = " ".join(f"{_num(x_at(i))},{_num(y_at(v))}" for i, v in enumerate(s.values))
        parts.append(
            f'<polyline fill="none" stroke="{escape(s.colour)}" stroke-width="2" stroke-linejoin="round" '
            f'points="{points}"><title>{escape(s.name)}</title></polyline>'
        )
    x = left
    for s in series:  # the legend, above the plot
        parts.append(f'<rect x="{x}" y="8" width="12" height="12" fill="{escape(s.colour)}"/>')
        parts.append(_text(x + 16, 18, s.name))
        x += 16 + int(len(s.name) * CHAR_W) + 20
    parts.append(_text(left + plot_w / 2, height - 6, x_label, anchor="middle"))
    parts.append(
        _text(
            12,
            top + plot_h / 2,
            y_label,
            anchor="middle",
            extra=f' transform="rotate(-90 12 {_num(top + plot_h / 2)})"',
        )
    )
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308 - every text above went through escape()


def bar_chart(
    pairs: Iterable[tuple[Any, Any]],
    *,
    title: str,
    value_label: str,
    summary: str | None = None,
    width: int = 640,
    max_bars: int = 50,
    colour: str = BAR_COLOUR,
    label_chars: int = 28,
) -> SafeString:
    """Horizontal bars, one a (label, value) pair, in the order given, each value written beside it.

    Labels may be anything (they are shown as text, cut at ``label_chars`` with the whole in
    the bar's tooltip); a value that is not a finite number (NULL, text, NaN) draws no bar and
    reads "—". Negative values grow left of a zero line. At most ``max_bars`` are drawn and the
    summary says how many were left out. Without ``summary``, one is written from the pairs.
    """
    rows = [(str(label), _as_number(value)) for label, value in pairs]
    shown, left_out = rows[:max_bars], len(rows) - min(len(rows), max_bars)
    if summary is None:
        listed = "; ".join(f"{label}: {format_value(v)}" for label, v in shown[:20])
        summary = f"{title}: {listed}" if listed else f"{title}: no data"
    if left_out:
        summary += f" (first {len(shown)} of {len(rows)} shown)"

    row_h, top, bottom = 22, 8, 28
    label_w = min(
        int(max((len(_truncate(label, label_chars)) for label, _ in shown), default=4) * CHAR_W) + 12, width // 3
    )
    value_w = 64
    plot_x, plot_w = label_w, width - label_w - value_w
    height = top + max(len(shown), 1) * row_h + bottom
    numbers = [v for _, v in shown if v is not None]
    lo, hi = min([0.0, *numbers]), max([0.0, *numbers])
    if hi == lo:
        hi = lo + 1

    def x_at(v: float) -> float:
        # Halved first, so that a span near the float limit (a query's extreme values) cannot overflow.
        return plot_x + (v / 2 - lo / 2) / (hi / 2 - lo / 2) * plot_w

    parts = _open_svg(width, height, title=title, summary=summary)
    if not shown:
        parts.append(_text(width / 2, top + row_h / 2 + 4, "No data", anchor="middle"))
    zero = x_at(0)
    for i, (label, value) in enumerate(shown):
        y = top + i * row_h
        parts.append(_text(label_w - 8, y + row_h / 2 + 4, _truncate(label, label_chars), anchor="end"))
        if value is not None:
            x0, x1 = sorted((zero, x_at(value)))
            parts.append(
                f'<rect x="{_num(x0)}" y="{_num(y + 3)}" width="{_num(max(x1 - x0, 0))}" height="{row_h - 6}" '
                f'fill="{escape(colour)}"><title>{escape(label)}: {escape(format_value(value))}</title></rect>'
            )
            end = x1 + 4 if value >= 0 else x0 - 4
            parts.append(_text(end, y + row_h / 2 + 4, format_value(value), anchor="start" if value >= 0 else "end"))
        else:
            parts.append(_text(zero + 4, y + row_h / 2 + 4, MISSING))
    base = top + max(len(shown), 1) * row_h
    parts.append(
        f'<line class="axis" x1="{_num(zero)}" y1="{top}" x2="{_num(zero)}" y2="{base}" stroke="{AXIS_COLOUR}"/>'
    )
    parts.append(_text(plot_x + plot_w / 2, height - 8, value_label, anchor="middle"))
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308 - every text above went through escape()


def throughput_chart(points: Sequence[dict[str, Any]]) -> SafeString:
    """Completed and failed tasks per minute (from :func:`metrics.kpis.throughput_series`)."""
    completed = [p["completed"] for p in points]
    failed = [p["failed"] for p in points]
    minutes = len(points)
    peak = max((c + f for c, f in zip(completed, failed, strict=True)), default=0)
    summary = (
        f"Throughput over the last {minutes} minutes: {sum(completed):,} completed, {sum(failed):,} failed; "
        f"busiest minute {peak:,} finished."
    )
    return line_chart(
        labels=[p["minute"].strftime("%H:%M") for p in points],
        series=[
            Series("completed", completed, COMPLETED_COLOUR),
            Series("failed", failed, FAILED_COLOUR),
        ],
        title=f"Tasks completed and failed per minute, last {minutes} minutes",
        summary=summary,
        x_label="minute (UTC)",
        y_label="tasks per minute",
    )


def run_time_chart(buckets: Sequence[dict[str, Any]]) -> SafeString:
    """How many tasks of the last hour took how long (from :func:`metrics.kpis.run_time_histogram`)."""
    total = sum(b["count"] for b in buckets)
    listed = ", ".join(f"{b['bucket']}: {b['count']:,}" for b in buckets)
    return bar_chart(
        [(b["bucket"], b["count"]) for b in buckets],
        title="Run times of the tasks completed in the last hour",
        summary=f"Run times of the {total:,} tasks completed in the last hour: {listed}.",
        value_label="tasks",
    )
