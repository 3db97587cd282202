"""``watch <task>``: a task's changes arrive in the chat as system messages until it ends.

Fed by the after-commit publication of the transition path (``task_writes_committed``), in
whichever process made the change (a dispatcher, the API), on a thread of its own so that
the writer does not wait. The system message is persisted once, in that process, under the
session's lock like any message; the connections of the session hear of it through
django-eventstream's delivery (the channel ``chat-<session>``), across processes with Redis.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from django.db import connection
from django_eventstream.event import Event

from chat import services
from chat.models import ChatWatch, MessageRole
from config.errors import Conflict, NotFound
from metrics.stream.publish import Batch, Publisher, deliver
from tasks.states import TERMINAL_STATES

NEW_MESSAGE = "chat"


def session_channel(session_id: Any) -> str:
    return f"chat-{session_id}"


def announce(session_id: Any, seq: int) -> None:
    """Tell the session's connections, in every process, that message ``seq`` exists."""
    deliver([Event(session_channel(session_id), NEW_MESSAGE, "", id=seq)])


def _any_watch() -> bool:
    # Most changes of most processes meet no watch at all: one hand-written statement says so
    # (the ORM's query by the batch's task ids cost more than the rest of a publication).
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT 1 FROM {connection.ops.quote_name(ChatWatch._meta.db_table)} LIMIT 1")  # noqa: S608
        return cursor.fetchone() is not None


def process(batch: Batch) -> None:
    if not _any_watch():
        return
    changes = [c for cs, _ in batch for c in cs]
    watches = defaultdict(list)
    for watch in ChatWatch.objects.filter(task_id__in={c.task_id for c in changes}).select_related("task"):
        watches[str(watch.task_id)].append(watch)
    if not watches:
        return
    events, ended = [], set()
    for change in changes:
        for watch in watches.get(str(change.task_id), []):
            if watch.pk in ended:
                continue
            task = watch.task
            text = f"Task {str(task.pk)[:8]} “{task.title}”: {change.from_state or 'new'} → {change.to_state}."
            metadata = {
                "event": "task_changed",
                "task_id": str(task.pk),
                "from_state": change.from_state or None,
                "to_state": change.to_state,
                "cause": change.cause,
            }
            if change.to_state in TERMINAL_STATES:
                text += " It has ended; no longer watching."
                ended.add(watch.pk)
            try:
                message = services.message_append(
                    session_id=watch.session_id,
                    role=MessageRole.SYSTEM,
                    content=text,
                    metadata=metadata,
                    only_if_active=True,
                )
            except (Conflict, NotFound):
                ended.add(watch.pk)  # the session closed or expired: nobody is listening
                continue
            events.append(Event(session_channel(watch.session_id), NEW_MESSAGE, "", id=message.seq))
    ChatWatch.objects.filter(pk__in=ended).delete()
    deliver(events)


watcher = Publisher(process, "agency-chat-watch")


def on_task_writes(sender: Any, *, changes: list, entries: list, **kwargs: Any) -> None:
    if changes:
        watcher.submit(changes, [])
