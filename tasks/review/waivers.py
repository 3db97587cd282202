"""Waivers: time-boxed exemptions from named gates (reads: :mod:`tasks.review.waiver_selectors`).

A waiver loosens the quality bar, so its life is a small state machine kept
here and nowhere else: an operator requests one (``pending``), an admin who is
not the requester approves or rejects it, an admin may revoke it while it is
pending or approved, and it expires on its own when ``expires_at`` passes.
Each change is one service that locks the waiver row, checks, writes and
records its one audit record in a single ``transaction.atomic()``.

The services check roles themselves rather than trusting the door: the API,
the admin and scripts all reach them, and "never the requester" is a rule
about the decision, not about one interface. Input goes through the strict
serializers below, so every door refuses the same things with the same
field names.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from rest_framework import serializers

from audit.services import audit_record
from config.errors import Conflict, NotFound, PermissionDenied
from config.strict import StrictCharField, StrictSerializer, validated
from security import roles
from security.principals import Principal, principal
from tasks.models import Gate, Task, Waiver, WaiverReason, WaiverStatus

# A waiver is an exception, not a policy: one that must outlive this many days
# is a sign the gate or the spec should change instead.
MAX_WAIVER_DAYS = 90
MIN_JUSTIFICATION = 20
MIN_REVOKE_REASON = 10
NOTE_MAX_LENGTH = 2000
# waivers_expire() commits this many waivers per transaction, so a backlog
# never holds row locks (or the audit chain) for long.
EXPIRE_BATCH = 500

# The statuses from which a waiver can still expire or be revoked.
LIVE_STATUSES = (WaiverStatus.PENDING, WaiverStatus.APPROVED)


# --- domain errors (each transport maps them once: config.exceptions for DRF) -------


class WaiverNotFound(NotFound):
    def __init__(self, waiver_id: object) -> None:
        super().__init__(f"Waiver {waiver_id} does not exist.")
        self.waiver_id = waiver_id


class WaiverForbidden(PermissionDenied):
    """The principal's role does not allow this change (HTTP 403)."""

    code = "forbidden"


class RequesterCannotDecide(WaiverForbidden):
    """Four eyes: whoever asked for an exemption does not grant or refuse it (HTTP 403)."""

    code = "requester_cannot_decide"

    def __init__(self, *, action: str) -> None:
        super().__init__(f"You requested this waiver, so you cannot {action} it; another admin must.")
        self.action = action


class IllegalWaiverTransition(Conflict):
    """The action is not allowed from the waiver's current status (HTTP 409)."""

    code = "illegal_transition"

    def __init__(self, *, action: str, status: str, message: str = "") -> None:
        super().__init__(message or f"Cannot {action} a waiver that is {status}.", action=action, status=status)
        self.action = action
        self.status = status


class WaiverExpired(IllegalWaiverTransition):
    """A pending waiver whose expiry passed before anyone decided; approving it would grant nothing."""

    code = "waiver_expired"

    def __init__(self, *, action: str, status: str, expires_at: datetime) -> None:
        super().__init__(
            action=action,
            status=status,
            message=f"Cannot {action} a waiver that expired at {expires_at.isoformat()}; request a new one.",
        )
        self.expires_at = expires_at


# --- input ------------------------------------------------------------------------


class WaiverRequestSerializer(StrictSerializer):
    """What a waiver request must hold, whichever door it comes through."""

    title = StrictCharField(max_length=200)
    reason = serializers.ChoiceField(choices=WaiverReason.choices)
    gates = serializers.ListField(
        child=serializers.ChoiceField(choices=Gate.choices), allow_empty=False, max_length=len(Gate.values)
    )
    # Stripped before the length check, so padding does not pass for a reason.
    justification = StrictCharField(min_length=MIN_JUSTIFICATION, max_length=10_000)
    expires_at = serializers.DateTimeField()
    task = serializers.UUIDField(required=False, allow_null=True, default=None, help_text="Null for every task.")

    def validate_gates(self, value: list[str]) -> list[str]:
        duplicates = sorted({g for g in value if value.count(g) > 1})
        if duplicates:
            raise serializers.ValidationError(f"Duplicate gates: {', '.join(duplicates)}.")
        return value

    def validate_expires_at(self, value: datetime) -> datetime:
        now = timezone.now()
        if value <= now:
            raise serializers.ValidationError(f"Must be in the future (and at most {MAX_WAIVER_DAYS} days ahead).")
        if value > now + timedelta(days=MAX_WAIVER_DAYS):
            raise serializers.ValidationError(f"Must be at most {MAX_WAIVER_DAYS} days ahead.")
        return value

    def validate_task(self, value: uuid.UUID | None) -> uuid.UUID | None:
        if value is not None and not Task.objects.filter(pk=value).exists():
            raise serializers.ValidationError(f"No task with id {value}.")
        return value


class WaiverDecisionSerializer(StrictSerializer):
    note = StrictCharField(max_length=NOTE_MAX_LENGTH, required=False, allow_blank=True, default="")


class WaiverRevokeSerializer(StrictSerializer):
    reason = StrictCharField(min_length=MIN_REVOKE_REASON, max_length=NOTE_MAX_LENGTH)


# --- services ---------------------------------------------------------------------


def _lock_waiver(waiver_id: uuid.UUID | str) -> Waiver:
    try:
        return Waiver.objects.select_for_update().get(pk=waiver_id)
    except (Waiver.DoesNotExist, ValueError, TypeError, ValidationError) as exc:
        raise WaiverNotFound(waiver_id) from exc


def _require_admin(acting: Principal, action: str) -> None:
    if not roles.is_admin(acting):
        raise WaiverForbidden(f"Only an admin may {action} a waiver.")


def waiver_request(
    *,
    actor: Any,
    title: str,
    reason: str,
    gates: list[str],
    justification: str,
    expires_at: datetime,
    task_id: uuid.UUID | str | None = None,
) -> Waiver:
    """Ask for an exemption; it does nothing until an admin other than the requester approves it."""
    acting = principal(actor)
    user = acting.user_or_none()
    if not roles.can_operate(acting):
        raise WaiverForbidden("Only an operator may request a waiver.")
    clean = validated(
        WaiverRequestSerializer,
        {
            "title": title,
            "reason": reason,
            "gates": gates,
            "justification": justification,
            "expires_at": expires_at,
            "task": task_id,
        },
    )
    with transaction.atomic():
        waiver = Waiver(
            title=clean["title"],
            reason=clean["reason"],
            gates=clean["gates"],
            justification=clean["justification"],
            expires_at=clean["expires_at"],
            task_id=clean["task"],
            requested_by=user,
        )
        waiver.save(force_insert=True)
        audit_record(
            actor=acting.actor,
            action="waiver.request",
            resource_type="waiver",
            resource_id=waiver.pk,
            data={
                "title": waiver.title,
                "reason": waiver.reason,
                "gates": waiver.gates,
                "task": str(waiver.task_id) if waiver.task_id else None,
                "expires_at": waiver.expires_at.isoformat(),
            },
            reason=waiver.justification,
        )
    return waiver


def _decide(*, waiver_id: uuid.UUID | str, actor: Any, note: str, action: str, to: WaiverStatus) -> Waiver:
    acting = principal(actor)
    user = acting.user_or_none()
    _require_admin(acting, action)
    note = validated(WaiverDecisionSerializer, {"note": note})["note"]
    now = timezone.now()
    with transaction.atomic():
        waiver = _lock_waiver(waiver_id)
        if user is not None and waiver.requested_by_id == user.pk:
            raise RequesterCannotDecide(action=action)
        if waiver.status != WaiverStatus.PENDING:
            raise IllegalWaiverTransition(action=action, status=waiver.status)
        if to == WaiverStatus.APPROVED and waiver.expires_at <= now:
            raise WaiverExpired(action=action, status=waiver.status, expires_at=waiver.expires_at)
        previous = waiver.status
        waiver.status = to
        waiver.decided_by = user
        waiver.decided_at = now
        waiver.decision_note = note
        waiver.save(update_fields=["status", "decided_by", "decided_at", "decision_note"])
        audit_record(
            actor=acting.actor,
            action=f"waiver.{action}",
            resource_type="waiver",
            resource_id=waiver.pk,
            data={"from": previous, "to": to.value, "gates": waiver.gates},
            reason=note,
        )
    return waiver


def waiver_approve(*, waiver_id: uuid.UUID | str, actor: Any, note: str = "") -> Waiver:
    """Grant a pending, unexpired waiver; from now until ``expires_at`` it drops its gates' violations."""
    return _decide(waiver_id=waiver_id, actor=actor, note=note, action="approve", to=WaiverStatus.APPROVED)


def waiver_reject(*, waiver_id: uuid.UUID | str, actor: Any, note: str = "") -> Waiver:
    """Refuse a pending waiver for good; the requester asks again with a better case."""
    return _decide(waiver_id=waiver_id, actor=actor, note=note, action="reject", to=WaiverStatus.REJECTED)


def waiver_revoke(*, waiver_id: uuid.UUID | str, actor: Any, reason: str) -> Waiver:
    """Withdraw a pending or approved waiver before its expiry, for the reason given.

    The requester may revoke their own waiver (if they are an admin): taking an
    exemption back never needs a second pair of eyes. The reason lives in the
    audit record, which is where the history of a waiver is read from.
    """
    acting = principal(actor)
    user = acting.user_or_none()
    _require_admin(acting, "revoke")
    reason = validated(WaiverRevokeSerializer, {"reason": reason})["reason"]
    with transaction.atomic():
        waiver = _lock_waiver(waiver_id)
        if waiver.status not in LIVE_STATUSES:
            raise IllegalWaiverTransition(action="revoke", status=waiver.status)
        previous = waiver.status
        waiver.status = WaiverStatus.REVOKED
        waiver.revoked_by = user
        waiver.revoked_at = timezone.now()
        waiver.revoke_reason = reason
        waiver.save(update_fields=["status", "revoked_by", "revoked_at", "revoke_reason"])
        audit_record(
            actor=acting.actor,
            action="waiver.revoke",
            resource_type="waiver",
            resource_id=waiver.pk,
            data={"from": previous, "to": WaiverStatus.REVOKED.value, "gates": waiver.gates},
            reason=reason,
        )
    return waiver


def waivers_expire(*, now: datetime | None = None) -> int:
    """Mark live waivers whose expiry passed as ``expired``; returns how many.

    Only bookkeeping: :func:`active_waivers_for` already ignores an expired
    waiver whatever its status, so a late run never grants anything. Rows
    another transaction holds (an approval in flight) are skipped and picked
    up by the next run, so concurrent dispatchers never wait on each other.
    """
    now = now or timezone.now()
    total = 0
    while True:
        with transaction.atomic():
            batch = list(
                Waiver.objects.select_for_update(skip_locked=True)
                .filter(status__in=LIVE_STATUSES, expires_at__lte=now)
                .order_by("expires_at", "id")
                .only("id", "status", "expires_at")[:EXPIRE_BATCH]
            )
            if batch:
                Waiver.objects.filter(pk__in=[w.pk for w in batch]).update(status=WaiverStatus.EXPIRED)
            for waiver in batch:
                audit_record(
                    actor="system",
                    action="waiver.expire",
                    resource_type="waiver",
                    resource_id=waiver.pk,
                    data={
                        "from": waiver.status,
                        "to": WaiverStatus.EXPIRED.value,
                        "expires_at": waiver.expires_at.isoformat(),
                    },
                )
        total += len(batch)
        if len(batch) < EXPIRE_BATCH:
            return total
