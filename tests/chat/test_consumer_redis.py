"""A Redis stall does not close the chat sockets (with the Redis channel layer configured).

Before: every chat connection also held a blocking receive on the Redis channel layer it never
used; a Redis that stopped answering writes for six seconds made that receive raise, and daphne
closed every chat socket with 1011 (seen once in CI's PostgreSQL + Redis phase under load). The
test runs its own redis-server, so pausing it disturbs no other test.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time

import pytest
import redis
from websockets.sync.client import connect

from tests.metrics.stream.conftest import free_port, server_env, start_server, stop_server

REDIS = shutil.which("redis-server") or "/usr/bin/redis-server"
pytestmark = [
    pytest.mark.skipif(not shutil.which("redis-server"), reason="needs redis-server (apt-get install redis-server)"),
    pytest.mark.timeout(120),
]


@pytest.fixture
def private_redis(tmp_path):
    port = free_port()
    process = subprocess.Popen(
        [REDIS, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=5)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                process.kill()
                raise
            time.sleep(0.05)
    yield f"redis://127.0.0.1:{port}/0", client
    process.terminate()
    process.wait(timeout=10)


def test_a_chat_socket_outlives_a_redis_that_stalls_for_seconds(tmp_path, private_redis):
    url, client = private_redis
    env = server_env(tmp_path) | {"REDIS_URL": url}
    server = start_server(tmp_path, "--no-dispatcher", "--no-worker", env=env)
    try:
        api = server.api("operator")
        session_id = api.post(f"{server.base}/api/v1/chat/session", json={}, timeout=10).json()["session_id"]
        ws_url = server.base.replace("http://", "ws://") + f"/api/v1/chat/ws/{session_id}"
        with connect(ws_url, additional_headers={"Authorization": f"Token {server.tokens['operator']}"}) as ws:
            assert json.loads(ws.recv(timeout=10))["type"] == "history"
            client.execute_command("CLIENT", "PAUSE", "6000", "WRITE")
            time.sleep(7)
            ws.send(json.dumps({"type": "message", "content": "still there?"}))
            frames = [json.loads(ws.recv(timeout=20)) for _ in range(3)]
        assert [f["type"] for f in frames] == ["ack", "message", "message"]
        assert frames[2]["message"]["role"] == "assistant"
    finally:
        stop_server(server)
