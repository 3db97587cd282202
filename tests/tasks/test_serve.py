"""``manage.py serve``: the embedded all-in-one process, as a user starts it from a fresh clone."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.timeout(120)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def manage(*args: str, env: dict[str, str]) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def embedded_env(data_dir: Path, log_level: str) -> dict[str, str]:
    """The environment of a fresh clone's embedded default, migrated, with its data under ``data_dir``."""
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "SQLITE_PATH"}}
    env |= {"DATA_DIR": str(data_dir), "LOG_LEVEL": log_level}
    manage("migrate", "--noinput", env=env)
    return env


def start_serve(env: dict[str, str], port: int, **streams: Any) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "manage.py", "serve", "--port", str(port)], cwd=ROOT, env=env, **streams)


def test_a_task_created_through_the_api_completes_with_its_progress_events(tmp_path):
    env = embedded_env(tmp_path, "WARNING")
    login = manage("ensure_admin", env=env)
    assert "user: admin" in login
    assert "password: " in login
    token = manage("create_token", "admin", env=env).strip()
    port = free_port()
    server = start_serve(env, port, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    api = requests.Session()
    api.headers["Authorization"] = f"Token {token}"
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
            json={"title": "Sleep briefly", "input": {"kind": "sleep", "seconds": 0.5, "interval_s": 0.1}},
            timeout=10,
        )
        assert created.status_code == 201, created.text
        task_id = created.json()["id"]
        deadline = time.monotonic() + 30
        while api.get(f"{base}/api/v1/tasks/{task_id}", timeout=10).json()["state"] != "completed":
            assert time.monotonic() < deadline, "the task did not complete"
            time.sleep(0.1)
        events = api.get(f"{base}/api/v1/tasks/{task_id}/events", params={"limit": 1000}, timeout=10).json()
        types = [e["type"] for e in events["results"]]
        assert types[:2] == ["created", "attempt_started"]
        assert types.count("worker.progress") >= 3
        assert types[-1] == "completed"
        health = api.get(f"{base}/api/health", timeout=10).json()
        assert health["components"]["dispatcher"]["status"] == "healthy"
    finally:
        server.send_signal(signal.SIGTERM)
        assert server.wait(30) == 0


def _children(pid: int) -> list[int]:
    found = []
    for children in Path(f"/proc/{pid}/task").glob("*/children"):
        found += [int(child) for child in children.read_text().split()]
    return found


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads child processes from /proc")
def test_the_local_worker_process_goes_with_a_killed_serve(tmp_path):
    """The reference worker is serve's child; a SIGKILL of serve (no clean-up ran) must not leave it behind."""
    env = embedded_env(tmp_path, "INFO")  # serve logs its worker's URL at INFO
    server = start_serve(env, free_port(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        assert server.stderr is not None
        while "local reference worker at http://127.0.0.1:" not in server.stderr.readline():
            assert server.poll() is None, "serve exited"
            assert time.monotonic() < deadline, "serve did not start its worker"
        (worker,) = [p for p in _children(server.pid) if "tasks.reference_worker" in _cmdline(p)]
        server.kill()
        server.wait(10)
        deadline = time.monotonic() + 10
        while _alive(worker):
            assert time.monotonic() < deadline, "the reference worker outlived its serve"
            time.sleep(0.1)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(10)


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ")
    except OSError:
        return ""
