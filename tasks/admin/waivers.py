"""Waivers in the console: requests by operators, decisions by admins, all through the waiver services."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import flatten_fieldsets
from django.core.exceptions import PermissionDenied
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html

from security import roles
from tasks.admin.common import ServiceOnlyAdmin, run_bulk_action
from tasks.admin.forms import (
    WaiverActionForm,
    WaiverRequestForm,
)
from tasks.models import Gate, Waiver, WaiverStatus
from tasks.review import waiver_selectors, waivers


class WaiverGateFilter(admin.SimpleListFilter):
    title = "gate"
    parameter_name = "gate"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return list(Gate.choices)

    def queryset(self, request: HttpRequest, queryset: QuerySet[Waiver]) -> QuerySet[Waiver]:
        if self.value() in Gate.values:
            return queryset.filter(waiver_selectors.GateCovered(self.value()))
        return queryset


class WaiverScopeFilter(admin.SimpleListFilter):
    title = "scope"
    parameter_name = "scope"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("global", "every task"), ("task", "one task")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Waiver]) -> QuerySet[Waiver]:
        if self.value() in ("global", "task"):
            return queryset.filter(task__isnull=self.value() == "global")
        return queryset


class WaiverActiveFilter(admin.SimpleListFilter):
    """Active is computed (approved and unexpired), so a status alone cannot answer it."""

    title = "active"
    parameter_name = "active"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("yes", "yes"), ("no", "no")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Waiver]) -> QuerySet[Waiver]:
        active = Q(status=WaiverStatus.APPROVED, expires_at__gt=timezone.now())
        if self.value() == "yes":
            return queryset.filter(active)
        if self.value() == "no":
            return queryset.exclude(active)
        return queryset


def _run_waiver_action(modeladmin: WaiverAdmin, request: HttpRequest, queryset: QuerySet[Waiver], action: str) -> None:
    """Apply one waiver service per selected waiver, each in its own transaction, and report each outcome."""
    note = request.POST.get("note", "").strip()[: waivers.NOTE_MAX_LENGTH]
    if action == "revoke" and not waivers.WaiverRevokeSerializer(data={"reason": note}).is_valid():
        modeladmin.message_user(
            request,
            f"Give a reason of at least {waivers.MIN_REVOKE_REASON} characters to revoke. Nothing was changed.",
            messages.ERROR,
        )
        return

    def apply(waiver_id: Any) -> str:
        if action == "revoke":
            waivers.waiver_revoke(waiver_id=waiver_id, actor=request.user, reason=note)
        elif action == "approve":
            waivers.waiver_approve(waiver_id=waiver_id, actor=request.user, note=note)
        else:
            waivers.waiver_reject(waiver_id=waiver_id, actor=request.user, note=note)
        return ""

    run_bulk_action(modeladmin, request, queryset, action=action, noun="waivers", apply=apply)


@admin.action(description="Approve selected waivers", permissions=["decide"])
def approve_waivers(modeladmin: WaiverAdmin, request: HttpRequest, queryset: QuerySet[Waiver]) -> None:
    _run_waiver_action(modeladmin, request, queryset, "approve")


@admin.action(description="Reject selected waivers", permissions=["decide"])
def reject_waivers(modeladmin: WaiverAdmin, request: HttpRequest, queryset: QuerySet[Waiver]) -> None:
    _run_waiver_action(modeladmin, request, queryset, "reject")


@admin.action(description="Revoke selected waivers (reason required)", permissions=["decide"])
def revoke_waivers(modeladmin: WaiverAdmin, request: HttpRequest, queryset: QuerySet[Waiver]) -> None:
    _run_waiver_action(modeladmin, request, queryset, "revoke")


@admin.register(Waiver)
class WaiverAdmin(ServiceOnlyAdmin):
    """Operators request waivers here; admins decide with the actions; nobody edits or deletes one.

    Every change goes through :mod:`tasks.review.waivers`, so the four-eyes rule and
    the audit record hold whichever door was used.
    """

    form = WaiverRequestForm
    action_form = WaiverActionForm
    actions = (approve_waivers, reject_waivers, revoke_waivers)
    list_display = ("title", "status", "gate_list", "scope", "expires_at", "requested_by", "active")
    list_filter = ("status", WaiverActiveFilter, WaiverGateFilter, WaiverScopeFilter, "reason")
    list_select_related = ("requested_by",)
    search_fields = ("title",)
    ordering = ("-created_at", "-id")
    raw_id_fields = ("task",)
    fieldsets = (
        (None, {"fields": ("id", "title", "status", "active", "reason", "gates", "scope", "expires_at")}),
        ("Justification", {"fields": ("justification",)}),
        (
            "Decisions",
            {
                "fields": (
                    ("requested_by", "created_at"),
                    ("decided_by", "decided_at"),
                    "decision_note",
                    ("revoked_by", "revoked_at"),
                )
            },
        ),
    )
    add_fieldsets = ((None, {"fields": ("title", "reason", "gates", "justification", "expires_at", "task")}),)
    readonly_fields = tuple(flatten_fieldsets(fieldsets))

    def has_decide_permission(self, request: HttpRequest) -> bool:
        return roles.is_admin(request.user)

    # --- display --------------------------------------------------------------

    @admin.display(description="active", boolean=True)
    def active(self, obj: Waiver) -> bool:
        return obj.is_active()

    @admin.display(description="gates")
    def gate_list(self, obj: Waiver) -> str:
        return ", ".join(obj.gates)

    @admin.display(description="task")
    def scope(self, obj: Waiver) -> str:
        if obj.task_id is None:
            return "every task"
        return format_html(
            '<a href="{}">{}</a>', reverse("admin:tasks_task_change", args=[obj.task_id]), str(obj.task_id)
        )

    # --- add form: the request service ----------------------------------------

    def get_fieldsets(self, request: HttpRequest, obj: Waiver | None = None) -> Any:
        return self.add_fieldsets if obj is None else self.fieldsets

    def get_readonly_fields(self, request: HttpRequest, obj: Waiver | None = None) -> Any:
        return () if obj is None else self.readonly_fields

    def save_form(self, request: HttpRequest, form: forms.ModelForm, change: bool) -> Waiver:
        if change:  # unreachable: has_change_permission is False for everyone
            raise PermissionDenied
        data = form.cleaned_data
        # The row and its audit record, in one transaction, exactly as the API makes them.
        return waivers.waiver_request(
            actor=request.user,
            title=data["title"],
            reason=data["reason"],
            gates=data["gates"],
            justification=data["justification"],
            expires_at=data["expires_at"],
            task_id=data["task"].pk if data.get("task") else None,
        )

    def response_post_save_add(self, request: HttpRequest, obj: Waiver) -> HttpResponse:
        return HttpResponseRedirect(reverse("admin:tasks_waiver_change", args=[obj.pk]))

    def save_model(self, request: HttpRequest, obj: Waiver, form: forms.ModelForm, change: bool) -> None:
        """Nothing to do: ``save_form`` already saved the waiver through the service."""

    def save_related(self, request: HttpRequest, form: forms.ModelForm, formsets: Any, change: bool) -> None:
        """A waiver has no many-to-many fields and no inlines."""
