"""The SSE endpoints: ``GET /api/v1/tasks/stream`` (``?task=<id>`` for one) and ``GET /api/v1/metrics/stream``.

A request is checked like any API request before a stream opens (:func:`check`): token or
session, the viewer role (through the channel manager's predicate), known query
parameters, a valid ``Last-Event-ID`` (header, or ``lastEventId`` for clients that cannot
set headers); errors are JSON naming the field at fault. Then :func:`events` streams with
django-eventstream's listener manager and storage:

1. register the listener first, so nothing published from then on is missed;
2. replay from storage everything after the client's last id, in pages, in order;
3. wait for live events; each one is sent only if it is the next number on the channel.
   One already sent (it was read from storage meanwhile) is skipped; a gap (an event of
   another process overtaken on the way) or an overflowing queue sends the stream back to
   storage. Numbers are consecutive per channel, so no event is sent twice or out of order.

A new client without an id starts at the present (``stream-open`` carries that id); on the
metrics stream it first gets the latest snapshot. An id older than what is kept gets
``stream-reset`` with the current id.

Two doors, one path: under daphne the streams are served by :class:`StreamApp`, routed in
``config/asgi.py`` ahead of Django's handler. Django's handler keeps a thread (and with it
a database connection) for every request until its response ends, which for a stream is
as long as the client stays: 1,000 clients were 1,000 threads, 314 KiB each, and 13 ms to
open each (docs/performance.md). The app checks a request on a small pool of database
threads and then streams from the event loop alone. The Django views below serve the same
check and stream where no ASGI router stands in front (the URL names, WSGI).
"""

from __future__ import annotations

import asyncio
import io
import uuid
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import import_module
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user
from django.core.handlers.asgi import ASGIRequest
from django.db import connections
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt
from django_eventstream.storage import EventDoesNotExist
from django_eventstream.utils import get_channelmanager, get_storage, make_id, sse_encode_event
from django_eventstream.views import Listener, get_listener_manager
from rest_framework.exceptions import AuthenticationFailed

from metrics.stream.channels import METRICS, TASKS, task_channel
from security.tokens import ApiTokenAuthentication
from tasks.models import Task

# Seconds between keep-alive comments on an idle stream (proxies drop silent connections).
KEEPALIVE_S = 15.0
# Events read from storage per query while replaying.
PAGE = 100
# Threads that check requests and read storage for every stream of the process.
DB_THREADS = 4
STREAM_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}

_db_pool = ThreadPoolExecutor(max_workers=DB_THREADS, thread_name_prefix="agency-stream-db")


async def in_db_thread(fn: Callable[..., Any], *args: Any, pool: ThreadPoolExecutor | None = None) -> Any:
    """Run ``fn`` on the streams' database threads, or on ``pool`` (each keeps its connection between calls)."""

    def call() -> Any:
        try:
            return fn(*args)
        except Exception:
            for conn in connections.all(initialized_only=True):
                conn.close()  # a broken connection is not reused by the next call
            raise

    return await asyncio.get_running_loop().run_in_executor(pool or _db_pool, call)


class Refused(Exception):
    def __init__(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        self.status, self.body, self.headers = status, body, headers or {}

    def response(self) -> JsonResponse:
        response = JsonResponse(self.body, status=self.status)
        for header, value in self.headers.items():
            response[header] = value
        return response


@dataclass(frozen=True)
class Opened:
    channel: str
    last_id: int | None
    user_id: Any
    replay_latest: bool


@dataclass(frozen=True)
class Kind:
    allowed: frozenset[str]
    channel: Callable[[HttpRequest], str]
    replay_latest: bool


def _task_channel(request: HttpRequest) -> str:
    raw = request.GET.get("task")
    if raw is None:
        return TASKS
    try:
        task_id = uuid.UUID(raw)
    except ValueError:
        raise Refused(400, {"task": ["Must be a valid UUID."]}) from None
    if not Task.objects.filter(pk=task_id).exists():
        raise Refused(404, {"detail": "No such task.", "code": "not_found"})
    return task_channel(task_id)


TASKS_KIND = Kind(frozenset({"task", "lastEventId"}), _task_channel, replay_latest=False)
METRICS_KIND = Kind(frozenset({"lastEventId"}), lambda request: METRICS, replay_latest=True)
KINDS = {"/api/v1/tasks/stream": TASKS_KIND, "/api/v1/metrics/stream": METRICS_KIND}


def _user(request: HttpRequest) -> Any:
    """The token's user (scripts), else the session's (browsers); 401 for a bad token."""
    try:
        found = ApiTokenAuthentication().authenticate(request)
    except AuthenticationFailed as exc:
        body = {"detail": str(exc.detail), "code": "authentication_failed"}
        raise Refused(401, body, {"WWW-Authenticate": "Token"}) from None
    return found[0] if found else request.user


def _last_id(request: HttpRequest, channel: str) -> int | None:
    header = request.META.get("HTTP_LAST_EVENT_ID")
    raw = header or request.GET.get("lastEventId") or ""
    if not raw:
        return None
    field = "Last-Event-ID" if header else "lastEventId"
    # django-eventstream's ids: "<channel>:<n>" pairs, comma-separated (one pair on our streams).
    for part in raw.split(","):
        name, sep, number = part.rpartition(":")
        if not sep or not number.isdigit() or len(number) > 18:
            raise Refused(400, {field: [f"Expected <channel>:<number>, got {raw[:80]!r}."]})
        if name == channel:
            return int(number)
    return None


def check(request: HttpRequest, kind: Kind) -> Opened:
    """Everything a stream request must pass before it opens; raises :class:`Refused`."""
    if request.method != "GET":
        body = {"detail": f'Method "{request.method}" not allowed.', "code": "method_not_allowed"}
        raise Refused(405, body, {"Allow": "GET"})
    user = _user(request)
    if not user.is_authenticated:
        body = {"detail": "Authentication credentials were not provided.", "code": "not_authenticated"}
        raise Refused(401, body, {"WWW-Authenticate": "Token"})
    unknown = sorted(set(request.GET) - kind.allowed)
    if unknown:
        raise Refused(400, {name: ["Unknown parameter."] for name in unknown})
    channel = kind.channel(request)
    if not get_channelmanager().can_read_channel(user, channel):
        raise Refused(403, {"detail": "You need the viewer role.", "code": "permission_denied"})
    return Opened(channel, _last_id(request, channel), user.pk, kind.replay_latest)


def _encode(channel: str, event: Any) -> str:
    # Every listener of a channel gets the same Event object: encode it once for all of them.
    text = getattr(event, "_sse_text", None)
    if text is None:
        text = sse_encode_event(event.type, event.data, event_id=make_id({channel: event.id}))
        event._sse_text = text
    return text


async def events(opened: Opened) -> AsyncIterator[str]:
    """The stream's text, chunk by chunk (see the module docstring)."""
    channel, last_id = opened.channel, opened.last_id
    manager = get_listener_manager()
    storage = get_storage()
    listener = Listener()
    listener.user_id = opened.user_id
    listener.channels = {channel}
    listener.assign_loop()
    manager.add_listener(listener)
    try:
        if last_id is None:
            current = await in_db_thread(storage.get_current_id, channel)
            last_id = current - 1 if opened.replay_latest and current > 0 else current
        # Padding first: some browsers and proxies hold back the first 2 KiB of a stream.
        # stream-open carries the id the stream starts from, so a client that has heard no
        # event yet still reconnects from there and misses nothing of a first cut.
        opening = sse_encode_event("stream-open", "", event_id=make_id({channel: last_id}))
        yield ":" + " " * 2048 + "\n\n" + opening
        from_storage = True
        while True:
            if from_storage:
                with manager.lock:  # what arrives from now on is checked against what we read
                    listener.channel_items, listener.overflow = {}, False
                    listener.aevent.clear()
                try:
                    stored = await in_db_thread(storage.get_events, channel, last_id, PAGE)
                except EventDoesNotExist as gone:
                    last_id = int(gone.current_id)
                    reset = {"channels": [channel]}
                    yield sse_encode_event(
                        "stream-reset", reset, event_id=make_id({channel: last_id}), json_encode=True
                    )
                    continue
                if stored:
                    last_id = int(stored[-1].id)
                    yield "".join(_encode(channel, e) for e in stored)
                if len(stored) >= PAGE:
                    continue
                from_storage = False
            try:
                await asyncio.wait_for(listener.aevent.wait(), timeout=KEEPALIVE_S)
            except TimeoutError:
                yield ": keep-alive\n\n"
                continue
            with manager.lock:
                items = listener.channel_items.get(channel, [])
                overflow, error = listener.overflow, listener.error
                listener.channel_items, listener.overflow = {}, False
                listener.aevent.clear()
            if error:
                yield sse_encode_event("stream-error", error, json_encode=True)
                return
            if overflow:
                from_storage = True
                continue
            body = []
            for item in items:
                number = int(item.id)
                if number <= last_id:
                    continue  # already sent from storage
                if number != last_id + 1:
                    from_storage = True  # a gap: storage has them, in order
                    break
                body.append(_encode(channel, item))
                last_id = number
            if body:
                yield "".join(body)
    finally:
        manager.remove_listener(listener)


def _django_view(kind: Kind) -> Callable[[HttpRequest], HttpResponse]:
    # csrf_exempt: a stream changes nothing; without it an unsafe method would get CSRF's 403
    # before the method check's 405 (as on /healthz).
    @csrf_exempt
    def view(request: HttpRequest) -> HttpResponse:
        try:
            opened = check(request, kind)
        except Refused as refused:
            return refused.response()
        response = StreamingHttpResponse(events(opened))
        for header, value in STREAM_HEADERS.items():
            response[header] = value
        return response

    return view


tasks_stream = _django_view(TASKS_KIND)
tasks_stream.__doc__ = "Every task's state changes; with ``?task=<id>``, every timeline entry of that task."
metrics_stream = _django_view(METRICS_KIND)
metrics_stream.__doc__ = "A KPI snapshot every ``AGENCY_KPI_INTERVAL_S`` seconds; the latest one first."


def _asgi_check(request: ASGIRequest, kind: Kind) -> Opened | Refused:
    """:func:`check` for a request that went through no middleware: the session is read here."""
    engine = import_module(settings.SESSION_ENGINE)
    request.session = engine.SessionStore(request.COOKIES.get(settings.SESSION_COOKIE_NAME))
    request.user = get_user(request)
    try:
        return check(request, kind)
    except Refused as refused:
        return refused


class StreamApp:
    """The ASGI app of the two stream paths (config/asgi.py routes them here)."""

    async def __call__(self, scope: dict[str, Any], receive: Callable, send: Callable) -> None:
        kind = KINDS[scope["path"]]
        result = await in_db_thread(_asgi_check, ASGIRequest(scope, io.BytesIO()), kind)
        if isinstance(result, Refused):
            response = result.response()
            headers = [(k.encode(), v.encode()) for k, v in response.items()]
            await send({"type": "http.response.start", "status": response.status_code, "headers": headers})
            await send({"type": "http.response.body", "body": response.content})
            return
        headers = [(k.encode(), v.encode()) for k, v in STREAM_HEADERS.items()]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        stream = asyncio.ensure_future(self._stream(result, send))
        gone = asyncio.ensure_future(self._disconnected(receive))
        try:
            await asyncio.wait({stream, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (stream, gone):
                task.cancel()
            await asyncio.gather(stream, gone, return_exceptions=True)

    @staticmethod
    async def _stream(opened: Opened, send: Callable) -> None:
        chunks = events(opened)
        try:
            async for chunk in chunks:
                await send({"type": "http.response.body", "body": chunk.encode(), "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        finally:
            await chunks.aclose()

    @staticmethod
    async def _disconnected(receive: Callable) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
