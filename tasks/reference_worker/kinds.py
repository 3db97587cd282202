"""Task kinds of the reference worker, and the faults a spec may ask it to inject.

The kind is chosen by ``spec["input"]["kind"]``. Everything a spec asks for is
validated before any work starts, so a typo (``"sleeep"``, ``"latency"``) is a 400
naming the field instead of a task that quietly does something else.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tasks.reference_worker import workspace
from tasks.reference_worker.protocol import (
    ExecuteRequest,
    completed_result,
    failed_result,
    invalid,
    validate_files_modified,
)

if TYPE_CHECKING:
    from security.sandbox import Sandbox
    from tasks.reference_worker.registry import Execution

Emit = Callable[[dict[str, Any]], None]

KINDS = ("echo", "sleep", "fail", "chat")
# Injected statuses, in the order a spec lists them: {"status_429_times": 1, "status_503_times": 2}
# answers the first call 429, the next two 503, and runs the work on the fourth.
STATUS_FAULTS = {f"status_{code}_times": code for code in (429, 500, 502, 503, 504)}
FAULT_KEYS = frozenset(STATUS_FAULTS) | {"latency_ms", "hang", "drop_mid_stream", "retry_after_s"}
# Shared by echo and sleep: lets a test decide exactly what the worker "produced".
RESULT_KEYS = ("output", "files_modified", "rationale", "self_assessment")
# Echo takes any keys, since echoing them is its job; the others refuse unknown keys to catch typos.
KIND_KEYS = {
    "sleep": frozenset(RESULT_KEYS) | {"seconds", "interval_s", "artifacts"},
    "fail": frozenset({"error", "output", "retryable"}),
    "chat": frozenset({"message", "history"}),
}
# The longest chat message the reference worker answers (the control plane caps messages lower).
MAX_CHAT_MESSAGE = 20_000
MAX_SLEEP_S = 86_400.0
# A stream line at least this often lets clients use an idle read timeout (see the protocol doc).
MAX_INTERVAL_S = 15.0
DEFAULT_SELF_ASSESSMENT = {"confidence": 1.0, "quality_score": 1.0, "concerns": []}


class Aborted(Exception):
    """The worker is shutting down: the execution ends without a result line."""


@dataclass(frozen=True)
class Faults:
    status_times: tuple[tuple[int, int], ...] = ()
    latency_ms: int = 0
    hang: bool = False
    drop_mid_stream: int | None = None
    retry_after_s: int | None = None

    def status_for_call(self, call_number: int) -> int | None:
        """The status injected into the ``call_number``-th call (1-based) for one idempotency key."""
        seen = 0
        for status, times in self.status_times:
            seen += times
            if call_number <= seen:
                return status
        return None


@dataclass(frozen=True)
class TaskInput:
    kind: str
    params: dict[str, Any]
    faults: Faults = field(default_factory=Faults)
    files_modified: list[dict[str, Any]] = field(default_factory=list)

    @property
    def streams(self) -> bool:
        """``sleep`` has progress worth streaming and ``chat`` its reply word by word; the others answer in JSON."""
        return self.kind in ("sleep", "chat") and not self.faults.hang


def _int(value: Any, where: str, low: int, high: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise invalid(where, f"must be an integer from {low} to {high}.")
    return value


def _number(value: Any, where: str, low: float, high: float) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool) or not low <= value <= high:
        raise invalid(where, f"must be a number from {low:g} to {high:g}.")
    return float(value)


def parse_faults(value: Any) -> Faults:
    where = "spec.input.faults"
    if not isinstance(value, dict):
        raise invalid(where, "must be an object.")
    unknown = sorted(set(value) - FAULT_KEYS)
    if unknown:
        raise invalid(f"{where}.{unknown[0]}", f"unknown fault; known: {', '.join(sorted(FAULT_KEYS))}.")
    status_times = tuple(
        (STATUS_FAULTS[key], _int(times, f"{where}.{key}", 0, 1_000_000))
        for key, times in value.items()
        if key in STATUS_FAULTS
    )
    hang = value.get("hang", False)
    if not isinstance(hang, bool):
        raise invalid(f"{where}.hang", "must be true or false.")
    drop = value.get("drop_mid_stream")
    retry_after = value.get("retry_after_s")
    return Faults(
        status_times=status_times,
        latency_ms=_int(value.get("latency_ms", 0), f"{where}.latency_ms", 0, 600_000),
        hang=hang,
        drop_mid_stream=None if drop is None else _int(drop, f"{where}.drop_mid_stream", 0, 1_000_000),
        retry_after_s=None if retry_after is None else _int(retry_after, f"{where}.retry_after_s", 0, 3600),
    )


def parse_task_input(spec: dict[str, Any]) -> TaskInput:
    """Validate ``spec["input"]`` completely, before the worker accepts the work."""
    params = spec.get("input", {})
    if not isinstance(params, dict):
        raise invalid("spec.input", "must be a JSON object.")
    kind = params.get("kind", "echo")
    if kind not in KINDS:
        raise invalid("spec.input.kind", f"unknown kind {kind!r}; this worker runs {', '.join(KINDS)}.")
    unknown = sorted(set(params) - KIND_KEYS[kind] - {"kind", "faults"}) if kind in KIND_KEYS else []
    if unknown:
        raise invalid(f"spec.input.{unknown[0]}", f"not an input of kind {kind!r}.")
    faults = parse_faults(params["faults"]) if "faults" in params else Faults()
    files = validate_files_modified(params.get("files_modified", []), "spec.input.files_modified")
    if not isinstance(params.get("rationale", ""), str):
        raise invalid("spec.input.rationale", "must be a string.")
    if not isinstance(params.get("self_assessment", {}), dict):
        raise invalid("spec.input.self_assessment", "must be an object.")
    if kind == "sleep":
        if "seconds" not in params:
            raise invalid("spec.input.seconds", "required for kind 'sleep'.")
        _number(params["seconds"], "spec.input.seconds", 0, MAX_SLEEP_S)
        if "interval_s" in params:
            _number(params["interval_s"], "spec.input.interval_s", 0.01, MAX_INTERVAL_S)
        artifacts = params.get("artifacts", [])
        if not isinstance(artifacts, list):
            raise invalid("spec.input.artifacts", "must be a list of objects.")
        for index, artifact in enumerate(artifacts):
            if not isinstance(artifact, dict) or not isinstance(artifact.get("path"), str) or not artifact["path"]:
                raise invalid(f"spec.input.artifacts[{index}].path", "required, a non-empty string.")
    if kind == "chat":
        message = params.get("message")
        if not isinstance(message, str) or not message.strip():
            raise invalid("spec.input.message", "required for kind 'chat', a non-blank string.")
        if len(message) > MAX_CHAT_MESSAGE:
            raise invalid("spec.input.message", f"at most {MAX_CHAT_MESSAGE} characters.")
        if not isinstance(params.get("history", []), list):
            raise invalid("spec.input.history", "must be a list.")
    if kind == "fail" and not isinstance(params.get("error", ""), str):
        raise invalid("spec.input.error", "must be a string.")
    if kind == "fail" and not isinstance(params.get("retryable", True), bool):
        raise invalid("spec.input.retryable", "must be true or false.")
    return TaskInput(kind=kind, params=params, faults=faults, files_modified=files)


def run(
    task: TaskInput, request: ExecuteRequest, execution: Execution, emit: Emit, sandbox: Sandbox | None = None
) -> dict[str, Any]:
    """Run one execution to its result; raises :class:`Aborted` when the worker shuts down.

    With a workspace (``sandbox``), a completed result's ``files_modified`` are applied to it
    before the result is answered; a change that cannot be applied fails the result instead.
    """
    started = time.monotonic()
    if request.seconds_left() <= 0:
        result = _deadline_result(request)
    elif task.faults.hang:
        result = _hang(request, execution)
    elif task.kind == "sleep":
        result = _sleep(task, request, execution, emit)
    elif task.kind == "chat":
        result = _chat(task, emit)
    elif task.kind == "fail":
        message = task.params.get("error") or "The task failed as instructed (kind 'fail')."
        retryable = task.params.get("retryable", True)
        result = failed_result(
            error=message, error_code="task_failed", retryable=retryable, output=task.params.get("output")
        )
    else:
        result = _produced(task, default_output={"echo": task.params}, rationale="Echoed the input as asked.")
    if sandbox is not None and result["status"] == "completed" and task.files_modified:
        result = workspace.apply_changes(sandbox, request.task_id, task.files_modified) or result
    result["metrics"] = {"duration_ms": round((time.monotonic() - started) * 1000)}
    return result


def _produced(task: TaskInput, *, default_output: Any, rationale: str) -> dict[str, Any]:
    return completed_result(
        output=task.params.get("output", default_output),
        files_modified=task.files_modified,
        rationale=task.params.get("rationale", rationale),
        self_assessment=task.params.get("self_assessment", DEFAULT_SELF_ASSESSMENT),
    )


def _deadline_result(request: ExecuteRequest) -> dict[str, Any]:
    # Retryable: the next attempt comes with a new deadline.
    return failed_result(
        error=f"Deadline {request.deadline.isoformat()} passed.", error_code="deadline_exceeded", retryable=True
    )


def _stopped_result(execution: Execution) -> dict[str, Any]:
    if execution.stop_reason == "shutdown":
        raise Aborted
    return failed_result(error="Canceled by a cancel request.", error_code="canceled", retryable=False)


def _hang(request: ExecuteRequest, execution: Execution) -> dict[str, Any]:
    """Answer nothing until a cancel, the deadline or shutdown: what a stuck model server does."""
    if execution.wait(request.seconds_left()):
        return _stopped_result(execution)
    return _deadline_result(request)


def _sleep(task: TaskInput, request: ExecuteRequest, execution: Execution, emit: Emit) -> dict[str, Any]:
    seconds = float(task.params["seconds"])
    interval = float(task.params.get("interval_s", min(max(seconds / 10, 0.05), MAX_INTERVAL_S)))
    artifacts = list(task.params.get("artifacts", []))
    started = time.monotonic()
    finish_at = started + seconds
    deadline_at = started + request.seconds_left()
    emit({"type": "log", "level": "info", "message": f"Sleeping {seconds:g} s, progress every {interval:g} s."})
    while (now := time.monotonic()) < finish_at:
        if now >= deadline_at:
            return _deadline_result(request)
        if execution.wait(min(interval, finish_at - now, deadline_at - now)):
            return _stopped_result(execution)
        elapsed = time.monotonic() - started
        emit(
            {
                "type": "progress",
                "percent": min(99, int(100 * elapsed / seconds)),
                "phase": "sleeping",
                "message": f"{min(elapsed, seconds):.2f} of {seconds:g} s",
            }
        )
        if artifacts and elapsed >= seconds / 2:
            for artifact in artifacts:
                emit({**artifact, "type": "artifact"})
            artifacts = []
    for artifact in artifacts:
        emit({**artifact, "type": "artifact"})
    emit({"type": "progress", "percent": 100, "phase": "done", "message": f"Slept {seconds:g} s."})
    return _produced(task, default_output={"slept_s": seconds}, rationale=f"Slept {seconds:g} s as asked.")


def chat_reply(message: str, history: list[Any]) -> str:
    """The reference worker's answer to a chat message: deterministic, so tests can expect it."""
    words = len(message.split())
    return (
        f"Reference worker here. You said: {message.strip()} "
        f"({words} word{'s' if words != 1 else ''}, {len(history)} earlier message{'s' if len(history) != 1 else ''})."
    )


def _chat(task: TaskInput, emit: Emit) -> dict[str, Any]:
    """Streams the reply a word at a time as progress events (``message`` = the next words), then the result."""
    reply = chat_reply(task.params["message"], task.params.get("history", []))
    words = reply.split(" ")
    for index, word in enumerate(words):
        piece = word if index == 0 else " " + word
        emit({"type": "progress", "percent": (index + 1) * 100 // len(words), "phase": "replying", "message": piece})
    return completed_result(output=reply, rationale="Answered the chat message deterministically.")
