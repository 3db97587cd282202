"""Reads of tasks and their timelines: the querysets the API and admin share."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import QueryDict

from config.errors import NotFound
from config.strict import validated
from tasks.exceptions import TaskNotFound
from tasks.models import EventType, Priority, SavedView, Task, TaskEvent
from tasks.states import TaskState


def task_list(
    *,
    states: list[str] | None = None,
    priorities: list[int] | None = None,
    worker: str | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
    q: str | None = None,
) -> QuerySet[Task]:
    qs = Task.objects.select_related("worker", "created_by").defer("spec", "result")
    if states:
        qs = qs.filter(state__in=states)
    if priorities:
        qs = qs.filter(priority__in=priorities)
    if worker:
        qs = qs.filter(worker__name=worker)
    if created_after:
        qs = qs.filter(created_at__gte=created_after)
    if created_before:
        qs = qs.filter(created_at__lt=created_before)
    if q:
        qs = qs.filter(title__icontains=q)
    return qs


def task_get(*, task_id: uuid.UUID | str) -> Task:
    try:
        return Task.objects.select_related("worker", "created_by", "cancel_requested_by").get(pk=task_id)
    except (Task.DoesNotExist, ValueError, ValidationError) as exc:
        raise TaskNotFound(task_id) from exc


def task_events(*, task: Task, after: int = 0, limit: int = 100) -> list[TaskEvent]:
    return list(TaskEvent.objects.filter(task=task, seq__gt=after).order_by("seq")[:limit])


def task_latest_events(*, task: Task, limit: int = 20) -> list[TaskEvent]:
    return list(reversed(TaskEvent.objects.filter(task=task).order_by("-seq")[:limit]))


# --- The task list's query, as the pages and saved views read it --------------------------

# The order in which a normalised task-list query names its keys (see task_list_querystring).
TASK_QUERY_KEYS = ("state", "priority", "worker", "created_after", "created_before", "q", "ordering", "page_size")


def task_list_params(data: Mapping[str, Any]) -> dict[str, Any]:
    """``data`` (query parameters, a list for a repeated key) checked by the task API's own
    query serializer, so the pages and saved views accept exactly what ``GET /api/v1/tasks``
    does; raises :class:`config.errors.InvalidInput` naming each bad field."""
    # Imported here: tasks.api.serializers imports the review package, which imports
    # tasks.services, which imports this module.
    from tasks.api.serializers import TaskListQuerySerializer

    return validated(TaskListQuerySerializer, dict(data))


def query_data(query: QueryDict) -> dict[str, Any]:
    """A QueryDict as the serializers take it: one value, or a list when the key repeats."""
    return {key: (values if len(values := query.getlist(key)) > 1 else values[0]) for key in query}


def task_list_querystring(params: Mapping[str, Any]) -> str:
    """The filter and ordering of validated ``params`` as one canonical query string.

    Keys in :data:`TASK_QUERY_KEYS` order, states and priorities de-duplicated in their
    vocabulary's order and comma-joined, defaults and blanks left out, no cursor: the same
    filter always reads the same, whichever way it was typed.
    """
    from tasks.api.serializers import TaskListQuerySerializer  # see task_list_params

    defaults = {name: field.default for name, field in TaskListQuerySerializer().fields.items()}
    pairs: list[tuple[str, str]] = []
    for key in TASK_QUERY_KEYS:
        value = params.get(key)
        if value in (None, "", []) or value == defaults.get(key):
            continue
        if key == "state":
            value = ",".join(s for s in TaskState.values if s in set(value))
        elif key == "priority":
            value = ",".join(p.label for p in Priority if p.label in set(value))
        elif isinstance(value, datetime):
            value = value.isoformat()
        pairs.append((key, str(value)))
    return urlencode(pairs)


def task_list_matching(params: Mapping[str, Any]) -> QuerySet[Task]:
    """The tasks matching validated ``params`` (from :func:`task_list_params`), unordered."""
    return task_list(
        states=params.get("state"),
        priorities=[Priority.from_name(p) for p in params.get("priority", [])],
        worker=params.get("worker"),
        created_after=params.get("created_after"),
        created_before=params.get("created_before"),
        q=params.get("q"),
    )


def saved_view_list(*, owner: Any) -> list[SavedView]:
    return list(SavedView.objects.filter(owner=owner).order_by("name"))


def saved_view_get(*, view_id: uuid.UUID | str) -> SavedView:
    try:
        return SavedView.objects.select_related("owner").get(pk=view_id)
    except (SavedView.DoesNotExist, ValueError, ValidationError) as exc:
        raise NotFound(f"Saved view {view_id} does not exist.") from exc


def task_timeline_page(*, task: Task, before: int | None = None, limit: int = 50) -> tuple[list[TaskEvent], bool]:
    """The newest ``limit`` events of ``task`` (older than seq ``before`` if given), oldest
    first, and whether older ones exist: one range scan of the (task, seq) index, however long
    the timeline."""
    qs = TaskEvent.objects.filter(task=task)
    if before is not None:
        qs = qs.filter(seq__lt=before)
    newest_first = list(qs.order_by("-seq")[: limit + 1])
    return list(reversed(newest_first[:limit])), len(newest_first) > limit


def task_stop_event(*, task: Task) -> TaskEvent | None:
    """The timeline entry of the transition into ``canceled`` of a canceled task: the cancel
    itself when no attempt was running, else the dispatcher's (or reaper's) confirmation that
    the worker's attempt stopped. None for a task in any other state."""
    if task.state != TaskState.CANCELED:
        return None
    # After it only records of late results can follow, never another transition (a retry
    # would have left canceled), so the newest of these two types is the one.
    kinds = [EventType.CANCELED, EventType.LEASE_EXPIRED]
    return TaskEvent.objects.filter(task=task, type__in=kinds).order_by("-seq").first()
