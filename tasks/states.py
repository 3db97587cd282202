"""Task states and the operator-driven transitions between them.

This module only describes the machine; :mod:`tasks.services` is the one place
that applies it to a row.
"""

from __future__ import annotations

from django.db import models


class TaskState(models.TextChoices):
    QUEUED = "queued"
    RUNNING = "running"
    PAUSED = "paused"
    CANCELING = "canceling"
    AWAITING_REVIEW = "awaiting_review"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELED = "canceled"


TERMINAL_STATES = frozenset({TaskState.COMPLETED, TaskState.FAILED, TaskState.CANCELED})


class TaskAction(models.TextChoices):
    CANCEL = "cancel"
    PAUSE = "pause"
    RESUME = "resume"
    RETRY = "retry"


# action -> {from_state: to_state}. Anything not listed is illegal (409).
# Cancel goes straight to ``canceled`` when no attempt is in flight; a running
# attempt passes through ``canceling`` until its dispatcher confirms the stop.
OPERATOR_TRANSITIONS: dict[str, dict[str, str]] = {
    TaskAction.CANCEL: {
        TaskState.QUEUED: TaskState.CANCELED,
        TaskState.PAUSED: TaskState.CANCELED,
        TaskState.AWAITING_REVIEW: TaskState.CANCELED,
        TaskState.RUNNING: TaskState.CANCELING,
    },
    TaskAction.PAUSE: {
        TaskState.QUEUED: TaskState.PAUSED,
        TaskState.RUNNING: TaskState.PAUSED,
    },
    TaskAction.RESUME: {TaskState.PAUSED: TaskState.QUEUED},
    TaskAction.RETRY: {
        TaskState.FAILED: TaskState.QUEUED,
        TaskState.CANCELED: TaskState.QUEUED,
    },
}


def target_state(action: str, current: str) -> str | None:
    """The state ``action`` leads to from ``current``, or None when illegal."""
    return OPERATOR_TRANSITIONS.get(action, {}).get(current)
