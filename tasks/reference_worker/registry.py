"""Executions by idempotency key: the one place that decides whether work runs.

Delivery from dispatchers is at-least-once, so the same ``<task_id>:<attempt>``
can arrive twice (a retry after a dropped stream, a reclaimed lease). Admission,
replay, capacity and cancel are all decided under one lock here, which is what
makes "a repeated key never runs the work twice" true under concurrency.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from tasks.reference_worker.protocol import ExecuteRequest, ProtocolError, failed_result

# How long a client should wait before asking again about a key that is still running.
IN_PROGRESS_RETRY_AFTER_S = 1
AT_CAPACITY_RETRY_AFTER_S = 1


class Execution:
    """One accepted run of one key; the kind polls :meth:`wait` so cancel and shutdown stop it promptly."""

    def __init__(self, request: ExecuteRequest) -> None:
        self.request = request
        self.key = request.idempotency_key
        self.fingerprint = request.fingerprint()
        self.stop_reason: str | None = None
        self._stop = threading.Event()

    def stop(self, reason: str) -> None:
        # The first reason wins: a cancel followed by shutdown is still a cancel.
        if self.stop_reason is None:
            self.stop_reason = reason
        self._stop.set()

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; True as soon as the execution is told to stop."""
        return self._stop.wait(max(0.0, seconds))


@dataclass(frozen=True)
class Finished:
    """A key whose final result is known. ``fingerprint`` is None for a cancel that arrived first."""

    fingerprint: str | None
    result: dict[str, Any]


class Registry:
    def __init__(self, *, capacity: int, remember: int) -> None:
        self.capacity = capacity
        self.remember = remember
        self.draining = False
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._running: dict[str, Execution] = {}
        self._finished: OrderedDict[str, Finished] = OrderedDict()
        self._calls: OrderedDict[str, int] = OrderedDict()

    def count_call(self, key: str) -> int:
        """Number this call for ``key`` (1-based); per-key fault injection counts on it."""
        with self._lock:
            count = self._calls.pop(key, 0) + 1
            self._calls[key] = count
            while len(self._calls) > self.remember:
                self._calls.popitem(last=False)
            return count

    def admit(self, request: ExecuteRequest) -> Execution | dict[str, Any]:
        """A new execution to run, or the stored result to replay; refusals raise ProtocolError."""
        key = request.idempotency_key
        fingerprint = request.fingerprint()
        with self._lock:
            running = self._running.get(key)
            finished = self._finished.get(key)
            known = running.fingerprint if running else finished.fingerprint if finished else None
            if known is not None and known != fingerprint:
                raise ProtocolError(
                    422,
                    "idempotency_key_reused",
                    f"Idempotency-Key {key!r} was already used with a different task_id, attempt or spec.",
                    field="Idempotency-Key",
                )
            if running:
                raise ProtocolError(
                    409,
                    "in_progress",
                    f"{key!r} is already running; ask again later for its result.",
                    retry_after=IN_PROGRESS_RETRY_AFTER_S,
                )
            if finished:
                self._finished.move_to_end(key)
                return finished.result
            if self.draining:
                raise ProtocolError(503, "draining", "The worker is shutting down.", retry_after=1)
            if len(self._running) >= self.capacity:
                raise ProtocolError(
                    429,
                    "at_capacity",
                    f"All {self.capacity} execution slots are busy.",
                    retry_after=AT_CAPACITY_RETRY_AFTER_S,
                )
            execution = Execution(request)
            self._running[key] = execution
            return execution

    def finish(self, execution: Execution, result: dict[str, Any] | None) -> None:
        """Release the slot; remember the result so repeats of the key replay it (None: aborted)."""
        with self._lock:
            self._running.pop(execution.key, None)
            if result is not None:
                self._remember(execution.key, Finished(execution.fingerprint, result))
            self._idle.notify_all()

    def cancel(self, key: str) -> tuple[str, str | None]:
        """Stop ``key``; returns (state, result status) as the cancel endpoint reports them."""
        with self._lock:
            running = self._running.get(key)
            if running:
                running.stop("canceled")
                return "canceling", None
            finished = self._finished.get(key)
            if finished:
                state = "canceled" if finished.fingerprint is None else "finished"
                return state, finished.result["status"]
            # The cancel overtook its execute (both in flight at once): remember it, so that
            # the execute, when it lands, replays "canceled" instead of starting the work.
            tombstone = failed_result(error="Canceled before the work started.", error_code="canceled", retryable=False)
            self._remember(key, Finished(None, tombstone))
            return "canceled", "failed"

    def active(self) -> int:
        with self._lock:
            return len(self._running)

    def stop_all(self, reason: str) -> None:
        with self._lock:
            for execution in self._running.values():
                execution.stop(reason)

    def wait_idle(self, timeout: float) -> bool:
        """Wait until nothing runs; False if ``timeout`` passed first."""
        end = time.monotonic() + timeout
        with self._lock:
            while self._running:
                left = end - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
            return True

    def _remember(self, key: str, finished: Finished) -> None:
        self._finished[key] = finished
        self._finished.move_to_end(key)
        while len(self._finished) > self.remember:
            self._finished.popitem(last=False)
