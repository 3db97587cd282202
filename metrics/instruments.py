"""The Prometheus instruments the running code updates: counters and histograms, and their observe calls.

This module imports no app (only prometheus-client and Django's transaction API), so the
dispatcher can call it without depending on the rest of ``metrics``; the exposition
(``GET /metrics``), the database gauges and the signal receiver are in
:mod:`metrics.prometheus`.

Every process writes its samples to its own files under ``PROMETHEUS_MULTIPROC_DIR``
(prometheus-client's multi-process mode, switched on by ``config/settings.py`` before
anything imports the client); the exposition merges the files of all processes, so a
dispatcher process's observations appear at every ASGI process's ``/metrics``. Only
counters and histograms live here: a value that is a fact of the database (tasks by state,
queue depth, worker health, breakers) is read at scrape time instead, which is right in any
number of processes without the "live gauge" bookkeeping of the multi-process mode.
"""

from __future__ import annotations

import time
from datetime import datetime
from functools import partial
from typing import Any

from django.db import transaction
from prometheus_client import Counter, Histogram

# Outcomes of an attempt, as the worker (or the transport) reported it. ``completed`` is the
# worker's word: the gates and the verdict that follow may still fail the task.
COMPLETED = "completed"  # the worker returned a result with status completed
FAILED = "failed"  # the worker returned a result with status failed
ERROR = "error"  # no result: transport or HTTP failure, timeout, or a dispatcher error
STOPPED = "stopped"  # the dispatcher stopped the attempt (cancel, pause, shutdown, lease lost)
NOT_DISPATCHED = "not_dispatched"  # the worker never took it (breaker open, at capacity, unreachable)
OUTCOMES = (COMPLETED, FAILED, ERROR, STOPPED, NOT_DISPATCHED)

# From the embedded SQLite default (milliseconds) to a backlog of an hour.
DISPATCH_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 3600)
# Agent work: an echo in milliseconds, a model call in seconds to minutes, a long task an hour.
ATTEMPT_DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600)

# registry=None: nothing reads a process's own registry; /metrics collects from the files.
TRANSITIONS = Counter(
    "agency_task_transitions",
    "Task state changes, by the state entered and the cause (counted after the change commits).",
    ["to_state", "cause"],
    registry=None,
)
DISPATCH_LATENCY = Histogram(
    "agency_dispatch_latency_seconds",
    "Time from a task becoming claimable (queued, and its run_after passed) to a dispatcher's claim of it.",
    ["priority"],
    buckets=DISPATCH_LATENCY_BUCKETS,
    registry=None,
)
ATTEMPT_DURATION = Histogram(
    "agency_attempt_duration_seconds",
    "Run time of an attempt, from its dispatch to its end at the dispatcher, by outcome "
    "(attempts the worker never took are not observed).",
    ["outcome"],
    buckets=ATTEMPT_DURATION_BUCKETS,
    registry=None,
)
ATTEMPTS = Counter(
    "agency_attempts",
    "Attempts ended at a dispatcher, by outcome (completed, failed, error, stopped, not_dispatched).",
    ["outcome"],
    registry=None,
)


def count_transition(*, to_state: str, cause: str) -> None:
    TRANSITIONS.labels(to_state=to_state, cause=cause).inc()


def claimable_since(task: Any) -> datetime:
    """When a queued ``task`` became claimable: it entered ``queued``, or its ``run_after`` passed.

    Every transition sets ``updated_at``, so for a queued task it is the time it was queued
    (created, requeued, resumed, retried); ``created_at`` would count a retried task's whole
    history. Other writes to a queued row (a stale report of an earlier attempt) move it
    later, so the latency can read short, never long.
    """
    if task.run_after is not None and task.run_after > task.updated_at:
        return task.run_after
    return task.updated_at


def observe_claim(task: Any, now: datetime) -> None:
    """A dispatcher claims ``task`` at ``now``: its wait is observed when the claim commits.

    Call it before the claim's transition changes the row (it reads ``updated_at`` and
    ``run_after``). A claim that rolls back observes nothing.
    """
    waited = max((now - claimable_since(task)).total_seconds(), 0.0)
    series = DISPATCH_LATENCY.labels(priority=task.get_priority_display())
    transaction.on_commit(partial(series.observe, waited))


def attempt_outcome(report: Any) -> str:
    """The outcome label of a dispatcher's final :class:`~tasks.dispatch.reports.AttemptReport`."""
    if report.kind == "result":
        status = (report.result or {}).get("status") if isinstance(report.result, dict) else None
        return COMPLETED if status == "completed" else FAILED
    if report.kind in (STOPPED, NOT_DISPATCHED):
        return report.kind
    return ERROR


def observe_attempt(report: Any, *, started: float) -> None:
    """An attempt ended at the dispatcher; ``started`` is its dispatch on :func:`time.monotonic`."""
    outcome = attempt_outcome(report)
    ATTEMPTS.labels(outcome=outcome).inc()
    if outcome != NOT_DISPATCHED:
        ATTEMPT_DURATION.labels(outcome=outcome).observe(max(time.monotonic() - started, 0.0))
