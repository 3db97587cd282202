"""Human output: compact tables, timestamps, progress bars and one-line timeline entries.

Plain ASCII, so that output copies into issues and logs unchanged; ``--json`` bypasses all
of it (:func:`print_json`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import click

TERMINAL_STATES = frozenset({"completed", "failed", "canceled"})
WORKER_PREFIX = "worker."
BAR_WIDTH = 20


def print_json(data: Any, *, compact: bool = False) -> None:
    if compact:
        click.echo(json.dumps(data, separators=(",", ":"), ensure_ascii=False))
    else:
        click.echo(json.dumps(data, indent=2, ensure_ascii=False))


def when(value: str | None) -> str:
    """``2026-12-03T09:51:54.938518Z`` as ``2026-12-03 09:51:54Z`` (the API's times are UTC)."""
    if not value:
        return "-"
    date, _, rest = value.partition("T")
    time_part = rest[:8]
    zone = "Z" if rest.endswith("Z") or rest.endswith("+00:00") else ""
    return f"{date} {time_part}{zone}" if time_part else value


def clock(value: str | None) -> str:
    """Just the time of day of an API timestamp: ``09:51:54``."""
    if not value or "T" not in value:
        return "--:--:--"
    return value.partition("T")[2][:8]


def truncate(text: Any, width: int) -> str:
    text = "" if text is None else str(text)
    text = " ".join(text.split())  # one line, whatever the title holds
    return text if len(text) <= width else text[: width - 3] + "..."


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Columns padded to their widest cell; the last column is not padded."""
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for row in cells:
        padded = [cell.ljust(widths[i]) for i, cell in enumerate(row[:-1])] + [row[-1]]
        lines.append("  ".join(padded).rstrip())
    return "\n".join(lines)


def bar(percent: Any, width: int = BAR_WIDTH) -> str:
    try:
        value = max(0, min(100, int(percent)))
    except (TypeError, ValueError):
        value = 0
    filled = width * value // 100  # full only at 100%
    return f"[{'#' * filled}{'.' * (width - filled)}] {value:3d}%"


def progress_text(task: dict[str, Any]) -> str:
    progress = task.get("progress") or {}
    phase = progress.get("phase") or ""
    return f"{bar(progress.get('percent', 0))} {phase}".rstrip()


def is_transition(entry: dict[str, Any]) -> bool:
    """A timeline entry of a state change: it names the state it went to.

    Worker-supplied entries (``worker.*``) keep their fields under ``payload``, so a worker
    cannot make one look like a transition.
    """
    data = entry.get("data")
    return (
        not str(entry.get("type", "")).startswith(WORKER_PREFIX)
        and isinstance(data, dict)
        and isinstance(data.get("to"), str)
    )


def _score(value: Any) -> str:
    return f"{value:.2f}" if isinstance(value, int | float) else str(value)


def entry_summary(entry: dict[str, Any]) -> str:
    """One line saying what a timeline entry records."""
    kind = str(entry.get("type", "?"))
    data = entry.get("data") if isinstance(entry.get("data"), dict) else {}
    if kind.startswith(WORKER_PREFIX):
        payload = data.get("payload") if isinstance(data.get("payload"), dict) else {}
        name = kind[len(WORKER_PREFIX) :]
        if name == "progress":
            text = f"{bar(payload.get('percent'))} {payload.get('phase') or ''}".rstrip()
            return f"{text}  {payload['message']}" if payload.get("message") else text
        if name == "log":
            return f"log [{payload.get('level', 'info')}] {payload.get('message', '')}"
        if name == "artifact":
            return f"artifact {payload.get('path', '')}"
        return f"{kind} {truncate(json.dumps(payload, ensure_ascii=False), 100)}"
    if kind == "worker_call":
        outcome = data.get("error") or f"HTTP {data.get('status')}"
        which = f"attempt {data.get('attempt')}, try {data.get('try')}"
        return f"call to {data.get('worker')} ({which}): {outcome}, {data.get('latency_ms')} ms"
    parts = []
    if is_transition(entry):
        parts.append(f"{data.get('from') or 'new'} -> {data['to']}")
        if kind not in (data["to"], "created", "attempt_started"):
            parts.append(f"({kind})")  # running -> queued (retry_scheduled)
    else:
        parts.append(kind)
    if data.get("attempt") is not None:
        parts.append(f"attempt {data['attempt']}")
    if data.get("worker"):
        parts.append(f"on {data['worker']}")
    if data.get("decision"):
        verdict = f"verdict {data['decision']}"
        if data.get("score") is not None:
            verdict += f", score {_score(data['score'])}"
            if data.get("threshold") is not None:
                verdict += f" (threshold {_score(data['threshold'])})"
        parts.append(verdict)
    if data.get("error"):
        parts.append(f"error: {truncate(data['error'], 200)}")
    if data.get("reason"):
        parts.append(f"reason: {truncate(data['reason'], 200)}")
    if data.get("actor"):
        parts.append(f"by {data['actor']}")
    return " ".join(parts) if parts else kind


def entry_line(entry: dict[str, Any]) -> str:
    return f"{clock(entry.get('created_at'))}  {entry_summary(entry)}"


def field_rows(pairs: Sequence[tuple[str, Any]]) -> str:
    """``Label  value`` lines, the labels padded alike; pairs whose value is None are left out."""
    kept = [(label, value) for label, value in pairs if value is not None]
    width = max((len(label) for label, _ in kept), default=0)
    return "\n".join(f"{label.ljust(width)}  {value}" for label, value in kept)


def verdict_text(verdict: dict[str, Any] | None) -> str | None:
    if not verdict:
        return None
    how = "automatic" if verdict.get("automatic") else f"by {verdict.get('decided_by') or 'a deleted user'}"
    text = f"{verdict.get('decision')} ({how}"
    if verdict.get("score") is not None:
        text += f", score {_score(verdict['score'])}"
        if verdict.get("threshold") is not None:
            text += f" / threshold {_score(verdict['threshold'])}"
    return f"{text}) {verdict.get('id', '')}".rstrip()


def task_details(task: dict[str, Any], *, events: int = 10) -> str:
    """What ``agency status`` shows of a task."""
    cancel = task.get("cancel")
    cancel_text = None
    if cancel:
        cancel_text = (
            f"requested {when(cancel.get('requested_at'))} by {cancel.get('requested_by') or 'a deleted user'}"
        )
        if cancel.get("reason"):
            cancel_text += f": {cancel['reason']}"
    created = when(task.get("created_at"))
    if task.get("created_by"):
        created += f" by {task['created_by']}"
    lines = [
        field_rows(
            [
                ("Task", task.get("id")),
                ("Title", task.get("title")),
                ("State", task.get("state")),
                ("Progress", progress_text(task)),
                ("Priority", f"{task.get('priority')}, risk tier {task.get('risk_tier')}"),
                ("Attempt", f"{task.get('attempt')} of {task.get('max_attempts')}"),
                ("Worker", task.get("worker")),
                ("Created", created),
                ("Started", when(task["started_at"]) if task.get("started_at") else None),
                ("Finished", when(task["finished_at"]) if task.get("finished_at") else None),
                (
                    "Retry at",
                    when(task["run_after"]) if task.get("run_after") and task.get("state") == "queued" else None,
                ),
                ("Verdict", verdict_text(task.get("verdict"))),
                ("Cancel", cancel_text),
                ("Error", truncate(task["error"], 300) if task.get("error") else None),
            ]
        )
    ]
    violations = task.get("violations") or []
    if violations:
        lines.append(f"Violations ({len(violations)}):")
        for v in violations[:20]:
            where = v.get("file") or ""
            if where and v.get("line"):
                where += f":{v['line']}"
            rule = f"{v.get('gate', '?')}/{v.get('rule', '?')}"
            lines.append(f"  {v.get('severity', '?'):8} {rule} {where} {truncate(v.get('message', ''), 100)}".rstrip())
    recent = (task.get("events") or [])[-events:] if events > 0 else []
    if recent:
        lines.append("Recent events:")
        lines += [f"  {e.get('seq', ''):>4}  {entry_line(e)}" for e in recent]
    return "\n".join(lines)
