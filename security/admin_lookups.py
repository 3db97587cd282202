"""Console changelists take only the query-string lookups their filters offer; the admin-only base.

Django's ``ModelAdmin.lookup_allowed`` lets any lookup on a model's own local fields
through, whatever ``list_filter`` says: ``?base_url__contains=Sup3r`` on the workers' list
answers yes or no, one character at a time, about a stored value a viewer is never shown.
This mixin allows only the parameters of the declared filters and the date hierarchy.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from security import roles


class DeclaredLookupsOnly:
    list_filter: Any = ()
    date_hierarchy: str | None = None

    def lookup_allowed(self, lookup: str, value: Any, request: Any = None) -> bool:
        field = lookup.split("__", 1)[0]
        allowed = set()
        for entry in self.list_filter:
            if isinstance(entry, str):
                allowed.add(entry.split("__", 1)[0])
            elif isinstance(entry, tuple):
                allowed.add(entry[0].split("__", 1)[0])
            elif isinstance(entry, type) and issubclass(entry, admin.SimpleListFilter):
                allowed.add(entry.parameter_name)
        if self.date_hierarchy:
            allowed.add(self.date_hierarchy.split("__", 1)[0])
        return field in allowed and super().lookup_allowed(lookup, value, request)  # type: ignore[misc]


class AdminRoleReadOnly(DeclaredLookupsOnly, admin.ModelAdmin):
    """A console page for the admin role only, read-only: changes go through the services."""

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
