"""The worker registry in the console: everyone with a role reads it, the admin role changes it."""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from audit.services import actor_for_user, audit_record
from security import roles
from security.redaction import redact_url
from tasks.admin.forms import (
    WorkerForm,
)
from tasks.models import Worker


@admin.register(Worker)
class WorkerAdmin(admin.ModelAdmin):
    """Everyone with a role sees the registry; only the admin role changes it."""

    form = WorkerForm
    list_display = ("name", "base_url", "enabled", "max_concurrency", "capabilities", "has_token", "created_at")
    list_filter = ("enabled",)
    search_fields = ("name", "base_url")
    ordering = ("name",)
    readonly_fields = ("has_token", "created_at", "updated_at")

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

    def save_model(self, request: HttpRequest, obj: Worker, form: forms.ModelForm, change: bool) -> None:
        # The admin runs this inside its own transaction, so the record commits with the change.
        super().save_model(request, obj, form, change)
        changed = sorted(set(form.changed_data) - {"token"}) + (["token"] if "token" in form.changed_data else [])
        audit_record(
            actor=actor_for_user(request.user),
            action="worker.update" if change else "worker.register",
            resource_type="worker",
            resource_id=obj.name,
            data={"changed": changed, "url": redact_url(obj.base_url), "enabled": obj.enabled},
        )

    def delete_model(self, request: HttpRequest, obj: Worker) -> None:
        audit_record(
            actor=actor_for_user(request.user),
            action="worker.delete",
            resource_type="worker",
            resource_id=obj.name,
            data={"url": redact_url(obj.base_url)},
        )
        super().delete_model(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Worker]) -> None:
        for worker in queryset:
            self.delete_model(request, worker)

    @admin.display(description="token", boolean=True)
    def has_token(self, obj: Worker) -> bool:
        return bool(obj.token_ciphertext)


# --- waivers ------------------------------------------------------------------------
