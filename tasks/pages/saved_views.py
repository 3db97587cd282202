"""Saved views of the tasks page: save the current filter under a name, open one from its link, delete one's own.

A view is stored on the server (``SavedView``), so its link works in any browser for anyone
with the viewer role: ``/tasks/views/<id>/`` redirects to the tasks page with the view's query
and ``view=<id>``, which the page names in its heading.
"""

from __future__ import annotations

import uuid

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, QueryDict
from django.shortcuts import redirect
from django.views.decorators.http import require_GET, require_POST

from config.errors import InvalidInput
from security.pages import page
from tasks import selectors, services
from tasks.pages.forms import error_messages
from tasks.pages.tasks import list_url, render_list


@page()
@require_POST
def view_create(request: HttpRequest) -> HttpResponse:
    name, query = request.POST.get("name", ""), request.POST.get("query", "")
    try:
        view = services.saved_view_create(actor=request.user, name=name, query=query)
    except InvalidInput as exc:
        # Back on the page of the filter being saved, with the error beside the name field.
        errors = {field: error_messages(value) for field, value in exc.fields.items()}
        return render_list(request, QueryDict(query), status=400, extra={"save_errors": errors, "save_name": name})
    messages.success(request, f"Saved the view “{view.name}”.")
    return redirect(list_url(view.query, view=str(view.pk)))


@page()
@require_GET
def view_open(request: HttpRequest, view_id: uuid.UUID) -> HttpResponse:
    view = selectors.saved_view_get(view_id=view_id)
    return redirect(list_url(view.query, view=str(view.pk)))


@page()
@require_POST
def view_delete(request: HttpRequest, view_id: uuid.UUID) -> HttpResponse:
    view = selectors.saved_view_get(view_id=view_id)
    services.saved_view_delete(actor=request.user, view_id=view_id)
    messages.success(request, f"Deleted the view “{view.name}”.")
    return redirect("task-list")
