"""The one function through which every decision is recorded."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from audit.models import AuditRecord


def actor_for_user(user: Any) -> str:
    """The actor string of a Django user (``user:<id>``), ``system`` for none."""
    if user is None or not getattr(user, "is_authenticated", False):
        return "system"
    return f"user:{user.pk}"


def audit_record(
    *,
    actor: str,
    action: str,
    resource_type: str,
    resource_id: Any,
    data: dict[str, Any] | None = None,
    reason: str = "",
) -> AuditRecord:
    """Write one audit record. Must run inside the caller's transaction.

    Refusing to run in autocommit mode is deliberate: an audit record written
    outside the transaction of its change could survive a rollback of that
    change (or be lost while the change survives).
    """
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("audit_record() must be called inside transaction.atomic().")
    return AuditRecord.objects.create(
        actor=actor,
        action=action,
        resource_type=resource_type,
        resource_id=str(resource_id),
        data=data or {},
        reason=reason or "",
    )
