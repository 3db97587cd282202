"""A real ASGI server (``manage.py serve``) for the stream tests, and an SSE client.

The streams are async generators served by daphne; Django's test client cannot hold one
open, so these tests talk HTTP to a server process on loopback with its own data directory
(SQLite) or, in the PostgreSQL + Redis run, its own database on the same cluster.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

ROOT = Path(__file__).resolve().parents[3]

USERS_SCRIPT = """
from django.contrib.auth.models import Group, User
from security.tokens import token_issue
for name, role in (("viewer", "viewer"), ("operator", "operator"), ("nobody", None)):
    user, _ = User.objects.get_or_create(username=name)
    if role:
        user.groups.add(Group.objects.get(name=role))
    print(name, token_issue(user=user, actor="system", name="tests")[1])
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    base: str
    env: dict[str, str]
    tokens: dict[str, str]
    process: subprocess.Popen[bytes] | None = None
    sessions: dict[str, requests.Session] = field(default_factory=dict)

    def api(self, who: str = "operator") -> requests.Session:
        if who not in self.sessions:
            session = requests.Session()
            session.headers["Authorization"] = f"Token {self.tokens[who]}"
            self.sessions[who] = session
        return self.sessions[who]

    def create_task(self, title: str) -> dict[str, Any]:
        spec = {
            "title": title,
            "risk_tier": 3,
            "scope": {"in": ["src/"]},
            "acceptance": [{"id": "A1", "given": "g", "when": "w", "then": "t"}],
        }
        response = self.api().post(f"{self.base}/api/v1/tasks", json=spec, timeout=10)
        assert response.status_code == 201, response.text
        return response.json()

    def manage(self, *args: str, timeout: float = 60) -> str:
        result = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout


def server_env(tmp: Path) -> dict[str, str]:
    """The server's environment: its own SQLite data dir, or its own PostgreSQL database."""
    env = {k: v for k, v in os.environ.items() if k not in {"SQLITE_PATH"}}
    env |= {"DATA_DIR": str(tmp), "LOG_LEVEL": "WARNING", "AGENCY_KPI_INTERVAL_S": "1"}
    url = os.environ.get("DATABASE_URL")
    if url:
        import psycopg

        name = f"stream_{os.getpid()}_{int(time.time() * 1000) % 10**8}"
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        env["DATABASE_URL"] = url.rsplit("/", 1)[0] + "/" + name
    return env


def start_server(tmp: Path, *serve_args: str, env: dict[str, str] | None = None) -> Server:
    env = env or server_env(tmp)
    server = Server(base="", env=env, tokens={})
    server.manage("migrate", "--noinput")
    lines = server.manage("shell", "--no-imports", "-c", USERS_SCRIPT).splitlines()
    server.tokens = dict(line.split() for line in lines if len(line.split()) == 2)
    port = free_port()
    server.base = f"http://127.0.0.1:{port}"
    server.process = subprocess.Popen(
        [sys.executable, "manage.py", "serve", "--port", str(port), *serve_args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            if requests.get(f"{server.base}/healthz", timeout=1).ok:
                return server
        except requests.ConnectionError:
            pass
        if time.monotonic() > deadline or server.process.poll() is not None:
            stop_server(server)
            raise RuntimeError("the server did not start")
        time.sleep(0.2)


def stop_server(server: Server) -> None:
    if server.process is not None and server.process.poll() is None:
        server.process.terminate()
        try:
            server.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait(timeout=5)
    for session in server.sessions.values():
        session.close()
    url = os.environ.get("DATABASE_URL")
    if url and server.env.get("DATABASE_URL") != url:
        import psycopg

        # Not WITH (FORCE): a non-superuser may not terminate an autovacuum worker that
        # happens to be in the new database, and FORCE then fails outright; the plain DROP
        # stops autovacuum itself. The server has exited, so nothing else should be left.
        name = server.env["DATABASE_URL"].rsplit("/", 1)[1]
        with psycopg.connect(url, autocommit=True) as conn:
            for attempt in range(10):
                try:
                    conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
                    break
                except psycopg.errors.ObjectInUse:
                    if attempt == 9:
                        raise
                    time.sleep(0.5)


@pytest.fixture(scope="module")
def quiet_server(tmp_path_factory) -> Iterator[Server]:
    """A server with no dispatcher: tasks stay where the test puts them."""
    server = start_server(tmp_path_factory.mktemp("stream"), "--no-dispatcher", "--no-worker")
    yield server
    stop_server(server)


@dataclass
class SSE:
    event: str
    id: str
    data: str


class Stream:
    """An open SSE response read event by event (comments and the padding skipped)."""

    def __init__(self, response: requests.Response) -> None:
        self.response = response
        self.lines = response.iter_lines(decode_unicode=True)

    def next(self) -> SSE:
        event, id_, data = "message", "", []
        for line in self.lines:
            if line == "":
                if data or event != "message":
                    return SSE(event, id_, "\n".join(data))
                continue
            if line.startswith(":"):
                continue
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "event":
                event = value
            elif name == "id":
                id_ = value
            elif name == "data":
                data.append(value)
        raise EOFError("the stream ended")

    def take(self, count: int, *, kind: str) -> list[SSE]:
        out: list[SSE] = []
        while len(out) < count:
            item = self.next()
            if item.event == kind:
                out.append(item)
        return out

    def close(self) -> None:
        self.response.close()


def open_stream(server: Server, path: str, *, who: str = "viewer", last_id: str | None = None) -> Stream:
    headers = {"Authorization": f"Token {server.tokens[who]}", "Accept": "text/event-stream"}
    if last_id:
        headers["Last-Event-ID"] = last_id
    response = requests.get(f"{server.base}{path}", headers=headers, stream=True, timeout=(5, 10))
    assert response.status_code == 200, response.text
    stream = Stream(response)
    assert stream.next().event == "stream-open"
    return stream


@pytest.fixture(autouse=True)
def _forget_recent_events() -> Iterator[None]:
    """Each test's database starts empty; so must the process's memory of stored events."""
    from metrics.stream.storage import forget_recent

    forget_recent()
    yield
    forget_recent()
