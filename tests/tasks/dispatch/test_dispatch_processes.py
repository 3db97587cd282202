"""Dispatchers as real processes: kill -9 mid-task, and two dispatchers sharing PostgreSQL.

The dispatcher processes run ``manage.py dispatch`` against the test database
(``SQLITE_PATH`` or ``DATABASE_URL`` pointed at it), so every test here uses
committed data.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from django.db import connection

from audit.models import AuditRecord
from tasks import services
from tasks.dispatch.dispatcher import Dispatcher
from tasks.models import Task, TaskEvent, Worker

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(240)]

ROOT = Path(__file__).resolve().parents[3]


def database_env() -> dict[str, str]:
    """Environment that points a child process at this test database."""
    db = connection.settings_dict
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "SQLITE_PATH"}}
    if connection.vendor == "postgresql":
        auth = f"{quote(db['USER'])}:{quote(db['PASSWORD'])}@" if db["USER"] else ""
        env["DATABASE_URL"] = f"postgres://{auth}{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
    else:
        env["SQLITE_PATH"] = str(db["NAME"])
    return env | {"LOG_LEVEL": "WARNING", "AGENCY_REAP_S": "0.5", "AGENCY_POLL_S": "0.2"}


@pytest.fixture
def dispatch_process() -> Iterator[Callable[..., subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []

    def start(*args: str) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            [sys.executable, "manage.py", "dispatch", *args],
            cwd=ROOT,
            env=database_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("dispatcher "), line
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)


def wait_for(predicate: Callable[[], object], timeout: float = 30.0) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"condition not met within {timeout} s")


def register(running) -> Worker:
    worker = Worker(name="ref", base_url=running.url, capabilities=["reference"], max_concurrency=64)
    worker.token = running.token or ""
    worker.save()
    return worker


def test_a_killed_dispatchers_task_is_reclaimed_and_completes_exactly_once(
    reference_worker, dispatch_process, operator
):
    register(reference_worker)
    victim = dispatch_process("--concurrency", "2", "--lease", "2", "--id", "victim")
    task = services.task_create(
        spec={"title": "survive a crash", "input": {"kind": "sleep", "seconds": 1.5, "interval_s": 0.1}},
        actor=operator,
    )
    wait_for(lambda: Task.objects.filter(pk=task.pk, state="running", lease_owner="victim").exists())
    wait_for(lambda: TaskEvent.objects.filter(task=task, type="worker.progress").exists())
    victim.send_signal(signal.SIGKILL)
    victim.wait(5)

    rescuer = Dispatcher(concurrency=2, poll_s=0.2, reap_s=0.3, lease_s=5)
    rescuer.start()
    try:
        wait_for(lambda: Task.objects.filter(pk=task.pk, state="completed").exists(), timeout=30)
    finally:
        rescuer.stop(grace_s=0)

    task.refresh_from_db()
    assert task.attempt == 2
    lease_expired = TaskEvent.objects.get(task=task, type="lease_expired")
    assert lease_expired.data["lease_owner"] == "victim"
    assert TaskEvent.objects.filter(task=task, type="completed").count() == 1
    assert AuditRecord.objects.filter(resource_id=str(task.pk), action="task.verdict").count() == 1
    assert AuditRecord.objects.filter(resource_id=str(task.pk), action="task.reclaim").count() == 1
    executed = Counter(
        e["idempotency_key"]
        for e in reference_worker.log(task_id=str(task.pk))
        if e["path"] == "/execute" and e.get("outcome") == "executed"
    )
    # Each (task, attempt) ran once at the worker: attempt 1 under the dead dispatcher, attempt 2 after.
    assert executed == {f"{task.pk}:1": 1, f"{task.pk}:2": 1}


@pytest.mark.postgres
def test_two_dispatchers_on_postgres_never_run_the_same_attempt_twice(
    start_reference_worker, dispatch_process, operator
):
    worker = start_reference_worker("--capacity", "64", "--log-memory", "20000")
    register(worker)
    dispatch_process("--concurrency", "16", "--id", "one")
    dispatch_process("--concurrency", "16", "--id", "two")
    tasks = [
        services.task_create(spec={"title": f"t{i}", "input": {"kind": "echo", "n": i}}, actor=operator)
        for i in range(2000)
    ]
    wait_for(lambda: Task.objects.filter(state="completed").count() == len(tasks), timeout=180)

    owners = Counter(AuditRecord.objects.filter(action="task.start").values_list("actor", flat=True))
    assert set(owners) == {"dispatcher:one", "dispatcher:two"}  # both took part
    executes = [e for e in worker.log() if e["path"] == "/execute"]
    per_key = Counter(e["idempotency_key"] for e in executes)
    assert len(per_key) == len(tasks)
    assert max(per_key.values()) == 1, [k for k, n in per_key.items() if n > 1][:5]
    completed = Counter(TaskEvent.objects.filter(type="completed").values_list("task_id", flat=True))
    assert len(completed) == len(tasks)
    assert set(completed.values()) == {1}


def test_sigterm_stops_claiming_and_returns_unfinished_work_to_the_queue(reference_worker, dispatch_process, operator):
    register(reference_worker)
    process = dispatch_process("--concurrency", "2", "--grace", "0.5", "--id", "leaving")
    task = services.task_create(
        spec={"title": "long", "input": {"kind": "sleep", "seconds": 60, "interval_s": 0.1}}, actor=operator
    )
    wait_for(lambda: TaskEvent.objects.filter(task=task, type="worker.progress").exists())
    process.send_signal(signal.SIGTERM)
    assert process.wait(15) == 0
    task.refresh_from_db()
    assert (task.state, task.lease_owner) == ("queued", "")
    assert task.max_attempts == task.spec["max_attempts"] + 1  # the interrupted attempt is not counted
    assert any(e["path"] == "/cancel" for e in reference_worker.log(task_id=str(task.pk)))
