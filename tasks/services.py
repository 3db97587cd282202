"""Task services: create a task, and the operator actions on it (cancel, pause, resume, retry).

Each service takes the acting principal and checks it itself (:mod:`security.roles`), locks
the task row, and applies its change through :func:`tasks.transitions.transition`, which
writes the state, one TaskEvent and one audit record inside the one ``transaction.atomic()``
and publishes "task changed" after the commit. Dispatcher-side changes live in
:mod:`tasks.dispatch` and verdicts in :mod:`tasks.review.verdicts`; they take the same path.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction

from security import roles
from security.principals import require
from tasks.dispatch import bus
from tasks.exceptions import IllegalTransition, TaskNotFound
from tasks.models import EventType, Priority, Task
from tasks.spec import validate_spec
from tasks.states import Cause, TaskAction, TaskState, target_state
from tasks.transitions import TaskWrites, transition


def lock_task(task_id: uuid.UUID | str) -> Task:
    try:
        return Task.objects.select_for_update().get(pk=task_id)
    except (Task.DoesNotExist, ValueError, TypeError, ValidationError) as exc:
        raise TaskNotFound(task_id) from exc


def task_create(*, spec: Any, actor: Any) -> Task:
    """Validate a working spec and queue a task for it (operators, and the system)."""
    acting = require(actor, roles.can_operate, "create a task")
    clean = validate_spec(spec)
    with transaction.atomic():
        task = Task(
            title=clean["title"],
            spec=clean,
            priority=Priority.from_name(clean["priority"]),
            risk_tier=clean["risk_tier"],
            max_attempts=clean["max_attempts"],
            created_by=acting.user_or_none(),
        )
        w = TaskWrites()
        transition(
            w,
            task,
            to=TaskState.QUEUED,
            cause=Cause.CREATE,
            actor=acting,
            event=EventType.CREATED,
            data={"state": TaskState.QUEUED, "actor": acting.actor},
            audit_action="task.create",
            audit_data={"title": task.title, "priority": clean["priority"], "risk_tier": task.risk_tier},
        )
        w.flush()
        bus.publish({"kind": "work"})
    return task


def _operator_transition(*, task_id: uuid.UUID | str, action: TaskAction, actor: Any, reason: str = "") -> Task:
    acting = require(actor, roles.can_operate, f"{action} a task")
    with transaction.atomic():
        task = lock_task(task_id)
        previous = task.state
        new_state = target_state(action, previous)
        if new_state is None:
            raise IllegalTransition(action=action, state=previous)
        w = TaskWrites()
        now = w.now
        fields: dict[str, Any] = {}
        if action == TaskAction.CANCEL:
            fields |= {
                "cancel_requested_at": now,
                "cancel_requested_by": acting.user_or_none(),
                "cancel_reason": reason,
            }
            if new_state == TaskState.CANCELED:
                fields["finished_at"] = now
        elif action == TaskAction.PAUSE and previous == TaskState.RUNNING:
            # The dispatcher stops the attempt at the worker. A pause is not a
            # failure, so the attempt it interrupts does not use up the budget;
            # the attempt number itself never goes back (it fences results).
            fields |= {"max_attempts": task.max_attempts + 1, "lease_owner": "", "lease_expires_at": None}
        elif action == TaskAction.RETRY:
            # A fresh attempt budget: the spec's max_attempts more attempts.
            fields |= {
                "max_attempts": task.attempt + task.spec.get("max_attempts", 3),
                "run_after": None,
                "finished_at": None,
                "error": "",
                "cancel_requested_at": None,
                "cancel_requested_by": None,
                "cancel_reason": "",
            }
        data = {"actor": acting.actor}
        if reason:
            data["reason"] = reason
        transition(
            w,
            task,
            to=new_state,
            cause=Cause(action.value),
            actor=acting,
            event=action_event_type(action, new_state),
            data=data,
            audit_action=f"task.{action}",
            reason=reason,
            **fields,
        )
        w.flush()
        if new_state == TaskState.QUEUED:
            bus.publish({"kind": "work"})
        elif previous == TaskState.RUNNING:
            # The dispatcher holding the attempt stops it at the worker.
            bus.publish({"kind": "control", "task_id": str(task.pk), "action": str(action), "attempt": task.attempt})
    return task


def action_event_type(action: str, new_state: str) -> EventType:
    if action == TaskAction.CANCEL:
        return EventType.CANCELED if new_state == TaskState.CANCELED else EventType.CANCEL_REQUESTED
    return {
        TaskAction.PAUSE: EventType.PAUSED,
        TaskAction.RESUME: EventType.RESUMED,
        TaskAction.RETRY: EventType.RETRIED,
    }[action]


def task_cancel(*, task_id: uuid.UUID | str, actor: Any, reason: str = "") -> Task:
    return _operator_transition(task_id=task_id, action=TaskAction.CANCEL, actor=actor, reason=reason)


def task_pause(*, task_id: uuid.UUID | str, actor: Any, reason: str = "") -> Task:
    return _operator_transition(task_id=task_id, action=TaskAction.PAUSE, actor=actor, reason=reason)


def task_resume(*, task_id: uuid.UUID | str, actor: Any, reason: str = "") -> Task:
    return _operator_transition(task_id=task_id, action=TaskAction.RESUME, actor=actor, reason=reason)


def task_retry(*, task_id: uuid.UUID | str, actor: Any, reason: str = "") -> Task:
    return _operator_transition(task_id=task_id, action=TaskAction.RETRY, actor=actor, reason=reason)


ACTION_SERVICES = {
    TaskAction.CANCEL: task_cancel,
    TaskAction.PAUSE: task_pause,
    TaskAction.RESUME: task_resume,
    TaskAction.RETRY: task_retry,
}
