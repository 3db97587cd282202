"""Task services: the only code that changes ``Task.state``.

Each service locks the task row, checks the transition, writes the new state,
one TaskEvent and one audit record inside a single ``transaction.atomic()``.
Anything that must happen after the change is visible (pushes to listeners)
is scheduled with ``transaction.on_commit`` so a rolled-back change never
announces itself.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from audit.services import actor_for_user, audit_record
from tasks.dispatch import bus
from tasks.exceptions import IllegalTransition, TaskNotFound
from tasks.models import Priority, Task, TaskEvent
from tasks.spec import validate_spec
from tasks.states import TaskAction, TaskState, target_state


def new_event(task: Task, type: str, data: dict[str, Any]) -> TaskEvent:
    """The next timeline entry, not yet saved; ``task`` must be locked by the caller."""
    task.event_seq += 1
    return TaskEvent(task=task, seq=task.event_seq, type=type, data=data)


def append_event(task: Task, type: str, data: dict[str, Any]) -> TaskEvent:
    """Add the next timeline entry; ``task`` must be locked by the caller."""
    event = new_event(task, type, data)
    event.save(force_insert=True)
    return event


def lock_task(task_id: uuid.UUID | str) -> Task:
    try:
        return Task.objects.select_for_update().get(pk=task_id)
    except (Task.DoesNotExist, ValueError, TypeError, ValidationError) as exc:
        raise TaskNotFound(task_id) from exc


def task_create(*, spec: Any, user: Any = None) -> Task:
    """Validate a working spec and queue a task for it."""
    clean = validate_spec(spec)
    actor = actor_for_user(user)
    with transaction.atomic():
        task = Task(
            title=clean["title"],
            spec=clean,
            priority=Priority.from_name(clean["priority"]),
            risk_tier=clean["risk_tier"],
            max_attempts=clean["max_attempts"],
            created_by=user if user is not None and user.is_authenticated else None,
        )
        task.save(force_insert=True)
        append_event(task, "created", {"state": task.state, "actor": actor})
        task.save(update_fields=["event_seq"])
        audit_record(
            actor=actor,
            action="task.create",
            resource_type="task",
            resource_id=task.pk,
            data={"title": task.title, "priority": clean["priority"], "risk_tier": task.risk_tier},
        )
        bus.publish({"kind": "work"})
    return task


def _operator_transition(*, task_id: uuid.UUID | str, action: TaskAction, user: Any, reason: str = "") -> Task:
    actor = actor_for_user(user)
    now = timezone.now()
    with transaction.atomic():
        task = lock_task(task_id)
        previous = task.state
        new_state = target_state(action, previous)
        if new_state is None:
            raise IllegalTransition(action=action, state=previous)
        task.state = new_state
        task.updated_at = now
        fields = ["state", "updated_at", "event_seq"]
        if action == TaskAction.CANCEL:
            task.cancel_requested_at = now
            task.cancel_requested_by = user if user is not None and user.is_authenticated else None
            task.cancel_reason = reason
            fields += ["cancel_requested_at", "cancel_requested_by", "cancel_reason"]
            if new_state == TaskState.CANCELED:
                task.finished_at = now
                fields.append("finished_at")
        elif action == TaskAction.PAUSE and previous == TaskState.RUNNING:
            # The dispatcher stops the attempt at the worker. A pause is not a
            # failure, so the attempt it interrupts does not use up the budget;
            # the attempt number itself never goes back (it fences results).
            task.max_attempts += 1
            task.lease_owner = ""
            task.lease_expires_at = None
            fields += ["max_attempts", "lease_owner", "lease_expires_at"]
        elif action == TaskAction.RETRY:
            # A fresh attempt budget: the spec's max_attempts more attempts.
            task.max_attempts = task.attempt + task.spec.get("max_attempts", 3)
            task.run_after = None
            task.finished_at = None
            task.error = ""
            task.cancel_requested_at = None
            task.cancel_requested_by = None
            task.cancel_reason = ""
            fields += [
                "max_attempts",
                "run_after",
                "finished_at",
                "error",
                "cancel_requested_at",
                "cancel_requested_by",
                "cancel_reason",
            ]
        data = {"from": previous, "to": new_state, "actor": actor}
        if reason:
            data["reason"] = reason
        append_event(task, action_event_type(action, new_state), data)
        task.save(update_fields=fields)
        audit_record(
            actor=actor,
            action=f"task.{action}",
            resource_type="task",
            resource_id=task.pk,
            data={"from": previous, "to": new_state},
            reason=reason,
        )
        if new_state == TaskState.QUEUED:
            bus.publish({"kind": "work"})
        elif previous == TaskState.RUNNING:
            # The dispatcher holding the attempt stops it at the worker.
            bus.publish({"kind": "control", "task_id": str(task.pk), "action": str(action), "attempt": task.attempt})
    return task


def action_event_type(action: str, new_state: str) -> str:
    if action == TaskAction.CANCEL:
        return "canceled" if new_state == TaskState.CANCELED else "cancel_requested"
    return {
        TaskAction.PAUSE: "paused",
        TaskAction.RESUME: "resumed",
        TaskAction.RETRY: "retried",
    }[action]


def task_cancel(*, task_id: uuid.UUID | str, user: Any = None, reason: str = "") -> Task:
    return _operator_transition(task_id=task_id, action=TaskAction.CANCEL, user=user, reason=reason)


def task_pause(*, task_id: uuid.UUID | str, user: Any = None, reason: str = "") -> Task:
    return _operator_transition(task_id=task_id, action=TaskAction.PAUSE, user=user, reason=reason)


def task_resume(*, task_id: uuid.UUID | str, user: Any = None, reason: str = "") -> Task:
    return _operator_transition(task_id=task_id, action=TaskAction.RESUME, user=user, reason=reason)


def task_retry(*, task_id: uuid.UUID | str, user: Any = None, reason: str = "") -> Task:
    return _operator_transition(task_id=task_id, action=TaskAction.RETRY, user=user, reason=reason)


ACTION_SERVICES = {
    TaskAction.CANCEL: task_cancel,
    TaskAction.PAUSE: task_pause,
    TaskAction.RESUME: task_resume,
    TaskAction.RETRY: task_retry,
}
