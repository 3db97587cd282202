"""WS /api/v1/chat/ws/{id} through the whole ASGI stack (config.asgi), with WebsocketCommunicator."""

from __future__ import annotations

import asyncio
import functools
import json
import threading

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator

from chat import services
from chat.models import ChatMessage
from chat.watch import process
from config.asgi import application
from tasks.transitions import TaskChanged
from tests.conftest import api_key_for

pytestmark = pytest.mark.django_db(transaction=True)


def async_test(fn):
    """Run an async test on its own event loop (no asyncio plugin needed); fixtures as usual."""

    @functools.wraps(fn)
    def run(*args, **kwargs):
        return asyncio.run(fn(*args, **kwargs))

    return run


def token_header(user) -> list[tuple[bytes, bytes]]:
    key = api_key_for(user)
    return [(b"authorization", f"Token {key}".encode())]


async def connect(user, session_id, query: str = "", headers=None):
    path = f"/api/v1/chat/ws/{session_id}" + (f"?{query}" if query else "")
    hdrs = headers if headers is not None else await sync_to_async(token_header)(user)
    ws = WebsocketCommunicator(application, path, headers=hdrs)
    connected, _ = await ws.connect(timeout=5)
    assert connected
    return ws


async def frame(ws, timeout: float = 5) -> dict:
    return json.loads(await ws.receive_from(timeout=timeout))


async def closed_with(ws) -> tuple[dict, int]:
    error = await frame(ws)
    close = await ws.receive_output(timeout=5)
    assert close["type"] == "websocket.close"
    return error, close["code"]


async def send(ws, content: str, client_id: str | None = None) -> list[dict]:
    """Send one message; its ack, then the message and the reply as frames."""
    payload = {"type": "message", "content": content, **({"client_id": client_id} if client_id else {})}
    await ws.send_to(text_data=json.dumps(payload))
    return [await frame(ws), await frame(ws), await frame(ws)]


@pytest.fixture(autouse=True)
def _local_delivery(monkeypatch):
    """Deliver in this process: each test runs its own event loop, and django-eventstream's Redis
    listener lives on the loop of the first listener of the process (under daphne there is one
    loop for the process's life). Delivery through Redis across processes is tested in
    test_watch_processes.py."""
    from django_eventstream import eventstream

    monkeypatch.setattr(eventstream, "redis_client", None)
    yield
    close_pool_connections()


def close_pool_connections() -> None:
    """Close the database connections the consumer's threads hold (one job per thread of each pool)."""
    from django.db import connections

    from chat import consumers
    from metrics.stream import views

    for pool in (views._db_pool, consumers._reply_pool):
        threads = len(pool._threads)
        if not threads:
            continue
        barrier = threading.Barrier(threads)

        def close(barrier: threading.Barrier = barrier) -> None:
            barrier.wait(timeout=10)  # every thread takes exactly one of these
            connections.close_all()

        for future in [pool.submit(close) for _ in range(threads)]:
            future.result(timeout=15)


@pytest.fixture
def session(operator):
    return services.session_create(actor=operator, title="ops")


@async_test
async def test_five_messages_survive_a_reconnect_each_once_in_order(operator, session):
    ws = await connect(operator, session.pk)
    first = await frame(ws)
    assert first == {"type": "history", "messages": [], "last_seq": 0}
    for i in range(5):
        ack, mine, reply = await send(ws, f"note {i}", client_id=f"c{i}")
        assert ack["type"] == "ack"
        assert ack["client_id"] == f"c{i}"
        assert ack["seq"] == 2 * i + 1
        assert mine["message"]["seq"] == ack["seq"]
        assert mine["message"]["role"] == "user"
        assert reply["message"]["role"] == "assistant"
        assert reply["message"]["metadata"]["in_reply_to"] == ack["seq"]
    await ws.disconnect()

    again = await connect(operator, session.pk, "after=0")
    history = await frame(again)
    assert history["type"] == "history"
    seqs = [m["seq"] for m in history["messages"]]
    assert seqs == list(range(1, 11))
    assert [m["content"] for m in history["messages"] if m["role"] == "user"] == [f"note {i}" for i in range(5)]
    await again.disconnect()

    # From the middle: only what came after.
    later = await connect(operator, session.pk, "after=6")
    assert [m["seq"] for m in (await frame(later))["messages"]] == [7, 8, 9, 10]
    await later.disconnect()
    assert await sync_to_async(ChatMessage.objects.filter(session=session).count)() == 10


@async_test
async def test_anonymous_and_bad_tokens_are_closed_4401(operator, session):
    ws = await connect(operator, session.pk, headers=[])
    error, code = await closed_with(ws)
    assert code == 4401
    assert error["close_code"] == 4401
    ws = await connect(operator, session.pk, headers=[(b"authorization", b"Token nope")])
    assert (await closed_with(ws))[1] == 4401


@async_test
async def test_another_users_session_is_refused_4403_and_an_admin_may_join(operator, viewer, admin_user, session):
    ws = await connect(viewer, session.pk)
    error, code = await closed_with(ws)
    assert code == 4403
    assert "another user" in error["detail"]
    admin = await connect(admin_user, session.pk)
    assert (await frame(admin))["type"] == "history"
    await admin.disconnect()


@async_test
async def test_unknown_and_closed_sessions_and_a_bad_after(operator, session):
    ws = await connect(operator, "00000000-0000-4000-8000-000000000000")
    assert (await closed_with(ws))[1] == 4404
    ws = await connect(operator, session.pk, "after=x")
    assert (await closed_with(ws))[1] == 4400
    await sync_to_async(services.session_close)(actor=operator, session_id=session.pk)
    ws = await connect(operator, session.pk)
    assert (await closed_with(ws))[1] == 4409


@async_test
async def test_a_foreign_origin_is_refused_even_with_a_token(operator, session):
    headers = [*(await sync_to_async(token_header)(operator)), (b"origin", b"http://evil.example")]
    ws = await connect(operator, session.pk, headers=headers)
    error, code = await closed_with(ws)
    assert code == 4403
    assert "Origin" in error["detail"]


@pytest.mark.parametrize(
    ("raw", "code", "field"),
    [
        ("not json", "invalid_json", None),
        ("[1, 2]", "invalid_frame", None),
        ('{"content": "hi"}', "missing_field", "type"),
        ('{"type": 3}', "wrong_type", "type"),
        ('{"type": "shout"}', "unknown_type", "type"),
        ('{"type": "message"}', "missing_field", "content"),
        ('{"type": "message", "content": 5}', "wrong_type", "content"),
        ('{"type": "message", "content": "  "}', "invalid_value", "content"),
        ('{"type": "message", "content": "hi", "extra": 1}', "unknown_field", "extra"),
        ('{"type": "history", "after": -1}', "invalid_value", "after"),
        ('{"type": "history", "limit": true}', "wrong_type", "limit"),
        ('{"type": "message", "content": "' + "x" * 20_000 + '"}', "frame_too_large", None),
        ("[" * 5000 + "]" * 5000, "invalid_json", None),
        ('{"type": "history", "after": ' + "9" * 5000 + "}", "invalid_json", None),
        ('{"type": "message", "content": "a\\u0000b"}', "invalid_value", "content"),
        ('{"type": "message", "content": "\\ud800"}', "invalid_value", "content"),
        ('{"type": "message", "content": "hi", "client_id": "\\udfff"}', "invalid_value", "client_id"),
    ],
)
@async_test
async def test_a_bad_frame_gets_an_error_naming_it_and_the_socket_stays_usable(operator, session, raw, code, field):
    ws = await connect(operator, session.pk)
    await frame(ws)
    await ws.send_to(text_data=raw)
    error = await frame(ws)
    assert error["type"] == "error"
    assert error["code"] == code
    assert error.get("field") == field
    ack, _, _ = await send(ws, "still here")
    assert ack["type"] == "ack"
    assert ack["seq"] == 1
    await ws.disconnect()


@async_test
async def test_binary_frames_are_refused(operator, session):
    ws = await connect(operator, session.pk)
    await frame(ws)
    await ws.send_to(bytes_data=b"\x00\x01")
    assert (await frame(ws))["code"] == "binary_frame"
    await ws.disconnect()


@async_test
async def test_too_frequent_frames_are_rate_limited_then_pass_again(operator, session, settings):
    settings.CHAT_RATE_BURST = 3
    settings.CHAT_RATE_PER_S = 20.0
    ws = await connect(operator, session.pk)
    await frame(ws)
    for _ in range(5):
        await ws.send_to(text_data='{"type": "heartbeat"}')
    answers = [await frame(ws) for _ in range(5)]
    assert [a["type"] for a in answers[:3]] == ["heartbeat"] * 3
    assert [a["code"] for a in answers[3:]] == ["rate_limited"] * 2
    assert answers[3]["retry_after_s"] > 0
    await asyncio.sleep(0.2)
    await ws.send_to(text_data='{"type": "heartbeat"}')
    assert (await frame(ws))["type"] == "heartbeat"
    await ws.disconnect()


@async_test
async def test_a_watched_tasks_change_arrives_as_a_system_message(operator, session, make_task):
    task = await sync_to_async(make_task)(title="Watched live")
    ws = await connect(operator, session.pk)
    await frame(ws)
    _ack, _, reply = await send(ws, f"watch {str(task.pk)[:8]}")
    assert "Watching" in reply["message"]["content"]

    # What the after-commit publication does in the process that made the change.
    def publish() -> None:
        process([([TaskChanged(str(task.pk), 2, "queued", "running", "claim")], [])])

    worker = threading.Thread(target=publish)
    await sync_to_async(worker.start)()
    await sync_to_async(worker.join)()
    arrived = await frame(ws)
    assert arrived["type"] == "message"
    assert arrived["message"]["role"] == "system"
    assert "queued → running" in arrived["message"]["content"]
    assert arrived["message"]["seq"] == 3
    await ws.disconnect()


@async_test
async def test_a_session_closed_while_connected_refuses_new_messages_with_an_error_frame(operator, session):
    ws = await connect(operator, session.pk)
    await frame(ws)
    await sync_to_async(services.session_close)(actor=operator, session_id=session.pk)
    await ws.send_to(text_data=json.dumps({"type": "message", "content": "anyone?"}))
    error = await frame(ws)
    assert error["type"] == "error"
    assert error["code"] == "session_not_active"
    assert "closed" in error["detail"]
    await ws.send_to(text_data='{"type": "heartbeat"}')
    assert (await frame(ws))["type"] == "heartbeat"
    assert await sync_to_async(ChatMessage.objects.filter(session=session).count)() == 0
    await ws.disconnect()


@async_test
async def test_a_malformed_session_id_is_closed_4404_and_another_path_refused_at_the_handshake(operator):
    ws = await connect(operator, "not-a-uuid")
    assert (await closed_with(ws))[1] == 4404
    headers = await sync_to_async(token_header)(operator)
    other = WebsocketCommunicator(application, "/api/v1/elsewhere", headers=headers)
    connected, _ = await other.connect(timeout=5)
    assert not connected


@async_test
async def test_an_after_of_non_ascii_digits_is_closed_4400(operator, session):
    ws = await connect(operator, session.pk, "after=%C2%B2")
    assert (await closed_with(ws))[1] == 4400


@async_test
async def test_a_field_name_with_a_lone_surrogate_gets_an_error_frame_and_the_socket_lives(operator, session):
    ws = await connect(operator, session.pk)
    await frame(ws)
    await ws.send_to(text_data='{"type": "heartbeat", "\\ud800": 1}')
    error = await frame(ws)
    assert error["code"] == "unknown_field"
    await ws.send_to(text_data='{"type": "heartbeat"}')
    assert (await frame(ws))["type"] == "heartbeat"
    await ws.disconnect()
