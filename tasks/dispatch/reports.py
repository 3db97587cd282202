"""Reports: what the dispatcher's attempts came to (progress, results, failures), written back.

Results are fenced: an update only applies when the task is still ``running`` the same
attempt under the same lease owner. Anything else is recorded on the timeline and never
applied. Each state change is written with its TaskEvent and audit record in the
transaction that locks the rows.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from audit.services import audit_record
from tasks.dispatch import bus, fleet
from tasks.dispatch.leases import ACTIVE_STATES
from tasks.dispatch.writes import TaskWrites
from tasks.models import Task
from tasks.review.verdicts import automatic_verdict, verdict_summary
from tasks.services import append_event
from tasks.states import TaskState


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
