"""Free text to a chat worker: a registered, enabled worker with the capability ``chat``.

The message (with the session's recent history) goes to the worker over the worker protocol
(``POST /execute``, kind ``chat`` in ``spec.input``), through the same client as the
dispatcher's (retries, the worker's circuit breaker, its token added, never logged). The
worker streams its reply as ``progress`` events whose ``message`` is the next piece of text;
each piece is handed to ``on_delta`` as it arrives (the consumer forwards them as ``event``
frames) and the whole reply, the result's ``output``, becomes the assistant's message.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings

from chat.models import ChatMessage, ChatSession
from tasks.dispatch.breakers import BreakerRegistry
from tasks.dispatch.dispatcher import worker_config
from tasks.dispatch.worker_client.client import WorkerClient
from tasks.dispatch.worker_client.transport import AbortHandle
from tasks.models import Worker

CAPABILITY = "chat"
# Earlier messages of the session sent along with the new one.
HISTORY = 20
_breakers: BreakerRegistry | None = None
# Seconds a chat-worker lookup is reused (see chat_worker).
LOOKUP_TTL_S = 5.0
_lookup: tuple[float, int | None] | None = None  # (when it was read, the worker's pk or None)


def _chat_worker_pk() -> int | None:
    # Capabilities are read alone: a whole worker row decrypts its token, which costs more than
    # the rest of a chat message.
    rows = Worker.objects.filter(enabled=True).order_by("name").values_list("pk", "capabilities")
    return next((pk for pk, capabilities in rows if CAPABILITY in (capabilities or [])), None)


def chat_worker() -> Worker | None:
    """The enabled worker with the ``chat`` capability (the first by name), if there is one.

    Every free-text message asks, and most find none: which worker it is (or that there is
    none) is remembered for :data:`LOOKUP_TTL_S`, and forgotten at once when a worker is saved
    or deleted in this process (registering, enabling, disabling, removing all save). A change
    made by another process is seen within the TTL.
    """
    global _lookup
    now = time.monotonic()
    if _lookup is None or now - _lookup[0] > LOOKUP_TTL_S:
        _lookup = (now, _chat_worker_pk())
    pk = _lookup[1]
    return None if pk is None else Worker.objects.filter(pk=pk, enabled=True).first()


def forget_chat_worker(**_: Any) -> None:
    """Signal receiver: a worker changed, look the chat worker up again."""
    global _lookup
    _lookup = None


def _registry() -> BreakerRegistry:
    global _breakers
    if _breakers is None:
        _breakers = BreakerRegistry(redis_url=settings.REDIS_URL or None)
    return _breakers


def ask(
    worker: Worker, session: ChatSession, text: str, on_delta: Callable[[str], None] | None = None
) -> tuple[str | None, dict[str, Any]]:
    """(the reply, metadata); the reply is None when the worker gave none (metadata says why)."""
    earlier = ChatMessage.objects.filter(session=session).order_by("-seq")[: HISTORY + 1]
    history = [{"role": m.role, "content": m.content} for m in reversed(earlier) if m.content != text][-HISTORY:]

    def on_event(event: dict[str, Any]) -> None:
        piece = event.get("message")
        if on_delta is not None and event.get("type") == "progress" and isinstance(piece, str):
            on_delta(piece)

    outcome = WorkerClient(worker_config(worker), breakers=_registry()).execute(
        task_id=f"chat-{uuid.uuid4()}",
        attempt=1,
        spec={"title": "chat", "input": {"kind": CAPABILITY, "message": text, "history": history}},
        deadline=datetime.now(UTC) + timedelta(seconds=settings.CHAT_WORKER_TIMEOUT_S),
        abort=AbortHandle(),
        on_event=on_event,
    )
    meta: dict[str, Any] = {"command": None, "worker": worker.name}
    result = outcome.result or {}
    if outcome.kind == "result" and result.get("status") == "completed":
        output = result.get("output")
        return (output if isinstance(output, str) else str(output)), meta
    meta["error"] = "worker_failed"
    return None, meta | {"detail": outcome.error or result.get("error", "")}
