"""Chat against a real `manage.py serve` (daphne, dispatcher, reference worker) with a real WebSocket client."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.browser.support import AgencyServer

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[AgencyServer]:
    agency = AgencyServer(data_dir=tmp_path_factory.mktemp("chat-server"))
    agency.start()
    try:
        yield agency
    finally:
        agency.stop()


def open_socket(server: AgencyServer, role: str, session_id: str, query: str = ""):
    url = f"ws://127.0.0.1:{server.port}/api/v1/chat/ws/{session_id}" + (f"?{query}" if query else "")
    headers = {"Authorization": f"Token {server.users[role]['token']}"}
    return connect(url, additional_headers=headers, open_timeout=10, close_timeout=5)


def receive(ws) -> dict:
    return json.loads(ws.recv(timeout=10))


def start_session(server: AgencyServer, role: str = "operator") -> str:
    r = server.api(role).post(f"{server.url}/api/v1/chat/session", json={"title": "e2e"}, timeout=10)
    assert r.status_code == 201, r.text
    assert r.json()["websocket_url"].endswith(f"/api/v1/chat/ws/{r.json()['session_id']}")
    return r.json()["session_id"]


def say(ws, text: str) -> dict:
    """Send a message; returns the assistant's reply (after the ack and the echo of ours)."""
    ws.send(json.dumps({"type": "message", "content": text}))
    ack = receive(ws)
    assert ack["type"] == "ack", ack
    mine = receive(ws)
    assert mine["message"]["seq"] == ack["seq"]
    reply = receive(ws)
    assert reply["message"]["role"] == "assistant", reply
    return reply["message"]


def test_five_messages_and_their_replies_come_back_once_each_in_order_after_a_reconnect(server):
    session_id = start_session(server)
    with open_socket(server, "operator", session_id) as ws:
        assert receive(ws)["type"] == "history"
        for i in range(5):
            say(ws, f"note {i}")
    with open_socket(server, "operator", session_id, "after=0") as ws:
        history = receive(ws)
    seqs = [m["seq"] for m in history["messages"]]
    assert seqs == list(range(1, 11))
    assert [m["role"] for m in history["messages"]] == ["user", "assistant"] * 5
    assert [m["content"] for m in history["messages"][::2]] == [f"note {i}" for i in range(5)]
    # The REST history agrees.
    r = server.api("operator").get(f"{server.url}/api/v1/chat/session/{session_id}", timeout=10)
    assert [m["seq"] for m in r.json()["messages"]] == seqs


def test_a_bad_frame_gets_an_error_and_the_socket_stays_usable(server):
    session_id = start_session(server)
    with open_socket(server, "operator", session_id) as ws:
        receive(ws)
        ws.send("{not json")
        assert receive(ws)["code"] == "invalid_json"
        ws.send(json.dumps({"type": "message", "content": "x" * 20_000}))
        assert receive(ws)["code"] == "frame_too_large"
        assert "Commands" in say(ws, "help")["content"]


def test_another_users_session_is_closed_with_4403(server):
    session_id = start_session(server, "operator")
    with open_socket(server, "viewer", session_id) as ws:
        error = receive(ws)
        assert error["close_code"] == 4403
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 4403


def test_cancel_typed_in_chat_cancels_a_running_sleep_task_and_the_audit_names_the_user(server):
    task = server.create_task(title="Sleep for the chat", input={"kind": "sleep", "seconds": 60, "interval_s": 0.5})
    server.wait_for_state(task["id"], "running")
    session_id = start_session(server)
    with open_socket(server, "operator", session_id) as ws:
        receive(ws)
        reply = say(ws, f"cancel {task['id'][:8]} from the chat")
        assert "cancel requested" in reply["content"], reply
    final = server.wait_for_state(task["id"], "canceled")
    assert final["state"] == "canceled"

    def actors(action: str) -> list[str]:
        params = {"action": action, "resource_type": "task", "resource_id": task["id"]}
        r = server.api("operator").get(f"{server.url}/api/v1/audit", params=params, timeout=10)
        return [record["actor"] for record in r.json()["results"]]

    # The cancel is the operator's (the same user who created the task through the API).
    (creator,) = actors("task.create")
    assert creator.startswith("user:")
    assert actors("task.cancel") == [creator]


def test_a_viewer_typing_cancel_is_refused_and_the_task_runs_on(server):
    task = server.create_task(
        title="Not the viewer's to stop", input={"kind": "sleep", "seconds": 3, "interval_s": 0.5}
    )
    session_id = start_session(server, "viewer")
    with open_socket(server, "viewer", session_id) as ws:
        receive(ws)
        reply = say(ws, f"cancel {task['id']}")
    assert reply["metadata"]["error"] == "permission_denied"
    assert server.wait_for_state(task["id"], "completed")["state"] == "completed"


def test_watch_reports_the_task_until_it_ends(server):
    session_id = start_session(server)
    task = server.create_task(title="Watch me", input={"kind": "sleep", "seconds": 2, "interval_s": 0.5})
    with open_socket(server, "operator", session_id) as ws:
        receive(ws)
        say(ws, f"watch {task['id']}")
        states = []
        while not states or states[-1] not in ("completed", "failed", "canceled"):
            frame = receive(ws)
            if frame["type"] == "message" and frame["message"]["role"] == "system":
                states.append(frame["message"]["metadata"]["to_state"])
    assert states[-1] == "completed"


def test_free_text_goes_to_a_chat_worker_and_its_reply_streams_back(server):
    from tasks.reference_worker.kinds import chat_reply
    from tests.tasks.conftest import WORKER_TOKEN, reference_worker_process

    with reference_worker_process() as worker:
        admin = server.api("admin")
        body = {"name": "chatty", "base_url": worker.url, "token": WORKER_TOKEN, "capabilities": ["chat"]}
        r = admin.post(f"{server.url}/api/v1/workers", json=body, timeout=10)
        assert r.status_code == 201, r.text
        try:
            session_id = start_session(server)
            with open_socket(server, "operator", session_id) as ws:
                receive(ws)
                ws.send(json.dumps({"type": "message", "content": "hello there"}))
                assert receive(ws)["type"] == "ack"
                pieces, frame = [], receive(ws)
                while frame["type"] == "event":
                    assert frame["event"] == "reply_delta"
                    assert frame["in_reply_to"] == 1
                    pieces.append(frame["text"])
                    frame = receive(ws)
                assert frame["message"]["role"] == "user"
                reply = receive(ws)["message"]
            assert len(pieces) > 3  # it came in pieces, as they streamed
            assert reply["role"] == "assistant"
            assert reply["metadata"]["worker"] == "chatty"
            assert reply["content"] == "".join(pieces) == chat_reply("hello there", [])
            # The worker was asked once over the worker protocol, and it ran the work.
            (call,) = [e for e in worker.log() if e.get("path") == "/execute"]
            assert call["task_id"].startswith("chat-")
            assert (call["outcome"], call["result_status"]) == ("executed", "completed")
        finally:
            admin.delete(f"{server.url}/api/v1/workers/chatty", timeout=10)
