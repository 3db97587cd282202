"""Leases of running attempts: their expiry on the database clock, renewal, and reaping.

A dispatcher holds a lease on every attempt it runs and renews it while the attempt
lasts (results included, until the writer commits them). When a dispatcher dies its
leases run out, and any dispatcher's reaper returns those attempts to the queue (or
ends them, see :func:`reap_expired_leases`). :func:`attempts_to_stop` is the poll that
tells a live dispatcher which of its attempts the database says must stop.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.db.models import DateTimeField, ExpressionWrapper
from django.db.models.functions import Now

from security import roles
from security.principals import Principal, require
from tasks.dispatch import bus
from tasks.models import EventType, Task
from tasks.states import ACTIVE_STATES, Cause, TaskState
from tasks.transitions import TaskWrites, transition


def lease_until(lease_s: float) -> ExpressionWrapper:
    """A lease expiry on the database's clock, so claimers and reapers on machines whose
    clocks disagree still agree on when a lease ends."""
    return ExpressionWrapper(Now() + timedelta(seconds=lease_s), output_field=DateTimeField())


def renew_leases(*, actor: Principal, task_ids: Iterable[str], lease_s: float) -> None:
    dispatcher_id = require(actor, roles.is_dispatcher, "renew leases").name
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


def reap_expired_leases(*, actor: Principal, limit: int = 100) -> list[tuple[str, int, str]]:
    """Return orphaned attempts (lease expired: their dispatcher died) to the queue.

    A reclaimed attempt counts against the budget: a task that kills its
    dispatcher every time must end ``failed``, not loop forever. A task that
    was ``canceling`` is canceled. Returns (task_id, attempt, new_state).
    """
    acting = require(actor, roles.is_dispatcher, "reap expired leases")
    reaped: list[tuple[str, int, str]] = []
    with transaction.atomic():
        expired = list(
            Task.objects.select_for_update(skip_locked=True)
            .filter(state__in=ACTIVE_STATES, lease_expires_at__lt=Now())
            .order_by("lease_expires_at")[:limit]
        )
        w = TaskWrites()
        for task in expired:
            previous, owner = task.state, task.lease_owner
            fields: dict[str, Any] = {"lease_owner": "", "lease_expires_at": None}
            if previous == TaskState.CANCELING:
                new_state = TaskState.CANCELED
                fields["finished_at"] = w.now
            elif task.attempt < task.max_attempts:
                new_state = TaskState.QUEUED
                fields["run_after"] = None
            else:
                new_state = TaskState.FAILED
                error = f"lease expired on attempt {task.attempt} (dispatcher {owner}) and no attempts remain"
                fields |= {"finished_at": w.now, "error": error}
            data = {"attempt": task.attempt, "lease_owner": owner}
            transition(
                w,
                task,
                to=new_state,
                cause=Cause.LEASE_EXPIRED,
                actor=acting,
                event=EventType.LEASE_EXPIRED,
                data=data,
                audit_action="task.reclaim",
                audit_data=data,
                **fields,
            )
            reaped.append((str(task.pk), task.attempt, new_state))
        w.flush()
        if any(state == TaskState.QUEUED for _, _, state in reaped):
            bus.publish({"kind": "work"})
    return reaped
