"""Roles and the predicates every interface uses to check them.

Roles are Django groups created by a migration. They are cumulative: an
``admin`` may do what an ``operator`` may, and an ``operator`` what a
``viewer`` may. A superuser holds every role.
"""

from __future__ import annotations

from typing import Any

VIEWER = "viewer"
OPERATOR = "operator"
ADMIN = "admin"
ROLES = (VIEWER, OPERATOR, ADMIN)

_RANK = {VIEWER: 1, OPERATOR: 2, ADMIN: 3}


def role_rank(user: Any) -> int:
    """The highest role the user holds, as a rank (0 for none)."""
    if user is None or not user.is_authenticated or not user.is_active:
        return 0
    if user.is_superuser:
        return _RANK[ADMIN]
    cached = getattr(user, "_agency_role_rank", None)
    if cached is None:
        names = set(user.groups.values_list("name", flat=True))
        cached = max((_RANK[n] for n in names if n in _RANK), default=0)
        user._agency_role_rank = cached
    return cached


def has_role(user: Any, role: str) -> bool:
    return role_rank(user) >= _RANK[role]


def can_view(user: Any) -> bool:
    return has_role(user, VIEWER)


def can_operate(user: Any) -> bool:
    return has_role(user, OPERATOR)


def is_admin(user: Any) -> bool:
    return has_role(user, ADMIN)
