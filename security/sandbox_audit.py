"""The file sandbox on the control plane's side: roots from settings, every refusal audited.

:mod:`security.sandbox` is pure and runs without Django (the reference worker uses it);
this module plugs in what only the control plane has. Each refusal becomes one
``sandbox.denied`` audit record, written in an atomic block of its own *before* the refusal is
raised: called outside a transaction, the record is committed at once, whatever the caller
does with the error. Called inside one (the gates run in the transaction that applies a
result), a block cannot commit on its own, since it is a savepoint of that transaction; the
record then shares the fate of the caller's decision, which is why the gates turn a refusal
into a violation instead of letting it roll their transaction back.

Refusals a worker reports in its result are audited by the dispatcher's report writer
(:func:`security.sandbox.denial_from_result`), since the worker may have no database at all.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db import transaction

from audit.services import audit_record
from security.principals import Principal
from security.sandbox import FileTooLarge, Sandbox, SandboxAction, SandboxDenied

# The principal the gates act as when they read a task's workspace.
GATES = Principal.system("gates")
# What the gates read at most of one file: the placeholder scanner's own limit.
GATE_READ_BYTES = 2 * 1024 * 1024
RESOURCE_ID_CHARS = 100  # AuditRecord.resource_id


def workspace_root() -> str:
    """The workspace: the first of ``settings.SANDBOX_ROOTS``, where each task's files live in
    ``<workspace>/<task_id>/``."""
    return str(settings.SANDBOX_ROOTS[0])


def record_denial(denial: SandboxDenied, *, actor: str, resource_type: str = "path", resource_id: Any = None) -> None:
    """The ``sandbox.denied`` audit record of one refusal, in its own atomic block."""
    data = denial.to_dict()
    resource = data["path"] if resource_id is None else str(resource_id)
    with transaction.atomic():
        audit_record(
            actor=actor,
            action=SandboxAction.DENIED.value,
            resource_type=resource_type,
            resource_id=resource[:RESOURCE_ID_CHARS],
            data=data,
        )


def audited_sandbox(*, actor: str, resource_type: str = "path", resource_id: Any = None) -> Sandbox:
    """A sandbox over ``settings.SANDBOX_ROOTS`` whose refusals are audited as ``actor``'s.

    The resource of the record is the refused path unless the caller names one (the task on
    whose behalf the files are touched, say).
    """

    def on_denied(denial: SandboxDenied) -> None:
        record_denial(denial, actor=actor, resource_type=resource_type, resource_id=resource_id)

    return Sandbox(settings.SANDBOX_ROOTS, on_denied=on_denied)


def task_file_reader(*, task_id: str) -> Callable[[str], str | None]:
    """How the gates read the workspace copy of a task's file: its text, or None when there
    is none to read (no workspace for the task, no such file, too large, not UTF-8).

    A refusal is raised (and audited, as the gates' on the task): a symlink or a special
    file where the worker should have left a regular one is not "no copy", it is an attack
    on whoever reads the workspace.
    """
    sandbox = audited_sandbox(actor=GATES.actor, resource_type="task", resource_id=task_id)

    def read(path: str) -> str | None:
        task_files = sandbox.for_task(task_id)
        try:
            return task_files.read_text(path, max_bytes=GATE_READ_BYTES)
        except (FileNotFoundError, NotADirectoryError, FileTooLarge, UnicodeDecodeError):
            return None

    return read
