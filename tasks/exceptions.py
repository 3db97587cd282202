"""Domain errors of the task app; ``config.exceptions`` maps them to HTTP."""

from __future__ import annotations


class TaskError(Exception):
    """Base class for task domain errors."""


class TaskNotFound(TaskError):
    def __init__(self, task_id: object) -> None:
        super().__init__(f"Task {task_id} does not exist.")
        self.task_id = task_id


class IllegalTransition(TaskError):
    """The action is not allowed from the task's current state (HTTP 409)."""

    def __init__(self, *, action: str, state: str) -> None:
        super().__init__(f"Cannot {action} a task that is {state}.")
        self.action = action
        self.state = state


class InvalidOverride(TaskError):
    """An override with bad input; ``detail`` maps each field to its errors (HTTP 400)."""

    def __init__(self, detail: dict[str, list[str]]) -> None:
        super().__init__("; ".join(f"{k}: {' '.join(v)}" for k, v in detail.items()))
        self.detail = detail
