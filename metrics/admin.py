"""Saved queries and their runs in the console: read-only, for admins (changes go through the API's services)."""

from __future__ import annotations

from django.contrib import admin

from metrics.models import QueryRun, SavedQuery
from security.admin_lookups import AdminRoleReadOnly


@admin.register(SavedQuery)
class SavedQueryAdmin(AdminRoleReadOnly):
    list_display = ["name", "owner", "shared", "updated_at"]
    list_filter = ["shared"]
    search_fields = ["name"]
    list_select_related = ["owner"]


@admin.register(QueryRun)
class QueryRunAdmin(AdminRoleReadOnly):
    list_display = ["query", "user", "started_at", "duration_ms", "rows", "outcome"]
    list_filter = ["outcome"]
    list_select_related = ["query", "user"]
