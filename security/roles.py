"""Roles and the predicates every interface uses to check them.

Roles are Django groups created by a migration. They are cumulative: an
``admin`` may do what an ``operator`` may, and an ``operator`` what a
``viewer`` may. A superuser holds every role, and so does the ``system``
principal (this installation acting for itself). Dispatchers and workers hold
no user role: they have predicates of their own.

Each predicate takes a :class:`security.principals.Principal` or a Django user
(the DRF permission classes and the admin pass ``request.user``).
"""

from __future__ import annotations

from typing import Any

from security.principals import Kind, Principal

VIEWER = "viewer"
OPERATOR = "operator"
ADMIN = "admin"
ROLES = (VIEWER, OPERATOR, ADMIN)

_RANK = {VIEWER: 1, OPERATOR: 2, ADMIN: 3}


def role_rank(who: Any) -> int:
    """The highest role held, as a rank (0 for none)."""
    if isinstance(who, Principal):
        if who.kind == Kind.SYSTEM:
            return _RANK[ADMIN]
        if who.kind != Kind.USER:
            return 0
        who = who.user
    user = who
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


def has_role(who: Any, role: str) -> bool:
    return role_rank(who) >= _RANK[role]


def _needs(text: str):
    def mark(predicate):
        predicate.need = text
        return predicate

    return mark


@_needs("the viewer role")
def can_view(who: Any) -> bool:
    return has_role(who, VIEWER)


@_needs("the operator role")
def can_operate(who: Any) -> bool:
    return has_role(who, OPERATOR)


@_needs("the admin role")
def is_admin(who: Any) -> bool:
    return has_role(who, ADMIN)


@_needs("to be a dispatcher")
def is_dispatcher(who: Any) -> bool:
    """Claims, attempt reports, lease renewal and reaping: a dispatcher process (or the system)."""
    return isinstance(who, Principal) and who.kind in (Kind.DISPATCHER, Kind.SYSTEM)
