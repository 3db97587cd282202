"""The task lifecycle as one table: every (from, to, cause) the system may apply.

This module only describes the machine; :func:`tasks.transitions.transition` is the one
function that applies it to a row (it checks this table, writes the state, the TaskEvent
and the audit record, and registers the after-commit "task changed" publication).
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
# States in which an attempt holds a lease at a dispatcher.
ACTIVE_STATES = (TaskState.RUNNING, TaskState.CANCELING)

# The "state" a task is in before it exists, for the creation transition.
NEW = ""


class TaskAction(models.TextChoices):
    """What an operator may ask of a task (besides an override, which is a verdict)."""

    CANCEL = "cancel"
    PAUSE = "pause"
    RESUME = "resume"
    RETRY = "retry"


class Cause(models.TextChoices):
    """Why a transition happens: who or what caused it."""

    CREATE = "create"  # an operator (or the system) submitted the task
    # operator actions
    CANCEL = "cancel"
    PAUSE = "pause"
    RESUME = "resume"
    RETRY = "retry"
    # a dispatcher's claim and its reports
    CLAIM = "claim"
    VERDICT = "verdict"  # a completed result, after the gates and the automatic verdict
    FAIL = "fail"  # a failed attempt with no retry left (or not retryable)
    REQUEUE = "requeue"  # a retryable failure, or an attempt the worker never took
    CANCEL_CONFIRMED = "cancel_confirmed"  # the dispatcher stopped the attempt of a canceling task
    LEASE_EXPIRED = "lease_expired"  # the attempt's dispatcher died; any dispatcher's reaper
    # a human verdict
    OVERRIDE = "override"


S = TaskState
# (from, to, cause): the whole lifecycle of DESIGN.md. Anything else is illegal (409).
TRANSITIONS: frozenset[tuple[str, str, str]] = frozenset(
    {
        (NEW, S.QUEUED, Cause.CREATE),
        # Cancel is durable at once when no attempt is in flight; a running attempt passes
        # through canceling until its dispatcher (or the reaper) confirms the stop.
        (S.QUEUED, S.CANCELED, Cause.CANCEL),
        (S.PAUSED, S.CANCELED, Cause.CANCEL),
        (S.AWAITING_REVIEW, S.CANCELED, Cause.CANCEL),
        (S.RUNNING, S.CANCELING, Cause.CANCEL),
        (S.QUEUED, S.PAUSED, Cause.PAUSE),
        (S.RUNNING, S.PAUSED, Cause.PAUSE),
        (S.PAUSED, S.QUEUED, Cause.RESUME),
        (S.FAILED, S.QUEUED, Cause.RETRY),
        (S.CANCELED, S.QUEUED, Cause.RETRY),
        (S.QUEUED, S.RUNNING, Cause.CLAIM),
        (S.RUNNING, S.COMPLETED, Cause.VERDICT),
        (S.RUNNING, S.FAILED, Cause.VERDICT),
        (S.RUNNING, S.AWAITING_REVIEW, Cause.VERDICT),
        (S.RUNNING, S.FAILED, Cause.FAIL),
        (S.RUNNING, S.QUEUED, Cause.REQUEUE),
        (S.CANCELING, S.CANCELED, Cause.CANCEL_CONFIRMED),
        (S.RUNNING, S.QUEUED, Cause.LEASE_EXPIRED),
        (S.RUNNING, S.FAILED, Cause.LEASE_EXPIRED),
        (S.CANCELING, S.CANCELED, Cause.LEASE_EXPIRED),
        (S.AWAITING_REVIEW, S.COMPLETED, Cause.OVERRIDE),
        (S.AWAITING_REVIEW, S.FAILED, Cause.OVERRIDE),
        (S.AWAITING_REVIEW, S.QUEUED, Cause.OVERRIDE),
        (S.FAILED, S.COMPLETED, Cause.OVERRIDE),
        (S.FAILED, S.FAILED, Cause.OVERRIDE),
        (S.FAILED, S.QUEUED, Cause.OVERRIDE),
    }
)
del S


def is_legal(current: str, to: str, cause: str) -> bool:
    return (current, to, cause) in TRANSITIONS


def targets(current: str, cause: str) -> list[str]:
    """The states ``cause`` may lead to from ``current`` (empty when it is illegal there)."""
    return sorted(to for frm, to, c in TRANSITIONS if frm == current and c == cause)


def target_state(action: str, current: str) -> str | None:
    """The state an operator ``action`` leads to from ``current``, or None when illegal.

    Each operator action has at most one target from any state (the table says so; a test
    holds it to that).
    """
    found = targets(current, action)
    return found[0] if found else None
