"""The sandbox end to end: control plane, dispatcher and a real reference worker sharing one workspace.

The worker applies a result's files in ``<workspace>/<task_id>/``; a refusal comes back as a
failed result and the control plane audits it; the gates read back what the worker wrote.
Each test creates its task first and starts the dispatcher after, so that it can prepare the
task's directory (a checkout, or an attacker's symlink) before the worker runs.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from audit.models import AuditRecord
from tasks import services
from tasks.dispatch.dispatcher import Dispatcher
from tasks.models import Task, Verdict
from tests.tasks.conftest import RunningWorker, reference_worker_process
from tests.tasks.dispatch.test_dispatcher import register, state_of, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(90)]

HANDLER = "import os\n\n\ndef handler():\n    return os.getcwd()\n"


@pytest.fixture
def workspace(tmp_path: Path, settings) -> Path:
    root = tmp_path / "workspace"
    root.mkdir()
    settings.SANDBOX_ROOTS = [str(root)]
    return root


@pytest.fixture
def worker(workspace: Path) -> Iterator[RunningWorker]:
    with reference_worker_process("--workspace", str(workspace)) as running:
        register(running)
        yield running


@pytest.fixture
def dispatch() -> Iterator[Callable[[], Dispatcher]]:
    started: list[Dispatcher] = []

    def start() -> Dispatcher:
        d = Dispatcher(concurrency=2, poll_s=0.2, reap_s=0.5)
        d.start()
        started.append(d)
        return d

    yield start
    for d in started:
        d.stop(grace_s=0)


def create(operator, files: list[dict]) -> Task:
    spec = {"title": "edit the handler", "capabilities": ["reference"], "risk_tier": 3}
    return services.task_create(spec={**spec, "input": {"kind": "echo", "files_modified": files}}, actor=operator)


def test_a_write_the_workers_sandbox_refuses_fails_the_task_and_is_audited(
    worker, workspace, dispatch, operator, tmp_path
):
    outside = tmp_path / "outside"
    outside.mkdir()
    task = create(operator, [{"path": "etc/passwd", "operation": "create", "content": "mallory::0:0\n"}])
    (workspace / str(task.pk)).mkdir()
    os.symlink(outside, workspace / str(task.pk) / "etc")

    dispatch()
    wait_for(lambda: state_of(task) == "failed")

    assert os.listdir(outside) == []
    task.refresh_from_db()
    assert "Sandbox refused to write 'etc/passwd'" in task.error
    [record] = AuditRecord.objects.filter(action="sandbox.denied")
    assert record.actor == "worker:ref"
    assert (record.resource_type, record.resource_id) == ("task", str(task.pk))
    assert record.data == {
        "attempt": 1,
        "path": "etc/passwd",
        "operation": "write",
        "reason": "symlink",
        "root": str((workspace / str(task.pk)).resolve()),
    }
    actions = list(
        AuditRecord.objects.filter(resource_id=str(task.pk)).order_by("seq").values_list("action", flat=True)
    )
    assert actions == ["task.create", "task.start", "sandbox.denied", "task.fail"]


def test_the_gates_read_back_the_file_the_worker_patched_and_find_the_stub_its_diff_hides(
    worker, workspace, dispatch, operator
):
    stubbed = HANDLER.replace("    return os.getcwd()\n", "    pass\n")
    diff = "".join(difflib.unified_diff(HANDLER.splitlines(True), stubbed.splitlines(True), "a/src/h.py", "b/src/h.py"))
    task = create(operator, [{"path": "src/h.py", "operation": "modify", "diff": diff}])
    checkout = workspace / str(task.pk) / "src"
    checkout.mkdir(parents=True)
    (checkout / "h.py").write_text(HANDLER)

    dispatch()
    wait_for(lambda: state_of(task) == "failed")

    assert (checkout / "h.py").read_text() == stubbed
    verdict = Verdict.objects.get(task=task)
    assert verdict.decision == "changes_requested"
    # The added line alone ("    pass") is no stub; in the file the worker wrote, handler's body is only pass.
    assert [(v["rule"], v["file"], v["line"]) for v in verdict.violations] == [
        ("placeholders.code_stubs", "src/h.py", 4)
    ]
    assert not AuditRecord.objects.filter(action="sandbox.denied").exists()
