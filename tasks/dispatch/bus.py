"""The dispatch bus: fast, after-commit signals to dispatchers.

Two messages travel on it: ``{"kind": "work"}`` (a task became due: wake up
and claim) and ``{"kind": "control", "task_id": ..., "action": "cancel" |
"pause"}`` (stop this attempt). The database stays the truth; a lost signal
only costs the dispatcher's poll interval.

On PostgreSQL the signal is ``pg_notify`` inside the writing transaction, so
it is delivered exactly when (and only if) the change commits, to every
dispatcher on every machine; a listener thread per process receives it. On
SQLite (the embedded default, one process) it is delivered in-process from
``transaction.on_commit``.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from typing import Any

from django.db import connection, transaction

logger = logging.getLogger("agency.bus")

CHANNEL = "agency_dispatch"

Subscriber = Callable[[dict[str, Any]], None]

_subscribers: list[Subscriber] = []
_lock = threading.Lock()
_listener: _PostgresListener | None = None


def publish(message: dict[str, Any]) -> None:
    """Send ``message`` when the current transaction commits."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_notify(%s, %s)", [CHANNEL, json.dumps(message)])
    else:
        transaction.on_commit(lambda: _deliver(message))


def subscribe(callback: Subscriber) -> Callable[[], None]:
    """Receive every message published from now on; returns an unsubscribe function."""
    global _listener
    with _lock:
        _subscribers.append(callback)
        if connection.vendor == "postgresql" and _listener is None:
            _listener = _PostgresListener()
            _listener.start()

    def unsubscribe() -> None:
        global _listener
        with _lock:
            if callback in _subscribers:
                _subscribers.remove(callback)
            if not _subscribers and _listener is not None:
                _listener.stop()
                _listener = None

    return unsubscribe


def _deliver(message: dict[str, Any]) -> None:
    with _lock:
        targets = list(_subscribers)
    for callback in targets:
        try:
            callback(message)
        except Exception:  # one broken subscriber must not starve the others
            logger.exception("bus subscriber failed")


class _PostgresListener(threading.Thread):
    """LISTENs on its own autocommit connection (not the pool) and fans out."""

    def __init__(self) -> None:
        super().__init__(name="agency-bus-listener", daemon=True)
        self._stop = threading.Event()

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        import psycopg

        params = connection.get_connection_params()
        params.pop("cursor_factory", None)
        params.pop("context", None)
        params.pop("pool", None)
        while not self._stop.is_set():
            try:
                with psycopg.connect(**params, autocommit=True) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=0.5):
                            try:
                                _deliver(json.loads(note.payload))
                            except ValueError:
                                logger.warning("ignored a malformed bus message")
            except Exception:
                # Reconnect after a pause; the dispatchers' polls cover the gap.
                logger.exception("bus listener lost its connection; reconnecting")
                self._stop.wait(1.0)
