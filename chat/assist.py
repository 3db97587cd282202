"""Free text to a chat worker: a registered, enabled worker with the capability ``chat``.

The message (with the session's recent history) goes to the worker over the worker protocol
(``POST /execute``, kind ``chat`` in ``spec.input``), through the same client as the
dispatcher's (retries, the worker's circuit breaker, its token added, never logged). The
worker streams its reply as ``progress`` events whose ``message`` is the next piece of text;
each piece is handed to ``on_delta`` as it arrives (the consumer forwards them as ``event``
frames) and the whole reply, the result's ``output``, becomes the assistant's message.
"""

from __future__ import annotations

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


def chat_worker() -> Worker | None:
    """The enabled worker with the ``chat`` capability (the first by name), if there is one.

    Capabilities are read alone first: a whole worker row decrypts its token, which costs more
    than the rest of a chat message, and most messages find no chat worker.
    """
    rows = Worker.objects.filter(enabled=True).order_by("name").values_list("pk", "capabilities")
    for pk, capabilities in rows:
        if CAPABILITY in (capabilities or []):
            return Worker.objects.filter(pk=pk).first()
    return None


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
