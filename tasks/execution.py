"""Dispatcher-side task services: claim, progress, results, leases, reaping.

Like :mod:`tasks.services`, every state change here locks the task row,
checks where it stands, and writes the new state, its TaskEvent and its audit
record in one transaction. Results are fenced: an update only applies when
the task is still ``running`` the same attempt under the same lease owner.
Anything else is recorded on the timeline and never applied.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Count, DateTimeField, ExpressionWrapper, Q
from django.db.models.functions import Now
from django.utils import timezone

from audit.services import AuditEntry, audit_record, audit_records
from tasks import bus, fleet
from tasks.models import Task, Worker
from tasks.services import append_event
from tasks.states import TaskState
from tasks.verdicts import automatic_verdict, verdict_summary

ACTIVE_STATES = (TaskState.RUNNING, TaskState.CANCELING)


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
    ``not_dispatched`` (no worker call was made, e.g. breaker open) or
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


def worker_load() -> dict[int, int]:
    """Active attempts per worker, across all dispatchers."""
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
    """
    if limit <= 0:
        return []
    now = timezone.now()
    actor = f"dispatcher:{dispatcher_id}"
    claims: list[Claim] = []
    audit: list[AuditEntry] = []
    with transaction.atomic():
        candidates = list(
            Task.objects.select_for_update(skip_locked=True)
            .filter(state=TaskState.QUEUED)
            .filter(Q(run_after__isnull=True) | Q(run_after__lte=now))
            .order_by("-priority", "created_at")[: max(limit * 4, 32)]
        )
        for task in candidates:
            if len(claims) >= limit:
                break
            worker = pick_worker(task)
            if worker is None:
                continue
            task.state = TaskState.RUNNING
            task.attempt += 1
            task.worker = worker
            task.lease_owner = dispatcher_id
            task.lease_expires_at = lease_until(lease_s)
            task.started_at = task.started_at or now
            task.updated_at = now
            task.progress_percent = 0
            task.progress_phase = ""
            task.run_after = None
            append_event(
                task,
                "attempt_started",
                {"attempt": task.attempt, "worker": worker.name, "dispatcher": dispatcher_id, "from": "queued"},
            )
            task.save(
                update_fields=[
                    "state",
                    "attempt",
                    "worker",
                    "lease_owner",
                    "lease_expires_at",
                    "started_at",
                    "updated_at",
                    "progress_percent",
                    "progress_phase",
                    "run_after",
                    "event_seq",
                ]
            )
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
        # Last, in one bulk write: the audit chain's lock is held from here to the commit only.
        audit_records(audit)
    return claims


def lease_until(lease_s: float) -> ExpressionWrapper:
    """A lease expiry on the database's clock, so claimers and reapers on machines whose
    clocks disagree still agree on when a lease ends."""
    return ExpressionWrapper(Now() + timedelta(seconds=lease_s), output_field=DateTimeField())


def renew_leases(*, dispatcher_id: str, task_ids: Iterable[str], lease_s: float) -> None:
    ids = sorted(task_ids)
    if not ids:
        return
    with transaction.atomic():
        # Lock in id order, skipping rows our writer holds (it is finishing them): the same
        # order as apply_reports, so the two never deadlock.
        mine = list(
            Task.objects.select_for_update(skip_locked=True)
            .filter(pk__in=ids, lease_owner=dispatcher_id, state__in=ACTIVE_STATES)
            .order_by("pk")
            .values_list("pk", flat=True)
        )
        Task.objects.filter(pk__in=mine).update(lease_expires_at=lease_until(lease_s))


def attempts_to_stop(*, dispatcher_id: str, attempts: dict[str, int]) -> dict[str, str]:
    """Of our in-flight attempts, those the database says must stop, with why.

    This is the poll that covers lost bus signals: a cancel or pause, a lease
    that another process reclaimed, or a task that moved on.
    """
    if not attempts:
        return {}
    rows = Task.objects.filter(pk__in=list(attempts)).values_list("pk", "state", "attempt", "lease_owner")
    found = {str(pk): (state, attempt, owner) for pk, state, attempt, owner in rows}
    stop: dict[str, str] = {}
    for task_id, attempt in attempts.items():
        state, current_attempt, owner = found.get(task_id, (None, None, None))
        if state == TaskState.RUNNING and current_attempt == attempt and owner == dispatcher_id:
            continue
        stop[task_id] = state or "deleted"
    return stop


def apply_reports(*, dispatcher_id: str, reports: list[AttemptReport]) -> None:
    """Write a batch of attempt reports in one transaction (rows locked in id order)."""
    if not reports:
        return
    with transaction.atomic():
        ids = sorted({r.task_id for r in reports})
        tasks = {str(t.pk): t for t in Task.objects.select_for_update().filter(pk__in=ids).order_by("pk")}
        rows: dict[str, _Row] = {}
        audit: list[AuditEntry] = []
        for report in reports:
            task = tasks.get(report.task_id)
            if task is None:
                continue
            row = rows.setdefault(report.task_id, _Row(task))
            _apply_report(row, report, dispatcher_id, audit)
        for row in rows.values():
            row.task.save(update_fields=row.dirty | {"event_seq", "updated_at"})
        # Last, in one bulk write: the audit chain's lock is held from here to the commit only.
        audit_records(audit)


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


class _Row:
    """A locked task and the fields a batch changed on it."""

    def __init__(self, task: Task) -> None:
        self.task = task
        self.dirty: set[str] = set()

    def set(self, **values: Any) -> None:
        for name, value in values.items():
            setattr(self.task, name, value)
        self.dirty.update(values)


def _apply_report(row: _Row, report: AttemptReport, dispatcher_id: str, audit: list[AuditEntry]) -> None:
    task = row.task
    actor = f"dispatcher:{dispatcher_id}"
    now = timezone.now()
    task.updated_at = now
    current = task.attempt == report.attempt and task.lease_owner == dispatcher_id and task.state in ACTIVE_STATES
    for event in report.events:
        event = _clean(event)
        if current and task.state == TaskState.RUNNING and event.get("type") == "progress":
            row.set(progress_percent=_percent(event.get("percent")), progress_phase=str(event.get("phase") or "")[:100])
        append_event(task, str(event.get("type") or "worker_event")[:50], {"attempt": report.attempt, **event})
    if report.result is not None:
        report.result = _clean(report.result)
    if report.kind == "progress":
        return

    if not current:
        # Fencing: the attempt is stale (reclaimed, paused, canceled...).
        if report.kind in ("stopped", "not_dispatched"):
            append_event(
                task, "attempt_stopped", {"attempt": report.attempt, "state": task.state, "reason": report.error}
            )
            return
        kind = "late_result" if report.attempt == task.attempt else "stale_result"
        append_event(
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
            append_event(task, "late_result", {"attempt": report.attempt, "result": report.result})
        _finish(row, TaskState.CANCELED, now)
        append_event(task, "canceled", {"attempt": report.attempt, "from": TaskState.CANCELING, "actor": actor})
        audit.append(
            AuditEntry(
                actor=actor,
                action="task.cancel_confirmed",
                resource_type="task",
                resource_id=task.pk,
                data={"attempt": report.attempt},
            )
        )
        return

    if report.kind == "stopped":
        # Stopped without a cancel or pause in the database: put it back.
        _requeue(row, audit, now, actor, report, delay_s=0, consume_attempt=False, why=report.error or "stopped")
        return

    if report.kind == "not_dispatched":
        _requeue(row, audit, now, actor, report, delay_s=1.0, consume_attempt=False, why=report.error)
        return

    result = report.result or {}
    if report.kind == "result" and result.get("status") == "completed":
        # The gates and the automatic verdict decide where a completed result leads.
        verdict, new_state = automatic_verdict(task=task, result=result)
        row.set(result=result, progress_percent=100, error="", violations=task.violations)
        if new_state == TaskState.AWAITING_REVIEW:
            row.set(state=new_state, lease_owner="", lease_expires_at=None)
        else:
            _finish(row, new_state, now)
        if new_state == TaskState.FAILED:
            row.set(error=verdict.reason)
        data = {"attempt": report.attempt, "from": TaskState.RUNNING, "to": new_state, **verdict_summary(verdict)}
        event = {TaskState.COMPLETED: "completed", TaskState.FAILED: "changes_requested"}.get(new_state, new_state)
        append_event(task, event, data)
        audit.append(
            AuditEntry(actor=actor, action="task.verdict", resource_type="task", resource_id=task.pk, data=data)
        )
        return

    error = report.error or str(result.get("error") or "the worker reported a failure")
    retryable = report.retryable and result.get("retryable", True) is not False
    if retryable and task.attempt < task.max_attempts:
        _requeue(row, audit, now, actor, report, delay_s=retry_delay_s(task.attempt), consume_attempt=True, why=error)
        return
    _finish(row, TaskState.FAILED, now)
    row.set(error=error[:5000], result=report.result)
    append_event(
        task,
        "failed",
        {"attempt": report.attempt, "from": TaskState.RUNNING, "error": error[:2000], "retryable": retryable},
    )
    audit.append(
        AuditEntry(
            actor=actor,
            action="task.fail",
            resource_type="task",
            resource_id=task.pk,
            data={"attempt": report.attempt, "error": error[:500]},
        )
    )


def _finish(row: _Row, state: str, now: datetime) -> None:
    row.set(state=state, finished_at=now, lease_owner="", lease_expires_at=None)


def _requeue(
    row: _Row,
    audit: list[AuditEntry],
    now: datetime,
    actor: str,
    report: AttemptReport,
    *,
    delay_s: float,
    consume_attempt: bool,
    why: str,
) -> None:
    task = row.task
    run_after = now + timedelta(seconds=delay_s) if delay_s else None
    row.set(state=TaskState.QUEUED, lease_owner="", lease_expires_at=None, run_after=run_after, error=why[:5000])
    if not consume_attempt:
        row.set(max_attempts=task.max_attempts + 1)
    append_event(
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
    audit.append(
        AuditEntry(
            actor=actor,
            action="task.requeue",
            resource_type="task",
            resource_id=task.pk,
            data={"attempt": report.attempt, "delay_s": round(delay_s, 3), "reason": why[:300]},
        )
    )
    bus.publish({"kind": "work"})


def reap_expired_leases(*, reaper_id: str, limit: int = 100) -> list[tuple[str, int, str]]:
    """Return orphaned attempts (lease expired: their dispatcher died) to the queue.

    A reclaimed attempt counts against the budget: a task that kills its
    dispatcher every time must end ``failed``, not loop forever. A task that
    was ``canceling`` is canceled. Returns (task_id, attempt, new_state).
    """
    now = timezone.now()
    actor = f"dispatcher:{reaper_id}"
    reaped: list[tuple[str, int, str]] = []
    with transaction.atomic():
        expired = list(
            Task.objects.select_for_update(skip_locked=True)
            .filter(state__in=ACTIVE_STATES, lease_expires_at__lt=Now())
            .order_by("lease_expires_at")[:limit]
        )
        for task in expired:
            previous, owner = task.state, task.lease_owner
            if previous == TaskState.CANCELING:
                new_state = TaskState.CANCELED
                task.finished_at = now
            elif task.attempt < task.max_attempts:
                new_state = TaskState.QUEUED
                task.run_after = None
            else:
                new_state = TaskState.FAILED
                task.finished_at = now
                task.error = f"lease expired on attempt {task.attempt} (dispatcher {owner}) and no attempts remain"
            task.state = new_state
            task.lease_owner = ""
            task.lease_expires_at = None
            task.updated_at = now
            append_event(
                task,
                "lease_expired",
                {"attempt": task.attempt, "from": previous, "to": new_state, "lease_owner": owner},
            )
            task.save(
                update_fields=[
                    "state",
                    "finished_at",
                    "run_after",
                    "error",
                    "lease_owner",
                    "lease_expires_at",
                    "updated_at",
                    "event_seq",
                ]
            )
            audit_record(
                actor=actor,
                action="task.reclaim",
                resource_type="task",
                resource_id=task.pk,
                data={"attempt": task.attempt, "from": previous, "to": new_state, "lease_owner": owner},
            )
            reaped.append((str(task.pk), task.attempt, new_state))
        if any(state == TaskState.QUEUED for _, _, state in reaped):
            bus.publish({"kind": "work"})
    return reaped


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
