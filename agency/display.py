"""How ``agency watch`` shows a task: plain lines, a progress bar redrawn on a terminal, or JSON lines."""

from __future__ import annotations

import sys
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

import click

from agency.render import WORKER_PREFIX, bar, entry_line, is_transition, print_json, truncate

if TYPE_CHECKING:
    from agency.watch import Watch


class Display(Protocol):
    def started(self, watch: Watch, task: dict[str, Any]) -> None: ...
    def entry(self, watch: Watch, entry: dict[str, Any]) -> None: ...
    def notice(self, text: str) -> None: ...
    def finished(self, watch: Watch, task: dict[str, Any] | None, entry: dict[str, Any] | None) -> None: ...


class LineDisplay:
    """Plain lines, for pipes, logs and CI: an entry per line, progress included."""

    def started(self, watch: Watch, task: dict[str, Any]) -> None:
        title = truncate(watch.title, 60)
        click.echo(f'Watching {watch.task_id} "{title}": {watch.state} {bar(watch.percent)} {watch.phase}'.rstrip())

    def entry(self, watch: Watch, entry: dict[str, Any]) -> None:
        click.echo(entry_line(entry))
        self._hint(watch, entry)

    @staticmethod
    def _hint(watch: Watch, entry: dict[str, Any]) -> None:
        if not is_transition(entry):
            return
        if watch.state == "awaiting_review":
            decide = f"agency override approve|reject|request-changes {watch.task_id} --reason ..."
            click.echo(f"  awaiting review: decide with `{decide}`")
        elif watch.state == "paused":
            click.echo(f"  paused: `agency resume {watch.task_id}` lets it run again")

    def notice(self, text: str) -> None:
        click.echo(f"agency: {text}", err=True)

    def finished(self, watch: Watch, task: dict[str, Any] | None, entry: dict[str, Any] | None) -> None:
        click.echo(final_line(watch, task, entry))


class TtyDisplay(LineDisplay):
    """A progress bar redrawn in place on a terminal, with the other entries printed above it."""

    def __init__(self, stream: Any = None) -> None:
        self._stream = stream or sys.stdout
        self._shown = False

    def _status(self, watch: Watch) -> str:
        return f"{bar(watch.percent)} {watch.phase or '-'}  {watch.state}"

    def _clear(self) -> None:
        if self._shown:
            self._stream.write("\r\x1b[2K")
            self._shown = False

    def _draw(self, watch: Watch) -> None:
        self._clear()
        self._stream.write(self._status(watch))
        self._stream.flush()
        self._shown = True

    def started(self, watch: Watch, task: dict[str, Any]) -> None:
        click.echo(f'Watching {watch.task_id} "{truncate(watch.title, 60)}"')
        self._draw(watch)

    def entry(self, watch: Watch, entry: dict[str, Any]) -> None:
        if entry.get("type") != f"{WORKER_PREFIX}progress":
            self._clear()
            click.echo(entry_line(entry))
            self._hint(watch, entry)
        self._draw(watch)

    def notice(self, text: str) -> None:
        self._clear()
        super().notice(text)

    def finished(self, watch: Watch, task: dict[str, Any] | None, entry: dict[str, Any] | None) -> None:
        self._clear()
        super().finished(watch, task, entry)


class JsonDisplay:
    """One JSON object per line: every timeline entry as the stream sends it.

    The last line is the entry of the transition that ended the task (also when it had
    ended before the watch began); notices go to stderr.
    """

    def started(self, watch: Watch, task: dict[str, Any]) -> None:
        """Nothing to print: the lines are the entries alone, and the first comes with the stream."""

    def entry(self, watch: Watch, entry: dict[str, Any]) -> None:
        print_json(entry, compact=True)

    def notice(self, text: str) -> None:
        click.echo(f"agency: {text}", err=True)

    def finished(self, watch: Watch, task: dict[str, Any] | None, entry: dict[str, Any] | None) -> None:
        if entry is not None and watch.final_entry is None:
            print_json(entry, compact=True)  # it ended before (or without) an entry we showed: say how


def final_line(watch: Watch, task: dict[str, Any] | None, entry: dict[str, Any] | None) -> str:
    state = watch.state
    data = (entry or {}).get("data") or {}
    text = f"Task {watch.task_id} {state}"
    took = duration(task)
    if took is not None:
        text += f" in {took:.1f} s"
    verdict = (task or {}).get("verdict") or {}
    decision = verdict.get("decision") or data.get("decision")
    if decision:
        text += f": verdict {decision}"
    error = (task or {}).get("error") or data.get("error")
    if state != "completed" and error:
        text += f": {truncate(error, 300)}"
    cancel = (task or {}).get("cancel")
    if state == "canceled" and cancel:
        text += f": canceled by {cancel.get('requested_by') or 'a deleted user'}"
        if cancel.get("reason"):
            text += f" ({cancel['reason']})"
    return text if text.endswith((".", "!", "?")) else text + "."


def duration(task: dict[str, Any] | None) -> float | None:
    """Seconds from the task's start to its end, when it has both."""
    if not task or not task.get("started_at") or not task.get("finished_at"):
        return None
    try:
        started = datetime.fromisoformat(task["started_at"])
        finished = datetime.fromisoformat(task["finished_at"])
    except (TypeError, ValueError):
        return None
    return max(0.0, (finished - started).total_seconds())


def display_for(as_json: bool) -> Display:
    if as_json:
        return JsonDisplay()
    if sys.stdout.isatty():
        return TtyDisplay()
    return LineDisplay()
