"""The Workers page: the fleet as the dispatchers see it, and the registry's controls for admins.

Each row is one worker: its health from the dispatchers' probes (status, what it reported
of its capacity and active tasks, when and how fast it last answered), whether it is
enabled, its load (attempts in flight here against its ``max_concurrency``), its circuit
breaker and the breaker's recent changes (the audit records
``tasks.dispatch.reports.record_breaker_change`` writes). The table is one fragment that
refreshes itself (htmx polling, and on task changes from the SSE stream); every read is a
constant number of queries whatever the size of the fleet.

Admins enable, disable and register workers here; the views call the registry services
of :mod:`tasks.workers` with ``actor=request.user``, which check the role again and write
the audit record, so this door is audited like the API and the admin. The token is
write-only: the form never renders it back.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django import forms
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_POST, require_safe

from audit import selectors as audit_selectors
from audit.models import AuditRecord
from config.errors import DomainError, InvalidInput
from metrics.stream.channels import TASKS, resume_id
from security import roles
from security.pages import page
from security.redaction import redact_url
from tasks import workers
from tasks.dispatch import breakers
from tasks.dispatch.fleet import WORKER_POLL_S
from tasks.models import Worker

# How many breaker changes each row shows, and how far back it looks for them; the audit
# page (linked from each row) has the whole history.
BREAKER_HISTORY_PER_WORKER = 5
BREAKER_HISTORY_DAYS = 7
BREAKER_ACTIONS = tuple(f"worker.breaker_{state}" for state in (breakers.CLOSED, breakers.OPEN, breakers.HALF_OPEN))
# A probe older than this is not current any more (the dispatchers poll every WORKER_POLL_S).
STALE_AFTER_S = 3 * WORKER_POLL_S
# The health statuses the probes write (tasks.dispatch.fleet), as the badge classes of app.css.
HEALTH_BADGES = {"healthy": "healthy", "draining": "degraded", "unreachable": "unhealthy"}

TABLE_TEMPLATE = "tasks/workers/partials/table.html"
PAGE_TEMPLATE = "tasks/workers/list.html"


@dataclass(frozen=True)
class BreakerChange:
    at: datetime
    old: str
    new: str
    task_id: str | None


@dataclass(frozen=True)
class WorkerRow:
    worker: Worker
    url: str
    health: str
    health_badge: str
    reported_active: Any
    reported_capacity: Any
    health_error: str
    probed_ago_s: float | None
    stale: bool
    load: int
    breaker_changes: list[BreakerChange]

    @property
    def anchor(self) -> str:
        return anchor(self.worker.name)

    @property
    def full(self) -> bool:
        return self.load >= self.worker.max_concurrency


def anchor(name: str) -> str:
    """The id of a worker's row, which the audit page links to (``/workers/#worker-<name>``).

    Prefixed: a bare name could collide with another id of the page (a worker named ``main``).
    """
    return f"worker-{name}"


def worker_rows(*, actor: Any) -> list[WorkerRow]:
    """Every worker with its load and recent breaker changes: three queries for the whole fleet."""
    fleet = list(workers.worker_list(actor=actor))
    loads = workers.worker_loads(actor=actor)
    now = timezone.now()
    history = audit_selectors.latest_per_resource(
        resource_type="worker",
        resource_ids=[w.name for w in fleet],
        actions=BREAKER_ACTIONS,
        per_resource=BREAKER_HISTORY_PER_WORKER,
        since=now - timedelta(days=BREAKER_HISTORY_DAYS),
    )
    return [_row(w, loads.get(w.pk, 0), history.get(w.name, []), now) for w in fleet]


def _row(worker: Worker, load: int, records: list[AuditRecord], now: datetime) -> WorkerRow:
    detail = worker.health_detail if isinstance(worker.health_detail, dict) else {}
    probed_ago = (now - worker.health_checked_at).total_seconds() if worker.health_checked_at else None
    health = worker.health_status or "unknown"
    return WorkerRow(
        worker=worker,
        # Rows registered before the URL policy may still carry credentials in the URL.
        url=redact_url(worker.base_url),
        health=health,
        health_badge=HEALTH_BADGES.get(health, ""),
        reported_active=detail.get("active_tasks"),
        reported_capacity=detail.get("capacity"),
        health_error=str(detail.get("error") or ""),
        probed_ago_s=round(probed_ago, 1) if probed_ago is not None else None,
        stale=probed_ago is None or probed_ago > STALE_AFTER_S,
        load=load,
        breaker_changes=[_change(r) for r in records],
    )


def _change(record: AuditRecord) -> BreakerChange:
    data = record.data if isinstance(record.data, dict) else {}
    new = str(data.get("to") or record.action.removeprefix("worker.breaker_"))
    return BreakerChange(
        at=record.created_at, old=str(data.get("from") or ""), new=new, task_id=_uuid(data.get("task_id"))
    )


def _uuid(value: Any) -> str | None:
    """A task id as the task page's URL takes it, or None (the record predates ids, or is odd)."""
    try:
        return str(uuid.UUID(str(value))) if value else None
    except ValueError:
        return None


# --- the register form --------------------------------------------------------------------


class RegisterForm(forms.Form):
    """The shape of the register form, turned into the service's types; the rules are the service's.

    Only what an HTML form cannot say in JSON types is decided here (a number is a number,
    capabilities are a list); names, URLs, ranges and tokens are judged by
    :class:`tasks.workers.WorkerRegisterSerializer`, so the page refuses what the API refuses.
    """

    name = forms.CharField(required=False, strip=True, help_text="Letters, digits, hyphens and underscores.")
    base_url = forms.CharField(
        required=False, strip=True, label="Base URL", help_text="http(s), without credentials or query string."
    )
    token = forms.CharField(
        required=False,
        strip=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Bearer token sent to the worker; stored encrypted, never shown again. Empty for none.",
    )
    capabilities = forms.CharField(required=False, help_text="Separated by commas or spaces, e.g. python, shell.")
    max_concurrency = forms.IntegerField(
        required=False, label="Max concurrency", help_text="Attempts it may run at once (default 4)."
    )

    def service_arguments(self) -> dict[str, Any]:
        data = self.cleaned_data
        capabilities = [c for c in data["capabilities"].replace(",", " ").split() if c]
        return {
            "name": data["name"],
            "base_url": data["base_url"],
            "token": data["token"],
            "capabilities": capabilities,
            "max_concurrency": data["max_concurrency"],
        }

    def add_service_errors(self, error: DomainError) -> None:
        """The service's field errors beside the fields they name; any other on the form itself."""
        if not error.fields:
            self.add_error(None, error.message)
        for field, errors in error.fields.items():
            target = field if field in self.fields else None
            prefix = "" if target or field == "non_field_errors" else f"{field}: "
            for message in _messages(errors, prefix):
                self.add_error(target, message)


def _messages(errors: Any, prefix: str = "") -> list[str]:
    """Field errors as flat sentences: a list's item errors come as {index: [...]}."""
    if isinstance(errors, dict):
        found = []
        for key, value in errors.items():
            label = f"Item {int(key) + 1}: " if str(key).isdigit() else f"{key}: "
            found += _messages(value, prefix + label)
        return found
    if isinstance(errors, list | tuple):
        return [m for e in errors for m in _messages(e, prefix)]
    return [f"{prefix}{errors}"]


# --- views --------------------------------------------------------------------------------


@page()
@require_safe
def worker_list_page(request: HttpRequest) -> HttpResponse:
    """The page, or only its table for htmx (the table's polling and task-change refresh)."""
    if request.htmx:
        return _table(request)
    return _page(request, RegisterForm())


@page(roles.is_admin)
@require_POST
def worker_register_page(request: HttpRequest) -> HttpResponse:
    form = RegisterForm(request.POST)
    if not form.is_valid():
        return _page(request, form, status=400)
    try:
        worker = workers.worker_register(actor=request.user, **form.service_arguments())
    except (InvalidInput, workers.WorkerNameTaken) as error:
        form.add_service_errors(error)
        return _page(request, form, status=error.http_status)
    messages.success(request, f"Worker {worker.name} registered.")
    return redirect(f"{reverse('worker-list')}#{anchor(worker.name)}", permanent=False)


@page(roles.is_admin)
@require_POST
def worker_enable_page(request: HttpRequest, name: str) -> HttpResponse:
    return _set_enabled(request, name, enabled=True)


@page(roles.is_admin)
@require_POST
def worker_disable_page(request: HttpRequest, name: str) -> HttpResponse:
    return _set_enabled(request, name, enabled=False)


def _set_enabled(request: HttpRequest, name: str, *, enabled: bool) -> HttpResponse:
    worker = workers.worker_set_enabled(actor=request.user, name=name, enabled=enabled)
    if request.htmx:
        return _table(request)
    messages.success(request, f"Worker {worker.name} {'enabled' if enabled else 'disabled'}.")
    return redirect(f"{reverse('worker-list')}#{anchor(worker.name)}", permanent=False)


def _context(request: HttpRequest) -> dict[str, Any]:
    return {"rows": worker_rows(actor=request.user), "stale_after_s": int(STALE_AFTER_S)}


def _table(request: HttpRequest) -> HttpResponse:
    response = render(request, TABLE_TEMPLATE, _context(request))
    patch_vary_headers(response, ("HX-Request",))
    return response


def _page(request: HttpRequest, form: RegisterForm, *, status: int = 200) -> HttpResponse:
    rendered_at = resume_id(TASKS)  # before the rows are read: what changes after is replayed
    context = {**_context(request), "form": form, "stream_last_id": rendered_at}
    response = render(request, PAGE_TEMPLATE, context, status=status)
    patch_vary_headers(response, ("HX-Request",))
    return response
