"""``manage.py serve``: its reference worker applies each task's files in DATA_DIR/workspace/<task_id>/."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import requests

from tests.tasks.test_serve import ROOT, free_port, manage

pytestmark = pytest.mark.timeout(120)


def test_a_tasks_files_land_in_the_workspace_under_data_dir(tmp_path):
    env = {
        k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "SQLITE_PATH", "SANDBOX_ROOTS"}
    }
    env |= {"DATA_DIR": str(tmp_path), "LOG_LEVEL": "WARNING"}
    manage("migrate", "--noinput", env=env)
    manage("ensure_admin", env=env)
    token = manage("create_token", "admin", env=env).strip()
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "manage.py", "serve", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    api = requests.Session()
    api.headers["Authorization"] = f"Token {token}"
    files = [{"path": "src/app.py", "operation": "create", "content": "def handler():\n    return 1\n"}]
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(f"{base}/healthz", timeout=1).ok:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline, "serve did not come up"
            time.sleep(0.1)
        created = api.post(
            f"{base}/api/v1/tasks",
            json={"title": "Write the handler", "risk_tier": 3, "input": {"kind": "echo", "files_modified": files}},
            timeout=10,
        )
        assert created.status_code == 201, created.text
        task_id = created.json()["id"]
        deadline = time.monotonic() + 30
        while (state := api.get(f"{base}/api/v1/tasks/{task_id}", timeout=10).json()["state"]) != "completed":
            assert state in ("queued", "running"), state
            assert time.monotonic() < deadline, "the task did not complete"
            time.sleep(0.1)
    finally:
        server.send_signal(signal.SIGTERM)
        assert server.wait(30) == 0

    written = tmp_path / "workspace" / task_id / "src" / "app.py"
    assert written.read_text() == "def handler():\n    return 1\n"
