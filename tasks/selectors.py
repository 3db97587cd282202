"""Reads of tasks and their timelines: the querysets the API and admin share."""

from __future__ import annotations

import uuid
from datetime import datetime

from django.core.exceptions import ValidationError
from django.db.models import QuerySet

from tasks.exceptions import TaskNotFound
from tasks.models import Task, TaskEvent


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
