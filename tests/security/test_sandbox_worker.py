"""The reference worker applies results' files through the sandbox: a real worker process with ``--workspace``.

Each test uses its own task id, so its files are ``<workspace>/<task_id>/`` and the tests share
one worker process.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.tasks.conftest import RunningWorker, reference_worker_process

pytestmark = pytest.mark.timeout(60)

TIMEOUT = (2, 10)
HANDLER = "def handler():\n    return 1\n"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("sandbox-worker") / "workspace"


@pytest.fixture(scope="module")
def worker(workspace: Path) -> Iterator[RunningWorker]:
    with reference_worker_process("--workspace", str(workspace)) as running:
        yield running


def execute(
    worker: RunningWorker, files: list[dict[str, Any]], *, task_id: str | None = None, attempt: int = 1
) -> dict[str, Any]:
    task_id = task_id or str(uuid.uuid4())
    deadline = (datetime.now(UTC) + timedelta(minutes=5)).isoformat()
    response = requests.post(
        f"{worker.url}/execute",
        json={
            "task_id": task_id,
            "attempt": attempt,
            "spec": {"title": "t", "input": {"kind": "echo", "files_modified": files}},
            "deadline": deadline,
        },
        headers=worker.headers(**{"Idempotency-Key": f"{task_id}:{attempt}", "Accept": "application/json"}),
        timeout=TIMEOUT,
    )
    assert response.status_code == 200, response.text
    return response.json()


def diff(old: str, new: str, path: str = "src/app.py") -> str:
    return "".join(difflib.unified_diff(old.splitlines(True), new.splitlines(True), f"a/{path}", f"b/{path}"))


def test_create_modify_and_delete_land_in_the_tasks_directory(worker, workspace):
    task_id = str(uuid.uuid4())
    files = [
        {"path": "src/app.py", "operation": "create", "content": HANDLER},
        {"path": "src/app.py", "operation": "modify", "diff": diff(HANDLER, HANDLER.replace("1", "2"))},
        {"path": "README.md", "operation": "create", "content": "# app\n"},
        {"path": "README.md", "operation": "modify", "content": "# the app\n"},
        {"path": "old.txt", "operation": "create", "content": "x"},
        {"path": "old.txt", "operation": "delete"},
    ]

    result = execute(worker, files, task_id=task_id)

    assert result["status"] == "completed", result
    assert result["files_modified"] == files
    task_dir = workspace / task_id
    assert (task_dir / "src" / "app.py").read_text() == "def handler():\n    return 2\n"
    assert (task_dir / "README.md").read_text() == "# the app\n"
    assert not (task_dir / "old.txt").exists()
    assert (task_dir / "src" / "app.py").stat().st_mode & 0o022 == 0


def test_a_diff_against_the_file_already_in_the_workspace_applies_and_a_retry_finds_it_applied(worker, workspace):
    task_id = str(uuid.uuid4())
    (workspace / task_id / "src").mkdir(parents=True)
    (workspace / task_id / "src" / "app.py").write_text(HANDLER)
    change = [{"path": "src/app.py", "operation": "modify", "diff": diff(HANDLER, HANDLER + "\nX = 1\n")}]

    first = execute(worker, change, task_id=task_id)
    retried = execute(worker, change, task_id=task_id, attempt=2)

    assert first["status"] == retried["status"] == "completed"
    assert (workspace / task_id / "src" / "app.py").read_text() == HANDLER + "\nX = 1\n"


def test_a_diff_that_does_not_apply_fails_the_result_and_writes_nothing_of_it(worker, workspace):
    task_id = str(uuid.uuid4())
    files = [
        {"path": "new.py", "operation": "create", "content": "x = 1\n"},
        {"path": "src/app.py", "operation": "modify", "diff": diff(HANDLER, HANDLER.replace("1", "2"))},
    ]

    result = execute(worker, files, task_id=task_id)

    assert result["status"] == "failed"
    assert result["error_code"] == "patch_failed"
    assert result["retryable"] is False
    assert "src/app.py" in result["error"]
    assert "does not exist" in result["error"]
    assert not (workspace / task_id / "new.py").exists()


def test_a_nul_byte_in_a_path_is_a_failed_result_naming_the_refusal(worker, workspace):
    task_id = str(uuid.uuid4())

    result = execute(worker, [{"path": "src/a\x00.py", "operation": "create", "content": "x"}], task_id=task_id)

    assert result["status"] == "failed"
    assert result["error_code"] == "sandbox_denied"
    assert result["retryable"] is False
    assert result["output"]["sandbox"] == {
        "path": "src/a\\x00.py",
        "operation": "write",
        "reason": "nul_byte",
        "root": None,
    }
    assert "src/a\\x00.py" in result["error"]
    assert "NUL" in result["error"]
    assert not (workspace / task_id).exists()


def test_a_symlink_planted_in_the_tasks_directory_is_refused_and_nothing_outside_changes(worker, workspace, tmp_path):
    task_id = str(uuid.uuid4())
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "passwd").write_text("root:x:0:0\n")
    (workspace / task_id).mkdir(parents=True)
    os.symlink(outside, workspace / task_id / "etc")
    before = hashlib.sha256((outside / "passwd").read_bytes()).hexdigest()

    result = execute(worker, [{"path": "etc/passwd", "operation": "modify", "content": "mallory\n"}], task_id=task_id)

    assert result["status"] == "failed"
    assert result["error_code"] == "sandbox_denied"
    assert result["output"]["sandbox"]["reason"] == "symlink"
    assert result["output"]["sandbox"]["path"] == "etc/passwd"
    assert result["output"]["sandbox"]["root"] == str((workspace / task_id).resolve())
    assert hashlib.sha256((outside / "passwd").read_bytes()).hexdigest() == before
    assert sorted(os.listdir(outside)) == ["passwd"]


def test_a_task_id_that_is_not_a_plain_name_gets_no_directory(worker, workspace):
    result = execute(worker, [{"path": "x.py", "operation": "create", "content": "x"}], task_id="team/evil")

    assert result["status"] == "failed"
    assert result["output"]["sandbox"]["reason"] == "task_id_not_a_name"
    assert not (workspace / "team").exists()


def test_without_a_workspace_the_worker_reports_the_files_and_writes_nothing(tmp_path):
    with reference_worker_process() as plain:
        result = execute(plain, [{"path": "src/a.py", "operation": "create", "content": "x"}])

    assert result["status"] == "completed"
    assert result["files_modified"] == [{"path": "src/a.py", "operation": "create", "content": "x"}]
