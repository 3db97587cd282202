"""The SQL explorer page: saved queries, the editor with the schema browser, runs, CSV export, history.

Every action goes through :mod:`metrics.queries.services` (viewers see, run and export their own
and shared queries; admins save, change and delete them), so the page, the API and the CLI refuse
and record the same things. Without JavaScript every form posts and the page comes back whole;
with htmx the run form swaps in the results and the history only.

The CSV export is streamed: the first piece of rows is read before the response starts (so a
refused query is a 400 page with its message, not a broken download), the rest is read a piece
at a time in a thread and sent as it comes, and the run is recorded when the last row has gone
(or the client has gone: ``aborted``). Under ASGI the response body is an async iterator, which
Django sends piece by piece; a sync iterator would be read whole into memory first.
"""

from __future__ import annotations

import asyncio
import csv
import datetime
import io
import re
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

from asgiref.sync import sync_to_async
from django import forms
from django.contrib import messages
from django.db import connection
from django.db.models import Max
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST

from config.errors import InvalidInput
from metrics import charts
from metrics.models import ParameterType, QueryRun, RunOutcome, SavedQuery
from metrics.queries import allowlist, services
from metrics.queries.errors import QueryRefused, QueryTimedOut
from security import roles
from security.pages import page
from security.principals import require

PAGE_SIZES = (50, 100, 500)
HISTORY = 20
PARAM_PREFIX = "p_"
# A spreadsheet reads a cell that starts with one of these as a formula (CSV injection): text
# cells that do are written with a leading apostrophe, which spreadsheets show as text.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


# --- forms -------------------------------------------------------------------------------------


class QueryForm(forms.Form):
    """A saved query as a browser sends it; the rules are the service's (``services._clean``)."""

    # No rule here but the shapes: the service checks every field, so all its errors show at once.
    name = forms.CharField(required=False)
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))
    sql = forms.CharField(
        label="SQL",
        required=False,
        strip=False,
        widget=forms.Textarea(attrs={"rows": 8, "spellcheck": "false", "class": "sql"}),
        help_text="One statement that reads. Parameters are written :name and bound by the database driver.",
    )
    parameters = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 3, "spellcheck": "false"}),
        help_text=(
            "One a line: name, type, default (optional), separated by spaces — for example "
            "“state text failed” or “since date 2026-01-01”. Types: " + ", ".join(ParameterType.values) + "."
        ),
    )
    shared = forms.BooleanField(required=False, help_text="Viewers can see and run a shared query.")

    @classmethod
    def for_query(cls, query: SavedQuery, data: Any = None) -> QueryForm:
        lines = [" ".join(x for x in (p["name"], p["type"], _text(p.get("default"))) if x) for p in query.parameters]
        initial = {
            "name": query.name,
            "description": query.description,
            "sql": query.sql,
            "parameters": "\n".join(lines),
            "shared": query.shared,
        }
        return cls(data, initial=initial, prefix=None)

    def declared(self) -> list[dict[str, Any]]:
        """The parameters box as the service takes it: [{"name", "type", "default"?}, ...]."""
        declared = []
        for line in self.cleaned_data["parameters"].splitlines():
            parts = line.split(None, 2)
            if not parts:
                continue
            item: dict[str, Any] = {"name": parts[0], "type": parts[1] if len(parts) > 1 else ParameterType.TEXT}
            if len(parts) > 2:
                item["default"] = parts[2]
            declared.append(item)
        return declared

    def fields_for_service(self) -> dict[str, Any]:
        data = self.cleaned_data
        return {
            "name": data["name"],
            "description": data["description"],
            "sql": data["sql"],
            "parameters": self.declared(),
            "shared": data["shared"],
        }

    def add_service_errors(self, fields: dict[str, Any]) -> None:
        """The service's field errors next to their form field (``parameters[2].type`` → parameters)."""
        for key, messages_ in fields.items():
            match = re.match(r"parameters\[(\d+)\]", key)
            name = "parameters" if key.startswith("parameters") else key if key in self.fields else None
            for message in messages_ if isinstance(messages_, list) else [messages_]:
                text = f"line {int(match.group(1)) + 1}: {message}" if match else str(message)
                self.add_error(name, text)


def _text(value: Any) -> str:
    if value is None:
        return ""
    return str(value).lower() if isinstance(value, bool) else str(value)


def run_form_class(query: SavedQuery) -> type[forms.Form]:
    """The run form of ``query``: one typed field a declared parameter, the page size, the offset."""
    widgets = {
        ParameterType.INTEGER: forms.NumberInput(attrs={"step": "1"}),
        ParameterType.NUMBER: forms.NumberInput(attrs={"step": "any"}),
        ParameterType.DATE: forms.DateInput(attrs={"type": "date"}),
        ParameterType.BOOLEAN: forms.Select(choices=[("true", "true"), ("false", "false")]),
    }
    attrs: dict[str, Any] = {}
    for spec in query.parameters:
        default = spec.get("default")
        attrs[PARAM_PREFIX + spec["name"]] = forms.CharField(
            label=f"{spec['name']} ({spec['type']})",
            required="default" not in spec,
            strip=False,
            initial=_text(default),
            widget=widgets.get(spec["type"], forms.TextInput()),
        )
    attrs["limit"] = forms.TypedChoiceField(
        label="Rows a page", choices=[(n, n) for n in PAGE_SIZES], coerce=int, initial=100, required=False
    )
    attrs["offset"] = forms.IntegerField(min_value=0, max_value=100_000, required=False, widget=forms.HiddenInput)
    return type("RunForm", (forms.Form,), attrs)


def run_values(query: SavedQuery, form: forms.Form) -> dict[str, Any]:
    """The form's parameter values as text for the service, which types and checks them."""
    values = {}
    for spec in query.parameters:
        raw = form.data.get(PARAM_PREFIX + spec["name"], "")
        if raw != "":
            values[spec["name"]] = raw
    return values


def add_run_errors(form: forms.Form, fields: dict[str, Any]) -> None:
    for key, messages_ in fields.items():
        name = PARAM_PREFIX + key.removeprefix("params.") if key.startswith("params.") else key
        for message in messages_ if isinstance(messages_, list) else [messages_]:
            form.add_error(name if name in form.fields else None, str(message))


# --- the schema browser ---------------------------------------------------------------------------


def schema() -> list[dict[str, Any]]:
    """The tables and columns a query may read (allowlist.py), with their types, in table order."""
    tables = []
    with connection.cursor() as cursor:
        present = set(connection.introspection.table_names(cursor))
        for table in allowlist.READABLE_TABLES:
            if table not in present:
                continue
            columns = [
                {"name": c.name, "type": _column_type(c)}
                for c in connection.introspection.get_table_description(cursor, table)
                if allowlist.readable(table, c.name)
            ]
            tables.append({"name": table, "columns": columns})
    return tables


def _column_type(column: Any) -> str:
    try:
        return connection.introspection.get_field_type(column.type_code, column)
    except KeyError:
        return str(column.type_code)


# --- the results ----------------------------------------------------------------------------------


def cell(value: Any) -> str:
    if isinstance(value, datetime.datetime | datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, bytes | memoryview):
        return bytes(value).hex()
    return str(value)


def chart_of(columns: list[str], rows: list[list[Any]]) -> Any:
    """A bar chart when the result is one label column and one numeric column, else None."""
    if len(columns) != 2 or not rows:
        return None
    values = [row[1] for row in rows]
    numeric = [v for v in values if v is not None]
    if not numeric or not all(isinstance(v, int | float | Decimal) and not isinstance(v, bool) for v in numeric):
        return None
    return charts.bar_chart(
        ((cell(label) if label is not None else "NULL", value) for label, value in rows),
        title=f"{columns[1]} by {columns[0]}",
        value_label=columns[1],
    )


def history(query: SavedQuery) -> list[QueryRun]:
    return list(QueryRun.objects.filter(query=query).select_related("user")[:HISTORY])


def _detail_context(request: HttpRequest, query: SavedQuery, **extra: Any) -> dict[str, Any]:
    admin = roles.is_admin(request.user)
    context = {
        "query": query,
        "run_form": extra.pop("run_form", None) or run_form_class(query)(),
        "edit_form": extra.pop("edit_form", None) or (QueryForm.for_query(query) if admin else None),
        "history": history(query),
        "schema": schema() if admin else None,
        "api_url": reverse("query-detail", args=[query.pk]),
    }
    return context | extra


# --- views ----------------------------------------------------------------------------------------


@page()
@require_http_methods(["GET", "HEAD", "POST"])
def query_list(request: HttpRequest) -> HttpResponse:
    """The queries the user may see; an admin also gets the form of a new one."""
    form = QueryForm(request.POST or None) if roles.is_admin(request.user) else None
    status = 200
    if request.method == "POST":
        require(request.user, roles.is_admin, "save queries")
        if form is not None and form.is_valid():
            try:
                query = services.query_create(actor=request.user, **form.fields_for_service())
            except InvalidInput as exc:
                form.add_service_errors(exc.fields)
            except services.DuplicateName as exc:
                form.add_error("name", str(exc))
            else:
                messages.success(request, f"Query “{query.name}” saved.")
                return redirect("query-page", query_id=query.pk)
        status = 400
    queries = services.queries_visible(actor=request.user).annotate(last_run=Max("runs__started_at"))[:500]
    context = {
        "queries": queries,
        "form": form,
        "schema": schema() if form is not None else None,
    }
    return render(request, "metrics/queries/list.html", context, status=status)


@page()
@require_http_methods(["GET", "HEAD", "POST"])
def query_page(request: HttpRequest, query_id: Any) -> HttpResponse:
    """A saved query: its run form and history; for an admin, the editor. POST saves the editor."""
    query = services.query_get(actor=request.user, query_id=query_id)
    if request.method != "POST":
        return render(request, "metrics/queries/detail.html", _detail_context(request, query))
    form = QueryForm.for_query(query, request.POST)
    if form.is_valid():
        try:
            services.query_update(actor=request.user, query_id=query.pk, **form.fields_for_service())
        except InvalidInput as exc:
            form.add_service_errors(exc.fields)
        except services.DuplicateName as exc:
            form.add_error("name", str(exc))
        else:
            messages.success(request, "Query saved.")
            return redirect("query-page", query_id=query.pk)
    return render(request, "metrics/queries/detail.html", _detail_context(request, query, edit_form=form), status=400)


@page()
@require_POST
def query_delete(request: HttpRequest, query_id: Any) -> HttpResponse:
    query = services.query_get(actor=request.user, query_id=query_id)
    services.query_delete(actor=request.user, query_id=query.pk)
    messages.success(request, f"Query “{query.name}” deleted.")
    return redirect("query-list-page")


@page()
@require_POST
def query_run_page(request: HttpRequest, query_id: Any) -> HttpResponse:
    """Run the query: with htmx the results and history fragment, without it the whole page."""
    query = services.query_get(actor=request.user, query_id=query_id)
    form = run_form_class(query)(request.POST)
    result = error = None
    status = 200
    if form.is_valid():
        limit = form.cleaned_data["limit"] or 100
        offset = form.cleaned_data["offset"] or 0
        try:
            page_ = services.query_run(
                actor=request.user, query_id=query.pk, params=run_values(query, form), limit=limit, offset=offset
            )
        except InvalidInput as exc:
            add_run_errors(form, exc.fields)
            status = 400
        except (QueryRefused, QueryTimedOut) as exc:
            error, status = str(exc), exc.http_status  # 503 when the read-only connection is missing
        else:
            result = {
                "columns": page_.columns,
                "rows": [[None if v is None else cell(v) for v in row] for row in page_.rows],
                "more": page_.more,
                "duration_ms": page_.duration_ms,
                "offset": offset,
                "limit": limit,
                "first": offset + 1,
                "last": offset + len(page_.rows),
                "pages": _pages(offset, limit, more=page_.more),
                "kept": [
                    (k, v)
                    for k in form.data
                    if k.startswith(PARAM_PREFIX) or k == "limit"
                    for v in form.data.getlist(k)
                ],
                "chart": chart_of(page_.columns, page_.rows),
            }
    else:
        status = 400
    context = _detail_context(request, query, run_form=form, result=result, run_error=error, ran=True)
    template = "metrics/queries/partials/results.html" if request.htmx else "metrics/queries/detail.html"
    return render(request, template, context, status=status)


@page()
@require_POST
def query_export_page(request: HttpRequest, query_id: Any) -> HttpResponse:
    """Every row as CSV, streamed; a refusal or a bad parameter is the page with its message (400)."""
    query = services.query_get(actor=request.user, query_id=query_id)
    form = run_form_class(query)(request.POST)
    error, status = None, 400
    if form.is_valid():
        try:
            export = services.query_export(actor=request.user, query_id=query.pk, params=run_values(query, form))
        except InvalidInput as exc:
            add_run_errors(form, exc.fields)
        except (QueryRefused, QueryTimedOut) as exc:
            error, status = str(exc), exc.http_status
        else:
            response = StreamingHttpResponse(stream_csv(export), content_type="text/csv; charset=utf-8")
            response["Content-Disposition"] = f'attachment; filename="{filename(query.name)}.csv"'
            response["Cache-Control"] = "no-store"
            return response
    context = _detail_context(request, query, run_form=form, run_error=error, ran=True)
    return render(request, "metrics/queries/detail.html", context, status=status)


def _pages(offset: int, limit: int, *, more: bool) -> list[tuple[str, int]]:
    """The pager's buttons: (label, offset)."""
    pages = []
    if offset:
        pages.append(("First rows", 0))
        if offset > limit:
            pages.append((f"Previous {limit}", offset - limit))
    if more and offset + limit <= 100_000:
        pages.append((f"Next {limit}", offset + limit))
    return pages


def filename(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.")[:80] or "query"


def csv_piece(rows: list[list[Any]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    for row in rows:
        writer.writerow(["" if v is None else _safe_text(v) if isinstance(v, str) else cell(v) for v in row])
    return out.getvalue().encode()


def _safe_text(value: str) -> str:
    return "'" + value if value.startswith(FORMULA_START) else value


async def stream_csv(export: services.Export) -> AsyncIterator[bytes]:
    """The header and every piece of rows; the run recorded at the end, however it ends."""
    outcome, error = RunOutcome.ABORTED, "The client went away before the last row."
    try:
        yield csv_piece([export.columns])
        while rows := await asyncio.to_thread(export.rows):
            yield csv_piece(rows)
        outcome, error = RunOutcome.OK, ""
    except QueryTimedOut as exc:
        outcome, error = RunOutcome.TIMEOUT, str(exc)
    except QueryRefused as exc:
        outcome, error = RunOutcome.REFUSED, str(exc)
    finally:
        await sync_to_async(export.finish)(outcome, error)
