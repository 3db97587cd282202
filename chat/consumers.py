"""``WS /api/v1/chat/ws/{session_id}``: one chat session over a WebSocket (Channels, under daphne).

On connect: authenticated (chat/auth.py), the session joined by its owner or an admin, else
accepted and closed at once with a documented code (chat/protocol.py). Then a ``history``
frame: the messages after ``?after=<seq>`` when given (what a reconnecting client missed),
else the latest page. Every frame from the client is checked (chat/protocol.py); a bad one
gets an ``error`` frame and the socket stays open. A ``message`` is persisted before its
``ack`` (which carries its sequence number), then the assistant's reply is computed and
persisted (chat/commands.py), then every message of the session this connection has not sent
yet goes out as ``message`` frames, in sequence order, each once. Messages written elsewhere
(``watch``, another connection of the session, another process) arrive the same way, on a
notification through django-eventstream's delivery (chat/watch.py).

A connection handles its frames one at a time, in order; frames beyond the rate
(``CHAT_RATE_PER_S``, bursts of ``CHAT_RATE_BURST``) get ``rate_limited`` errors.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import parse_qs

from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.utils import timezone
from django_eventstream.views import Listener, get_listener_manager

from chat import commands, services
from chat.models import ChatMessage, SessionStatus
from chat.protocol import (
    CLOSE_BAD_REQUEST,
    CLOSE_FORBIDDEN,
    CLOSE_NOT_ACTIVE,
    CLOSE_NOT_FOUND,
    CLOSE_UNAUTHENTICATED,
    HISTORY_LIMIT,
    ProtocolError,
    message_data,
    parse,
)
from chat.watch import announce, session_channel
from config.errors import NotFound, PermissionDenied
from metrics.stream.views import in_db_thread

logger = logging.getLogger("agency.chat")
AFTER = re.compile(r"[0-9]{1,18}")  # ASCII digits only: str.isdigit() also takes superscripts and other scripts
# Messages and their replies run here, not on the streams' four database threads: a reply may
# wait on a chat worker for up to CHAT_WORKER_TIMEOUT_S, and a few slow ones must not stall
# every connection (and SSE stream) of the process.
REPLY_THREADS = 16
_reply_pool = ThreadPoolExecutor(max_workers=REPLY_THREADS, thread_name_prefix="agency-chat-reply")
# Messages sent on connect when the client names no ``after``.
LATEST_PAGE = 50


def _new_messages(session_id: uuid.UUID, after: int) -> list[dict[str, Any]]:
    rows = ChatMessage.objects.filter(session_id=session_id, seq__gt=after).order_by("seq")[:HISTORY_LIMIT]
    return [message_data(m) for m in rows]


class Bucket:
    """A token bucket: ``rate`` frames a second on average, ``burst`` at once."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst, self.tokens, self.at = rate, burst, float(burst), time.monotonic()

    def take(self) -> float:
        """0 when a frame may pass, else the seconds until one may."""
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate


class ChatConsumer(AsyncWebsocketConsumer):
    # No channel layer: a session's connections hear of new messages through django-eventstream's
    # listeners (across processes through its Redis publish/subscribe), never through groups.
    # With the Redis channel layer each connection would also hold a blocking receive on Redis,
    # and a Redis stall of a few seconds made that receive raise and daphne close every chat
    # socket with 1011 (tests/chat/test_consumer_redis.py).
    channel_layer_alias = None

    session_id: uuid.UUID
    user: Any

    async def connect(self) -> None:
        self.sent = 0
        self.flush_lock = asyncio.Lock()
        self.tasks: list[asyncio.Task] = []
        self.listener: Listener | None = None
        self.bucket = Bucket(settings.CHAT_RATE_PER_S, settings.CHAT_RATE_BURST)
        await self.accept()
        refusal = self.scope.get("chat_refusal")
        self.user = self.scope.get("user")
        if refusal:
            await self._close(CLOSE_UNAUTHENTICATED if refusal[0] == "token" else CLOSE_FORBIDDEN, refusal[1])
            return
        if self.user is None or not self.user.is_authenticated:
            await self._close(CLOSE_UNAUTHENTICATED, "Log in, or send Authorization: Token <key>.")
            return
        try:
            session = await in_db_thread(
                lambda: services.session_get(
                    actor=self.user, session_id=self.scope["url_route"]["kwargs"]["session_id"]
                )
            )
        except NotFound as exc:
            await self._close(CLOSE_NOT_FOUND, exc.message)
            return
        except PermissionDenied as exc:
            await self._close(CLOSE_FORBIDDEN, exc.message)
            return
        if session.status != SessionStatus.ACTIVE:
            await self._close(CLOSE_NOT_ACTIVE, f"The session is {session.status}.")
            return
        self.session, self.session_id = session, session.pk
        ok, after = self._after()
        if not ok:
            await self._close(CLOSE_BAD_REQUEST, "after must be a sequence number (0 or more).")
            return
        # Listen first, then read: nothing written from now on is missed.
        self.listener = Listener()
        self.listener.user_id = self.user.pk
        self.listener.channels = {session_channel(self.session_id)}
        self.listener.assign_loop()
        get_listener_manager().add_listener(self.listener)
        if after is None:
            latest = await in_db_thread(
                lambda: [message_data(m) for m in services.history(session=session, limit=LATEST_PAGE)]
            )
            self.sent = latest[-1]["seq"] if latest else 0
            await self._send({"type": "history", "messages": latest, "last_seq": session.message_seq})
        else:
            self.sent = after
            await self._flush(as_history=True)
        self.tasks = [asyncio.ensure_future(self._follow()), asyncio.ensure_future(self._heartbeats())]

    def _after(self) -> tuple[bool, int | None]:
        """(valid, the ``after`` of the query string or None)."""
        raw = parse_qs(self.scope.get("query_string", b"").decode("latin1")).get("after")
        if raw is None:
            return True, None
        if len(raw) != 1 or not AFTER.fullmatch(raw[0]):
            return False, None
        return True, int(raw[0])

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._release()  # also when a handler raised and disconnect() never ran

    async def disconnect(self, code: int) -> None:
        self._release()

    def _release(self) -> None:
        for task in getattr(self, "tasks", []):
            task.cancel()
        if getattr(self, "listener", None) is not None:
            get_listener_manager().remove_listener(self.listener)
            self.listener = None

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        try:
            await self._receive(text_data, bytes_data)
        except Exception:
            # A bug must not end the connection silently: say so, log it, keep the socket.
            logger.exception("chat frame failed on session %s", getattr(self, "session_id", "?"))
            await self._send({"type": "error", "code": "server_error", "detail": "The frame could not be handled."})

    async def _receive(self, text_data: str | None, bytes_data: bytes | None) -> None:
        wait = self.bucket.take()
        if wait:
            await self._send(
                {
                    "type": "error",
                    "code": "rate_limited",
                    "detail": "Too many frames; slow down.",
                    "retry_after_s": round(wait, 2),
                }
            )
            return
        try:
            frame = parse(text_data, bytes_data)
        except ProtocolError as error:
            await self._send(error.frame())
            return
        kind = frame["type"]
        if kind == "heartbeat":
            await self._send({"type": "heartbeat", "at": timezone.now().isoformat()})
        elif kind == "history":
            after, limit = frame.get("after", 0), frame.get("limit", 100)
            messages = await in_db_thread(lambda: _new_messages(self.session_id, after)[:limit])
            await self._send(
                {"type": "history", "messages": messages, "last_seq": messages[-1]["seq"] if messages else after}
            )
        else:
            await self._message(frame)

    async def _message(self, frame: dict[str, Any]) -> None:
        """Store the user's message, ack it, compute and store the reply: one trip to a thread.

        The ack and a chat worker's reply pieces go out in the order the thread produced them,
        through one queue; the stored pair is then sent as ``message`` frames.
        """
        content, client_id = frame["content"], frame.get("client_id")
        metadata = {"client_id": client_id} if client_id else {}
        loop = asyncio.get_running_loop()
        frames: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        relay = asyncio.ensure_future(self._relay(frames))

        def out(item: dict[str, Any] | None) -> None:
            loop.call_soon_threadsafe(frames.put_nowait, item)

        def post_and_reply() -> tuple[ChatMessage, ChatMessage] | None:
            try:
                posted = services.message_post(
                    actor=self.user, session=self.session, content=content, metadata=metadata
                )
            except (NotFound, PermissionDenied) as exc:
                out({"type": "error", "code": exc.code, "detail": exc.message})
                return None
            except Exception as exc:  # the session closed meanwhile, or the database failed
                code = getattr(exc, "code", "server_error")
                out({"type": "error", "code": code, "detail": getattr(exc, "message", "The message was not saved.")})
                return None
            ack = {"type": "ack", "seq": posted.seq, "created_at": message_data(posted)["created_at"]}
            if client_id:
                ack["client_id"] = client_id
            out(ack)

            def on_delta(piece: str) -> None:
                out({"type": "event", "event": "reply_delta", "in_reply_to": posted.seq, "text": piece})

            return posted, commands.reply_to(actor=self.user, session=self.session, posted=posted, on_delta=on_delta)

        # Replies run on their own threads, not on the streams' four database threads: a reply
        # may wait on a chat worker for up to CHAT_WORKER_TIMEOUT_S.
        try:
            stored = await in_db_thread(post_and_reply, pool=_reply_pool)
        finally:
            out(None)
            await relay
        if stored is None:
            return
        await self._flush(known=list(stored))
        # Other connections of this session (other tabs, other processes) hear of both.
        announce(self.session_id, stored[1].seq)

    async def _relay(self, frames: asyncio.Queue) -> None:
        while (frame := await frames.get()) is not None:
            await self._send(frame)

    async def _flush(self, *, as_history: bool = False, known: list[ChatMessage] | None = None) -> None:
        """Send every message after the last one sent, in order, once.

        ``known``: messages this connection just wrote; when they are exactly the next ones
        (nothing else was written in between), they are sent without reading them back.
        """
        async with self.flush_lock:
            if known and [m.seq for m in known] == list(range(self.sent + 1, self.sent + 1 + len(known))):
                for m in known:
                    await self._send({"type": "message", "message": message_data(m)})
                self.sent = known[-1].seq
                return
            while True:
                after = self.sent
                messages = await in_db_thread(_new_messages, self.session_id, after)
                if as_history:
                    await self._send(
                        {
                            "type": "history",
                            "messages": messages,
                            "last_seq": messages[-1]["seq"] if messages else after,
                        }
                    )
                else:
                    for m in messages:
                        await self._send({"type": "message", "message": m})
                if messages:
                    self.sent = messages[-1]["seq"]
                if len(messages) < HISTORY_LIMIT:
                    return

    async def _follow(self) -> None:
        manager = get_listener_manager()
        listener = self.listener
        while listener is not None:
            await listener.aevent.wait()
            with manager.lock:
                items = listener.channel_items.get(session_channel(self.session_id), [])
                listener.channel_items, listener.overflow = {}, False
                listener.aevent.clear()
            if any(int(item.id) > self.sent for item in items) or not items:
                await self._flush()

    async def _heartbeats(self) -> None:
        while True:
            await asyncio.sleep(settings.CHAT_HEARTBEAT_S)
            await self._send({"type": "heartbeat", "at": timezone.now().isoformat()})

    async def _send(self, frame: dict[str, Any]) -> None:
        # ASCII escapes: a lone surrogate echoed from a client's frame still encodes.
        await self.send(text_data=json.dumps(frame))

    async def _close(self, code: int, detail: str) -> None:
        await self._send({"type": "error", "code": "closed", "close_code": code, "detail": detail})
        await self.close(code=code)
