"""The Audit page: the audit API's search as a form, its results as a table linking to each resource.

The query string is validated by the API's own :class:`audit.api.serializers.AuditQuerySerializer`
and searched by the same selector and keyset pagination, so the page and
``GET /api/v1/audit`` accept, refuse and return the same records; the filters stay in
the URL, and a bad one is a 400 with its message beside its field. A page of records is a
constant number of queries: the page itself, the usernames of the user actors on it, and
the choices of the action and resource-type fields (loose index scans).

Resources link to where they are shown: a task to its page, a worker to its row of the
Workers page, a waiver to its admin page (staff) or its API record.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

from django.contrib.auth import get_user_model
from django.http import HttpRequest, HttpResponse, QueryDict
from django.shortcuts import render
from django.urls import NoReverseMatch, reverse
from django.views.decorators.http import require_safe

from audit import selectors
from audit.api.serializers import ORDERING, AuditQuerySerializer
from audit.models import AuditRecord
from config.errors import InvalidInput
from config.pagination import keyset_page
from security.pages import page

# The filters of the form, in its order; the serializer knows the rest (cursor, page_size, format).
FILTERS = ("action", "actor", "resource_type", "resource_id", "since", "until")
SUMMARY_LENGTH = 160
VALUE_LENGTH = 40
DETAIL_LENGTH = 4000
CHOICES_LIMIT = 200
USER_ACTOR_PREFIX = "user:"


@dataclass(frozen=True)
class Row:
    record: AuditRecord
    actor_name: str
    resource_url: str | None
    summary: str
    detail: str


def query_data(params: QueryDict) -> dict[str, Any]:
    """The query string as the API's serializer takes it, blank values left out.

    A cleared field of a GET form still sends ``name=``; blank means "no filter" here, as
    it does for the API's text filters (a blank ``since`` would otherwise be a bad date).
    """
    data: dict[str, Any] = {}
    for key in params:
        values = [v for v in params.getlist(key) if v.strip()]
        if values:
            data[key] = values if len(values) > 1 else values[0]
    return data


def resource_url(record: AuditRecord, *, staff: bool) -> str | None:
    """Where ``record``'s resource is shown, or None for resources without a page."""
    kind, rid = record.resource_type, record.resource_id
    try:
        if kind == "task":
            return reverse("task-detail", args=[uuid.UUID(rid)])
        if kind == "worker":
            return f"{reverse('worker-list')}#worker-{rid}"
        if kind == "waiver":
            waiver = uuid.UUID(rid)
            if staff:
                return reverse("admin:tasks_waiver_change", args=[waiver])
            return reverse("waiver-detail", args=[waiver])
    except (ValueError, NoReverseMatch):
        return None
    return None


def summarize(data: Any) -> str:
    """``key=value, ...`` of a record's data on one line, each value and the whole cut short."""
    if not isinstance(data, dict):
        return _cut(_compact(data), SUMMARY_LENGTH)
    text = ", ".join(f"{key}={_cut(_compact(value), VALUE_LENGTH)}" for key, value in data.items())
    return _cut(text, SUMMARY_LENGTH)


def _compact(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"), default=str)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _actor_names(records: list[AuditRecord]) -> dict[str, str]:
    ids = {r.actor.removeprefix(USER_ACTOR_PREFIX) for r in records if r.actor.startswith(USER_ACTOR_PREFIX)}
    ids = {i for i in ids if i.isdigit()}
    if not ids:
        return {}
    users = get_user_model().objects.filter(pk__in=[int(i) for i in ids]).values_list("pk", "username")
    return {f"{USER_ACTOR_PREFIX}{pk}": username for pk, username in users}


def _messages(errors: Any) -> list[str]:
    if isinstance(errors, dict):
        return [f"{k}: {m}" for k, v in errors.items() for m in _messages(v)]
    if isinstance(errors, list | tuple):
        return [m for e in errors for m in _messages(e)]
    return [str(errors)]


@page()
@require_safe
def audit_page(request: HttpRequest) -> HttpResponse:
    data = query_data(request.GET)
    serializer = AuditQuerySerializer(data=data)
    errors: dict[str, list[str]] = {}
    rows: list[Row] = []
    next_url = None
    if serializer.is_valid():
        params = serializer.validated_data
        records = selectors.audit_matching(params)
        try:
            found = keyset_page(records, ordering=ORDERING, cursor=params.get("cursor"), page_size=params["page_size"])
        except InvalidInput as error:
            errors = {field: _messages(messages) for field, messages in error.fields.items()}
        else:
            names = _actor_names(found.items)
            staff = bool(request.user.is_staff)
            rows = [
                Row(
                    record=r,
                    actor_name=names.get(r.actor, ""),
                    resource_url=resource_url(r, staff=staff),
                    summary=summarize(r.data),
                    detail=_cut(json.dumps(r.data, indent=2, sort_keys=True, default=str), DETAIL_LENGTH),
                )
                for r in found.items
            ]
            if found.next_cursor:
                following = request.GET.copy()
                following["cursor"] = found.next_cursor
                next_url = f"?{following.urlencode()}"
    else:
        errors = {field: _messages(messages) for field, messages in serializer.errors.items()}

    values = {name: ", ".join(request.GET.getlist(name)) for name in FILTERS}
    # The page size is no field of the form, but a search from the form keeps it.
    kept = {"page_size": data["page_size"]} if isinstance(data.get("page_size"), str) else {}
    first_query = request.GET.copy()
    first_query.pop("cursor", None)
    context = {
        "rows": rows,
        "values": values,
        "errors": errors,
        # Errors of parameters the form has no field for (cursor, page_size, an unknown key).
        "other_errors": {k: v for k, v in errors.items() if k not in FILTERS},
        "kept": kept,
        "next_url": next_url,
        "first_url": f"?{first_query.urlencode()}" if "cursor" in request.GET else None,
        "api_url": f"{reverse('audit-list')}?{request.GET.urlencode()}" if request.GET else reverse("audit-list"),
        "action_choices": selectors.distinct_values("action", limit=CHOICES_LIMIT),
        "resource_type_choices": selectors.distinct_values("resource_type", limit=CHOICES_LIMIT),
        "filtered": any(k in data for k in FILTERS),
    }
    return render(request, "audit/list.html", context, status=400 if errors else 200)
