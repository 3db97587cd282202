"""The sandbox on the control plane (security/sandbox_audit.py): every refusal is one audit record."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from django.db import transaction

from audit.models import AuditRecord
from security.sandbox import Reason, SandboxDenied
from security.sandbox_audit import audited_sandbox, task_file_reader, workspace_root

TASK_ID = "8f0e4f9e-6d1c-4a57-9a51-2f1f3c6a7b10"


@pytest.fixture
def workspace(tmp_path: Path, settings) -> Path:
    root = tmp_path / "workspace"
    root.mkdir()
    settings.SANDBOX_ROOTS = [str(root), "/tmp/agent-*"]  # noqa: S108
    return root


def denied_records() -> list[AuditRecord]:
    return list(AuditRecord.objects.filter(action="sandbox.denied").order_by("seq"))


@pytest.mark.django_db(transaction=True)
def test_writing_etc_passwd_is_refused_and_audited_and_the_record_outlives_the_error(workspace):
    before = hashlib.sha256(Path("/etc/passwd").read_bytes()).hexdigest()
    sandbox = audited_sandbox(actor="system")

    with pytest.raises(SandboxDenied) as caught:
        sandbox.write_text("/etc/passwd", "mallory::0:0::/root:/bin/sh\n")

    assert caught.value.reason == Reason.OUTSIDE
    assert hashlib.sha256(Path("/etc/passwd").read_bytes()).hexdigest() == before
    # transaction=True: nothing wraps the test, so this record was committed on its own, before the raise.
    [record] = denied_records()
    assert record.actor == "system"
    assert (record.resource_type, record.resource_id) == ("path", "/etc/passwd")
    assert record.data == {"path": "/etc/passwd", "operation": "write", "reason": "outside_roots", "root": None}


@pytest.mark.django_db
def test_each_refusal_is_one_record_naming_the_actor_the_resource_and_the_root(workspace):
    os.symlink("/etc", workspace / "etc")
    sandbox = audited_sandbox(actor="worker:ref", resource_type="task", resource_id=TASK_ID)

    for action in (lambda: sandbox.read_text("etc/passwd"), lambda: sandbox.delete("../x")):
        with pytest.raises(SandboxDenied):
            action()

    first, second = denied_records()
    assert (first.actor, first.resource_type, first.resource_id) == ("worker:ref", "task", TASK_ID)
    assert first.data == {"path": "etc/passwd", "operation": "read", "reason": "symlink", "root": str(workspace)}
    assert second.data["reason"] == "parent_reference"
    assert second.data["operation"] == "delete"


@pytest.mark.django_db
def test_a_refusal_inside_a_transaction_that_goes_on_is_recorded_with_it(workspace):
    sandbox = audited_sandbox(actor="system")

    with transaction.atomic():
        with pytest.raises(SandboxDenied):
            sandbox.read_bytes("/dev/null")
        assert len(denied_records()) == 1
    assert denied_records()[0].data["path"] == "/dev/null"


@pytest.mark.django_db
def test_a_long_or_nul_path_is_recorded_bounded_and_spelled_out(workspace):
    sandbox = audited_sandbox(actor="system")

    with pytest.raises(SandboxDenied):
        sandbox.write_text("x" * 300 + "\x00", "x")

    [record] = denied_records()
    assert len(record.resource_id) == 100
    assert record.data["path"].endswith("\\x00")
    assert record.data["reason"] == "nul_byte"


@pytest.mark.django_db
def test_an_allowed_operation_writes_no_record(workspace):
    sandbox = audited_sandbox(actor="system")

    sandbox.write_text("notes/a.txt", "fine")

    assert sandbox.read_text(str(workspace / "notes" / "a.txt")) == "fine"
    assert denied_records() == []


def test_the_workspace_is_the_first_root(workspace):
    assert workspace_root() == str(workspace)


@pytest.mark.django_db
def test_the_gates_reader_reads_a_tasks_copy_and_has_none_when_there_is_no_copy(workspace):
    read = task_file_reader(task_id=TASK_ID)
    assert read("src/app.py") is None  # no directory for the task at all

    (workspace / TASK_ID / "src").mkdir(parents=True)
    (workspace / TASK_ID / "src" / "app.py").write_text("x = 1\n")
    (workspace / TASK_ID / "blob.bin").write_bytes(b"\xff\xfe")

    assert read("src/app.py") == "x = 1\n"
    assert read("src/missing.py") is None
    assert read("blob.bin") is None  # not UTF-8: nothing to scan as text
    assert denied_records() == []


@pytest.mark.django_db
def test_the_gates_reader_refuses_a_symlink_in_a_tasks_copy_and_audits_it_as_the_gates(workspace):
    (workspace / TASK_ID / "src").mkdir(parents=True)
    os.symlink("/etc/passwd", workspace / TASK_ID / "src" / "app.py")
    read = task_file_reader(task_id=TASK_ID)

    with pytest.raises(SandboxDenied) as caught:
        read("src/app.py")
    with pytest.raises(SandboxDenied):
        read("/etc/passwd")

    assert caught.value.reason == Reason.SYMLINK
    first, second = denied_records()
    assert (first.actor, first.resource_type, first.resource_id) == ("system:gates", "task", TASK_ID)
    assert first.data["root"] == str(workspace / TASK_ID)
    assert second.data == {"path": "/etc/passwd", "operation": "read", "reason": "outside_roots", "root": None}
