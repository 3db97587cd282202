"""Publishing to the streams, fed by the after-commit publication of the task writes.

:func:`on_task_writes` is connected to :data:`tasks.transitions.task_writes_committed`
(metrics/apps.py): it runs after a transaction commits, never inside one, and only queues
the batch; one publisher thread per process stores the ``tasks`` channel's events and
delivers everything, so a dispatcher's writer thread does not wait on stream bookkeeping.
Delivery is django-eventstream's: to the listeners of this process, or, when
``EVENTSTREAM_REDIS`` is set (``REDIS_URL``), through its Redis publish/subscribe to the
listeners of every ASGI process.
"""

from __future__ import annotations

import atexit
import json
import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

from django.db import close_old_connections
from django_eventstream import eventstream as es
from django_eventstream.event import Event
from django_eventstream.utils import get_storage
from django_eventstream.views import get_listener_manager

from metrics.stream.channels import METRICS, SNAPSHOT, TASK_CHANGE, TASKS, TIMELINE_ENTRY, task_channel
from metrics.stream.storage import entry_payload, to_json
from tasks.transitions import TaskChanged, TimelineEntry

logger = logging.getLogger("agency.stream")

# The Redis channel django-eventstream's listeners subscribe to (django_eventstream.views).
REDIS_CHANNEL = "events_channel"
# At most this many committed batches are published together.
BATCH = 200
# A publisher idle this long closes its database connection. It used to close it whenever its
# queue ran empty, which in a trickle of tasks meant a new connection a batch (SQLite: a new
# file handle and its PRAGMAs; 3 % of the embedded process's CPU).
IDLE_CLOSE_S = 5.0
# How long a process waits at exit for its last publications.
EXIT_WAIT_S = 5.0


def change_payload(change: TaskChanged) -> dict[str, Any]:
    return {
        "task_id": change.task_id,
        "seq": change.seq,
        "from_state": change.from_state or None,
        "to_state": change.to_state,
        "cause": change.cause,
    }


def deliver(events: list[Event]) -> None:
    """Hand stored (numbered) events to the listeners, here or in every process through Redis."""
    if not events:
        return
    if es.redis_client is not None:
        pipe = es.redis_client.pipeline(transaction=False)
        for e in events:
            message = {"channel": e.channel, "event_type": e.type, "data": e.data, "pub_id": str(e.id)}
            pipe.publish(REDIS_CHANNEL, json.dumps(message))
        pipe.execute()
        return
    manager = get_listener_manager()
    for e in events:
        manager.add_to_queues(e.channel, e)


def publish_snapshot(snapshot: dict[str, Any]) -> Event:
    """Store and deliver one KPI snapshot on the ``metrics`` channel."""
    (event,) = get_storage().append_events(METRICS, [(SNAPSHOT, to_json(snapshot))])
    deliver([event])
    return event


Batch = list[tuple[list[TaskChanged], list[TimelineEntry]]]


class Publisher:
    """A thread that hands committed batches to ``handle``: started on the first batch, drained at exit.

    The streams have one (:data:`publisher`); chat's ``watch`` has its own (chat/watch.py), so
    that neither waits on the other and a dispatcher's writer waits on neither.
    """

    def __init__(self, handle: Callable[[Batch], None], name: str) -> None:
        self._handle, self._name = handle, name
        self._queue: queue.SimpleQueue[tuple[list[TaskChanged], list[TimelineEntry]]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._idle = threading.Condition()
        self._pending = 0

    def submit(self, changes: list[TaskChanged], entries: list[TimelineEntry]) -> None:
        with self._idle:
            self._pending += 1
        self._queue.put((changes, entries))
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                    self._thread.start()
                    # A short-lived process (a management command) delivers what it changed before it exits.
                    atexit.register(self.wait_idle, EXIT_WAIT_S)

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """Block until everything submitted so far is delivered (for tests and shutdown)."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout=timeout)

    def _run(self) -> None:
        while True:
            try:
                first = self._queue.get(timeout=IDLE_CLOSE_S)
            except queue.Empty:
                # Idle: give the connection back (a pool's, or SQLite's file) until there is work again.
                close_old_connections()
                first = self._queue.get()
            batch = [first]
            while len(batch) < BATCH:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            try:
                self._handle(batch)
            except Exception:
                # The task writes are committed and in the timelines; a stream that missed them
                # is caught up by a reader's replay of the task channel. Say so, keep going.
                logger.exception("%s: publication of %d batches failed", self._name, len(batch))
                close_old_connections()  # a broken connection is not used again
            finally:
                with self._idle:
                    self._pending -= len(batch)
                    self._idle.notify_all()


def publish_streams(batch: Batch) -> None:
    """Store the ``tasks`` channel's events of ``batch`` and deliver them with the timeline entries."""
    changes = [c for cs, _ in batch for c in cs]
    events: list[Event] = []
    if changes:
        items = [(TASK_CHANGE, to_json(change_payload(c))) for c in changes]
        events += get_storage().append_events(TASKS, items)
    for _, entries in batch:
        for e in entries:
            data = to_json(entry_payload(e.task_id, e.seq, e.type, e.data, e.created_at))
            events.append(Event(task_channel(e.task_id), TIMELINE_ENTRY, data, id=e.seq))
    deliver(events)


publisher = Publisher(publish_streams, "agency-stream-publisher")


def on_task_writes(sender: Any, *, changes: list[TaskChanged], entries: list[TimelineEntry], **kwargs: Any) -> None:
    publisher.submit(changes, entries)
