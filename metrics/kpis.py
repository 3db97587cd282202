"""The KPI selectors: one snapshot of the fleet's numbers, the throughput series, the run-time histogram.

Shared by ``GET /api/v1/metrics``, the SSE snapshots of ``/api/v1/metrics/stream`` and the
overview page, so the three never disagree. Everything is counted in the database over
indexed ranges, never by loading task rows:

- "finished in the last N minutes" reads ``task_state_finished_idx`` on
  ``(state, finished_at) WHERE finished_at IS NOT NULL`` (each filter repeats
  ``finished_at IS NOT NULL`` so that both SQLite and PostgreSQL see that the partial index applies);
- "tasks in state X now" reads ``task_state_created_idx``, whose first column is ``state``;
- the worker counts read the Worker table, which is as small as the fleet.

A run time is ``finished_at - started_at``: from the first claim of the task to its final
state, so retries and their backoff waits are part of it (``started_at`` is kept across attempts).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db.models import (
    Case,
    Count,
    F,
    FloatField,
    Func,
    IntegerField,
    Q,
    QuerySet,
    Value,
    When,
    Window,
)
from django.db.models.functions import CumeDist, TruncMinute
from django.utils import timezone

from chat.models import ChatSession, SessionStatus
from tasks.dispatch import breakers, fleet
from tasks.models import Task, Worker
from tasks.states import TaskState

RATE_WINDOW_MIN = 5
HOUR = timedelta(hours=1)
# The p95 is taken over at most this many of the latest completed tasks: the snapshot runs
# every few seconds, and sorting every run time of a busy hour that often would not be bounded.
P95_SAMPLE = 5000
P95 = 0.95
# A worker's "healthy" counts only while its last poll is recent: the freshness /api/health
# applies too (tasks.dispatch.fleet.workers_summary), so a fleet nobody polls is not shown healthy.
HEALTH_FRESH = timedelta(seconds=3 * fleet.WORKER_POLL_S)
HEALTHY = "healthy"
# Half-open counts as open: it lets one trial call through and refuses every other, so the
# worker takes no real work until the trial has closed the breaker.
BREAKER_NOT_CLOSED = (breakers.OPEN, breakers.HALF_OPEN)
# A canceling task still holds its lease and its worker slot until the dispatcher confirms the stop.
RUNNING_STATES = (TaskState.RUNNING, TaskState.CANCELING)
UNKNOWN = "—"


@dataclass(frozen=True)
class Kpi:
    """A tile's vocabulary: the key in ``kpis``/``display``, the label people read, what it means."""

    name: str
    label: str
    help: str


KPIS: tuple[Kpi, ...] = (
    Kpi("completed_per_minute", "Completed / min", "Tasks completed in the last 5 minutes, divided by 5."),
    Kpi(
        "success_rate",
        "Success rate",
        "Completed / (completed + failed) among tasks finished in the last hour; unknown when none finished.",
    ),
    Kpi(
        "p95_run_time_s",
        "p95 run time",
        f"95th percentile of the run time (first claim to completion) of the latest {P95_SAMPLE} tasks "
        "completed in the last hour; unknown when none completed.",
    ),
    Kpi("queue_depth", "Queue depth", "Tasks waiting in the queued state (paused ones excluded)."),
    Kpi("running", "Running", "Tasks running, plus those canceling (their attempt still holds a worker slot)."),
    Kpi("failed_last_hour", "Failed (1 h)", "Tasks that reached failed in the last hour."),
    Kpi(
        "workers_healthy",
        "Workers healthy / enabled",
        "Enabled workers whose latest health poll (in the last 30 s) answered healthy, of all enabled workers.",
    ),
    Kpi("workers_enabled", "Workers enabled", "Workers enabled for dispatch."),
    Kpi(
        "breakers_open",
        "Breakers open",
        "Enabled workers whose circuit breaker is open or half-open (taking no regular work).",
    ),
    Kpi(
        "chat_sessions_active",
        "Active chat sessions",
        "Chat sessions open (not closed) and not expired.",
    ),
)
KPI_NAMES: tuple[str, ...] = tuple(k.name for k in KPIS)


class RunTimeSeconds(Func):
    """``finished_at - started_at`` in seconds (a float), in each database's own arithmetic.

    Django's datetime subtraction calls a Python function per row on SQLite, five times a row
    in the histogram's CASE; ``julianday`` is native there and was 7x faster over 50,000 rows
    (to the millisecond, plenty for a KPI). PostgreSQL subtracts to an interval.
    """

    output_field = FloatField()
    arg_joiner = " - "
    template = "CAST(EXTRACT(EPOCH FROM (%(expressions)s)) AS double precision)"

    def __init__(self) -> None:
        super().__init__(F("finished_at"), F("started_at"))

    def as_sqlite(self, compiler: Any, connection: Any, **extra_context: Any) -> tuple[str, list[Any]]:
        return self.as_sql(
            compiler,
            connection,
            # julianday reads milliseconds, and a difference of two day numbers near 2.46e6 is
            # off by up to 40 us: rounding to the millisecond gives back the exact value.
            template="(ROUND((julianday(%(expressions)s)) * 86400000.0) / 1000.0)",
            arg_joiner=") - julianday(",
            **extra_context,
        )


class MinuteUTC(TruncMinute):
    """TruncMinute in UTC, native on SQLite.

    Django's TruncMinute calls a Python function per row on SQLite (to convert time zones);
    SQLite holds datetimes as UTC text, so ``strftime`` truncates them natively (6x faster,
    measured over 50,000 rows). Only UTC is offered, so the two readings cannot disagree.
    """

    def __init__(self, expression: str) -> None:
        super().__init__(expression, tzinfo=UTC)

    def as_sqlite(self, compiler: Any, connection: Any, **extra_context: Any) -> tuple[str, list[Any]]:
        sql, params = compiler.compile(self.lhs)
        return f"strftime('%%Y-%%m-%%d %%H:%%M:00', {sql})", params


def _finished_between(since: datetime, until: datetime, *states: str) -> QuerySet[Task]:
    """Tasks that reached one of ``states`` in [since, until]: a range of ``task_state_finished_idx``."""
    return Task.objects.filter(
        state__in=states, finished_at__isnull=False, finished_at__gte=since, finished_at__lte=until
    )


def _completed_timed_between(since: datetime, until: datetime) -> QuerySet[Task]:
    return _finished_between(since, until, TaskState.COMPLETED).filter(started_at__isnull=False)


def _p95_run_time_s(since: datetime, until: datetime) -> float | None:
    """Nearest-rank p95 over the latest :data:`P95_SAMPLE` completions, in one query.

    The smallest run time whose cumulative distribution reaches 95 %, by a window function
    (SQLite >= 3.25 and PostgreSQL both have ``CUME_DIST``): no count is read first, so the
    answer cannot mix two moments of a table that changes between queries.
    """
    latest = _completed_timed_between(since, until).order_by("-finished_at").values("pk")[:P95_SAMPLE]
    return (
        Task.objects.filter(pk__in=latest)
        .annotate(run_time=RunTimeSeconds())
        .annotate(dist=Window(CumeDist(), order_by=F("run_time").asc()))
        .filter(dist__gte=P95)
        .order_by("run_time")
        .values_list("run_time", flat=True)
        .first()
    )


def kpi_snapshot(*, now: datetime | None = None) -> dict[str, Any]:
    """The KPIs as numbers (None when unknown) and as the text a tile shows, in 5 queries.

    ``generated_at`` is the moment they were counted for (ISO 8601); the dictionary is plain
    JSON, as the SSE snapshot sends it.
    """
    now = now or timezone.now()
    hour_ago = now - HOUR
    rate_since = now - timedelta(minutes=RATE_WINDOW_MIN)

    finished = _finished_between(hour_ago, now, TaskState.COMPLETED, TaskState.FAILED).aggregate(
        completed_recent=Count("pk", filter=Q(state=TaskState.COMPLETED, finished_at__gte=rate_since)),
        completed=Count("pk", filter=Q(state=TaskState.COMPLETED)),
        failed=Count("pk", filter=Q(state=TaskState.FAILED)),
    )
    live = Task.objects.filter(state__in=[TaskState.QUEUED, *RUNNING_STATES]).aggregate(
        queued=Count("pk", filter=Q(state=TaskState.QUEUED)),
        running=Count("pk", filter=Q(state__in=RUNNING_STATES)),
    )
    p95 = _p95_run_time_s(hour_ago, now)
    workers = Worker.objects.filter(enabled=True).aggregate(
        enabled=Count("pk"),
        healthy=Count("pk", filter=Q(health_status=HEALTHY, health_checked_at__gte=now - HEALTH_FRESH)),
        breakers_open=Count("pk", filter=Q(breaker_state__in=BREAKER_NOT_CLOSED)),
    )

    chats = ChatSession.objects.filter(status=SessionStatus.ACTIVE, expires_at__gt=now).count()

    decided = finished["completed"] + finished["failed"]
    kpis: dict[str, float | int | None] = {
        "completed_per_minute": finished["completed_recent"] / RATE_WINDOW_MIN,
        "success_rate": finished["completed"] / decided if decided else None,
        "p95_run_time_s": p95,
        "queue_depth": live["queued"],
        "running": live["running"],
        "failed_last_hour": finished["failed"],
        "workers_healthy": workers["healthy"],
        "workers_enabled": workers["enabled"],
        "breakers_open": workers["breakers_open"],
        "chat_sessions_active": chats,
    }
    return {"generated_at": now.isoformat(), "kpis": kpis, "display": display(kpis)}


def display(kpis: dict[str, float | int | None]) -> dict[str, str]:
    """The text of each tile (``—`` for an unknown value), as live.js writes it into the page."""
    shown = {
        "completed_per_minute": format_number(kpis["completed_per_minute"], decimals=1),
        "success_rate": format_percent(kpis["success_rate"]),
        "p95_run_time_s": format_duration(kpis["p95_run_time_s"]),
        "queue_depth": format_number(kpis["queue_depth"]),
        "running": format_number(kpis["running"]),
        "failed_last_hour": format_number(kpis["failed_last_hour"]),
        "workers_healthy": format_number(kpis["workers_healthy"]),
        "workers_enabled": format_number(kpis["workers_enabled"]),
        "breakers_open": format_number(kpis["breakers_open"]),
        "chat_sessions_active": format_number(kpis["chat_sessions_active"]),
    }
    return shown


def format_number(value: float | None, *, decimals: int = 0) -> str:
    if value is None:
        return UNKNOWN
    return f"{value:,.{decimals}f}"


def format_percent(ratio: float | None) -> str:
    """A ratio as a percentage with one decimal; 99.96 % is shown as 99.9 %, not as a perfect 100 %."""
    if ratio is None:
        return UNKNOWN
    tenths = math.floor(ratio * 1000 + 1e-9) / 10
    return f"{tenths:.1f} %"


def format_duration(seconds: float | None) -> str:
    """A run time in the unit people read it in: 850 ms, 1.2 s, 4 min 05 s, 2 h 03 min."""
    if seconds is None:
        return UNKNOWN
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    return f"{whole // 3600} h {whole % 3600 // 60:02d} min"


def throughput_series(*, now: datetime | None = None, minutes: int = 60) -> list[dict[str, Any]]:
    """Completed and failed tasks per minute, oldest first: ``minutes`` buckets of UTC minutes,
    the current (partial) minute last, empty minutes included. One grouped query (TruncMinute
    + Count): the rows never leave the database, only one count per minute and state."""
    now = now or timezone.now()
    current = now.astimezone(UTC).replace(second=0, microsecond=0)
    first = current - timedelta(minutes=minutes - 1)
    rows = (
        _finished_between(first, now, TaskState.COMPLETED, TaskState.FAILED)
        .annotate(minute=MinuteUTC("finished_at"))
        .values("minute", "state")
        .annotate(n=Count("pk"))
        .order_by()
    )
    counts = {(row["minute"], row["state"]): row["n"] for row in rows}
    series = []
    for i in range(minutes):
        minute = first + timedelta(minutes=i)
        series.append(
            {
                "minute": minute,
                "completed": counts.get((minute, TaskState.COMPLETED), 0),
                "failed": counts.get((minute, TaskState.FAILED), 0),
            }
        )
    return series


@dataclass(frozen=True)
class Bucket:
    label: str
    min_s: float
    max_s: float | None  # exclusive; None: no upper bound


RUN_TIME_BUCKETS: tuple[Bucket, ...] = (
    Bucket("< 1 s", 0, 1),
    Bucket("1-5 s", 1, 5),
    Bucket("5-30 s", 5, 30),
    Bucket("30 s-2 min", 30, 120),
    Bucket("2-10 min", 120, 600),
    Bucket("≥ 10 min", 600, None),
)


def run_time_histogram(*, now: datetime | None = None) -> list[dict[str, Any]]:
    """How many tasks completed in the last hour fall in each of :data:`RUN_TIME_BUCKETS`.

    One grouped query: a CASE over the run time (:class:`RunTimeSeconds`) names each row's
    bucket in SQL, so no row leaves the database.
    """
    now = now or timezone.now()
    whens = [When(run_time__lt=b.max_s, then=Value(i)) for i, b in enumerate(RUN_TIME_BUCKETS) if b.max_s is not None]
    rows = (
        _completed_timed_between(now - HOUR, now)
        .annotate(run_time=RunTimeSeconds())
        .annotate(bucket=Case(*whens, default=Value(len(RUN_TIME_BUCKETS) - 1), output_field=IntegerField()))
        .values("bucket")
        .annotate(n=Count("pk"))
        .order_by()
    )
    counts = {row["bucket"]: row["n"] for row in rows}
    return [
        {"bucket": b.label, "min_s": b.min_s, "max_s": b.max_s, "count": counts.get(i, 0)}
        for i, b in enumerate(RUN_TIME_BUCKETS)
    ]
