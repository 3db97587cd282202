"""The tasks page: the filtered, paged, live table; bulk cancel and retry; the new-task form.

The filter is the task API's own query (``selectors.task_list_params`` runs the API's
serializer), kept in the URL so a reload or a link shows the same tasks; the page adds only
``before`` (paging backwards) and ``view`` (the saved view it was opened from). An htmx
request for the page gets the table body alone: the live refresh asks for it whenever a task
changes state.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote_plus, urlencode

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, QueryDict
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from config.errors import InvalidInput, NotFound
from metrics.stream.channels import TASKS, resume_id
from security import roles
from security.pages import page
from tasks import selectors, services
from tasks.api.serializers import ORDERINGS, TaskListQuerySerializer
from tasks.models import Priority, SavedView
from tasks.pages.forms import BulkActionForm, TaskSpecForm, error_messages
from tasks.pages.paging import keyset_window
from tasks.states import TaskAction, TaskState

# Query parameters of the page that are not the API's: paging backwards, the view opened.
PAGE_PARAMS = ("before", "view")
ORDERING_LABELS = {
    "-created_at": "Newest first",
    "created_at": "Oldest first",
    "-priority": "Highest priority first",
    "priority": "Lowest priority first",
}
PAGE_SIZES = (25, 50, 100, 200, 500)
# How the report of a bulk action names what happened: (done, "not ...able").
BULK_WORDS = {
    TaskAction.CANCEL: ("Cancelled", "cancellable"),
    TaskAction.RETRY: ("Retried", "retryable"),
    TaskAction.PAUSE: ("Paused", "pausable"),
    TaskAction.RESUME: ("Resumed", "resumable"),
}


def list_url(querystring: str = "", **extra: str | None) -> str:
    """The tasks page for a normalised query, with page parameters (cursor, before, view) added."""
    query = "&".join(p for p in (querystring, urlencode([(k, v) for k, v in extra.items() if v])) if p)
    url = reverse("task-list")
    return f"{url}?{query}" if query else url


def describe(querystring: str) -> str:
    """A filter as a person reads it: ``state=running, priority=high`` (or "all tasks")."""
    return ", ".join(unquote_plus(part) for part in querystring.split("&") if part) or "all tasks"


@page()
@require_safe
def task_list(request: HttpRequest) -> HttpResponse:
    return render_list(request, request.GET)


def render_list(
    request: HttpRequest, query: QueryDict, *, status: int = 200, extra: dict[str, Any] | None = None
) -> HttpResponse:
    """The tasks page for ``query`` (the URL's, or the one a refused form post came from)."""
    # The stream resumes from the id as it is before the rows are read (see resume_id).
    rendered_at = resume_id(TASKS) if not getattr(request, "htmx", False) else ""
    # A form sends its empty fields too (worker=&created_after=...): on a page they mean "any".
    data = {key: value for key, value in selectors.query_data(query).items() if value != ""}
    before = data.pop("before", None)
    view_id = data.pop("view", None)
    errors: dict[str, list[str]] = {}
    params: dict[str, Any] = {}
    window = None
    try:
        if isinstance(before, list):
            raise InvalidInput(fields={"before": ["Give one cursor."]})
        params = selectors.task_list_params(data)
        window = keyset_window(
            selectors.task_list_matching(params),
            ordering=ORDERINGS[params["ordering"]],
            cursor=params.get("cursor"),
            before=before,
            page_size=params["page_size"],
        )
    except InvalidInput as exc:
        errors = {name: error_messages(value) for name, value in exc.fields.items()}
        status = 400
    querystring = selectors.task_list_querystring(params) if not errors else ""
    view = _saved_view(view_id[0] if isinstance(view_id, list) else view_id)
    view_param = str(view.pk) if view else ""
    context = {
        "tasks": window.items if window else [],
        "errors": errors,
        "row_url": request.get_full_path(),
        "stream_url": reverse("tasks-stream"),
        "stream_last_id": rendered_at,
        "columns": 10 if roles.can_operate(request.user) else 9,
    }
    if getattr(request, "htmx", False):
        return render(request, "tasks/partials/task_rows.html", context, status=status)
    known = set(TaskListQuerySerializer().fields) | set(PAGE_PARAMS)
    context |= {
        "filters": _filter_values(query, params),
        "field_errors": {name: msgs for name, msgs in errors.items() if name in known},
        "other_errors": [f"{name}: {m}" for name, msgs in errors.items() if name not in known for m in msgs],
        "querystring": querystring,
        "filter_text": describe(querystring),
        "next_url": list_url(querystring, cursor=window.next_cursor, view=view_param)
        if window and window.next_cursor
        else None,
        "previous_url": list_url(querystring, before=window.previous_cursor, view=view_param)
        if window and window.previous_cursor
        else None,
        "first_url": list_url(querystring, view=view_param) if (params.get("cursor") or before) else None,
        "saved_views": selectors.saved_view_list(owner=request.user),
        "view": view,
        "bulk_limit": services.BULK_ACTION_LIMIT,
        "states": TaskState.values,
        "priorities": [p.label for p in Priority],
        "orderings": ORDERING_LABELS,
        "page_sizes": PAGE_SIZES,
        **(extra or {}),
    }
    return render(request, "tasks/list.html", context, status=status)


def _saved_view(view_id: str | None) -> SavedView | None:
    if not view_id:
        return None
    try:
        return selectors.saved_view_get(view_id=view_id)
    except NotFound:
        return None


def _filter_values(query: QueryDict, params: dict[str, Any]) -> dict[str, Any]:
    """What the filter form shows: the values as typed (so a refused one can be corrected)."""

    def split(key: str) -> set[str]:
        return {part.strip() for value in query.getlist(key) for part in value.split(",") if part.strip()}

    def when(key: str) -> str:
        if params.get(key):
            # datetime-local shows the server's zone (UTC), to the second.
            return params[key].strftime("%Y-%m-%dT%H:%M:%S")
        return query.get(key, "")

    return {
        "state": split("state"),
        "priority": split("priority"),
        "worker": query.get("worker", ""),
        "created_after": when("created_after"),
        "created_before": when("created_before"),
        "q": query.get("q", ""),
        "ordering": query.get("ordering", "-created_at"),
        "page_size": str(params.get("page_size") or query.get("page_size", "50")),
    }


# --- Bulk actions ---------------------------------------------------------------------------


@page(roles.can_operate)
@require_POST
def task_bulk(request: HttpRequest) -> HttpResponse:
    """Cancel or retry the ticked tasks, or every task matching the filter once its count is confirmed."""
    form = BulkActionForm(request.POST)
    if not form.is_valid():
        raise InvalidInput(fields={name: list(errs) for name, errs in form.errors.items()})
    data = form.cleaned_data
    action, querystring = data["action"], data["query"]
    if data["scope"] == BulkActionForm.SELECTED:
        task_ids = data["task_ids"]
    else:
        try:
            params = selectors.task_list_params(selectors.query_data(QueryDict(querystring)))
        except InvalidInput as exc:
            raise InvalidInput(fields={"query": [exc.message]}) from exc
        querystring = selectors.task_list_querystring(params)
        matching = selectors.task_list_matching(params)
        count = matching.count()
        confirmed = data["confirmed"]
        if confirmed != count or count > services.BULK_ACTION_LIMIT:
            return _confirm(request, action, querystring, data["reason"], count, confirmed)
        task_ids = [str(pk) for pk in matching.order_by("created_at", "id").values_list("pk", flat=True)]
        if len(task_ids) != count:  # it changed between the count and the read
            return _confirm(request, action, querystring, data["reason"], len(task_ids), confirmed)
    outcome = services.task_bulk_action(actor=request.user, action=action, task_ids=task_ids, reason=data["reason"])
    level = messages.SUCCESS if outcome.applied or not outcome.refused else messages.WARNING
    messages.add_message(request, level, bulk_report(outcome))
    return redirect(list_url(querystring))


def _confirm(
    request: HttpRequest, action: str, querystring: str, reason: str, count: int, confirmed: int | None
) -> HttpResponse:
    """The question before a bulk action over a filter: how many tasks it would touch.

    Asked again (409) when the count the operator confirmed is no longer the count; refused
    (400) above the cap, which the page states.
    """
    over = count > services.BULK_ACTION_LIMIT
    changed = confirmed is not None and confirmed != count
    status = 400 if over else 409 if changed else 200
    context = {
        "action": action,
        "verb": action.capitalize(),
        "count": count,
        "confirmed": confirmed,
        "changed": changed,
        "over": over,
        "limit": services.BULK_ACTION_LIMIT,
        "querystring": querystring,
        "filter_text": describe(querystring),
        "reason": reason,
        "back_url": list_url(querystring),
    }
    return render(request, "tasks/bulk_confirm.html", context, status=status)


def bulk_report(outcome: services.BulkOutcome) -> str:
    """``Cancelled 12, skipped 3 (not cancellable from their state).``"""
    done, able = BULK_WORDS.get(TaskAction(outcome.action), (outcome.action, outcome.action))
    text = f"{done} {len(outcome.applied)}"
    stopping = sum(1 for state in outcome.applied.values() if state == TaskState.CANCELING)
    if stopping:
        text += f" ({stopping} still stopping at their worker)"
    if outcome.refused:
        reasons = []
        for code, number in outcome.skipped_by_code().items():
            if code == "illegal_transition":
                why = f"not {able} from their state"
            elif code == "not_found":
                why = "no longer exist"
            else:
                why = next(r.message for r in outcome.refused.values() if r.code == code)
            reasons.append(why if len(outcome.skipped_by_code()) == 1 else f"{number} {why}")
        text += f", skipped {len(outcome.refused)} ({'; '.join(reasons)})"
    return text + "."


# --- New task ---------------------------------------------------------------------------------


@page(roles.can_operate)
@require_http_methods(["GET", "POST"])
def task_new(request: HttpRequest) -> HttpResponse:
    """The working-spec form; its errors (the spec's own) next to each field, the values kept."""
    form = TaskSpecForm(request.POST or None)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                task = services.task_create(spec=form.spec(), actor=request.user)
            except InvalidInput as exc:
                form.add_spec_errors(exc.fields)
            else:
                messages.success(request, f"Task “{task.title}” queued.")
                return redirect("task-detail", task_id=task.pk)
        status = 400
    return render(request, "tasks/new.html", {"form": form}, status=status)
