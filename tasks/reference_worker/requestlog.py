"""The reference worker's request log: its own record of every /execute and /cancel."""

from __future__ import annotations

import collections
import json
import threading
from typing import IO, Any


class RequestLog:
    """Every /execute and /cancel, as JSON lines: the worker's own record of what it was asked.

    Tests and benchmarks check delivery guarantees against it (no key executed twice),
    so it is written by the worker itself, not inferred from the client side.
    """

    def __init__(self, path: str | None, memory: int) -> None:
        self._lock = threading.Lock()
        self._entries: collections.deque[dict[str, Any]] = collections.deque(maxlen=memory)
        self._seq = 0
        self._file: IO[str] | None = open(path, "a", encoding="utf-8", buffering=1) if path else None  # noqa: SIM115

    def append(self, entry: dict[str, Any]) -> None:
        with self._lock:
            self._seq += 1
            entry = {"seq": self._seq, **entry}
            self._entries.append(entry)
            if self._file is not None:
                self._file.write(json.dumps(entry, separators=(",", ":")) + "\n")

    def query(self, *, since: int = 0, task_id: str | None = None) -> dict[str, Any]:
        with self._lock:
            entries = [
                e for e in self._entries if e["seq"] > since and (task_id is None or e.get("task_id") == task_id)
            ]
            return {"entries": entries, "last_seq": self._seq}

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None
