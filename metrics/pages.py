"""The overview page at ``/`` and the health page at ``/health/``.

Both are server-rendered and complete without JavaScript; live updates are layered on top:
the overview's tiles are filled by live.js from the ``snapshot`` SSE event, its charts are a
fragment that refreshes on those events (at most every 10 s: they change by the minute), and
the health components are a fragment that polls every 5 s (health is measured on request,
there is no event to wait for). Each view answers the fragment an htmx request (or
``?part=``) asks for, and the whole page otherwise.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_safe

from metrics import charts
from metrics.health import system_health
from metrics.kpis import KPIS, Kpi, kpi_snapshot, run_time_histogram, throughput_series
from security.pages import page

# workers_enabled is not a tile of its own: it is the second half of the workers tile,
# "healthy / enabled". Each half is its own [data-kpi] element, so live.js fills both.
TILE_COMPANIONS = {"workers_healthy": "workers_enabled"}
TILES = tuple(k for k in KPIS if k.name not in TILE_COMPANIONS.values())

COMPONENT_LABELS = {
    "database": "Database",
    "channel_layer": "Channel layer",
    "websocket": "WebSocket",
    "dispatcher": "Dispatchers",
    "workers": "Workers",
    "keystore": "Keystore",
}
# Keys of a component that have a column of their own, or a table (workers).
_COLUMNS = {"status", "latency_ms", "error", "workers"}


def _charts(now: datetime) -> dict[str, Any]:
    series = throughput_series(now=now)
    histogram = run_time_histogram(now=now)
    return {
        "throughput_svg": charts.throughput_chart(series),
        "histogram_svg": charts.run_time_chart(histogram),
        "completed_total": sum(p["completed"] for p in series),
        "failed_total": sum(p["failed"] for p in series),
        "histogram_total": sum(b["count"] for b in histogram),
    }


def _tile(kpi: Kpi, shown: dict[str, str]) -> dict[str, Any]:
    names = [kpi.name, *([TILE_COMPANIONS[kpi.name]] if kpi.name in TILE_COMPANIONS else [])]
    return {"label": kpi.label, "help": kpi.help, "parts": [{"name": n, "display": shown[n]} for n in names]}


@page()
@require_safe
def overview(request: HttpRequest) -> HttpResponse:
    """KPI tiles, the last hour's throughput and run times, and the health summary."""
    now = timezone.now()
    if request.htmx or request.GET.get("part") == "charts":
        return render(request, "metrics/partials/charts.html", _charts(now))
    snapshot = kpi_snapshot(now=now)
    tiles = [_tile(k, snapshot["display"]) for k in TILES]
    context = {"tiles": tiles, "snapshot": snapshot, **_health(system_health()), **_charts(now)}
    return render(request, "metrics/overview.html", context)


def _text(key: str, value: Any) -> str:
    unit = " ms" if key.endswith("_ms") else " s" if key.endswith("_s") else ""
    return "—" if value is None else f"{value}{unit}"


def _label(key: str) -> str:
    for suffix in ("_ms", "_s"):
        key = key.removesuffix(suffix)
    return key.replace("_", " ")


def _status_text(status: str) -> str:
    return (status or "unknown").replace("_", " ")


def _health(report: dict[str, Any]) -> dict[str, Any]:
    """The report of :func:`metrics.health.system_health` as rows a template can show as they are."""
    components = []
    workers = []
    for name, component in report["components"].items():
        details = [(_label(k), _text(k, v)) for k, v in component.items() if k not in _COLUMNS]
        components.append(
            {
                "name": name,
                "label": COMPONENT_LABELS.get(name, _label(name).capitalize()),
                "status": component.get("status", ""),
                "status_text": _status_text(component.get("status", "")),
                "latency": _text("latency_ms", component.get("latency_ms")),
                "error": component.get("error", ""),
                "details": details,
            }
        )
        if name == "workers":
            for worker, w in (component.get("workers") or {}).items():
                workers.append(
                    {
                        "name": worker,
                        "status": w.get("status", ""),
                        "status_text": _status_text(w.get("status", "")),
                        "breaker": w.get("breaker", ""),
                        "breaker_text": _status_text(w.get("breaker", "")),
                        "latency": _text("latency_ms", w.get("latency_ms")),
                        "checked": _text("checked_s", w.get("checked_s_ago")),
                        "load": (
                            f"{w['active_tasks']} / {w['capacity']}" if "active_tasks" in w and "capacity" in w else "—"
                        ),
                        "error": w.get("error", ""),
                    }
                )
    return {
        "report": report,
        "overall": report["status"],
        "overall_text": _status_text(report["status"]),
        "components": components,
        "workers": workers,
    }


@page()
@require_safe
def health_page(request: HttpRequest) -> HttpResponse:
    """The components of ``/api/health``: status, latency, error or detail; the table polls every 5 s."""
    context = {**_health(system_health()), "checked_at": timezone.now()}
    part = request.GET.get("part")
    if part == "summary":
        return render(request, "metrics/partials/health_summary.html", context)
    if request.htmx or part == "components":
        return render(request, "metrics/partials/health_components.html", context)
    return render(request, "metrics/health.html", context)
