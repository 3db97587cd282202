"""Health checks that touch each dependency for real and time it."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from asgiref.sync import async_to_sync
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import connection

from security import crypto, keystore
from tasks.dispatch import fleet

STARTED_AT = time.monotonic()
LAYER_TIMEOUT_S = 1.0

HEALTHY = "healthy"
DEGRADED = "degraded"
UNHEALTHY = "unhealthy"
NOT_CONFIGURED = "not_configured"


def _timed(check) -> dict[str, Any]:
    start = time.perf_counter()
    try:
        detail = check() or {}
    except Exception as exc:  # any failure of a dependency is reported, not raised
        return {
            "status": UNHEALTHY,
            "error": f"{type(exc).__name__}: {exc}"[:300],
            "latency_ms": round((time.perf_counter() - start) * 1000, 2),
        }
    return {"status": HEALTHY, "latency_ms": round((time.perf_counter() - start) * 1000, 2), **detail}


def _from_database(summary) -> dict[str, Any]:
    try:
        return summary()
    except Exception as exc:  # reported as the component's state, like the other checks
        return {"status": UNHEALTHY, "error": f"{type(exc).__name__}: {exc}"[:300]}


def check_database() -> dict[str, Any]:
    def probe() -> dict[str, Any]:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
        return {"vendor": connection.vendor}

    return _timed(probe)


async def _layer_roundtrip(layer) -> None:
    channel = await layer.new_channel("health.")
    token = uuid.uuid4().hex
    await layer.send(channel, {"type": "health.ping", "token": token})
    # A stalled layer must make health answer "unhealthy", not hang the request.
    message = await asyncio.wait_for(layer.receive(channel), timeout=LAYER_TIMEOUT_S)
    if message.get("token") != token:
        raise RuntimeError("channel layer returned a different message")


def check_channel_layer() -> dict[str, Any]:
    layer = get_channel_layer()
    if layer is None:
        return {"status": NOT_CONFIGURED}

    def probe() -> dict[str, Any]:
        async_to_sync(_layer_roundtrip)(layer)
        return {"backend": type(layer).__name__}

    return _timed(probe)


class EchoConsumer(AsyncWebsocketConsumer):
    """The probe's WebSocket consumer: echoes a frame through a channel-layer group.

    Not routed anywhere: :func:`check_websocket` drives it in-process, as daphne drives the
    chat consumer (handshake, frames, the consumer's channel and a group on the layer).
    """

    async def connect(self) -> None:
        self.group = f"health-{uuid.uuid4().hex}"
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        await self.channel_layer.group_send(self.group, {"type": "health.echo", "text": text_data})

    async def health_echo(self, event: dict[str, Any]) -> None:
        await self.send(text_data=event["text"])

    async def disconnect(self, code: int) -> None:
        await self.channel_layer.group_discard(self.group, self.channel_name)


async def _websocket_roundtrip() -> None:
    from channels.testing import WebsocketCommunicator

    communicator = WebsocketCommunicator(EchoConsumer.as_asgi(), "/health/ws")
    try:
        connected, _ = await communicator.connect(timeout=LAYER_TIMEOUT_S)
        if not connected:
            raise RuntimeError("the WebSocket handshake was refused")
        token = uuid.uuid4().hex
        await communicator.send_to(text_data=token)
        try:
            echoed = await communicator.receive_from(timeout=LAYER_TIMEOUT_S)
        except (TimeoutError, asyncio.CancelledError):
            raise TimeoutError(f"no echo within {LAYER_TIMEOUT_S} s") from None
        if echoed != token:
            raise RuntimeError("the WebSocket echoed a different frame")
    finally:
        # Tearing a stuck consumer down cancels it; that is the probe's business, not the caller's.
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await communicator.disconnect(timeout=LAYER_TIMEOUT_S)


def check_websocket() -> dict[str, Any]:
    """A real round trip of a WebSocket frame: handshake, a consumer, a channel-layer group, the echo."""
    if get_channel_layer() is None:
        return {"status": NOT_CONFIGURED}

    def probe() -> dict[str, Any]:
        # On a thread and loop of its own: Channels' consumer machinery closes "old" database
        # connections of the thread it calls back into, which must not be this request's.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="health-websocket") as pool:
            pool.submit(asyncio.run, _websocket_roundtrip()).result(timeout=LAYER_TIMEOUT_S * 4)
        return {}

    return _timed(probe)


# The keystore component is read at most this often: a viewer polling /api/health (or the
# pages that show it) must not turn into a read of OpenBao per request.
KEYSTORE_PROBE_TTL_S = 10.0
_keystore_probe: tuple[object, float, dict[str, Any]] | None = None


def check_keystore() -> dict[str, Any]:
    """The keystore component, cached for a few seconds per configured provider."""
    global _keystore_probe
    try:
        source = keystore.provider()
    except keystore.KeystoreError as exc:
        return {"status": UNHEALTHY, "error": str(exc)[:300]}
    cached = _keystore_probe
    if cached is not None and cached[0] is source and time.monotonic() - cached[1] < KEYSTORE_PROBE_TTL_S:
        return cached[2]
    result = _check_keystore()
    _keystore_probe = (source, time.monotonic(), result)
    return result


def _check_keystore() -> dict[str, Any]:
    """A real read of the master keys from the configured provider (a probe: not audited).

    Degraded when the key this process encrypts under is not among the keystore's keys (the
    keystore was changed under it: what it writes now only this process could read), and when
    a stored secret opens under no key (a worker left out of routing for it).
    """

    def probe() -> dict[str, Any]:
        detail, keys = keystore.probe()
        if not crypto.primary_in(keys):
            return {**detail, "status": DEGRADED, "error": "this process encrypts under a key the keystore lacks"}
        lost = crypto.unreadable(keys)
        if lost:
            names = ", ".join(lost[:5])
            return {**detail, "status": DEGRADED, "error": f"{len(lost)} stored secret(s) open under no key: {names}"}
        return detail

    return _timed(probe)


def system_health() -> dict[str, Any]:
    components = {
        "database": check_database(),
        "channel_layer": check_channel_layer(),
        "websocket": check_websocket(),
    }
    if components["database"]["status"] == HEALTHY:
        components["dispatcher"] = _from_database(fleet.dispatchers_summary)
        components["workers"] = _from_database(fleet.workers_summary)
    else:
        components["dispatcher"] = components["workers"] = {"status": UNHEALTHY, "error": "database unavailable"}
    components["keystore"] = check_keystore()
    statuses = {c["status"] for c in components.values()}
    if UNHEALTHY in statuses:
        overall = UNHEALTHY
    elif DEGRADED in statuses:
        overall = DEGRADED
    else:
        overall = HEALTHY
    return {
        "status": overall,
        "version": settings.APP_VERSION,
        "uptime_s": round(time.monotonic() - STARTED_AT, 1),
        "components": components,
    }
