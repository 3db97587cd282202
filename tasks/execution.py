"""Dispatcher-side task services: claims, progress and results (leases: :mod:`tasks.leases`).

Like :mod:`tasks.services`, every state change here locks the task row,
checks where it stands, and writes the new state, its TaskEvent and its audit
record in one transaction. Results are fenced: an update only applies when
the task is still ``running`` the same attempt under the same lease owner.
Anything else is recorded on the timeline and never applied.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, F, Q, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from audit.services import AuditEntry, audit_record, audit_records
from tasks import bus, fleet
from tasks.leases import ACTIVE_STATES, lease_until
from tasks.models import Task, TaskEvent, Worker
from tasks.services import append_event, new_event
from tasks.states import TaskState
from tasks.verdicts import automatic_verdict, verdict_summary
from tasks.writes import TaskWrites

# A claim reads at most this many queued tasks for each one it may take, so that tasks no
# worker can take now (capabilities, capacity, open breakers) do not block those behind them.
CLAIM_READ_FACTOR = 4
# First key of the per-worker capacity locks (pg_advisory_xact_lock(class, worker id)): "capa".
CAPACITY_LOCK_CLASS = int.from_bytes(b"capa", "big")


@dataclass(frozen=True)
class Claim:
    task_id: str
    attempt: int
    worker_id: int
    spec: dict[str, Any]
    deadline: datetime


@dataclass
class AttemptReport:
    """What one attempt came to, handed back by the dispatcher for one task.

    ``kind`` is ``progress`` (interim ``events``), ``result`` (the worker's
    final result), ``failed`` (no result: transport or HTTP failure),
    ``not_dispatched`` (the worker did not take the attempt: its breaker was
    open, or it answered 429 at capacity to the last try) or
    ``stopped`` (the dispatcher stopped the attempt after a cancel or pause).
    """

    task_id: str
    attempt: int
    kind: str
    events: list[dict[str, Any]] = field(default_factory=list)
    result: dict[str, Any] | None = None
    error: str = ""
    retryable: bool = True


def retry_delay_s(attempt: int) -> float:
    """Task-level backoff before attempt ``attempt + 1``: exponential with full jitter."""
    base = settings.AGENCY_RETRY_BASE_S
    cap = settings.AGENCY_RETRY_MAX_S
    return random.uniform(0, min(cap, base * 2 ** max(attempt - 1, 0)))


def worker_load(*, lock: Iterable[int] = ()) -> dict[int, int]:
    """Active attempts per worker, across all dispatchers.

    ``lock``: ids of workers whose capacity lock to take first (PostgreSQL advisory
    locks, in id order, held until the caller's transaction ends). A claim that routes
    to a worker takes its lock before counting, so claims by several dispatchers count
    one after another and each sees the attempts the others committed: together they
    never start more than the worker's ``max_concurrency``. In READ COMMITTED the count
    is a new statement, so it sees the previous holder's commit. SQLite needs no lock:
    its IMMEDIATE transactions already run one at a time.
    """
    ids = sorted(lock)
    if ids and connection.vendor == "postgresql":
        if not connection.in_atomic_block:
            raise RuntimeError("worker_load(lock=...) must run inside the claim's transaction.")
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_advisory_xact_lock(%s, id) FROM unnest(%s::int[]) AS id ORDER BY id",
                [CAPACITY_LOCK_CLASS, ids],
            )
    rows = (
        Task.objects.filter(state__in=ACTIVE_STATES, worker__isnull=False).values("worker_id").annotate(n=Count("id"))
    )
    return {row["worker_id"]: row["n"] for row in rows}


def task_claim(
    *,
    dispatcher_id: str,
    limit: int,
    pick_worker: Callable[[Task], Worker | None],
    lease_s: float,
) -> list[Claim]:
    """Claim up to ``limit`` due queued tasks and start an attempt on each.

    PostgreSQL: ``FOR UPDATE SKIP LOCKED`` lets dispatchers claim side by side
    without waiting on each other. SQLite: the IMMEDIATE transaction holds the
    database write lock, so claims are serial. Tasks no worker can take now
    (capabilities, capacity, open breakers) stay queued; more candidates than
    ``limit`` are read so that they do not block the ones behind them.

    The claimed rows are written with one UPDATE per chosen worker (the fields
    that differ per row are relative to their locked values), their events with
    one INSERT and their audit records last.
    """
    if limit <= 0:
        return []
    now = timezone.now()
    actor = f"dispatcher:{dispatcher_id}"
    claims: list[Claim] = []
    events: list[TaskEvent] = []
    audit: list[AuditEntry] = []
    by_worker: dict[int, list[Any]] = {}
    with transaction.atomic():
        for task in _due_candidates(now=now, limit=limit, wanted=lambda: limit - len(claims)):
            worker = pick_worker(task)
            if worker is None:
                continue
            task.attempt += 1
            by_worker.setdefault(worker.pk, []).append(task.pk)
            event = {"attempt": task.attempt, "worker": worker.name, "dispatcher": dispatcher_id, "from": "queued"}
            events.append(new_event(task, "attempt_started", event))
            audit.append(
                AuditEntry(
                    actor=actor,
                    action="task.start",
                    resource_type="task",
                    resource_id=task.pk,
                    data={"attempt": task.attempt, "worker": worker.name},
                )
            )
            deadline = now + timedelta(seconds=int(task.spec.get("timeout_s", 600)))
            claims.append(Claim(str(task.pk), task.attempt, worker.pk, task.spec, deadline))
        for worker_id, ids in by_worker.items():
            Task.objects.filter(pk__in=ids).update(
                state=TaskState.RUNNING,
                attempt=F("attempt") + 1,
                event_seq=F("event_seq") + 1,
                worker_id=worker_id,
                lease_owner=dispatcher_id,
                lease_expires_at=lease_until(lease_s),
                started_at=Coalesce("started_at", Value(now)),
                updated_at=now,
                progress_percent=0,
                progress_phase="",
                run_after=None,
            )
        TaskEvent.objects.bulk_create(events)
        # Last: the audit chain's lock is held from here to the commit only.
        audit_records(audit)
    return claims


def _due_candidates(*, now: datetime, limit: int, wanted: Callable[[], int]) -> Iterator[Task]:
    """Due queued tasks in claim order, locked (``SKIP LOCKED``), read a page at a time.

    The first page is as long as the caller's ``limit``, so a claim in the common case
    reads (and locks) just the rows it takes. Each task the caller skips makes it read
    further, up to ``CLAIM_READ_FACTOR * limit`` rows in all.
    """
    due = (
        Task.objects.select_for_update(skip_locked=True)
        .filter(state=TaskState.QUEUED)
        .filter(Q(run_after__isnull=True) | Q(run_after__lte=now))
        .order_by("-priority", "created_at")
    )
    budget = max(limit * CLAIM_READ_FACTOR, 32)
    seen: list[Any] = []
    while (need := wanted()) > 0 and len(seen) < budget:
        size = min(need if not seen else max(need, 8), budget - len(seen))
        page = list((due.exclude(pk__in=seen) if seen else due)[:size])
        seen += [task.pk for task in page]
        for task in page:
            if wanted() <= 0:
                return
            yield task
        if len(page) < size:
            return  # nothing more is due


def apply_reports(*, dispatcher_id: str, reports: list[AttemptReport]) -> None:
    """Write a batch of attempt reports in one transaction (rows locked in id order)."""
    if not reports:
        return
    with transaction.atomic():
        ids = sorted({r.task_id for r in reports})
        tasks = {str(t.pk): t for t in Task.objects.select_for_update().filter(pk__in=ids).order_by("pk")}
        writes = TaskWrites()
        for report in reports:
            task = tasks.get(report.task_id)
            if task is not None:
                _apply_report(writes, task, report, dispatcher_id)
        writes.flush()


def _clean(value: Any) -> Any:
    """Worker JSON made storable anywhere: no NUL characters (PostgreSQL text and jsonb refuse
    them) and no NaN or infinities (not JSON)."""
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k).replace("\x00", ""): _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def _percent(value: Any) -> int:
    try:
        return max(0, min(100, int(float(value))))
    except (TypeError, ValueError, OverflowError):
        return 0


def _apply_report(w: TaskWrites, task: Task, report: AttemptReport, dispatcher_id: str) -> None:
    actor = f"dispatcher:{dispatcher_id}"
    now = timezone.now()
    w.set(task, updated_at=now)
    current = task.attempt == report.attempt and task.lease_owner == dispatcher_id and task.state in ACTIVE_STATES
    for event in report.events:
        event = _clean(event)
        if current and task.state == TaskState.RUNNING and event.get("type") == "progress":
            phase = str(event.get("phase") or "")[:100]
            w.set(task, progress_percent=_percent(event.get("percent")), progress_phase=phase)
        w.event(task, str(event.get("type") or "worker_event")[:50], {"attempt": report.attempt, **event})
    if report.result is not None:
        report.result = _clean(report.result)
    if report.kind == "progress":
        return

    if not current:
        # Fencing: the attempt is stale (reclaimed, paused, canceled...).
        if report.kind in ("stopped", "not_dispatched"):
            w.event(task, "attempt_stopped", {"attempt": report.attempt, "state": task.state, "reason": report.error})
            return
        kind = "late_result" if report.attempt == task.attempt else "stale_result"
        w.event(
            task,
            kind,
            {
                "attempt": report.attempt,
                "state": task.state,
                "outcome": report.kind,
                "result": report.result,
                "error": report.error,
            },
        )
        return

    if task.state == TaskState.CANCELING:
        if report.result is not None:
            w.event(task, "late_result", {"attempt": report.attempt, "result": report.result})
        _finish(w, task, TaskState.CANCELED, now)
        w.event(task, "canceled", {"attempt": report.attempt, "from": TaskState.CANCELING, "actor": actor})
        w.record(
            actor=actor,
            action="task.cancel_confirmed",
            resource_type="task",
            resource_id=task.pk,
            data={"attempt": report.attempt},
        )
        return

    if report.kind == "stopped":
        # Stopped without a cancel or pause in the database: put it back.
        _requeue(w, task, now, actor, report, delay_s=0, consume_attempt=False, why=report.error or "stopped")
        return

    if report.kind == "not_dispatched":
        _requeue(w, task, now, actor, report, delay_s=1.0, consume_attempt=False, why=report.error)
        return

    result = report.result or {}
    if report.kind == "result" and result.get("status") == "completed":
        # The gates and the automatic verdict decide where a completed result leads.
        verdict, new_state = automatic_verdict(task=task, result=result)
        w.verdict(verdict)
        w.set(task, result=result, progress_percent=100, error="", violations=task.violations)
        if new_state == TaskState.AWAITING_REVIEW:
            w.set(task, state=new_state, lease_owner="", lease_expires_at=None)
        else:
            _finish(w, task, new_state, now)
        if new_state == TaskState.FAILED:
            w.set(task, error=verdict.reason)
        data = {"attempt": report.attempt, "from": TaskState.RUNNING, "to": new_state, **verdict_summary(verdict)}
        event = {TaskState.COMPLETED: "completed", TaskState.FAILED: "changes_requested"}.get(new_state, new_state)
        w.event(task, event, data)
        w.record(actor=actor, action="task.verdict", resource_type="task", resource_id=task.pk, data=data)
        return

    error = report.error or str(result.get("error") or "the worker reported a failure")
    retryable = report.retryable and result.get("retryable", True) is not False
    if retryable and task.attempt < task.max_attempts:
        _requeue(w, task, now, actor, report, delay_s=retry_delay_s(task.attempt), consume_attempt=True, why=error)
        return
    _finish(w, task, TaskState.FAILED, now)
    w.set(task, error=error[:5000], result=report.result)
    w.event(
        task,
        "failed",
        {"attempt": report.attempt, "from": TaskState.RUNNING, "error": error[:2000], "retryable": retryable},
    )
    w.record(
        actor=actor,
        action="task.fail",
        resource_type="task",
        resource_id=task.pk,
        data={"attempt": report.attempt, "error": error[:500]},
    )


def _finish(w: TaskWrites, task: Task, state: str, now: datetime) -> None:
    w.set(task, state=state, finished_at=now, lease_owner="", lease_expires_at=None)


def _requeue(
    w: TaskWrites,
    task: Task,
    now: datetime,
    actor: str,
    report: AttemptReport,
    *,
    delay_s: float,
    consume_attempt: bool,
    why: str,
) -> None:
    run_after = now + timedelta(seconds=delay_s) if delay_s else None
    w.set(task, state=TaskState.QUEUED, lease_owner="", lease_expires_at=None, run_after=run_after, error=why[:5000])
    if not consume_attempt:
        w.set(task, max_attempts=task.max_attempts + 1)
    w.event(
        task,
        "retry_scheduled",
        {
            "attempt": report.attempt,
            "from": TaskState.RUNNING,
            "error": why[:2000],
            "run_after": run_after.isoformat() if run_after else None,
            "counts_as_attempt": consume_attempt,
        },
    )
    w.record(
        actor=actor,
        action="task.requeue",
        resource_type="task",
        resource_id=task.pk,
        data={"attempt": report.attempt, "delay_s": round(delay_s, 3), "reason": why[:300]},
    )
    bus.publish({"kind": "work"})


def record_breaker_change(*, dispatcher_id: str, worker: str, old: str, new: str, task_id: str | None) -> None:
    """A worker's circuit breaker changed state: audit it, and put it on the timeline of the
    task whose call caused it."""
    with transaction.atomic():
        fleet.record_breaker_state(worker=worker, state=new)
        data = {"worker": worker, "from": old, "to": new}
        if task_id:
            try:
                task = Task.objects.select_for_update().get(pk=task_id)
            except Task.DoesNotExist:
                task = None
            if task is not None:
                append_event(task, "breaker", data)
                task.save(update_fields=["event_seq"])
                data["task_id"] = task_id
        audit_record(
            actor=f"dispatcher:{dispatcher_id}",
            action=f"worker.breaker_{new}",
            resource_type="worker",
            resource_id=worker,
            data=data,
        )
