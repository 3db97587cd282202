"""``agency watch``: follow one task's SSE stream until it ends, through dropped connections.

1. Read the task over REST: its state, progress and the sequence number of its latest
   timeline entry. A task that has ended already is reported at once.
2. Open ``GET /api/v1/tasks/stream?task=<id>`` with ``Last-Event-ID: task-<id>:<seq>``: the
   server replays every entry after it, then sends new ones live, each numbered by the
   task's own sequence (none twice, none skipped).
3. Each entry moves the progress bar (``worker.progress``) or the state (transitions);
   when the state is terminal the watch ends: exit 0 for ``completed``, 1 otherwise.
4. When the connection drops (the server restarts, a proxy cuts it, no keep-alive for
   :data:`agency.client.STREAM_STALL_S`), retry with a growing delay for
   ``reconnect_timeout`` seconds: each try first reads the task over REST (it may have
   ended meanwhile: the missed entries are read from ``/events`` then), and then reopens
   the stream from the last id seen. If the server stays away, raise
   :class:`agency.errors.Unreachable` (exit 5) saying how to resume.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import requests
import urllib3

from agency import sse
from agency.client import Client, describe
from agency.display import Display
from agency.errors import CliError, ExitCode, Unreachable
from agency.render import TERMINAL_STATES, WORKER_PREFIX, is_transition, truncate

STREAM_PATH = "/api/v1/tasks/stream"
FIRST_DELAY_S = 0.5
MAX_DELAY_S = 5.0
EVENTS_PAGE = 1000


def _chunks(response: requests.Response) -> Iterator[bytes]:
    """The body as it arrives. A chunked answer (daphne's) yields chunk by chunk; one
    delimited by the connection's end (an HTTP/1.0 proxy) is read with ``read1``, which
    returns what has arrived instead of waiting for a buffer to fill."""
    raw = response.raw
    if getattr(raw, "chunked", False) or not hasattr(raw, "read1"):
        yield from response.iter_content(chunk_size=None)
        return
    while data := raw.read1(65536):
        yield data


class Dropped(Exception):
    """The stream ended or broke before the task did."""


def outcome_code(state: str) -> ExitCode:
    return ExitCode.OK if state == "completed" else ExitCode.TASK_FAILED


class Watch:
    def __init__(
        self,
        client: Client,
        task_id: str,
        display: Display,
        *,
        reconnect_timeout: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.task_id = task_id
        self.display = display
        self.reconnect_timeout = reconnect_timeout
        self._sleep = sleep
        self._clock = clock
        self.state = ""
        self.percent = 0
        self.phase = ""
        self.title = ""
        self.last_seq = 0
        self.last_event_id = ""
        self.reconnects = 0
        self.final_entry: dict[str, Any] | None = None

    # --- the REST side --------------------------------------------------------------
    def _read_task(self) -> dict[str, Any]:
        task = self.client.get(f"/api/v1/tasks/{self.task_id}")
        self._apply(task)
        return task

    def _apply(self, task: dict[str, Any]) -> None:
        self.state = task.get("state", self.state)
        progress = task.get("progress") or {}
        self.percent = int(progress.get("percent") or 0)
        self.phase = progress.get("phase") or ""
        self.title = task.get("title", self.title)

    @staticmethod
    def _latest_seq(task: dict[str, Any]) -> int:
        return max((e.get("seq", 0) for e in task.get("events") or []), default=0)

    def _catch_up(self) -> None:
        """Every entry after the last one seen, from ``/events`` (the stream is not needed to end)."""
        while True:
            page = self.client.get(f"/api/v1/tasks/{self.task_id}/events", after=self.last_seq, limit=EVENTS_PAGE)
            entries = page.get("results") or []
            for entry in entries:
                self._entry({"task_id": self.task_id, **entry})
            if len(entries) < EVENTS_PAGE:
                return

    # --- the stream side ------------------------------------------------------------
    def _resume_id(self) -> str:
        # The task channel's ids are ``task-<uuid>:<seq>`` (README, "Streams"); the server's
        # own last id is used once one has been seen.
        return self.last_event_id or f"task-{self.task_id}:{self.last_seq}"

    def _follow(self) -> None:
        """Read the stream until the task ends (returns) or the connection is lost (:class:`Dropped`)."""
        try:
            response = self.client.open_stream(
                STREAM_PATH, params={"task": self.task_id}, last_event_id=self._resume_id()
            )
        except Unreachable as exc:
            raise Dropped(exc.reason) from exc
        parser = sse.Parser()
        parser.last_event_id = self._resume_id()
        try:
            for event in sse.events(_chunks(response), parser):
                self.last_event_id = event.id or self.last_event_id
                if event.event == "event":
                    try:
                        entry = json.loads(event.data)
                    except ValueError:
                        continue  # not ours to judge: skip what cannot be read, keep the stream
                    if isinstance(entry, dict):
                        self._entry(entry)
                    if self.state in TERMINAL_STATES:
                        return
                elif event.event == "stream-reset":
                    # Our last id is unknown to the server (its data were reset): start again from REST.
                    self.display.notice("the server reset the stream; reading the task again")
                    self._read_task()
                    self.last_seq = 0
                    self._catch_up()
                    if self.state in TERMINAL_STATES:
                        return
                elif event.event == "stream-error":
                    raise Dropped(f"the server ended the stream: {truncate(event.data, 200)}")
        except requests.RequestException as exc:
            raise Dropped(describe(exc)) from exc
        except urllib3.exceptions.HTTPError as exc:  # from read1(), which requests does not wrap
            raise Dropped(describe(requests.ConnectionError(exc))) from exc
        finally:
            response.close()
        raise Dropped("the server closed the stream")

    def _entry(self, entry: dict[str, Any]) -> None:
        seq = entry.get("seq")
        if isinstance(seq, int):
            if seq <= self.last_seq:
                return  # seen already (a replay that overlaps what /events gave)
            self.last_seq = seq
        kind = str(entry.get("type", ""))
        data = entry.get("data") if isinstance(entry.get("data"), dict) else {}
        if kind == f"{WORKER_PREFIX}progress" and self.state in ("running", ""):
            payload = data.get("payload") if isinstance(data.get("payload"), dict) else {}
            with contextlib.suppress(TypeError, ValueError):  # a worker's odd percent leaves the bar as it was
                self.percent = max(0, min(100, int(float(payload.get("percent", self.percent)))))
            self.phase = str(payload.get("phase") or self.phase)
        if is_transition(entry):
            self.state = data["to"]
            if kind == "attempt_started":
                self.percent, self.phase = 0, ""  # a new attempt starts from nothing (as the server resets it)
            elif self.state == "completed":
                self.percent = 100
            if self.state in TERMINAL_STATES:
                self.final_entry = entry
        self.display.entry(self, entry)

    # --- the loop -------------------------------------------------------------------
    def run(self, *, since: dict[str, Any] | None = None) -> ExitCode:
        """Watch to the end. ``since`` is the task as the caller last saw it (``submit --watch``
        passes the created task): the entries after it are shown too, not only what comes next."""
        task = self._read_task()
        self.last_seq = self._latest_seq(task)
        if since is None and self.state in TERMINAL_STATES:
            self.display.finished(self, task, self._ended_entry(task))
            return outcome_code(self.state)
        if since is not None:
            ended_meanwhile = self.state in TERMINAL_STATES
            self.last_seq = min(self.last_seq, self._latest_seq(since))
            self._apply(since)
            self.display.started(self, task)
            if ended_meanwhile:
                self._catch_up()
                self._apply(task)  # the end, even if the timeline said it otherwise
        else:
            self.display.started(self, task)
        try:
            while self.state not in TERMINAL_STATES:
                try:
                    self._follow()
                except Dropped as exc:
                    self._reconnect(str(exc))
        except KeyboardInterrupt:
            raise CliError(
                f"stopped watching; task {self.task_id} goes on (`agency watch {self.task_id}` resumes)",
                exit_code=ExitCode.INTERRUPTED,
            ) from None
        try:
            final = self.client.get(f"/api/v1/tasks/{self.task_id}")
        except CliError:
            final = None  # the outcome is known from the stream; the details are a nicety
        self.display.finished(self, final, self.final_entry or self._ended_entry(final or task))
        return outcome_code(self.state)

    def _ended_entry(self, task: dict[str, Any]) -> dict[str, Any] | None:
        """The timeline entry of the transition into the task's (terminal) state, among its latest."""
        ended = [e for e in task.get("events") or [] if is_transition(e) and e["data"]["to"] == self.state]
        return {"task_id": self.task_id, **ended[-1]} if ended else None

    def _reconnect(self, reason: str) -> None:
        """Return once the task is readable again (it may have ended); raise Unreachable at the deadline."""
        deadline = self._clock() + self.reconnect_timeout
        delay = FIRST_DELAY_S
        self.display.notice(f"connection lost ({reason}); reconnecting for up to {self.reconnect_timeout:g} s")
        while True:
            left = deadline - self._clock()
            if left <= 0:
                raise Unreachable(
                    f"lost the server at {self.client.base_url} ({reason}) and it did not come back within "
                    f"{self.reconnect_timeout:g} s. Task {self.task_id} was {self.state} when last seen; "
                    f"run `agency watch {self.task_id}` to resume."
                )
            self._sleep(min(delay, left))
            delay = min(delay * 2, MAX_DELAY_S)
            try:
                self._read_task()
            except Unreachable as exc:
                reason = exc.reason
                continue
            self.reconnects += 1
            if self.state in TERMINAL_STATES:
                self._catch_up()  # what happened while we were away, then the end
            self.display.notice(f"reconnected; resuming after event {self.last_seq}")
            return
