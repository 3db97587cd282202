"""Task services: create a task, and the operator actions on it (cancel, pause, resume, retry),
alone or in bulk; and the saved views of the tasks page.

Each service takes the acting principal and checks it itself (:mod:`security.roles`), locks
the task row, and applies its change through :func:`tasks.transitions.transition`, which
writes the state, one TaskEvent and one audit record inside the one ``transaction.atomic()``
and publishes "task changed" after the commit. Dispatcher-side changes live in
:mod:`tasks.dispatch` and verdicts in :mod:`tasks.review.verdicts`; they take the same path.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.http import QueryDict

from config.errors import DomainError, InvalidInput, PermissionDenied
from security import roles
from security.principals import require
from tasks import selectors
from tasks.dispatch import bus
from tasks.exceptions import IllegalTransition, TaskNotFound
from tasks.models import EventType, Priority, SavedView, Task
from tasks.spec import validate_spec
from tasks.states import Cause, TaskAction, TaskState, target_state
from tasks.transitions import TaskWrites, transition


def lock_task(task_id: uuid.UUID | str) -> Task:
    try:
        return Task.objects.select_for_update().get(pk=task_id)
    except (Task.DoesNotExist, ValueError, TypeError, ValidationError) as exc:
        raise TaskNotFound(task_id) from exc


MAX_BULK_CREATE = 1000


def task_create(*, spec: Any, actor: Any) -> Task:
    """Validate a working spec and queue a task for it (operators, and the system)."""
    return tasks_create(specs=[spec], actor=actor, _single=True)[0]


def tasks_create(*, specs: Any, actor: Any, _single: bool = False) -> list[Task]:
    """Queue a task for each working spec, all or none: one transaction, one bulk write.

    Every spec is validated first; if any is wrong nothing is written and the error names each
    bad item by its index (``{"3": {"title": [...]}}``), as the input is nested. At most
    MAX_BULK_CREATE a call.
    """
    acting = require(actor, roles.can_operate, "create a task")
    if _single:
        cleaned = [validate_spec(specs[0])]
    else:
        if not isinstance(specs, list) or not 1 <= len(specs) <= MAX_BULK_CREATE:
            raise InvalidInput(
                f"A list of 1 to {MAX_BULK_CREATE} working specs.",
                fields={"non_field_errors": [f"A list of 1 to {MAX_BULK_CREATE} working specs."]},
            )
        cleaned, errors = [], {}
        for index, spec in enumerate(specs):
            try:
                cleaned.append(validate_spec(spec))
            except InvalidInput as exc:
                errors[str(index)] = exc.fields
        if errors:
            raise InvalidInput("Some working specs are not valid; nothing was created.", fields=errors)
    user = acting.user_or_none()
    with transaction.atomic():
        w = TaskWrites()
        created = []
        for clean in cleaned:
            task = Task(
                title=clean["title"],
                spec=clean,
                priority=Priority.from_name(clean["priority"]),
                risk_tier=clean["risk_tier"],
                max_attempts=clean["max_attempts"],
                created_by=user,
            )
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
            created.append(task)
        w.flush()
        bus.publish({"kind": "work"})
    return created


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


# --- Bulk actions -----------------------------------------------------------------------

# Each task of a bulk action is its own transaction inside the request; past this many the
# operator should narrow the filter (or script the API).
BULK_ACTION_LIMIT = 500


@dataclass(frozen=True)
class Refusal:
    """Why one task of a bulk action was skipped: the domain error's code and message."""

    code: str
    message: str


@dataclass
class BulkOutcome:
    """What a bulk action did: the tasks it applied to (with the state each reached) and the
    ones it skipped, each with its refusal, both in the order they were given."""

    action: str
    applied: dict[str, str] = field(default_factory=dict)
    refused: dict[str, Refusal] = field(default_factory=dict)

    def skipped_by_code(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for refusal in self.refused.values():
            counts[refusal.code] = counts.get(refusal.code, 0) + 1
        return counts


def task_bulk_action(*, actor: Any, action: str, task_ids: Iterable[Any], reason: str = "") -> BulkOutcome:
    """Apply one operator ``action`` to each of ``task_ids`` through its own service call.

    Each task is its own transaction with its own event and audit record, exactly as if it
    had been acted on alone; one that may not take the action from its state (or no longer
    exists) is skipped and reported, and does not stop the others. The actor is checked once
    before anything is done (and again by each service); more than :data:`BULK_ACTION_LIMIT`
    tasks are refused as a whole.
    """
    acting = require(actor, roles.can_operate, f"{action} tasks")
    if action not in TaskAction.values:
        raise InvalidInput(fields={"action": [f"Must be one of {', '.join(TaskAction.values)}."]})
    ids = list(dict.fromkeys(str(task_id) for task_id in task_ids))
    if not ids:
        raise InvalidInput(fields={"task_ids": ["Select at least one task."]})
    if len(ids) > BULK_ACTION_LIMIT:
        raise InvalidInput(
            fields={"task_ids": [f"A bulk action takes at most {BULK_ACTION_LIMIT} tasks; {len(ids)} were given."]}
        )
    service = ACTION_SERVICES[TaskAction(action)]
    outcome = BulkOutcome(action=action)
    for task_id in ids:
        try:
            task = service(task_id=task_id, actor=acting, reason=reason)
        except DomainError as exc:
            outcome.refused[task_id] = Refusal(code=exc.code, message=exc.message)
        else:
            outcome.applied[task_id] = task.state
    return outcome


# --- Saved views of the tasks page --------------------------------------------------------

SAVED_VIEW_LIMIT = 100


def saved_view_create(*, actor: Any, name: str, query: str) -> SavedView:
    """Save ``query`` (a task-list query string) as the actor's view ``name``, normalised.

    Any role that may read tasks may keep views of them: a view changes no task, so it is
    not a decision and has no audit record.
    """
    acting = require(actor, roles.can_view, "save a view")
    user = acting.user_or_none()
    if user is None:
        raise PermissionDenied("Only a signed-in user keeps saved views.")
    name = (name or "").strip()
    if not name:
        raise InvalidInput(fields={"name": ["Give the view a name."]})
    limit = SavedView._meta.get_field("name").max_length
    if len(name) > limit:
        raise InvalidInput(fields={"name": [f"Ensure this field has no more than {limit} characters."]})
    try:
        params = selectors.task_list_params(selectors.query_data(QueryDict(query or "")))
    except InvalidInput as exc:
        raise InvalidInput(fields={"query": [exc.message]}) from exc
    normalised = selectors.task_list_querystring(params)
    if SavedView.objects.filter(owner=user).count() >= SAVED_VIEW_LIMIT:
        raise InvalidInput(fields={"name": [f"You have {SAVED_VIEW_LIMIT} saved views; delete one first."]})
    try:
        with transaction.atomic():
            return SavedView.objects.create(owner=user, name=name, query=normalised)
    except IntegrityError as exc:
        raise InvalidInput(fields={"name": [f"You already have a view named “{name}”."]}) from exc


def saved_view_delete(*, actor: Any, view_id: uuid.UUID | str) -> None:
    """Delete a saved view; only its owner may."""
    acting = require(actor, roles.can_view, "delete a saved view")
    view = selectors.saved_view_get(view_id=view_id)
    user = acting.user_or_none()
    if user is None or view.owner_id != user.pk:
        raise PermissionDenied("Only the owner of a saved view may delete it.")
    view.delete()
