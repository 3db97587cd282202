"""The worker registry in the console: everyone with a role reads it, the admin role changes it.

Adding, changing and deleting go through :mod:`tasks.workers`, so the console validates,
writes and audits a worker exactly as the API and ``register_worker`` do. The URL is
shown only without credentials (rows registered before the URL policy may hold some),
the token never.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404, HttpRequest

from config.errors import NotAuthenticated, NotFound
from config.errors import PermissionDenied as DomainPermissionDenied
from security import roles
from security.admin_lookups import DeclaredLookupsOnly
from security.redaction import redact_url
from tasks import workers
from tasks.admin.forms import WorkerForm
from tasks.models import Worker
from tasks.states import ACTIVE_STATES

RETRY_AND_BREAKER = (
    "Retries and circuit breaker",
    {
        "fields": (
            "request_timeout_s",
            ("retry_max_attempts", "retry_initial_backoff_ms", "retry_max_backoff_ms"),
            ("breaker_fail_max", "breaker_reset_timeout_s"),
        )
    },
)
STATUS = (
    "Status",
    {"fields": ("has_token", ("health_status", "health_checked_at", "breaker_state"), ("created_at", "updated_at"))},
)
STATUS_FIELDS = ("has_token", "health_status", "health_checked_at", "breaker_state", "created_at", "updated_at")


@admin.register(Worker)
class WorkerAdmin(DeclaredLookupsOnly, admin.ModelAdmin):
    """Everyone with a role sees the registry; only the admin role changes it."""

    form = WorkerForm
    list_display = (
        "name",
        "public_url",
        "enabled",
        "max_concurrency",
        "capability_list",
        "has_token",
        "health_status",
        "breaker_state",
        "created_at",
    )
    list_filter = ("enabled",)
    # Not the URL: a search (or a ?base_url__contains= lookup, refused by DeclaredLookupsOnly) would
    # let a viewer probe a stored credential one character at a time.
    search_fields = ("name",)
    ordering = ("name",)

    # --- who may do what ------------------------------------------------------

    def has_module_permission(self, request: HttpRequest) -> bool:
        return roles.can_view(request.user)

    def has_view_permission(self, request: HttpRequest, obj: Worker | None = None) -> bool:
        return roles.can_view(request.user)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return roles.is_admin(request.user)

    def has_change_permission(self, request: HttpRequest, obj: Worker | None = None) -> bool:
        return roles.is_admin(request.user)

    def has_delete_permission(self, request: HttpRequest, obj: Worker | None = None) -> bool:
        return roles.is_admin(request.user)

    # --- the form ---------------------------------------------------------------

    def get_fieldsets(self, request: HttpRequest, obj: Worker | None = None) -> Any:
        if obj is not None and not self.has_change_permission(request, obj):
            # Read-only: the redacted URL in place of the stored one, and no token field at all.
            main = ("name", "public_url", "capabilities", "max_concurrency", "enabled")
            return ((None, {"fields": main}), RETRY_AND_BREAKER, STATUS)
        main = ("name", "base_url", "token", "capabilities", "max_concurrency", "enabled")
        if obj is None:
            return ((None, {"fields": main}), RETRY_AND_BREAKER)
        return ((None, {"fields": main}), RETRY_AND_BREAKER, STATUS)

    def get_readonly_fields(self, request: HttpRequest, obj: Worker | None = None) -> Any:
        # The name is the worker's identity (audit trail, breakers, API URLs): it never changes.
        return () if obj is None else ("name", *STATUS_FIELDS)

    def save_form(self, request: HttpRequest, form: forms.ModelForm, change: bool) -> Worker:
        # The row and its audit record, in one transaction, exactly as the API writes them.
        try:
            if change:
                return workers.worker_update(actor=request.user, name=form.instance.name, **form.worker_changes)
            return workers.worker_register(actor=request.user, **form.worker_changes)
        except (NotAuthenticated, DomainPermissionDenied) as exc:
            raise PermissionDenied(str(exc)) from exc
        except NotFound as exc:
            raise Http404(str(exc)) from exc

    def save_model(self, request: HttpRequest, obj: Worker, form: forms.ModelForm, change: bool) -> None:
        """Nothing to do: ``save_form`` already saved the worker through the service."""

    def save_related(self, request: HttpRequest, form: forms.ModelForm, formsets: Any, change: bool) -> None:
        """A worker has no many-to-many fields and no inlines."""

    # --- deleting -------------------------------------------------------------------

    def get_deleted_objects(self, objs: Any, request: HttpRequest) -> tuple[Any, Any, Any, list[Any]]:
        """Django's confirmation page, with the tasks running at a worker listed as protecting it.

        The service refuses such a delete anyway; listing them here lets the page say why
        before anyone confirms (and Django then refuses the POST itself).
        """
        deleted, counts, perms_needed, protected = super().get_deleted_objects(objs, request)
        busy = [
            f"{worker.name}: {count} task(s) running or canceling; disable it and let them finish first"
            for worker in objs
            if (count := worker.tasks.filter(state__in=ACTIVE_STATES).count())
        ]
        return deleted, counts, perms_needed, [*protected, *busy]

    def delete_model(self, request: HttpRequest, obj: Worker) -> None:
        try:
            workers.worker_delete(actor=request.user, name=obj.name)
        except (NotAuthenticated, DomainPermissionDenied) as exc:
            raise PermissionDenied(str(exc)) from exc

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Worker]) -> None:
        for worker in queryset:
            self.delete_model(request, worker)

    # --- display --------------------------------------------------------------------

    # Not sortable: an order by the stored URL would leak the order of any credentials in it.
    @admin.display(description="URL")
    def public_url(self, obj: Worker) -> str:
        return redact_url(obj.base_url)

    @admin.display(description="capabilities")
    def capability_list(self, obj: Worker) -> str:
        return ", ".join(obj.capabilities or []) or "-"

    @admin.display(description="token", boolean=True)
    def has_token(self, obj: Worker) -> bool:
        return bool(obj.token_ciphertext)
