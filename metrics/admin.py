"""Saved queries and their runs in the console: read-only, for admins (changes go through the API's services)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from metrics.models import QueryRun, SavedQuery
from security import roles
from security.admin_lookups import DeclaredLookupsOnly


class AdminsReadOnly(DeclaredLookupsOnly, admin.ModelAdmin):
    def has_module_permission(self, request: HttpRequest) -> bool:
        return roles.is_admin(request.user)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return roles.is_admin(request.user)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(SavedQuery)
class SavedQueryAdmin(AdminsReadOnly):
    list_display = ["name", "owner", "shared", "updated_at"]
    list_filter = ["shared"]
    search_fields = ["name"]
    list_select_related = ["owner"]


@admin.register(QueryRun)
class QueryRunAdmin(AdminsReadOnly):
    list_display = ["query", "user", "started_at", "duration_ms", "rows", "outcome"]
    list_filter = ["outcome"]
    list_select_related = ["query", "user"]
