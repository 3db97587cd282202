"""API tokens in the console: admins see who holds which and revoke them; nobody sees a key.

A key is shown once, where it is issued (``manage.py create_token``); the console cannot
issue one, because it has nowhere safe to show it. Revoking goes through the service, so
each revocation is audited.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from security import roles
from security.admin_lookups import AdminRoleReadOnly
from security.models import ApiToken
from security.principals import Principal
from security.tokens import token_revoke


@admin.register(ApiToken)
class ApiTokenAdmin(AdminRoleReadOnly):
    list_display = ["prefix", "user", "name", "created_at", "last_used_at"]
    list_select_related = ["user"]
    search_fields = ["prefix", "user__username", "name"]
    readonly_fields = ["prefix", "user", "name", "created_at", "last_used_at"]
    fields = readonly_fields

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return roles.is_admin(request.user)  # revoking is the one change made here

    def delete_model(self, request: HttpRequest, obj: ApiToken) -> None:
        token_revoke(token=obj, actor=Principal.of_user(request.user).actor)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> None:
        for token in queryset.select_related("user"):
            token_revoke(token=token, actor=Principal.of_user(request.user).actor)
