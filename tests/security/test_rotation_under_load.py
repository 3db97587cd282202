"""Key rotation while 2,000 tasks dispatch on PostgreSQL: no task fails, and the old key can go."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from cryptography.fernet import Fernet

from security import crypto
from tasks import services
from tasks.models import Task, Worker
from tests.tasks.conftest import start_reference_worker
from tests.tasks.dispatch.test_dispatch_processes import ROOT, database_env, dispatch_process, register, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(300), pytest.mark.postgres]

__all__ = ["dispatch_process", "start_reference_worker"]  # fixtures, imported for this module's tests

TASKS = 2000
REFRESH_S = 2


def rotate_keys(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", "rotate_keys", *args],
        cwd=ROOT,
        env=database_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_rotation_under_load_completes_with_no_task_failing_and_the_old_key_removable(
    settings, tmp_path, monkeypatch, fresh_keystore, start_reference_worker, dispatch_process, operator
):
    keys = tmp_path / "keys"
    keys.mkdir(mode=0o700)
    (keys / "master-keys").write_text(Fernet.generate_key().decode() + "\n")
    (keys / "master-keys").chmod(0o600)
    for name, value in {"KEYSTORE_URL": f"file://{keys}", "KEYSTORE_REFRESH_S": str(REFRESH_S)}.items():
        monkeypatch.setenv(name, value)  # for the dispatcher and rotate_keys processes
        setattr(settings, name, value if name == "KEYSTORE_URL" else float(value))

    worker = start_reference_worker("--capacity", "64", "--log-memory", "100", token="rotation-worker-token-1")
    register(worker)
    # Secrets beside the one in use, so that rotation has rows to walk while dispatch runs.
    for i in range(300):
        spare = Worker(name=f"spare-{i}", base_url="http://127.0.0.1:9", enabled=False)
        spare.token = f"spare-token-{i:04d}-abcdefgh"
        spare.save()
    # Each task holds its worker slot 0.2 s: 2,000 over 32 slots keep the dispatchers busy for
    # 12 s at least, well past the few seconds rotation takes.
    for i in range(TASKS):
        services.task_create(spec={"title": f"t{i}", "input": {"kind": "sleep", "seconds": 0.2}}, actor=operator)
    dispatch_process("--concurrency", "16", "--id", "one")
    dispatch_process("--concurrency", "16", "--id", "two")
    wait_for(lambda: Task.objects.filter(state="completed").count() >= 100, timeout=60)

    added = rotate_keys("--add-key", "--batch-size", "25")
    assert added.returncode == 0, added.stderr
    assert "every secret is under the primary key" in added.stdout
    during = Task.objects.filter(state="completed").count()
    assert during < TASKS, "rotation finished after the dispatch, not during it"

    wait_for(lambda: Task.objects.filter(state__in=["completed", "failed"]).count() == TASKS, timeout=180)
    assert Task.objects.filter(state="completed").count() == TASKS
    # Each on its first attempt: no call was refused (a 401 for a token the dispatcher could not
    # decrypt, or a worker left out of routing) and retried.
    assert set(Task.objects.values_list("attempt", flat=True)) == {1}
    assert not Task.objects.exclude(error="").exists()

    time.sleep(2 * REFRESH_S + 1)  # two refresh intervals: every process has re-read the keystore
    dropped = rotate_keys("--drop-old")
    assert dropped.returncode == 0, dropped.stderr
    assert len((keys / "master-keys").read_text().split()) == 1
    # With the old key gone, the dispatchers still reach the worker with its token.
    after = services.task_create(spec={"title": "after", "input": {"kind": "echo"}}, actor=operator)
    wait_for(lambda: Task.objects.get(pk=after.pk).state == "completed", timeout=30)
    crypto.reload()
    assert Worker.objects.get(name="ref").token == "rotation-worker-token-1"
