"""What the assistant side of a chat does with a user's message.

Every command runs through the task services and selectors with the user who typed it, so
the roles and the audit trail are those of the API: a viewer's ``cancel`` is refused by
``task_cancel`` and nothing changes. Task ids may be abbreviated to a unique prefix of their
hex digits (at least :data:`MIN_PREFIX`). Anything that is not a command is answered with a
hint to ``help``.
"""

from __future__ import annotations

import shlex
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from chat import services as chat_services
from chat.models import ChatMessage, ChatSession, ChatWatch, MessageRole
from config.errors import DomainError, InvalidInput, NotFound
from security import roles
from security.principals import require
from tasks import selectors, services
from tasks.models import Task
from tasks.states import TERMINAL_STATES, TaskState

MIN_PREFIX = 4
LIST_LIMIT = 10
HELP = """Commands:
  help                      this text
  status <task>             a task's state, progress and attempt
  list [state]              the latest tasks (of one state)
  submit <title> [tier N]   create a task (risk tier 1-3, default 3)
  cancel <task> [reason]    cancel a task
  pause <task>, resume <task>, retry <task>
  health                    the system's health
  watch <task>              follow a task here until it ends
A task may be named by the first 4+ characters of its id."""


@dataclass
class Reply:
    content: str
    metadata: dict[str, Any] = field(default_factory=dict)


class CommandError(DomainError):
    code = "command_error"


def resolve_task(text: str) -> Task:
    """The task whose id is ``text`` or starts with it (hex digits, dashes ignored)."""
    digits = text.replace("-", "").lower()
    if len(digits) < MIN_PREFIX or len(digits) > 32 or any(c not in "0123456789abcdef" for c in digits):
        raise CommandError(f"“{text}” is not a task id (give at least {MIN_PREFIX} of its hex digits).")
    low = uuid.UUID(digits.ljust(32, "0"))
    high = uuid.UUID(digits.ljust(32, "f"))
    found = list(Task.objects.filter(pk__gte=low, pk__lte=high).order_by("pk").values_list("pk", flat=True)[:6])
    if not found:
        raise NotFound(f"No task id starts with {text}.")
    if len(found) > 1:
        shown = ", ".join(str(pk)[:13] for pk in found[:5])
        raise CommandError(f"{text} is ambiguous: {shown}{', ...' if len(found) > 5 else ''}. Give more digits.")
    return Task.objects.select_related("worker").get(pk=found[0])


def _describe(task: Task) -> str:
    progress = f", {task.progress_percent}%" + (f" {task.progress_phase}" if task.progress_phase else "")
    worker = f" on {task.worker.name}" if task.worker_id else ""
    attempt = f"attempt {task.attempt} of {task.max_attempts}"
    return f"{str(task.pk)[:8]} “{task.title}”: {task.state}{progress}, {attempt}{worker}"


def _task_meta(task: Task, command: str) -> dict[str, Any]:
    return {"command": command, "task_id": str(task.pk), "state": task.state}


def _status(actor: Any, args: list[str], session: ChatSession) -> Reply:
    if len(args) != 1:
        raise CommandError("Usage: status <task>")
    require(actor, roles.can_view, "read tasks")
    task = resolve_task(args[0])
    return Reply(_describe(task), _task_meta(task, "status"))


def _list(actor: Any, args: list[str], session: ChatSession) -> Reply:
    require(actor, roles.can_view, "read tasks")
    if len(args) > 1:
        raise CommandError("Usage: list [state]")
    states = None
    if args:
        if args[0] not in TaskState.values:
            raise CommandError(f"Unknown state “{args[0]}”; one of {', '.join(TaskState.values)}.")
        states = [args[0]]
    tasks = list(selectors.task_list(states=states).select_related("worker").order_by("-created_at")[:LIST_LIMIT])
    if not tasks:
        return Reply("No tasks" + (f" in state {args[0]}." if args else "."), {"command": "list", "count": 0})
    lines = [_describe(t) for t in tasks]
    return Reply("\n".join(lines), {"command": "list", "count": len(tasks), "task_ids": [str(t.pk) for t in tasks]})


def _submit(actor: Any, args: list[str], session: ChatSession) -> Reply:
    spec: dict[str, Any] = {}
    if len(args) >= 2 and args[-2].lower() == "tier":
        try:
            spec["risk_tier"] = int(args[-1])
        except ValueError:
            raise InvalidInput(fields={"risk_tier": [f"“{args[-1]}” is not a whole number."]}) from None
        args = args[:-2]
    spec["title"] = " ".join(args)
    if not spec["title"]:
        raise CommandError("Usage: submit <title> [tier N]")
    task = services.task_create(spec=spec, actor=actor)
    return Reply(
        f"Created {task.pk} “{task.title}” (risk tier {task.risk_tier}): {task.state}.", _task_meta(task, "submit")
    )


def _lifecycle(name: str, service: Callable[..., Task], past: str) -> Callable[[Any, list[str], ChatSession], Reply]:
    def run(actor: Any, args: list[str], session: ChatSession) -> Reply:
        if not args:
            raise CommandError(f"Usage: {name} <task>" + (" [reason]" if name == "cancel" else ""))
        if name != "cancel" and len(args) > 1:
            raise CommandError(f"Usage: {name} <task>")
        task = resolve_task(args[0])
        reason = " ".join(args[1:]) or "from chat"
        task = service(task_id=task.pk, actor=actor, reason=reason)
        text = past if task.state != TaskState.CANCELING else "cancel requested; the worker is being told to stop"
        return Reply(f"{str(task.pk)[:8]} “{task.title}”: {text} (now {task.state}).", _task_meta(task, name))

    return run


def _health(actor: Any, args: list[str], session: ChatSession) -> Reply:
    from metrics.health import system_health

    require(actor, roles.can_view, "read the health")
    report = system_health()
    parts = [f"{name} {c['status']}" for name, c in report["components"].items()]
    return Reply(
        f"Overall {report['status']}: " + ", ".join(parts) + ".", {"command": "health", "status": report["status"]}
    )


def _watch(actor: Any, args: list[str], session: ChatSession) -> Reply:
    if len(args) != 1:
        raise CommandError("Usage: watch <task>")
    require(actor, roles.can_view, "watch tasks")
    task = resolve_task(args[0])
    if task.state in TERMINAL_STATES:
        return Reply(f"{_describe(task)}. It has ended; nothing to watch.", _task_meta(task, "watch"))
    ChatWatch.objects.get_or_create(session=session, task=task)
    return Reply(f"Watching {_describe(task)}. Its changes will appear here until it ends.", _task_meta(task, "watch"))


COMMANDS: dict[str, Callable[[Any, list[str], ChatSession], Reply]] = {
    "help": lambda actor, args, session: Reply(HELP, {"command": "help"}),
    "status": _status,
    "list": _list,
    "submit": _submit,
    "cancel": _lifecycle("cancel", services.task_cancel, "canceled"),
    "pause": _lifecycle("pause", services.task_pause, "paused"),
    "resume": _lifecycle("resume", services.task_resume, "resumed"),
    "retry": _lifecycle("retry", services.task_retry, "queued for another attempt"),
    "health": _health,
    "watch": _watch,
}


def execute(*, actor: Any, session: ChatSession, text: str, on_delta: Callable[[str], None] | None = None) -> Reply:
    """The assistant's reply to ``text``; refusals and mistakes are replies too, with ``error`` set.

    Text that is no command goes to a chat worker when one is registered (chat/assist.py;
    ``on_delta`` gets the reply's pieces as they stream), else it is echoed with a hint.
    """
    try:
        words = shlex.split(text)
    except ValueError:
        words = text.split()
    if not words:
        return Reply("Say something, or type help.", {"command": None})
    name, args = words[0].lower(), words[1:]
    command = COMMANDS.get(name)
    if command is None:
        from chat import assist

        worker = assist.chat_worker()
        if worker is not None:
            answer, metadata = assist.ask(worker, session, text, on_delta)
            if answer is not None:
                return Reply(answer, metadata)
            return Reply(f"The chat worker {worker.name} did not answer ({metadata['detail']}).", metadata)
        return Reply(f"You said: {text}\nType help for what I can do.", {"command": None})
    try:
        return command(actor, args, session)
    except InvalidInput as exc:
        detail = "; ".join(f"{field}: {' '.join(map(str, _flat(errors)))}" for field, errors in exc.fields.items())
        return Reply(
            f"{name} refused: {detail or exc.message}", {"command": name, "error": exc.code, "fields": exc.fields}
        )
    except DomainError as exc:
        return Reply(f"{name} refused: {exc.message}", {"command": name, "error": exc.code})


def _flat(errors: Any) -> list[Any]:
    if isinstance(errors, dict):
        return [f"{k}: {m}" for k, v in errors.items() for m in _flat(v)]
    if isinstance(errors, list | tuple):
        return [m for e in errors for m in _flat(e)]
    return [errors]


def reply_to(
    *, actor: Any, session: ChatSession, posted: ChatMessage, on_delta: Callable[[str], None] | None = None
) -> ChatMessage:
    """Compute and store the assistant's reply to the user's message ``posted`` of ``session``."""
    answer = execute(actor=actor, session=session, text=posted.content, on_delta=on_delta)
    answer.metadata["in_reply_to"] = posted.seq
    return chat_services.message_append(
        session_id=session.pk, role=MessageRole.ASSISTANT, content=answer.content, metadata=answer.metadata
    )
