"""Replay: a client that comes back with ``Last-Event-ID`` gets every missed event, in order, once."""

from __future__ import annotations

import json
import os

import pytest

from tests.metrics.stream.conftest import open_stream, start_server, stop_server

pytestmark = pytest.mark.timeout(120)


def test_a_reconnecting_client_gets_every_missed_change_in_order_and_none_twice(quiet_server) -> None:
    stream = open_stream(quiet_server, "/api/v1/tasks/stream")
    first = quiet_server.create_task("seen live")
    (live,) = stream.take(1, kind="task")
    assert json.loads(live.data)["task_id"] == first["id"]
    stream.close()

    missed = [quiet_server.create_task(f"missed {i}")["id"] for i in range(7)]

    again = open_stream(quiet_server, "/api/v1/tasks/stream", last_id=live.id)
    after = quiet_server.create_task("after the reconnect")["id"]
    events = again.take(8, kind="task")
    again.close()
    got = [json.loads(e.data)["task_id"] for e in events]
    assert got == [*missed, after]
    numbers = [int(e.id.rsplit(":", 1)[1]) for e in events]
    assert numbers == list(range(int(live.id.rsplit(":", 1)[1]) + 1, numbers[0] + 8))
    assert all(json.loads(e.data)["to_state"] == "queued" for e in events)


def test_a_task_stream_replays_the_timeline_after_the_last_seq(quiet_server) -> None:
    task = quiet_server.create_task("one task's timeline")
    api, base = quiet_server.api(), quiet_server.base
    stream = open_stream(quiet_server, f"/api/v1/tasks/stream?task={task['id']}", last_id=f"task-{task['id']}:0")
    (created,) = stream.take(1, kind="event")
    assert json.loads(created.data)["seq"] == 1
    stream.close()

    for action in ("pause", "resume", "cancel"):
        response = api.post(
            f"{base}/api/v1/tasks/{task['id']}/actions", json={"action": action, "reason": "test"}, timeout=10
        )
        assert response.status_code == 200, response.text

    again = open_stream(quiet_server, f"/api/v1/tasks/stream?task={task['id']}", last_id=created.id)
    events = [json.loads(e.data) for e in again.take(3, kind="event")]
    again.close()
    assert [e["seq"] for e in events] == [2, 3, 4]
    assert [e["data"]["to"] for e in events] == ["paused", "queued", "canceled"]


def test_a_new_client_starts_at_the_present(quiet_server) -> None:
    # Publication follows the commit on the publisher's thread: wait until "before" is on the
    # stream (a first client hears it), so that it is in the past when the second one opens.
    earlier = open_stream(quiet_server, "/api/v1/tasks/stream")
    before = quiet_server.create_task("before the client")
    (heard,) = earlier.take(1, kind="task")
    earlier.close()
    assert json.loads(heard.data)["task_id"] == before["id"]
    stream = open_stream(quiet_server, "/api/v1/tasks/stream")
    task = quiet_server.create_task("after the client")
    (event,) = stream.take(1, kind="task")
    stream.close()
    assert json.loads(event.data)["task_id"] == task["id"]


def test_an_id_beyond_the_stream_is_reset_to_the_present(quiet_server) -> None:
    stream = open_stream(quiet_server, "/api/v1/tasks/stream", last_id="tasks:999999")
    reset = stream.next()
    stream.close()
    assert reset.event == "stream-reset"
    assert int(reset.id.rsplit(":", 1)[1]) < 999999


@pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="needs Redis (REDIS_URL)")
def test_with_redis_a_change_made_by_another_process_arrives_live(tmp_path) -> None:
    server = start_server(tmp_path, "--no-dispatcher", "--no-worker")
    try:
        stream = open_stream(server, "/api/v1/tasks/stream")
        server.manage("shell", "--no-imports", "-c", OTHER_PROCESS_CREATES)
        (event,) = stream.take(1, kind="task")
        stream.close()
        change = json.loads(event.data)
        assert change["to_state"] == "queued"
        title = server.api("viewer").get(f"{server.base}/api/v1/tasks/{change['task_id']}", timeout=5).json()["title"]
        assert title == "made elsewhere"
    finally:
        stop_server(server)


OTHER_PROCESS_CREATES = """
from django.contrib.auth.models import User
from tasks import services
spec = {"title": "made elsewhere", "risk_tier": 3, "scope": {"in": ["src/"]},
        "acceptance": [{"id": "A1", "given": "g", "when": "w", "then": "t"}]}
services.task_create(spec=spec, actor=User.objects.get(username="operator"))
"""
