"""Where the streams' events are kept for ``Last-Event-ID`` replay (django-eventstream storage).

``metrics`` and ``tasks`` use django-eventstream's own tables (``Event`` rows numbered per
channel by ``EventCounter``), written in batches: one transaction takes the counter's row
lock, inserts every event of the batch and moves the counter, so the numbers follow commit
order across processes (the stock storage costs four statements and a trim scan per event).
Event data are stored as the JSON text that is sent.

``task-<uuid>`` channels are not copied at all: their events are the task's own timeline
(TaskEvent rows, numbered by ``seq`` under the task's row lock), so replaying a task's stream
is reading its event log after a sequence number.

Stored events never change, so the process keeps the latest :data:`RECENT` of each channel
in memory (those it appended and those it read): when 500 clients come back at once 50
events behind, one of them reads the rows and the others are served the same Event
objects, encoded once (the stream view caches the text on them). Only the channel's
current number is read per request.

Old ``Event`` rows are removed by :func:`trim` (``AGENCY_STREAM_RETENTION_S``), called by
the stream keeper; a client whose last id was trimmed gets a ``stream-reset`` and refetches.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, transaction
from django.utils import timezone
from django_eventstream.event import Event
from django_eventstream.models import Event as StoredEvent
from django_eventstream.models import EventCounter
from django_eventstream.storage import EventDoesNotExist, StorageBase

from metrics.stream.channels import TIMELINE_ENTRY, channel_task_id
from tasks.models import Task, TaskEvent

# Stored events per channel kept in memory for replays.
RECENT = 2000
_recent: dict[str, OrderedDict[int, Event]] = {}
_recent_lock = threading.Lock()


def _remember(channel: str, events: list[Event]) -> None:
    with _recent_lock:
        kept = _recent.setdefault(channel, OrderedDict())
        for event in events:
            kept[int(event.id)] = event
        if len(kept) > RECENT + RECENT // 4:  # trimmed now and then: sorting 2,000 ids a batch showed in profiles
            for eid in sorted(kept)[: len(kept) - RECENT]:
                del kept[eid]


def _recalled(channel: str, first: int, last: int) -> list[Event] | None:
    """Events ``first``..``last`` of ``channel`` if every one of them is in memory."""
    with _recent_lock:
        kept = _recent.get(channel)
        if not kept:
            return None
        try:
            return [kept[eid] for eid in range(first, last + 1)]
        except KeyError:
            return None


def forget_recent() -> None:
    with _recent_lock:
        _recent.clear()


def to_json(data: Any) -> str:
    return json.dumps(data, cls=DjangoJSONEncoder, separators=(",", ":"))


def entry_payload(task_id: str, seq: int, type: str, data: dict[str, Any], created_at: datetime) -> dict[str, Any]:
    """What a ``task-<uuid>`` channel says about one timeline entry (live and replayed alike)."""
    return {"task_id": str(task_id), "seq": seq, "type": type, "data": data, "created_at": created_at}


class AgencyStorage(StorageBase):
    def append_event(self, channel: str, event_type: str, data: str) -> Event:
        return self.append_events(channel, [(event_type, data)])[0]

    def append_events(self, channel: str, items: list[tuple[str, str]]) -> list[Event]:
        """Store ``items`` ((type, JSON text) pairs) on ``channel`` in one transaction, numbered in order.

        Two hand-written statements (every task change of every process passes here; the ORM's
        get-lock-insert-update took five and most of the publisher's time): the counter moves
        by the batch's length and returns where it stopped (``UPDATE … RETURNING``, which also
        locks its row until commit, so numbers follow commit order), then one multi-row INSERT.
        """
        if channel_task_id(channel) is not None:
            raise ValueError("a task's stream is its timeline; it is not stored twice")
        if not items:
            return []
        now = timezone.now()
        for _ in range(2):
            # The counter row is found or made outside the transaction: making it may race an insert.
            counter_id = _counter_ids.get(channel) or _counter_ids.setdefault(
                channel, EventCounter.get_or_create(channel).pk
            )
            with transaction.atomic():
                last = _move_counter(counter_id, channel, len(items), now)
                if last is not None:
                    first = last - len(items) + 1
                    rows = [(event_type, data, first + i) for i, (event_type, data) in enumerate(items)]
                    _insert_events(channel, rows, now)
                    break
            _counter_ids.pop(channel, None)  # the row went (a test database flushed): look it up again
        else:
            raise RuntimeError(f"no event counter for {channel}")
        events = [Event(channel, event_type, data, id=first + i) for i, (event_type, data) in enumerate(items)]
        transaction.on_commit(lambda: _remember(channel, events))
        return events

    def get_events(self, channel: str, last_id: int, limit: int = 100) -> list[Event]:
        """The events after ``last_id``, oldest first; :class:`EventDoesNotExist` when it is unknown."""
        task_id = channel_task_id(channel)
        if task_id is not None:
            return self._task_events(channel, task_id, last_id, limit)
        current = self.get_current_id(channel)
        if last_id > current:
            raise EventDoesNotExist(f"no event {last_id} on {channel}", current)
        if last_id == current:
            return []
        # Every event after last_id up to the page's end is in memory: nothing to check,
        # since having them all is what the existence check of last_id is for.
        recalled = _recalled(channel, last_id + 1, min(current, last_id + limit))
        if recalled is not None:
            return recalled
        rows = list(
            StoredEvent.objects.filter(channel=channel, eid__gte=last_id)
            .order_by("eid")
            .values_list("eid", "type", "data")[: limit + 1]
        )
        if last_id > 0:
            # The event the client saw must still be here, or the events after it may be gone too.
            if not rows or rows[0][0] != last_id:
                raise EventDoesNotExist(f"event {last_id} on {channel} was trimmed", current)
            rows = rows[1:]
        elif rows and rows[0][0] != 1:
            raise EventDoesNotExist(f"the start of {channel} was trimmed", current)
        events = [Event(channel, type_, data, id=eid) for eid, type_, data in rows[:limit]]
        _remember(channel, events)
        return events

    def get_current_id(self, channel: str) -> int:
        task_id = channel_task_id(channel)
        # Read on every stream's open: one hand-written statement (the ORM took ~6x longer to build it).
        if task_id is not None:
            return _one_value(
                Task, "event_seq", Task._meta.pk.column, Task._meta.pk.get_db_prep_value(task_id, connection)
            )
        return _one_value(EventCounter, "value", "name", channel)

    @staticmethod
    def _task_events(channel: str, task_id: Any, last_id: int, limit: int) -> list[Event]:
        rows = TaskEvent.objects.filter(task_id=task_id, seq__gt=last_id).order_by("seq")[:limit]
        events = [
            Event(
                channel,
                TIMELINE_ENTRY,
                to_json(entry_payload(task_id, row.seq, row.type, row.data, row.created_at)),
                id=row.seq,
            )
            for row in rows
        ]
        if not events and last_id > 0:
            current = Task.objects.filter(pk=task_id).values_list("event_seq", flat=True).first() or 0
            if last_id > current:
                raise EventDoesNotExist(f"no event {last_id} on {channel}", current)
        return events


# A channel's counter row id, once looked up (counters are not deleted; a stale id is looked up again).
_counter_ids: dict[str, int] = {}
# Rows per INSERT statement (5 parameters each: well inside SQLite's and PostgreSQL's limits).
INSERT_ROWS = 500


def _move_counter(counter_id: int, channel: str, n: int, now: datetime) -> int | None:
    """Add ``n`` to the counter and return its new value (None if the row is gone); locks its row."""
    quote, ops = connection.ops.quote_name, connection.ops
    sql = (
        f"UPDATE {quote(EventCounter._meta.db_table)} SET value = value + %s, updated = %s "  # noqa: S608 - names
        "WHERE id = %s AND name = %s RETURNING value"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [n, ops.adapt_datetimefield_value(now), counter_id, channel])
        row = cursor.fetchone()
    return None if row is None else int(row[0])


def _insert_events(channel: str, rows: list[tuple[str, str, int]], now: datetime) -> None:
    quote = connection.ops.quote_name
    created = connection.ops.adapt_datetimefield_value(now)
    head = f"INSERT INTO {quote(StoredEvent._meta.db_table)} (channel, type, data, eid, created) VALUES "  # noqa: S608
    with connection.cursor() as cursor:
        for at in range(0, len(rows), INSERT_ROWS):
            chunk = rows[at : at + INSERT_ROWS]
            params = [value for event_type, data, eid in chunk for value in (channel, event_type, data, eid, created)]
            cursor.execute(head + ", ".join(["(%s, %s, %s, %s, %s)"] * len(chunk)), params)


def _one_value(model: type, column: str, key: str, value: Any) -> int:
    """``column`` of the ``model`` row whose unique ``key`` is ``value``, 0 when there is none."""
    quote = connection.ops.quote_name
    sql = f"SELECT {quote(column)} FROM {quote(model._meta.db_table)} WHERE {quote(key)} = %s"  # noqa: S608 - names
    with connection.cursor() as cursor:
        cursor.execute(sql, [value])
        row = cursor.fetchone()
    return (row[0] or 0) if row else 0


def latest_created(channel: str) -> datetime | None:
    return StoredEvent.objects.filter(channel=channel).order_by("-eid").values_list("created", flat=True).first()


def trim(*, now: datetime | None = None) -> int:
    """Delete stored events older than ``AGENCY_STREAM_RETENTION_S``; returns how many."""
    cutoff = (now or timezone.now()) - timedelta(seconds=settings.AGENCY_STREAM_RETENTION_S)
    deleted, _ = StoredEvent.objects.filter(created__lt=cutoff).delete()
    if deleted:
        forget_recent()
    return deleted
