"""Chat sessions and messages: who may open, join, post, close; messages numbered per session.

Any user with the viewer role may chat (a chat changes no task by itself); the commands a
message carries go through the task services with the same user, so roles and audit apply
there (a viewer's ``cancel`` is refused by ``task_cancel``). A session is its owner's; an
admin may join it too. A session without a message for ``CHAT_SESSION_TTL_S`` expires.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from chat.models import ChatMessage, ChatSession, ChatWatch, MessageRole, SessionStatus
from config.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from security import roles
from security.principals import require

TITLE_MAX = ChatSession._meta.get_field("title").max_length


def _ttl() -> timedelta:
    return timedelta(seconds=settings.CHAT_SESSION_TTL_S)


def _user(actor: Any, what: str) -> Any:
    acting = require(actor, roles.can_view, what)
    user = acting.user_or_none()
    if user is None:
        raise PermissionDenied("Only a signed-in user chats.")
    return user


def session_create(*, actor: Any, title: str = "") -> ChatSession:
    user = _user(actor, "start a chat")
    if not isinstance(title, str):
        raise InvalidInput(fields={"title": ["Must be a string."]})
    title = title.strip()
    if "\x00" in title:
        raise InvalidInput(fields={"title": ["Null characters are not allowed."]})
    if len(title) > TITLE_MAX:
        raise InvalidInput(fields={"title": [f"Ensure this field has no more than {TITLE_MAX} characters."]})
    return ChatSession.objects.create(owner=user, title=title, expires_at=timezone.now() + _ttl())


def _parse_id(session_id: Any) -> uuid.UUID:
    try:
        return session_id if isinstance(session_id, uuid.UUID) else uuid.UUID(str(session_id))
    except ValueError:
        raise NotFound("No such chat session.") from None


def session_get(*, actor: Any, session_id: Any) -> ChatSession:
    """The session if ``actor`` may join it (its owner, or an admin); expired ones are marked so."""
    user = _user(actor, "read a chat")
    session = ChatSession.objects.filter(pk=_parse_id(session_id)).first()
    if session is None:
        raise NotFound("No such chat session.")
    if session.owner_id != user.pk and not roles.is_admin(user):
        raise PermissionDenied("This chat session belongs to another user.")
    if session.status == SessionStatus.ACTIVE and session.expires_at <= timezone.now():
        ChatSession.objects.filter(pk=session.pk, status=SessionStatus.ACTIVE).update(status=SessionStatus.EXPIRED)
        session.status = SessionStatus.EXPIRED
    return session


def session_list(*, actor: Any) -> list[ChatSession]:
    user = _user(actor, "list chats")
    return list(ChatSession.objects.filter(owner=user).order_by("-created_at")[:200])


def session_close(*, actor: Any, session_id: Any) -> ChatSession:
    session = session_get(actor=actor, session_id=session_id)
    if session.status != SessionStatus.ACTIVE:
        raise Conflict(f"The session is {session.status}.", code="session_not_active", status=session.status)
    ChatSession.objects.filter(pk=session.pk).update(status=SessionStatus.CLOSED)
    ChatWatch.objects.filter(session=session).delete()
    session.status = SessionStatus.CLOSED
    return session


def message_append(
    *,
    session_id: uuid.UUID,
    role: str,
    content: str,
    metadata: dict[str, Any] | None = None,
    only_if_active: bool = False,
) -> ChatMessage:
    """Append one message: the session's next sequence number, taken under its row lock, in commit order.

    The counter moves first (an UPDATE, which locks the row until commit), so two writers of one
    session queue there and their numbers follow their commits. ``only_if_active`` makes a
    closed or expired session refuse the message (409) in the same statement.
    """
    now = timezone.now()
    with transaction.atomic():
        seq = _next_seq(session_id, now, only_if_active)
        if seq is None:
            status = ChatSession.objects.filter(pk=session_id).values_list("status", flat=True).first()
            if status is None:
                raise NotFound("No such chat session.")
            status = SessionStatus.EXPIRED if status == SessionStatus.ACTIVE else status
            raise Conflict(f"The session is {status}.", code="session_not_active", status=status)
        return ChatMessage.objects.create(
            session_id=session_id, seq=seq, role=role, content=content, metadata=metadata or {}
        )


def _next_seq(session_id: uuid.UUID, now: datetime, only_if_active: bool) -> int | None:
    """Move the session's counter and read it in one statement (``UPDATE ... RETURNING``).

    The one raw statement of the chat: it is the hot path of every message, and the ORM's
    update cannot return the new value (SQLite 3.35+ and PostgreSQL both have RETURNING).
    """
    ops = connection.ops
    field = ChatSession._meta.pk
    sql = (
        f"UPDATE {ops.quote_name(ChatSession._meta.db_table)} "  # noqa: S608 - the model's own table; values bound
        "SET message_seq = message_seq + 1, last_message_at = %s, expires_at = %s WHERE id = %s"
    )
    params = [
        ops.adapt_datetimefield_value(now),
        ops.adapt_datetimefield_value(now + _ttl()),
        field.get_db_prep_value(session_id, connection),
    ]
    if only_if_active:
        sql += " AND status = %s AND expires_at > %s"
        params += [SessionStatus.ACTIVE.value, ops.adapt_datetimefield_value(now)]
    with connection.cursor() as cursor:
        cursor.execute(sql + " RETURNING message_seq", params)
        row = cursor.fetchone()
    return row[0] if row else None


def message_post(
    *, actor: Any, session: ChatSession, content: str, metadata: dict[str, Any] | None = None
) -> ChatMessage:
    """A user's message in ``session`` (from :func:`session_get`: may join), persisted; 409 unless active.

    Its ack carries the returned message's ``seq``. The caller's right to read the session was
    checked when it got it (a WebSocket connection: when it opened).
    """
    _user(actor, "chat")
    return message_append(
        session_id=session.pk, role=MessageRole.USER, content=content, metadata=metadata, only_if_active=True
    )


def history(*, session: ChatSession, after: int | None = None, before: int | None = None, limit: int = 100):
    """Messages of ``session`` in sequence order, at most ``limit``.

    With ``after``: the first ones after it (paging forwards; with ``before`` too, within the
    window). With only ``before``: the newest ones before it (paging backwards). With
    neither: the newest ones.
    """
    messages = ChatMessage.objects.filter(session=session)
    if before is not None:
        messages = messages.filter(seq__lt=before)
    if after is not None:
        return list(messages.filter(seq__gt=after).order_by("seq")[:limit])
    return list(messages.order_by("-seq")[:limit])[::-1]
