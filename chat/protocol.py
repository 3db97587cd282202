"""The chat WebSocket envelope: every frame a JSON object ``{"type": ..., ...}``, checked field by field.

Client → server: ``message`` (``content``, optional ``client_id``), ``history`` (optional
``after``, ``limit``), ``heartbeat``. Server → client: ``message``, ``history``, ``ack``,
``error``, ``heartbeat``, ``event``. A frame that breaks a rule gets an ``error`` frame that
names the problem (``code``, ``detail``, ``field``) and the socket stays open. The whole
protocol, close codes included, is in docs/chat-protocol.md.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from chat.models import ChatMessage

# Close codes (4000-4999 are the application's): see docs/chat-protocol.md.
CLOSE_BAD_REQUEST = 4400
CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_NOT_FOUND = 4404
CLOSE_NOT_ACTIVE = 4409

HISTORY_LIMIT = 500
CLIENT_ID_MAX = 64
CLIENT_TYPES = {
    "message": {"content": str, "client_id": str},
    "history": {"after": int, "limit": int},
    "heartbeat": {},
}
REQUIRED = {"message": {"content"}}


@dataclass
class ProtocolError(Exception):
    code: str
    detail: str
    field: str | None = None

    def frame(self) -> dict[str, Any]:
        frame = {"type": "error", "code": self.code, "detail": self.detail}
        if self.field:
            frame["field"] = self.field
        return frame


def parse(text: str | None, data: bytes | None) -> dict[str, Any]:
    """One client frame, checked; raises :class:`ProtocolError` naming what is wrong."""
    if text is None:
        raise ProtocolError("binary_frame", "Frames are JSON text; binary frames are not accepted.")
    if len(text.encode()) > settings.CHAT_MAX_FRAME_BYTES:
        raise ProtocolError("frame_too_large", f"A frame may have at most {settings.CHAT_MAX_FRAME_BYTES} bytes.")
    try:
        frame = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ProtocolError("invalid_json", f"Not JSON: {exc.msg} at position {exc.pos}.") from None
    except (ValueError, RecursionError) as exc:  # an integer of thousands of digits; nesting too deep
        raise ProtocolError("invalid_json", f"Not JSON this server reads: {str(exc)[:100]}.") from None
    if not isinstance(frame, dict):
        raise ProtocolError("invalid_frame", "A frame is a JSON object with a type.")
    kind = frame.get("type")
    if "type" not in frame:
        raise ProtocolError("missing_field", "The field type is required.", "type")
    if not isinstance(kind, str):
        raise ProtocolError("wrong_type", "type must be a string.", "type")
    if kind not in CLIENT_TYPES:
        raise ProtocolError("unknown_type", f"Unknown type {kind[:40]!r}; one of {', '.join(CLIENT_TYPES)}.", "type")
    fields = CLIENT_TYPES[kind]
    for name in sorted(set(frame) - set(fields) - {"type"}):
        shown = name[:40] if storable(name) else repr(name[:40])
        raise ProtocolError("unknown_field", f"A {kind} frame has no field {shown!r}.", shown)
    for name in sorted(REQUIRED.get(kind, set()) - set(frame)):
        raise ProtocolError("missing_field", f"The field {name} is required in a {kind} frame.", name)
    for name, expected in fields.items():
        if name in frame:
            value = frame[name]
            if not isinstance(value, expected) or isinstance(value, bool):
                raise ProtocolError(
                    "wrong_type", f"{name} must be a {expected.__name__ if expected is not str else 'string'}.", name
                )
    for name in ("content", "client_id"):
        if isinstance(frame.get(name), str) and not storable(frame[name]):
            raise ProtocolError("invalid_value", f"{name} has a NUL character or a lone surrogate.", name)
    if kind == "message":
        content = frame["content"]
        if not content.strip():
            raise ProtocolError("invalid_value", "content may not be blank.", "content")
        if len(content) > settings.CHAT_MAX_CONTENT:
            raise ProtocolError(
                "invalid_value", f"content may have at most {settings.CHAT_MAX_CONTENT} characters.", "content"
            )
        if len(frame.get("client_id", "")) > CLIENT_ID_MAX:
            raise ProtocolError("invalid_value", f"client_id may have at most {CLIENT_ID_MAX} characters.", "client_id")
    if kind == "history":
        if frame.get("after", 0) < 0:
            raise ProtocolError("invalid_value", "after must be 0 or more.", "after")
        if not 1 <= frame.get("limit", 1) <= HISTORY_LIMIT:
            raise ProtocolError("invalid_value", f"limit must be from 1 to {HISTORY_LIMIT}.", "limit")
    return frame


def storable(text: str) -> bool:
    """Text every database and the UTF-8 frames can hold: no NUL, no lone surrogate (JSON allows both)."""
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def message_data(message: ChatMessage) -> dict[str, Any]:
    return {
        "seq": message.seq,
        "role": message.role,
        "content": message.content,
        "metadata": message.metadata,
        "created_at": message.created_at.isoformat().replace("+00:00", "Z"),
    }
