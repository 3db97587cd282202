"""The wire format of worker protocol v1, shared by every part of the reference worker.

Kept free of Django and of any HTTP machinery so that the rules a third party must
follow (``docs/worker-protocol.md``) live in one small module that reads like the
document: what a valid request is, which field is at fault when it is not, and what
a result looks like.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

PROTOCOL_VERSION = "1"
PROTOCOL_HEADER = "Agency-Protocol"
IDEMPOTENCY_HEADER = "Idempotency-Key"
JSON_TYPE = "application/json"
NDJSON_TYPE = "application/x-ndjson"

TASK_ID_MAX_LENGTH = 200
FILE_OPERATIONS = frozenset({"create", "modify", "delete"})


class ProtocolError(Exception):
    """A request the worker refuses; rendered as ``{"error", "code", "field"?}`` with ``status``.

    ``retry_after`` is set for the retryable refusals (409, 429, 503) so that the
    client is told when to come back instead of guessing.
    """

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        field: str | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.retry_after = retry_after

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"error": self.message, "code": self.code}
        if self.field is not None:
            body["field"] = self.field
        return body


def invalid(field: str, message: str) -> ProtocolError:
    """A 400 naming the field at fault, so a client author can fix the request without guessing."""
    return ProtocolError(400, "invalid_request", f"{field}: {message}", field=field)


@dataclass(frozen=True)
class ExecuteRequest:
    task_id: str
    attempt: int
    spec: dict[str, Any]
    deadline: datetime
    idempotency_key: str

    def fingerprint(self) -> str:
        """What must match when a key is repeated; the deadline is left out on purpose.

        A client that retries the same attempt may recompute the deadline, and that
        is the same delivery, not a different request.
        """
        return json.dumps([self.task_id, self.attempt, self.spec], sort_keys=True, separators=(",", ":"))

    def seconds_left(self) -> float:
        return (self.deadline - datetime.now(UTC)).total_seconds()


@dataclass(frozen=True)
class CancelRequest:
    task_id: str
    attempt: int

    @property
    def idempotency_key(self) -> str:
        return idempotency_key(self.task_id, self.attempt)


def idempotency_key(task_id: str, attempt: int) -> str:
    return f"{task_id}:{attempt}"


def decode_json_object(raw: bytes) -> dict[str, Any]:
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProtocolError(400, "invalid_json", f"Body is not valid UTF-8 JSON: {exc}", field="body") from exc
    if not isinstance(data, dict):
        raise invalid("body", "must be a JSON object.")
    return data


def _task_id(data: dict[str, Any]) -> str:
    value = data.get("task_id")
    if not isinstance(value, str) or not value.strip():
        raise invalid("task_id", "required, a non-empty string.")
    if len(value) > TASK_ID_MAX_LENGTH:
        raise invalid("task_id", f"at most {TASK_ID_MAX_LENGTH} characters.")
    return value


def _attempt(data: dict[str, Any]) -> int:
    value = data.get("attempt")
    # bool is an int subclass; ``true`` is not attempt 1.
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise invalid("attempt", "required, an integer >= 1.")
    return value


def parse_deadline(value: Any) -> datetime:
    if not isinstance(value, str):
        raise invalid("deadline", "required, an ISO 8601 timestamp with a UTC offset.")
    try:
        deadline = datetime.fromisoformat(value)
    except ValueError as exc:
        raise invalid("deadline", f"not an ISO 8601 timestamp: {value!r}.") from exc
    if deadline.tzinfo is None or deadline.utcoffset() is None:
        raise invalid("deadline", "must carry a UTC offset ('Z' or '+00:00'); naive times are ambiguous.")
    return deadline.astimezone(UTC)


def parse_execute(data: dict[str, Any], key_header: str | None) -> ExecuteRequest:
    task_id = _task_id(data)
    attempt = _attempt(data)
    spec = data.get("spec")
    if not isinstance(spec, dict):
        raise invalid("spec", "required, a JSON object.")
    deadline = parse_deadline(data.get("deadline"))
    expected = idempotency_key(task_id, attempt)
    if not key_header:
        raise invalid(IDEMPOTENCY_HEADER, f"header required, '<task_id>:<attempt>' ({expected!r}).")
    if key_header != expected:
        raise invalid(IDEMPOTENCY_HEADER, f"header {key_header!r} does not match the body ({expected!r}).")
    return ExecuteRequest(task_id=task_id, attempt=attempt, spec=spec, deadline=deadline, idempotency_key=expected)


def parse_cancel(data: dict[str, Any]) -> CancelRequest:
    return CancelRequest(task_id=_task_id(data), attempt=_attempt(data))


def validate_files_modified(value: Any, field: str) -> list[dict[str, Any]]:
    """Check the ``files_modified`` shape: the gates downstream trust it blindly."""
    if not isinstance(value, list):
        raise invalid(field, "must be a list.")
    files: list[dict[str, Any]] = []
    for index, item in enumerate(value):
        where = f"{field}[{index}]"
        if not isinstance(item, dict):
            raise invalid(where, "must be an object.")
        unknown = sorted(set(item) - {"path", "operation", "content", "diff"})
        if unknown:
            raise invalid(f"{where}.{unknown[0]}", "unknown key.")
        path = item.get("path")
        if not isinstance(path, str) or not path or path.startswith("/") or ".." in path.split("/"):
            raise invalid(f"{where}.path", "required, a relative POSIX path without '..'.")
        operation = item.get("operation")
        if operation not in FILE_OPERATIONS:
            raise invalid(f"{where}.operation", f"must be one of {', '.join(sorted(FILE_OPERATIONS))}.")
        bodies = [k for k in ("content", "diff") if k in item]
        for key in bodies:
            if not isinstance(item[key], str):
                raise invalid(f"{where}.{key}", "must be a string.")
        if operation == "delete" and bodies:
            raise invalid(f"{where}.{bodies[0]}", "a delete carries neither content nor diff.")
        if operation == "create" and bodies != ["content"]:
            raise invalid(f"{where}.content", "a create carries the full content and no diff.")
        if operation == "modify" and len(bodies) != 1:
            raise invalid(f"{where}.content", "a modify carries exactly one of content or diff.")
        files.append(dict(item))
    return files


def completed_result(
    *,
    output: Any,
    files_modified: list[dict[str, Any]] | None = None,
    rationale: str = "",
    self_assessment: dict[str, Any] | None = None,
    duration_ms: int = 0,
) -> dict[str, Any]:
    return {
        "type": "result",
        "status": "completed",
        "output": output,
        "files_modified": files_modified or [],
        "rationale": rationale,
        "self_assessment": self_assessment or {},
        "metrics": {"duration_ms": duration_ms},
    }


def failed_result(
    *,
    error: str,
    error_code: str,
    retryable: bool,
    output: Any = None,
    rationale: str = "",
    duration_ms: int = 0,
) -> dict[str, Any]:
    """A task-level failure; ``retryable`` tells the control plane whether another attempt could succeed."""
    return {
        "type": "result",
        "status": "failed",
        "output": output,
        "files_modified": [],
        "rationale": rationale,
        "self_assessment": {},
        "error": error,
        "error_code": error_code,
        "retryable": retryable,
        "metrics": {"duration_ms": duration_ms},
    }


def ndjson_line(event: dict[str, Any]) -> bytes:
    # ensure_ascii keeps every line free of raw newlines or odd code points a proxy could mangle.
    return json.dumps(event, separators=(",", ":")).encode("ascii") + b"\n"


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
