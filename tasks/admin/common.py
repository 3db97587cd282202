"""What the console's admins share: role-based permissions, JSON display."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from config.errors import DomainError
from security import roles
from security.admin_lookups import DeclaredLookupsOnly

# A bulk action runs one transaction per task or waiver inside the request; beyond this
# many the operator should narrow the selection (or use the API from a script).
BULK_ACTION_LIMIT = 500
# How many tasks a bulk action's messages name one by one.
MESSAGE_DETAIL_LIMIT = 20


class ServiceOnlyAdmin(DeclaredLookupsOnly, admin.ModelAdmin):
    """Roles decide, not per-model permissions: viewers read, operators add (through the
    model's create service) and act; nobody edits or deletes a row through a form, because
    every change goes through a service that writes its audit record (tasks are kept for the
    audit trail; a waiver is evidence for the verdicts that named it)."""

    def has_module_permission(self, request: HttpRequest) -> bool:
        return roles.can_view(request.user)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return roles.can_view(request.user)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return roles.can_operate(request.user)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_operate_permission(self, request: HttpRequest) -> bool:
        return roles.can_operate(request.user)


def pretty_json(value: Any) -> str:
    if value is None:
        return "-"
    return format_html("<pre>{}</pre>", json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True))


def run_bulk_action(
    modeladmin: admin.ModelAdmin,
    request: HttpRequest,
    queryset: QuerySet[Any],
    *,
    action: str,
    noun: str,
    apply: Callable[[Any], str],
) -> None:
    """Call ``apply(pk)`` (one service call, its own transaction) for each selected row, and report.

    ``apply`` returns how to name the row in the success message; a domain error refuses that row
    only. Above :data:`BULK_ACTION_LIMIT` rows nothing is done. Rows are named by their ``title``.
    """
    selected = list(queryset.values_list("pk", "title")[: BULK_ACTION_LIMIT + 1])
    if len(selected) > BULK_ACTION_LIMIT:
        modeladmin.message_user(
            request,
            f"Select at most {BULK_ACTION_LIMIT} {noun} per action; narrow the list with a filter. "
            "Nothing was changed.",
            messages.ERROR,
        )
        return
    applied: list[str] = []
    refused: list[str] = []
    for pk, title in selected:
        try:
            applied.append(f"{title}{apply(pk)}")
        except DomainError as exc:
            refused.append(f"{title}: {exc}")
    if applied:
        named = ", ".join(applied[:MESSAGE_DETAIL_LIMIT])
        more = f" and {len(applied) - MESSAGE_DETAIL_LIMIT} more" if len(applied) > MESSAGE_DETAIL_LIMIT else ""
        modeladmin.message_user(request, f"{action.capitalize()} applied to {len(applied)}: {named}{more}.")
    for line in refused[:MESSAGE_DETAIL_LIMIT]:
        modeladmin.message_user(request, line, messages.ERROR)
    if len(refused) > MESSAGE_DETAIL_LIMIT:
        modeladmin.message_user(
            request, f"{len(refused) - MESSAGE_DETAIL_LIMIT} more {noun} refused {action}.", messages.ERROR
        )
