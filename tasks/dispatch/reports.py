"""Reports: what the dispatcher's attempts came to (progress, results, failures), written back.

Results are fenced: an update only applies when the task is still ``running`` the same
attempt under the same lease owner. Anything else is recorded on the timeline and never
applied. Each state change is written with its TaskEvent and audit record in the
transaction that locks the rows.
"""

from __future__ import annotations

import math
import random
import re
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction

from config.rows import fetch, select_list
from security import roles
from security.egress import EgressAction
from security.principals import Principal, require
from security.sandbox import SandboxAction, denial_from_result
from tasks.dispatch import bus, fleet
from tasks.models import WORKER_EVENT_PREFIX, EventType, Task
from tasks.review.verdicts import automatic_verdict, verdict_summary
from tasks.states import ACTIVE_STATES, Cause, TaskState
from tasks.transitions import TaskWrites, transition

# A worker's JSON deeper or larger than this is refused (the attempt fails once, saying so)
# rather than stored: the timeline, the API and the audit trail all walk it again.
MAX_JSON_DEPTH = 64
MAX_JSON_NODES = 200_000


@dataclass
class AttemptReport:
    """What one attempt came to, handed back by the dispatcher for one task.

    ``kind`` is ``progress`` (interim ``events``), ``result`` (the worker's
    final result), ``failed`` (no result: transport or HTTP failure),
    ``not_dispatched`` (the worker did not take the attempt: its breaker was
    open, it answered 429 at capacity to the last try, or the request never
    reached it) or ``stopped`` (the dispatcher stopped the attempt after a
    cancel or pause).

    ``events`` are what the worker sent (its progress, logs, artifacts: stored as
    ``worker.<type>``); ``calls`` are the dispatcher's own records of its HTTP calls.
    ``egress_denied`` is the record of a call the egress policy refused (worker, url, host,
    address, reason, message): it goes on the timeline and into the audit trail.
    """

    task_id: str
    attempt: int
    kind: str
    events: list[dict[str, Any]] = field(default_factory=list)
    result: dict[str, Any] | None = None
    error: str = ""
    retryable: bool = True
    calls: list[dict[str, Any]] = field(default_factory=list)
    egress_denied: dict[str, Any] | None = None


class UnstorableJSON(ValueError):
    """A worker's JSON is nested too deep or is too large to store."""


def retry_delay_s(attempt: int) -> float:
    """Task-level backoff before attempt ``attempt + 1``: exponential with full jitter."""
    base = settings.AGENCY_RETRY_BASE_S
    cap = settings.AGENCY_RETRY_MAX_S
    return random.uniform(0, min(cap, base * 2 ** max(attempt - 1, 0)))


def apply_reports(*, actor: Principal, reports: list[AttemptReport]) -> None:
    """Write a batch of attempt reports in one transaction (rows locked in id order)."""
    acting = require(actor, roles.is_dispatcher, "report attempts")
    if not reports:
        return
    with transaction.atomic():
        ids = sorted({r.task_id for r in reports})
        tasks = {str(t.pk): t for t in _locked(ids)}
        w = TaskWrites()
        for report in reports:
            task = tasks.get(report.task_id)
            if task is not None:
                _apply_report(w, task, report, acting)
        w.flush()


def _locked(ids: list[str]) -> list[Task]:
    """The tasks of ``ids``, their rows locked in id order (no FOR UPDATE on SQLite: it has no row locks).

    Hand-written (config/rows.py), as every batch of reports reads them: the ORM's
    ``select_for_update().filter(pk__in=…)`` cost several times the statement.
    """
    quote = connection.ops.quote_name
    pk = Task._meta.pk
    sql = (
        f"SELECT {select_list(Task, 't')} FROM {quote(Task._meta.db_table)} t "  # noqa: S608 - model names
        f"WHERE t.{quote(pk.column)} IN ({', '.join(['%s'] * len(ids))}) ORDER BY t.{quote(pk.column)}"
    )
    if connection.features.has_select_for_update:
        sql += " FOR UPDATE"
    return [task for (task,) in fetch(sql, [pk.get_db_prep_value(uuid.UUID(i), connection) for i in ids], [Task])]


def clean_json(value: Any, *, max_depth: int = MAX_JSON_DEPTH, max_nodes: int = MAX_JSON_NODES) -> Any:
    """Worker JSON made storable anywhere: no NUL characters (PostgreSQL text and jsonb refuse
    them), no NaN or infinities (not JSON), keys as strings.

    Iterative, so a pathological document cannot exhaust the stack: deeper than ``max_depth``
    or more than ``max_nodes`` values raises :class:`UnstorableJSON`.
    """
    nodes = 0

    def leaf(v: Any) -> Any:
        if isinstance(v, str):
            return v.replace("\x00", "")
        if isinstance(v, float) and not math.isfinite(v):
            return None
        return v

    if not isinstance(value, (dict, list)):
        return leaf(value)
    root: Any = {} if isinstance(value, dict) else []
    stack: list[tuple[Any, Any, int]] = [(value, root, 1)]
    while stack:
        source, target, depth = stack.pop()
        if depth > max_depth:
            raise UnstorableJSON(f"nested deeper than {max_depth} levels")
        items = source.items() if isinstance(source, dict) else enumerate(source)
        for key, item in items:
            nodes += 1
            if nodes > max_nodes:
                raise UnstorableJSON(f"more than {max_nodes} values")
            if isinstance(item, (dict, list)):
                child: Any = {} if isinstance(item, dict) else []
                stack.append((item, child, depth + 1))
            else:
                child = leaf(item)
            if isinstance(target, dict):
                target[str(key).replace("\x00", "")] = child
            else:
                target.append(child)
    return root


_EVENT_TYPE = re.compile(r"[^a-z0-9_]")


def worker_event_type(raw: Any) -> str:
    """``worker.<type>`` for an event a worker sent: its namespace, never a system type."""
    name = _EVENT_TYPE.sub("_", str(raw or "event").lower())[: 50 - len(WORKER_EVENT_PREFIX)]
    return WORKER_EVENT_PREFIX + (name or "event")


def _percent(value: Any) -> int:
    try:
        return max(0, min(100, int(float(value))))
    except (TypeError, ValueError, OverflowError):
        return 0


def _apply_report(w: TaskWrites, task: Task, report: AttemptReport, acting: Principal) -> None:
    current = task.attempt == report.attempt and task.lease_owner == acting.name and task.state in ACTIVE_STATES
    w.set(task, updated_at=w.now)
    for call in report.calls:
        w.event(task, EventType.WORKER_CALL, {**_storable(call), "attempt": report.attempt})
    for event in report.events:
        if not isinstance(event, dict):
            continue
        payload = _storable({k: v for k, v in event.items() if k != "type"})
        if current and task.state == TaskState.RUNNING and event.get("type") == "progress":
            phase = str(payload.get("phase") or "")[:100]
            w.set(task, progress_percent=_percent(payload.get("percent")), progress_phase=phase)
        w.event(task, worker_event_type(event.get("type")), {"attempt": report.attempt, "payload": payload})
    if report.egress_denied is not None:
        # Whatever becomes of the report (requeued, or fenced as stale): the refusal happened.
        _record_egress_denial(w, task, report, acting)
    if report.result is not None:
        try:
            report.result = clean_json(report.result)
        except UnstorableJSON as exc:
            # The worker answered, but with something we will not store: the attempt fails, once.
            report.kind, report.result, report.retryable = "failed", None, False
            report.error = f"the worker's result could not be stored: {exc}"
    if report.kind == "progress":
        return

    if not current:
        # Fencing: the attempt is stale (reclaimed, paused, canceled...).
        if report.kind in ("stopped", "not_dispatched"):
            w.event(
                task,
                EventType.ATTEMPT_STOPPED,
                {"attempt": report.attempt, "state": task.state, "reason": report.error},
            )
            return
        kind = EventType.LATE_RESULT if report.attempt == task.attempt else EventType.STALE_RESULT
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
            w.event(task, EventType.LATE_RESULT, {"attempt": report.attempt, "result": report.result})
        transition(
            w,
            task,
            to=TaskState.CANCELED,
            cause=Cause.CANCEL_CONFIRMED,
            actor=acting,
            event=EventType.CANCELED,
            data={"attempt": report.attempt, "actor": acting.actor},
            audit_action="task.cancel_confirmed",
            audit_data={"attempt": report.attempt},
            **_finished(w),
        )
        return

    if report.kind == "stopped":
        # Stopped without a cancel or pause in the database: put it back.
        _requeue(w, task, acting, report, delay_s=0, consume_attempt=False, why=report.error or "stopped")
        return

    if report.kind == "not_dispatched":
        _requeue(w, task, acting, report, delay_s=1.0, consume_attempt=False, why=report.error)
        return

    result = report.result or {}
    denial = denial_from_result(result) if report.kind == "result" else None
    if denial is not None:
        # The worker's sandbox refused a file operation; it has no database, so it is audited here.
        worker = Principal.worker(task.worker.name) if task.worker_id else acting
        w.record(
            actor=worker.actor,
            action=SandboxAction.DENIED.value,
            resource_type="task",
            resource_id=str(task.pk),
            data={"attempt": report.attempt, **denial},
        )
    if report.kind == "result" and result.get("status") == "completed":
        # The gates and the automatic verdict decide where a completed result leads.
        verdict, new_state = automatic_verdict(task=task, result=result)
        w.verdict(verdict)
        fields: dict[str, Any] = {"result": result, "progress_percent": 100, "error": "", "violations": task.violations}
        if new_state == TaskState.AWAITING_REVIEW:
            fields |= {"lease_owner": "", "lease_expires_at": None}
        else:
            fields |= _finished(w)
        if new_state == TaskState.FAILED:
            fields["error"] = verdict.reason
        summary = {"attempt": report.attempt, **verdict_summary(verdict)}
        event = {
            TaskState.COMPLETED: EventType.COMPLETED,
            TaskState.FAILED: EventType.CHANGES_REQUESTED,
            TaskState.AWAITING_REVIEW: EventType.AWAITING_REVIEW,
        }[new_state]
        transition(
            w,
            task,
            to=new_state,
            cause=Cause.VERDICT,
            actor=acting,
            event=event,
            data=summary,
            audit_action="task.verdict",
            audit_data=summary,
            **fields,
        )
        return

    error = report.error or str(result.get("error") or "the worker reported a failure")
    retryable = report.retryable and result.get("retryable", True) is not False
    if retryable and task.attempt < task.max_attempts:
        _requeue(w, task, acting, report, delay_s=retry_delay_s(task.attempt), consume_attempt=True, why=error)
        return
    transition(
        w,
        task,
        to=TaskState.FAILED,
        cause=Cause.FAIL,
        actor=acting,
        event=EventType.FAILED,
        data={"attempt": report.attempt, "error": error[:2000], "retryable": retryable},
        audit_action="task.fail",
        audit_data={"attempt": report.attempt, "error": error[:500]},
        error=error[:5000],
        result=report.result,
        **_finished(w),
    )


def _record_egress_denial(w: TaskWrites, task: Task, report: AttemptReport, acting: Principal) -> None:
    denial = _storable(report.egress_denied or {})
    w.event(task, EventType.EGRESS_DENIED, {"attempt": report.attempt, **denial})
    w.record(
        actor=acting.actor,
        action=EgressAction.DENIED.value,
        resource_type="worker",
        resource_id=str(denial.get("worker", "")),
        data={"task_id": str(task.pk), "attempt": report.attempt, **denial},
    )


def _storable(value: dict[str, Any]) -> dict[str, Any]:
    try:
        return clean_json(value)
    except UnstorableJSON as exc:
        return {"unstorable": str(exc)}


def _finished(w: TaskWrites) -> dict[str, Any]:
    return {"finished_at": w.now, "lease_owner": "", "lease_expires_at": None}


def _requeue(
    w: TaskWrites,
    task: Task,
    acting: Principal,
    report: AttemptReport,
    *,
    delay_s: float,
    consume_attempt: bool,
    why: str,
) -> None:
    run_after = w.now + timedelta(seconds=delay_s) if delay_s else None
    fields: dict[str, Any] = {"lease_owner": "", "lease_expires_at": None, "run_after": run_after, "error": why[:5000]}
    if not consume_attempt:
        fields["max_attempts"] = task.max_attempts + 1
    transition(
        w,
        task,
        to=TaskState.QUEUED,
        cause=Cause.REQUEUE,
        actor=acting,
        event=EventType.RETRY_SCHEDULED,
        data={
            "attempt": report.attempt,
            "error": why[:2000],
            "run_after": run_after.isoformat() if run_after else None,
            "counts_as_attempt": consume_attempt,
        },
        audit_action="task.requeue",
        audit_data={"attempt": report.attempt, "delay_s": round(delay_s, 3), "reason": why[:300]},
        **fields,
    )
    bus.publish({"kind": "work"})


def record_breaker_change(*, actor: Principal, worker: str, old: str, new: str, task_id: str | None) -> None:
    """A worker's circuit breaker changed state: audit it, and put it on the timeline of the
    task whose call caused it."""
    acting = require(actor, roles.is_dispatcher, "record breaker changes")
    with transaction.atomic():
        fleet.record_breaker_state(worker=worker, state=new)
        data = {"worker": worker, "from": old, "to": new}
        w = TaskWrites()
        task = Task.objects.select_for_update().filter(pk=task_id).first() if task_id else None
        if task is not None:
            w.event(task, EventType.BREAKER, data)
            data["task_id"] = task_id
        w.record(
            actor=acting.actor,
            action=f"worker.breaker_{new}",
            resource_type="worker",
            resource_id=worker,
            data=data,
        )
        w.flush()
