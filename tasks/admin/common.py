"""What the console's admins share: role-based permissions, JSON display."""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from django.utils.html import format_html

from security import roles

# A bulk action runs one transaction per task or waiver inside the request; beyond this
# many the operator should narrow the selection (or use the API from a script).
BULK_ACTION_LIMIT = 500
# How many tasks a bulk action's messages name one by one.
MESSAGE_DETAIL_LIMIT = 20


class ServiceOnlyAdmin(admin.ModelAdmin):
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
