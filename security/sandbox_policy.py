"""What the file sandbox refuses and how a refusal is told, and the roots it is configured with.

The vocabulary (:class:`Operation`, :class:`Reason`, the ``sandbox.denied`` action), the one
domain error (:class:`SandboxDenied`), the refusal as a worker's failed result carries it
(:func:`denial_from_result`), and :class:`Root`. The resolver and the operations are in
:mod:`security.sandbox`, which re-exports all of this. No Django here either.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from config.errors import PermissionDenied

# The error_code of a worker's failed result that reports a refusal, and the domain error's code.
DENIED_ERROR_CODE = "sandbox_denied"
# How much of a path a denial's record keeps: enough to recognise it, bounded for the audit trail.
RECORDED_PATH_CHARS = 1000
GLOB_CHARS = frozenset("*?[")


class SandboxAction(StrEnum):
    """The audit action of a refusal."""

    DENIED = "sandbox.denied"


class Operation(StrEnum):
    OPEN = "open"
    READ = "read"
    WRITE = "write"
    LIST = "list"
    DELETE = "delete"


class Reason(StrEnum):
    NUL_BYTE = "nul_byte"
    EMPTY = "empty_path"
    PARENT = "parent_reference"
    OUTSIDE = "outside_roots"
    SYMLINK = "symlink"
    SPECIAL = "special_file"
    IS_DIRECTORY = "is_a_directory"
    NOT_DIRECTORY = "not_a_directory"
    HARDLINK = "hardlinked"
    TOO_LARGE = "too_large"
    UNSAFE_ROOT = "unsafe_root"
    TASK_ID = "task_id_not_a_name"
    CHANGED = "changed_while_resolving"


REASON_TEXT = {
    Reason.NUL_BYTE: "the path contains a NUL byte",
    Reason.EMPTY: "the path is empty",
    Reason.PARENT: "the path has a '..' component",
    Reason.OUTSIDE: "the path is outside every allowed root",
    Reason.SYMLINK: "a component is a symlink (symlinks are never followed)",
    Reason.SPECIAL: "not a regular file (a FIFO, socket or device)",
    Reason.IS_DIRECTORY: "a directory, where a file is expected",
    Reason.NOT_DIRECTORY: "a component is not a directory",
    Reason.HARDLINK: "the file has other hard links, which may be outside the root",
    Reason.TOO_LARGE: "larger than the sandbox's size cap",
    Reason.UNSAFE_ROOT: "the root is a symlink, not a directory, or not this user's alone",
    Reason.TASK_ID: "the task id is not a plain file name",
    Reason.CHANGED: "a component changed while the path was being resolved",
}


def printable(path: str) -> str:
    """A path as a record may hold it: NUL bytes spelled out (PostgreSQL text refuses them), bounded."""
    return path.replace("\x00", "\\x00")[:RECORDED_PATH_CHARS]


class SandboxDenied(PermissionDenied):
    """A file operation the sandbox refused; the message names the path and the reason."""

    code = DENIED_ERROR_CODE

    def __init__(
        self, path: str, operation: Operation, reason: Reason, *, root: str | None = None, detail: str = ""
    ) -> None:
        self.path = path
        self.operation = Operation(operation)
        self.reason = Reason(reason)
        self.root = root
        why = detail or REASON_TEXT[self.reason]
        super().__init__(
            f"Sandbox refused to {self.operation} {path[:RECORDED_PATH_CHARS]!r}: {why}.",
            path=printable(path),
            operation=str(self.operation),
            reason=str(self.reason),
            root=root,
        )

    def to_dict(self) -> dict[str, Any]:
        """The refusal as JSON: what an audit record and a worker's failed result carry."""
        return {
            "path": printable(self.path),
            "operation": str(self.operation),
            "reason": str(self.reason),
            "root": self.root,
        }


class FileTooLarge(OSError):
    """A read found more than the caller's limit. Not a refusal: the caller chose the limit."""


def denial_from_result(result: Any) -> dict[str, Any] | None:
    """The refusal a worker's failed result reports (``error_code`` :data:`DENIED_ERROR_CODE`,
    ``output.sandbox``), as bounded strings; None for any other result.

    A worker without a database cannot audit its own refusals; the control plane does when
    it applies the result, with this.
    """
    if not isinstance(result, dict) or result.get("status") != "failed":
        return None
    if result.get("error_code") != DENIED_ERROR_CODE:
        return None
    output = result.get("output")
    reported = output.get("sandbox") if isinstance(output, dict) else None
    if not isinstance(reported, dict):
        reported = {}
    return {key: printable(str(reported.get(key) or ""))[:200] for key in ("operation", "reason", "root")} | {
        "path": printable(str(reported.get("path") or ""))
    }


@dataclass(frozen=True)
class Root:
    """One allowed root: a directory, or a pattern of directories directly under one (``/tmp/agent-*``).

    ``path`` is a real path taken when the root is configured (the configuration is trusted;
    requests never are). For a pattern it is the parent of the matches.
    """

    path: str
    pattern: str | None = None

    @classmethod
    def parse(cls, value: str) -> Root:
        """A root from its configured spelling; ValueError says what is wrong with it."""
        if not isinstance(value, str) or not value.strip():
            raise ValueError("a root must be a non-empty path")
        if "\x00" in value:
            raise ValueError(f"{printable(value)!r}: contains a NUL byte")
        if not os.path.isabs(value):
            raise ValueError(f"{value!r}: not an absolute path")
        head, tail = os.path.split(os.path.normpath(value))
        if GLOB_CHARS & set(head):
            raise ValueError(f"{value!r}: only the last component may be a pattern")
        if GLOB_CHARS & set(tail):
            return cls(os.path.realpath(head), tail)
        real = os.path.realpath(value)
        if real == "/":
            raise ValueError(f"{value!r}: the file system root would allow every file")
        return cls(real)

    def __str__(self) -> str:
        return os.path.join(self.path, self.pattern) if self.pattern else self.path

    def match(self, parts: Sequence[str]) -> tuple[str, list[str]] | None:
        """(the root directory, the components below it) when ``parts`` of an absolute path lie inside."""
        base = [p for p in self.path.split("/") if p]
        if list(parts[: len(base)]) != base:
            return None
        rest = list(parts[len(base) :])
        if self.pattern is None:
            return self.path, rest
        if rest and fnmatch.fnmatchcase(rest[0], self.pattern):
            return os.path.join(self.path, rest[0]), rest[1:]
        return None
