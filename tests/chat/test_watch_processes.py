"""With PostgreSQL + Redis: ``watch`` on a task run by a separate dispatcher process reaches the chat.

The ASGI process serves the chat and runs no dispatcher; a ``manage.py dispatch`` process
claims and runs the task on a reference worker. Each transition is published after commit
in the dispatcher process, where chat's watcher writes the system message and announces it
through Redis to the socket attached to the ASGI process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from websockets.sync.client import connect

from tests.metrics.stream.conftest import ROOT, start_server, stop_server
from tests.tasks.conftest import WORKER_TOKEN, reference_worker_process, stop_process

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="needs Redis (REDIS_URL)"),
    pytest.mark.timeout(120),
]

REGISTER = """
from security.principals import SYSTEM
from tasks import workers
workers.worker_register(actor=SYSTEM, name="ref", base_url="{url}", token="{token}", max_concurrency=4)
"""


def test_a_watched_task_run_by_another_process_reports_into_the_chat(tmp_path):
    server = start_server(tmp_path, "--no-dispatcher", "--no-worker")
    dispatcher = None
    try:
        with reference_worker_process() as worker:
            server.manage("shell", "--no-imports", "-c", REGISTER.format(url=worker.url, token=WORKER_TOKEN))
            api = server.api("operator")
            session_id = api.post(f"{server.base}/api/v1/chat/session", json={}, timeout=10).json()["session_id"]
            spec = {"title": "Watched from afar", "input": {"kind": "sleep", "seconds": 1, "interval_s": 0.25}}
            task = api.post(f"{server.base}/api/v1/tasks", json=spec, timeout=10).json()
            url = server.base.replace("http://", "ws://") + f"/api/v1/chat/ws/{session_id}"
            headers = {"Authorization": f"Token {server.tokens['operator']}"}
            with connect(url, additional_headers=headers, open_timeout=10) as ws:
                ws.recv(timeout=10)  # history
                ws.send(json.dumps({"type": "message", "content": f"watch {task['id']}"}))
                frames = [json.loads(ws.recv(timeout=10)) for _ in range(3)]  # ack, ours, the reply
                assert "Watching" in frames[2]["message"]["content"]
                dispatcher = subprocess.Popen(
                    [sys.executable, "manage.py", "dispatch", "--concurrency", "2"],
                    cwd=ROOT,
                    env=server.env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                states = []
                while not states or states[-1] not in ("completed", "failed", "canceled"):
                    frame = json.loads(ws.recv(timeout=30))
                    if frame["type"] == "message" and frame["message"]["role"] == "system":
                        states.append(frame["message"]["metadata"]["to_state"])
            assert states == ["running", "completed"]
    finally:
        if dispatcher is not None:
            stop_process(dispatcher)
        stop_server(server)
