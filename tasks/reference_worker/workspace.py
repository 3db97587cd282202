"""The reference worker's workspace: a result's ``files_modified`` applied to disk, through the sandbox.

With ``--workspace DIR`` each task's files live in ``DIR/<task_id>/`` (``manage.py serve``
passes the control plane's workspace, so the gates read back what was written). Every
operation goes through :class:`security.sandbox.Sandbox` with that task's directory as its
only root:

- ``create``, and ``modify`` with ``content``: the file is written whole (atomically);
- ``modify`` with ``diff``: the unified diff must apply exactly (:mod:`.patch`); a diff that
  was already applied (a retried attempt after a lost answer) is recognised by applying it in
  reverse, and left as it is;
- ``delete``: the file is unlinked; one already gone is fine (a retry, again).

Everything that can be worked out before writing is, first (the paths' cheap checks, the
files a diff reads, the patches), so that a bad diff or path leaves the workspace as it was. A
refusal found only on the disk (a symlink someone put in the task's directory) can still come
after earlier writes of the same result; the task then fails and says why.

The worker has no database: a refusal becomes a failed result with ``error_code``
``sandbox_denied`` and the refusal under ``output.sandbox``, which the control plane audits.
"""

from __future__ import annotations

import os
from typing import Any

from security.sandbox import DENIED_ERROR_CODE, Operation, Sandbox, SandboxDenied
from tasks.reference_worker.patch import PatchError, apply_diff
from tasks.reference_worker.protocol import failed_result

PATCH_FAILED = "patch_failed"
WORKSPACE_ERROR = "workspace_error"


class _Unappliable(Exception):
    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")


def open_workspace(directory: str) -> Sandbox:
    """The sandbox of a workspace directory, made (``0o700``) when missing. Raises ValueError
    or OSError for a directory that cannot be one."""
    directory = os.path.abspath(directory)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    if not os.path.isdir(directory):
        raise ValueError(f"{directory} is not a directory")
    return Sandbox([directory])


def apply_changes(workspace: Sandbox, task_id: str, changes: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Apply ``changes`` to the task's directory; None when done, else the failed result to answer."""
    try:
        files = workspace.for_task(task_id)
        for path, content in _plan(files, changes):
            if content is None:
                files.delete(path, missing_ok=True)
            else:
                files.write_text(path, content)
    except SandboxDenied as denial:
        return failed_result(
            error=denial.message, error_code=DENIED_ERROR_CODE, retryable=False, output={"sandbox": denial.to_dict()}
        )
    except _Unappliable as exc:
        return failed_result(error=f"Cannot apply the change to {exc}", error_code=PATCH_FAILED, retryable=False)
    except OSError as exc:
        # Not retryable: the same changes would meet the same disk, and a person should look.
        where = f" ({exc.filename})" if exc.filename else ""
        return failed_result(
            error=f"The workspace could not be changed: {exc.strerror or exc}{where}",
            error_code=WORKSPACE_ERROR,
            retryable=False,
        )
    return None


def _plan(files: Sandbox, changes: list[dict[str, Any]]) -> list[tuple[str, str | None]]:
    """(path, new content or None for a delete) of each change, in order, before any write."""
    planned: dict[str, str | None] = {}
    steps: list[tuple[str, str | None]] = []
    for change in changes:
        path, operation = change["path"], change["operation"]
        files.check(path, Operation.DELETE if operation == "delete" else Operation.WRITE)
        if operation == "delete":
            content = None
        elif "content" in change:
            content = change["content"]
        else:
            content = _patched(files, path, change["diff"], planned)
        planned[path] = content
        steps.append((path, content))
    return steps


def _patched(files: Sandbox, path: str, diff: str, planned: dict[str, str | None]) -> str:
    if path in planned:
        current = planned[path]
    else:
        try:
            current = files.read_text(path)
        except FileNotFoundError:
            current = None
        except UnicodeDecodeError:
            raise _Unappliable(path, "the file is not UTF-8 text") from None
    if current is None:
        raise _Unappliable(path, "the file does not exist in the workspace")
    try:
        return apply_diff(current, diff)
    except PatchError as exc:
        try:
            apply_diff(current, diff, reverse=True)
        except PatchError:
            raise _Unappliable(path, str(exc)) from None
        return current  # already applied: the diff's new side is what the file holds
