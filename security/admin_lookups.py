"""Console changelists take only the query-string lookups their filters offer.

Django's ``ModelAdmin.lookup_allowed`` lets any lookup on a model's own local fields
through, whatever ``list_filter`` says: ``?base_url__contains=Sup3r`` on the workers' list
answers yes or no, one character at a time, about a stored value a viewer is never shown.
This mixin allows only the parameters of the declared filters and the date hierarchy.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin


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
