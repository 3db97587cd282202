"""Who is acting: the principal every service takes, and the check it makes of it.

Every door (DRF, the admin, htmx pages, the chat consumer, the CLI's API calls, management
commands, the dispatcher) hands the service the principal it acts for; the service asks
:func:`require` with a predicate of :mod:`security.roles`, so the answer is the same
whichever door was used, and a door that forgets its own early check still cannot act.

Kinds:

- ``user``: a person (a Django user, with the roles of their groups);
- ``dispatcher``: a dispatcher process (claims, reports, lease reaping; nothing else);
- ``worker``: a worker service (it reports only through its dispatcher today);
- ``system``: this installation itself (management commands run by whoever holds the
  server's shell and database, migrations, the embedded setup): every role;
- ``anonymous``: nobody logged in: no role.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.db import models

from config.errors import NotAuthenticated, PermissionDenied


class Kind(models.TextChoices):
    USER = "user"
    DISPATCHER = "dispatcher"
    WORKER = "worker"
    SYSTEM = "system"
    ANONYMOUS = "anonymous"


@dataclass(frozen=True)
class Principal:
    kind: Kind
    name: str = ""
    user: Any = field(default=None, compare=False, repr=False)

    @classmethod
    def of_user(cls, user: Any) -> Principal:
        if user is None or not getattr(user, "is_authenticated", False) or not getattr(user, "is_active", True):
            return ANONYMOUS
        return cls(Kind.USER, user.get_username(), user)

    @classmethod
    def dispatcher(cls, dispatcher_id: str) -> Principal:
        return cls(Kind.DISPATCHER, dispatcher_id)

    @classmethod
    def worker(cls, name: str) -> Principal:
        return cls(Kind.WORKER, name)

    @classmethod
    def system(cls, name: str = "") -> Principal:
        return cls(Kind.SYSTEM, name)

    @property
    def actor(self) -> str:
        """How the audit trail names this principal (``user:<id>``, ``dispatcher:<id>``, ``system``)."""
        if self.kind == Kind.USER:
            return f"user:{self.user.pk}"
        if self.kind in (Kind.SYSTEM, Kind.ANONYMOUS) and not self.name:
            return str(self.kind)
        return f"{self.kind}:{self.name}"

    @property
    def is_user(self) -> bool:
        return self.kind == Kind.USER

    def user_or_none(self) -> Any:
        """The Django user to store in a ``created_by``-style column, if a person acted."""
        return self.user if self.kind == Kind.USER else None

    def __str__(self) -> str:
        return self.actor if self.kind != Kind.USER else f"user {self.name}"


ANONYMOUS = Principal(Kind.ANONYMOUS)
SYSTEM = Principal(Kind.SYSTEM)


def principal(who: Any) -> Principal:
    """A :class:`Principal` for ``who``: a Principal already, a Django user (anonymous included)."""
    if isinstance(who, Principal):
        return who
    return Principal.of_user(who)


def require(who: Any, predicate: Any, what: str) -> Principal:
    """``who`` as a Principal, if ``predicate(principal)`` holds; else 401 for nobody, 403 for the rest.

    ``what`` completes "You need ... to <what>." style messages: say what was attempted.
    """
    acting = principal(who)
    if predicate(acting):
        return acting
    if acting.kind == Kind.ANONYMOUS:
        raise NotAuthenticated(f"Log in to {what}.")
    need = getattr(predicate, "need", "the right role")
    raise PermissionDenied(f"You need {need} to {what}.")
