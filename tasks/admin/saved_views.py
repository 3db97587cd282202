"""Saved views of the tasks page in the console: read-only (they are kept and deleted by their owners on the page)."""

from __future__ import annotations

from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html

from tasks.admin.common import ServiceOnlyAdmin
from tasks.models import SavedView


@admin.register(SavedView)
class SavedViewAdmin(ServiceOnlyAdmin):
    list_display = ["name", "owner", "query", "created_at", "link"]
    list_filter = ["created_at"]
    search_fields = ["name", "owner__username", "query"]
    list_select_related = ["owner"]
    readonly_fields = ["id", "owner", "name", "query", "created_at", "link"]
    ordering = ["owner__username", "name"]

    def has_add_permission(self, request) -> bool:
        return False

    @admin.display(description="link")
    def link(self, obj: SavedView) -> str:
        url = reverse("task-view", args=[obj.pk])
        return format_html('<a href="{}">{}</a>', url, url)
