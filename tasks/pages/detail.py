"""The task detail page: the spec, the live summary (state, progress, cancel facts, result,
verdict, violations, waivers, provenance, the actions) and the paged, live timeline.

However long the timeline, the page reads one page of it (the newest
:data:`TIMELINE_PAGE` events, one range scan of the (task, seq) index); older ones come on
demand with ``?before=<seq>``, new ones with ``?after=<seq>``. htmx asks for three fragments
of the one URL: ``?after=`` (new events, appended), ``?before=`` (an older page, prepended),
and no parameter (the summary, refreshed when an event arrives).

The actions post to :func:`task_act`, which calls the same services as the API; which actions
are offered comes from the transition table (:func:`tasks.states.target_state`) and
:func:`tasks.review.verdicts.overridable`, never from a list kept here.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from config.errors import Conflict, InvalidInput
from config.strict import validated
from metrics.stream.channels import resume_id, task_channel
from security import roles
from security.pages import page
from tasks import selectors, services
from tasks.api.serializers import task_action_serializer
from tasks.models import WORKER_EVENT_PREFIX, Task, TaskEvent
from tasks.pages.forms import TimelineQuerySerializer, error_messages
from tasks.review import verdicts
from tasks.states import TaskAction, TaskState, target_state

TIMELINE_PAGE = 50
# New events one refresh brings at most; a burst beyond it arrives with the next refresh.
NEW_EVENTS_LIMIT = 500
ACTION_DONE = {
    TaskAction.PAUSE: "Paused.",
    TaskAction.RESUME: "Resumed: queued again.",
    TaskAction.RETRY: "Queued for another attempt.",
}


@dataclass(frozen=True)
class Entry:
    """One timeline row as the page shows it."""

    seq: int
    type: str
    created_at: Any
    summary: str
    data: str
    worker: bool


def entry(event: TaskEvent) -> Entry:
    data = event.data if isinstance(event.data, dict) else {}
    payload = data.get("payload") if isinstance(data.get("payload"), dict) else data
    bits = []
    if "from" in data or "to" in data:
        bits.append(f"{data.get('from') or 'new'} → {data.get('to')}")
    if isinstance(payload.get("percent"), int | float):
        bits.append(f"{payload['percent']}%")
    for key in ("phase", "message", "reason", "error"):
        if payload.get(key):
            bits.append(str(payload[key]))
    return Entry(
        seq=event.seq,
        type=event.type,
        created_at=event.created_at,
        summary=" · ".join(bits),
        data=json.dumps(event.data, ensure_ascii=False, sort_keys=True, default=str),
        worker=event.type.startswith(WORKER_EVENT_PREFIX),
    )


@page()
@require_GET
def task_detail(request: HttpRequest, task_id: uuid.UUID) -> HttpResponse:
    query = validated(TimelineQuerySerializer, selectors.query_data(request.GET))
    task = selectors.task_get(task_id=task_id)
    if getattr(request, "htmx", False):
        if "after" in query:
            events = selectors.task_events(task=task, after=query["after"], limit=NEW_EVENTS_LIMIT)
            last = events[-1].seq if events else query["after"]
            context = {"task": task, "entries": [entry(e) for e in events], "last_seq": last}
            return render(request, "tasks/partials/timeline_new.html", context)
        if "before" in query:
            return render(request, "tasks/partials/timeline_older.html", _timeline(task, query["before"]))
        return render(request, "tasks/partials/task_summary.html", summary_context(request, task))
    return render_detail(request, task, before=query.get("before"))


def render_detail(
    request: HttpRequest, task: Task, *, before: int | None = None, status: int = 200, **extra: Any
) -> HttpResponse:
    context = {
        **summary_context(request, task, **extra),
        **_timeline(task, before),
        "spec_json": json.dumps(task.spec, indent=2, ensure_ascii=False, sort_keys=True),
        "stream_url": f"{reverse('tasks-stream')}?task={task.pk}",
        # What the page shows is the task as of this event: the stream replays what follows.
        "stream_last_id": resume_id(task_channel(task.pk), task.event_seq),
        "paged": before is not None,
    }
    return render(request, "tasks/detail.html", context, status=status)


def _timeline(task: Task, before: int | None) -> dict[str, Any]:
    # The latest page is the timeline as of the task row read before it (``task.event_seq``), the
    # same point the stream resumes from and live appends continue after: an event committed
    # between the two reads would otherwise be shown now and appended again by the first
    # ``?after=`` (seen in a browser test as seq 3 twice).
    upper = before if before is not None else task.event_seq + 1
    events, has_older = selectors.task_timeline_page(task=task, before=upper, limit=TIMELINE_PAGE)
    return {
        "task": task,
        "entries": [entry(e) for e in events],
        "older_seq": events[0].seq if events and has_older else None,
        # Live appends continue from the newest event there is, not the newest on an older page.
        "last_seq": task.event_seq,
    }


def summary_context(request: HttpRequest, task: Task, **extra: Any) -> dict[str, Any]:
    """The refreshable part: state, progress, the two cancel facts, result, verdict, actions."""
    verdict = verdicts.latest_verdict(task)
    record = verdicts.provenance(task) if verdict else None
    operate = roles.can_operate(request.user)
    actions = [a for a in TaskAction if target_state(a, task.state) is not None] if operate else []
    result = task.result if isinstance(task.result, dict) else None
    overridable = operate and verdicts.overridable(task)
    context = {
        "task": task,
        "verdict": verdict,
        "provenance": record,
        "waived": _waived(verdict, task),
        "result": result,
        "result_json": json.dumps(result, indent=2, ensure_ascii=False, sort_keys=True) if result else "",
        "files": [f for f in (result or {}).get("files_modified") or [] if isinstance(f, dict)],
        "stop_event": selectors.task_stop_event(task=task),
        "actions": actions,
        "overridable": overridable,
        # Names the actions on offer; the live refresh keeps the forms while it stays the same.
        "actions_key": "-".join([*actions, *(["override"] if overridable else [])]) or "none",
        "override_decisions": [(d, d.replace("_", " ")) for d in verdicts.OVERRIDE_DECISIONS],
        "min_reason": verdicts.MIN_REASON,
        "canceling": task.state == TaskState.CANCELING,
        "action_errors": {},
        "action_error": None,
        "posted": {},
        **extra,
    }
    # Errors of a post that no form on the page made (an action not offered from this state,
    # or none at all) are shown above the forms, not lost.
    shown = {str(a) for a in actions} | ({"override"} if overridable else set())
    if context["action_errors"] and context["posted"].get("action") not in shown:
        context["stray_errors"] = context["action_errors"]
    return context


def _waived(verdict: Any, task: Task) -> list[dict[str, Any]]:
    """The violations a waiver dropped, with the waiver that dropped each (the verdict's record)."""
    rows = verdict.waived if verdict is not None else [v for v in task.violations if v.get("waived_by")]
    return [
        {**row, "waiver_id": row.get("waiver") or row.get("waived_by"), "waiver_title": row.get("waiver_title", "")}
        for row in rows
        if isinstance(row, dict)
    ]


@page(roles.can_operate)
@require_POST
def task_act(request: HttpRequest, task_id: uuid.UUID) -> HttpResponse:
    """Pause, resume, cancel, retry or override, through the same services (and input rules) as the API."""
    data = {key: value for key, value in request.POST.items() if key != "csrfmiddlewaretoken"}
    action = data.get("action", "")
    try:
        body = validated(task_action_serializer(data), data)
        if body["action"] == "override":
            task = verdicts.task_override(
                task_id=task_id,
                actor=request.user,
                decision=body["decision"],
                reason=body["reason"],
                guidance=body["guidance"],
            )
            done = f"Override recorded: {body['decision'].replace('_', ' ')}."
        else:
            task = services.ACTION_SERVICES[body["action"]](task_id=task_id, actor=request.user, reason=body["reason"])
            done = _done(body["action"], task)
    except InvalidInput as exc:
        errors = {name: error_messages(value) for name, value in exc.fields.items()}
        return _refused(request, task_id, 400, action=action, action_errors=errors, posted=data)
    except Conflict as exc:
        return _refused(request, task_id, exc.http_status, action=action, action_error=exc.message, posted=data)
    if getattr(request, "htmx", False):
        return render(request, "tasks/partials/task_summary.html", summary_context(request, task, done=done))
    messages.success(request, done)
    return redirect("task-detail", task_id=task.pk)


def _done(action: str, task: Task) -> str:
    if action == TaskAction.CANCEL:
        if task.state == TaskState.CANCELING:
            return "Cancel requested; the worker is being told to stop."
        return "Canceled."
    return ACTION_DONE[TaskAction(action)]


def _refused(request: HttpRequest, task_id: uuid.UUID, status: int, **extra: Any) -> HttpResponse:
    task = selectors.task_get(task_id=task_id)
    if getattr(request, "htmx", False):
        context = summary_context(request, task, **extra)
        return render(request, "tasks/partials/task_summary.html", context, status=status)
    return render_detail(request, task, status=status, **extra)
