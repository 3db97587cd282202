"""``GET /metrics``: the Prometheus exposition, merged over every process of this host.

What it shows (all names prefixed ``agency_``):

- from the files of every process (prometheus-client's multi-process mode, fed by
  :mod:`metrics.instruments`): ``agency_task_transitions_total{to_state,cause}`` (counted by a
  receiver of :data:`tasks.transitions.task_changed`, after each change commits),
  ``agency_dispatch_latency_seconds{priority}``, ``agency_attempt_duration_seconds{outcome}``
  and ``agency_attempts_total{outcome}`` (observed by the dispatchers);
- read from the database at each scrape (:class:`DatabaseCollector`, two queries):
  ``agency_tasks{state}``, ``agency_queue_depth``, ``agency_workers{health}``,
  ``agency_worker_breaker_state{worker}`` (0 closed, 1 half-open, 2 open) and
  ``agency_collector_database_up`` (0 when the database could not be read; the gauges
  are missing then, the rest is still served). A value the database holds is the same
  whichever process is scraped, so these need no multi-process bookkeeping.

Access: like every endpoint but ``/healthz``, it needs the viewer role. Scrapers cannot log
in, so a DRF token works, sent either as ``Authorization: Token <key>`` or as
``Authorization: Bearer <key>`` (what Prometheus's ``bearer_token_file`` and most agents
send); a browser session works too. Anonymous gets 401 with ``WWW-Authenticate: Token``, an
account without a role 403; errors are JSON, like the API's. GET and HEAD only (405 else).
A Prometheus job::

    - job_name: agency
      metrics_path: /metrics
      authorization: {type: Token, credentials_file: /etc/prometheus/agency-token}
      static_configs: [{targets: ["agency.example:8000"]}]

Files: each process writes ``<type>_<pid>.db`` under ``PROMETHEUS_MULTIPROC_DIR`` (one
directory per host, never shared between hosts or containers: files are told apart by pid).
Counters of a process that exited still count (totals do not drop when a process goes);
:func:`reset_multiproc_dir` removes those of dead processes when the host starts again.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError
from django.db.models import Count, Q
from django.http import HttpResponse
from django.utils import timezone
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, multiprocess, values
from prometheus_client.core import GaugeMetricFamily, Metric
from rest_framework.authentication import SessionAuthentication
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.views import APIView

from metrics import instruments
from security.permissions import IsViewer
from security.tokens import ApiTokenAuthentication
from tasks.dispatch import breakers, fleet
from tasks.models import Priority, Task, Worker
from tasks.states import TRANSITIONS as LEGAL_TRANSITIONS
from tasks.states import TaskState
from tasks.transitions import TaskChanged, task_changed

logger = logging.getLogger("agency.metrics")

# The value of agency_worker_breaker_state for each breaker state.
BREAKER_VALUES = {breakers.CLOSED: 0, breakers.HALF_OPEN: 1, breakers.OPEN: 2}

# agency_workers{health}: a bounded vocabulary, whatever a worker's /health answered.
HEALTHY = "healthy"
UNHEALTHY = "unhealthy"  # polled recently, and not healthy
UNKNOWN = "unknown"  # never polled, or not for three poll intervals (no dispatcher polls it)
DISABLED = "disabled"
WORKER_HEALTH = (HEALTHY, UNHEALTHY, UNKNOWN, DISABLED)

_DISPATCH_UID = "metrics.prometheus.count_transition"


def install() -> None:
    """Count every task state change (idempotent); ``metrics.apps.MetricsConfig.ready()`` calls it.

    Refuses to run when ``PROMETHEUS_MULTIPROC_DIR`` is set but prometheus-client was imported
    before it was (its mode is fixed at import): this process's samples would then be missing
    from every exposition, silently.
    """
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR") and not getattr(values.ValueClass, "_multiprocess", False):
        raise ImproperlyConfigured(
            "prometheus_client was imported before PROMETHEUS_MULTIPROC_DIR was set; "
            "import it only after config.settings is loaded."
        )
    task_changed.connect(_count_transition, sender=Task, weak=False, dispatch_uid=_DISPATCH_UID)


def _count_transition(sender: type[Task], change: TaskChanged, **kwargs: object) -> None:
    instruments.count_transition(to_state=change.to_state, cause=change.cause)


_primed = False


def _prime() -> None:
    """Give every known series a zero in this process, so that each exists from the first scrape.

    Done by the scraped process only (not at import), so that short-lived commands leave no files.
    """
    global _primed
    if _primed:
        return
    for _from, to, cause in LEGAL_TRANSITIONS:
        instruments.TRANSITIONS.labels(to_state=to, cause=cause)
    for priority in Priority:
        instruments.DISPATCH_LATENCY.labels(priority=priority.label)
    for outcome in instruments.OUTCOMES:
        instruments.ATTEMPTS.labels(outcome=outcome)
        if outcome != instruments.NOT_DISPATCHED:
            instruments.ATTEMPT_DURATION.labels(outcome=outcome)
    _primed = True


class DatabaseCollector:
    """Gauges read from the database at scrape time (two queries)."""

    def collect(self) -> Iterator[Metric]:
        try:
            families = self._families()
            up = 1
        except DatabaseError:
            logger.exception("the database gauges of /metrics could not be read")
            families, up = [], 0
        health = GaugeMetricFamily(
            "agency_collector_database_up",
            "1 when this scrape read the gauges from the database, 0 when it could not (they are missing then).",
            value=up,
        )
        return iter([*families, health])

    def _families(self) -> list[Metric]:
        now = timezone.now()
        due = Q(state=TaskState.QUEUED) & (Q(run_after__isnull=True) | Q(run_after__lte=now))
        rows = Task.objects.order_by().values("state").annotate(n=Count("id"), due=Count("id", filter=due))
        by_state = dict.fromkeys(TaskState.values, 0)
        queue_depth = 0
        for row in rows:
            by_state[row["state"]] = row["n"]
            queue_depth += row["due"]
        tasks = GaugeMetricFamily("agency_tasks", "Tasks by current state.", labels=["state"])
        for state, n in by_state.items():
            tasks.add_metric([state], n)
        depth = GaugeMetricFamily(
            "agency_queue_depth",
            "Queued tasks due now (no run_after in the future): what waits for a dispatcher and a worker.",
            value=queue_depth,
        )

        fresh_after = now - timedelta(seconds=3 * fleet.WORKER_POLL_S)
        health = dict.fromkeys(WORKER_HEALTH, 0)
        breaker = GaugeMetricFamily(
            "agency_worker_breaker_state",
            "Circuit breaker of each enabled worker: 0 closed, 1 half-open, 2 open.",
            labels=["worker"],
        )
        fields = ("name", "enabled", "health_status", "health_checked_at", "breaker_state")
        for worker in Worker.objects.order_by("name").values(*fields):
            health[_health(worker, fresh_after)] += 1
            if worker["enabled"]:
                breaker.add_metric([worker["name"]], BREAKER_VALUES.get(worker["breaker_state"], 0))
        workers = GaugeMetricFamily(
            "agency_workers",
            "Registered workers by health: healthy, unhealthy or unknown (enabled; unknown when not "
            "polled for three poll intervals), disabled.",
            labels=["health"],
        )
        for name, n in health.items():
            workers.add_metric([name], n)
        return [tasks, depth, workers, breaker]


def _health(worker: dict[str, Any], fresh_after: datetime) -> str:
    if not worker["enabled"]:
        return DISABLED
    if worker["health_checked_at"] is None or worker["health_checked_at"] < fresh_after:
        return UNKNOWN
    return HEALTHY if worker["health_status"] == HEALTHY else UNHEALTHY


def exposition() -> bytes:
    """The text exposition: every process's counters and histograms, and the database gauges."""
    _prime()
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
    registry.register(DatabaseCollector())
    return generate_latest(registry)


class BearerTokenAuthentication(ApiTokenAuthentication):
    """The same DRF tokens, sent as ``Authorization: Bearer <key>`` (what most scrapers send)."""

    keyword = "Bearer"


class _ErrorsAsJSON(BaseContentNegotiation):
    """Whatever the scraper accepts: the exposition is text, and an error is JSON like the API's."""

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type

    def select_parser(self, request, parsers):
        return None


class MetricsView(APIView):
    authentication_classes = [ApiTokenAuthentication, BearerTokenAuthentication, SessionAuthentication]
    permission_classes = [IsViewer]
    renderer_classes = [JSONRenderer]
    content_negotiation_class = _ErrorsAsJSON
    http_method_names = ["get", "head"]
    schema = None  # text, not JSON: not part of the OpenAPI document

    def get(self, request: Request) -> HttpResponse:
        return HttpResponse(exposition(), content_type=CONTENT_TYPE_LATEST)


metrics_view = MetricsView.as_view()


# --- the multi-process directory -----------------------------------------------------------

_SAMPLE_FILE = re.compile(r"^[a-z_]+_(?P<pid>\d+)\.db$")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, as another user's process
        return True
    return True


def reset_multiproc_dir(path: str | os.PathLike[str] | None = None) -> list[Path]:
    """Remove the sample files of processes no longer running; returns the files removed.

    For the start of a host's processes (``manage.py serve``; a scaled host before it starts
    its ASGI and dispatcher processes): the totals then restart from what live processes
    hold, which Prometheus reads as a counter reset, as it would for any restart. Files of
    running processes (this one included) are kept, so calling it beside running processes
    is safe. Without it the directory gains files with every process ever started, and each
    scrape reads them all.
    """
    directory = Path(path or os.environ["PROMETHEUS_MULTIPROC_DIR"])
    removed = []
    for file in sorted(directory.glob("*.db")):
        match = _SAMPLE_FILE.match(file.name)
        if match is None:
            continue
        pid = int(match["pid"])
        if pid == os.getpid() or _alive(pid):
            continue
        file.unlink(missing_ok=True)
        removed.append(file)
    if removed:
        logger.info("removed %d Prometheus sample files of exited processes from %s", len(removed), directory)
    return removed


def mark_process_dead(pid: int | None = None, path: str | os.PathLike[str] | None = None) -> None:
    """Tell prometheus-client that process ``pid`` (default: this one) has exited.

    It drops that process's "live" gauge files; counters and histograms stay, as they must.
    The metrics here use no live gauge today, so this is bookkeeping for a process manager
    that restarts children (call it from its child-exit hook) and for shutdown hooks.
    """
    where = os.fspath(path) if path is not None else os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if where:
        multiprocess.mark_process_dead(pid if pid is not None else os.getpid(), where)
