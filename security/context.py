"""Template context: what the signed-in user may do, from the same predicates the services use.

Pages show a control only to roles that may use it; the services refuse it anyway.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from security import roles


def roles_context(request: HttpRequest) -> dict[str, Any]:
    user = getattr(request, "user", None)
    return {
        "can_view": roles.can_view(user),
        "can_operate": roles.can_operate(user),
        "is_admin": roles.is_admin(user),
    }
