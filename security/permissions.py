"""DRF permission classes built on the role predicates of ``security.roles``."""

from __future__ import annotations

from rest_framework.permissions import SAFE_METHODS, BasePermission

from security import roles


class IsViewer(BasePermission):
    """Read access for viewers; the default for every API view."""

    message = "You need the viewer role."

    def has_permission(self, request, view) -> bool:
        return roles.can_view(request.user)


class IsOperatorOrReadOnly(BasePermission):
    """Viewers read; operators may also write."""

    message = "You need the operator role for this action."

    def has_permission(self, request, view) -> bool:
        if request.method in SAFE_METHODS:
            return roles.can_view(request.user)
        return roles.can_operate(request.user)


class IsAdminRole(BasePermission):
    message = "You need the admin role."

    def has_permission(self, request, view) -> bool:
        return roles.is_admin(request.user)


class IsAdminOrReadOnly(BasePermission):
    """Viewers read; the admin role may also write (the worker registry)."""

    message = "You need the admin role for this action."

    def has_permission(self, request, view) -> bool:
        if request.method in SAFE_METHODS:
            return roles.can_view(request.user)
        return roles.is_admin(request.user)
