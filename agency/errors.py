"""Exit codes, the errors that carry them, and how an HTTP answer maps to one.

This is the CLI's one error mapper (as ``config.exceptions`` is the API's): every failure a
command can meet becomes a :class:`CliError` with the exit code scripts branch on, and
:func:`api_error` is the only place that turns an HTTP status into one.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any


class ExitCode(IntEnum):
    OK = 0
    # The task ended badly (failed or canceled), or a check said no (``provenance verify``).
    TASK_FAILED = 1
    # Bad usage or input: click's own usage errors exit 2 too, and so do the server's 400s.
    USAGE = 2
    NOT_FOUND = 3
    CONFLICT = 4
    # The server could not be reached, timed out, or failed (5xx).
    UNREACHABLE = 5
    # Not authenticated (no token, a bad token) or not allowed (the role): sysexits' EX_NOPERM.
    REFUSED = 77
    INTERRUPTED = 130  # Ctrl-C, as a shell reports SIGINT


EXIT_CODE_HELP = [
    (ExitCode.OK, "success (watch, submit --watch: the task completed)"),
    (ExitCode.TASK_FAILED, "the task ended failed or canceled; provenance verify refused"),
    (ExitCode.USAGE, "usage or validation error (the server's field errors are shown)"),
    (ExitCode.NOT_FOUND, "not found (no such task, waiver, query)"),
    (ExitCode.CONFLICT, "conflict: not allowed in the resource's current state"),
    (ExitCode.UNREACHABLE, "server unreachable, timed out, or failing (5xx)"),
    (ExitCode.REFUSED, "refused: no or bad token (401), or the role may not (403)"),
]


class CliError(Exception):
    """A failure to report on stderr and exit with :attr:`exit_code`."""

    exit_code: ExitCode = ExitCode.USAGE

    def __init__(
        self,
        message: str,
        *,
        details: list[str] | None = None,
        status: int | None = None,
        body: Any = None,
        exit_code: ExitCode | None = None,
        reason: str = "",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason or message  # a short cause, for messages that embed this one
        self.details = details or []
        self.status = status
        self.body = body
        if exit_code is not None:
            self.exit_code = exit_code

    def as_dict(self) -> dict[str, Any]:
        """What ``--json`` prints on stderr for this error."""
        error: dict[str, Any] = {"message": self.message, "exit_code": int(self.exit_code)}
        if self.status is not None:
            error["status"] = self.status
        if self.body is not None:
            error["body"] = self.body
        return {"error": error}


class UsageProblem(CliError):
    exit_code = ExitCode.USAGE


class NotFound(CliError):
    exit_code = ExitCode.NOT_FOUND


class Conflict(CliError):
    exit_code = ExitCode.CONFLICT


class Unreachable(CliError):
    exit_code = ExitCode.UNREACHABLE


class Refused(CliError):
    exit_code = ExitCode.REFUSED


class CheckFailed(CliError):
    exit_code = ExitCode.TASK_FAILED


def exit_code_for_status(status: int) -> ExitCode:
    """The exit code of an HTTP error status (the table in ``agency --help``)."""
    if status in (401, 403):
        return ExitCode.REFUSED
    if status in (404, 410):
        return ExitCode.NOT_FOUND
    if status == 409:
        return ExitCode.CONFLICT
    if status in (408, 429) or status >= 500:
        return ExitCode.UNREACHABLE  # the server's trouble, not the request's: try again later
    return ExitCode.USAGE


def field_errors(body: Any, prefix: str = "") -> list[str]:
    """DRF's field errors as ``field: message`` lines, nested fields joined (``scope.in[0]``).

    A serializer nests as its input does: a dict per object, a list per ``many=True``
    (with ``{}`` for the items that were fine), and for a list field's children a dict keyed
    by the index as a string (``{"state": {"0": [...]}}``).
    """
    if isinstance(body, dict):
        lines = []
        for key, value in body.items():
            name = str(key)
            if name.isdigit():
                path = f"{prefix}[{name}]"
            elif prefix:
                path = f"{prefix}.{name}"
            else:
                path = name
            lines += field_errors(value, path)
        return lines
    if isinstance(body, list):
        if all(isinstance(item, str | int | float) for item in body):
            return [f"{prefix}: {item}" if prefix else str(item) for item in body]
        lines = []
        for index, item in enumerate(body):
            lines += field_errors(item, f"{prefix}[{index}]")
        return lines
    if body is None or body == "":
        return []
    return [f"{prefix}: {body}" if prefix else str(body)]


def _detail(body: Any) -> str | None:
    if isinstance(body, dict) and isinstance(body.get("detail"), str):
        return body["detail"]
    return None


def api_error(status: int, body: Any, *, reason: str = "", has_token: bool = True) -> CliError:
    """The error of an HTTP answer ``status`` with JSON ``body`` (None when it was not JSON)."""
    code = exit_code_for_status(status)
    detail = _detail(body)
    text = detail or reason or f"HTTP {status}"
    if status == 401:
        if not has_token:
            message = "refused (401): no API token. Set AGENCY_TOKEN, or run `agency login`."
        else:
            message = f"refused (401): the server does not accept this API token ({text}). "
            message += "Check AGENCY_TOKEN, or run `agency login` with a new token (manage.py create_token USER)."
        return Refused(message, status=status, body=body)
    if status == 403:
        return Refused(
            f"refused (403): {text} Your token is valid; its user's role does not allow this.", **_ctx(status, body)
        )
    if code == ExitCode.NOT_FOUND:
        return NotFound(f"not found: {text}", **_ctx(status, body))
    if code == ExitCode.CONFLICT:
        return Conflict(f"conflict: {text}", **_ctx(status, body))
    if code == ExitCode.UNREACHABLE:
        return Unreachable(f"the server failed ({status}): {text}", **_ctx(status, body))
    if detail is None and isinstance(body, dict | list):
        return UsageProblem(
            f"the server refused the input ({status}):", details=field_errors(body), **_ctx(status, body)
        )
    return UsageProblem(f"the server refused the request ({status}): {text}", **_ctx(status, body))


def _ctx(status: int, body: Any) -> dict[str, Any]:
    return {"status": status, "body": body}
