"""Domain errors of the task lifecycle (each transport maps them once: ``config.exceptions`` for DRF)."""

from __future__ import annotations

from config.errors import Conflict, InvalidInput, NotFound


class TaskNotFound(NotFound):
    def __init__(self, task_id: object) -> None:
        super().__init__(f"Task {task_id} does not exist.")
        self.task_id = task_id


class IllegalTransition(Conflict):
    """The action is not allowed from the task's current state (HTTP 409)."""

    code = "illegal_transition"

    def __init__(self, *, action: str, state: str, message: str = "") -> None:
        super().__init__(message or f"Cannot {action} a task that is {state}.", action=action, state=state)
        self.action = action
        self.state = state


class InvalidOverride(InvalidInput):
    """An override with bad input; ``fields`` maps each field to its errors (HTTP 400)."""

    def __init__(self, detail: dict[str, list[str]]) -> None:
        super().__init__(fields=detail)
        self.detail = detail
