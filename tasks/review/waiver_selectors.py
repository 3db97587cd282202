"""Waiver reads: which waivers cover a task's gates now (the verdict's question), and the lists.

A waiver is active while approved and before its ``expires_at``, whatever its stored status:
matching never waits for :func:`tasks.review.waivers.waivers_expire`.
"""

from __future__ import annotations

import operator
import uuid
from collections.abc import Iterable
from datetime import datetime
from functools import reduce
from typing import Any

from django.core.exceptions import ValidationError
from django.db import NotSupportedError
from django.db.models import BooleanField, Expression, F, Q, QuerySet, Value
from django.utils import timezone

from tasks.models import Waiver, WaiverStatus
from tasks.review.waivers import WaiverNotFound


class GateCovered(Expression):
    """True when a waiver's JSON ``gates`` array holds ``gate``.

    SQLite has no JSON ``contains`` lookup, so each database gets its own
    spelling of "this array has this string".
    """

    output_field = BooleanField()

    def __init__(self, gate: str) -> None:
        super().__init__()
        self.gates: Any = F("gates")
        self.gate: Any = Value(gate)

    def get_source_expressions(self) -> list[Any]:
        return [self.gates, self.gate]

    def set_source_expressions(self, exprs: list[Any]) -> None:
        self.gates, self.gate = exprs

    def _compile(self, compiler: Any) -> tuple[str, str, list[Any]]:
        gates_sql, gates_params = compiler.compile(self.gates)
        gate_sql, gate_params = compiler.compile(self.gate)
        return gates_sql, gate_sql, [*gates_params, *gate_params]

    def as_sqlite(self, compiler: Any, connection: Any) -> tuple[str, list[Any]]:
        gates_sql, gate_sql, params = self._compile(compiler)
        # Both fragments are compiled by Django (a column and a placeholder), never user text.
        return f"EXISTS (SELECT 1 FROM json_each({gates_sql}) WHERE json_each.value = {gate_sql})", params  # noqa: S608

    def as_postgresql(self, compiler: Any, connection: Any) -> tuple[str, list[Any]]:
        gates_sql, gate_sql, params = self._compile(compiler)
        return f"({gates_sql} @> jsonb_build_array({gate_sql}::text))", params

    def as_sql(self, compiler: Any, connection: Any) -> tuple[str, list[Any]]:
        raise NotSupportedError(f"GateCovered has no SQL for {connection.vendor}.")


def covering_any(gates: Iterable[str]) -> Q:
    """A filter for waivers that name at least one of ``gates`` (matches nothing for none)."""
    return reduce(operator.or_, (Q(GateCovered(g)) for g in sorted(set(gates))), Q(pk__in=[]))


def active_waivers_for(
    *, task_id: uuid.UUID | str, gates: Iterable[str] | None = None, now: datetime | None = None
) -> list[Waiver]:
    """The waivers in force for a task: approved and unexpired, for this task or for every task.

    Expiry is checked against ``now`` here, not left to :func:`waivers_expire`,
    so a waiver stops counting the moment it expires. With ``gates``, only the
    waivers covering at least one of them. Task-scoped waivers come first (the
    most specific exemption is the one a verdict should name), then the one
    that lasts longest.
    """
    now = now or timezone.now()
    qs = Waiver.objects.filter(
        Q(task_id=task_id) | Q(task__isnull=True), status=WaiverStatus.APPROVED, expires_at__gt=now
    )
    if gates is not None:
        qs = qs.filter(covering_any(gates))
    # Only this task's id or null can match, so ordering by task puts the task-scoped ones first.
    return list(qs.order_by(F("task").asc(nulls_last=True), "-expires_at", "id"))


def waiver_list(
    *, statuses: list[str] | None = None, task_id: uuid.UUID | None = None, gate: str | None = None
) -> QuerySet[Waiver]:
    qs = Waiver.objects.select_related("requested_by", "decided_by", "revoked_by")
    if statuses:
        qs = qs.filter(status__in=statuses)
    if task_id:
        qs = qs.filter(task_id=task_id)
    if gate:
        qs = qs.filter(GateCovered(gate))
    return qs


def waiver_get(*, waiver_id: uuid.UUID | str) -> Waiver:
    try:
        return Waiver.objects.select_related("requested_by", "decided_by", "revoked_by").get(pk=waiver_id)
    except (Waiver.DoesNotExist, ValueError, ValidationError) as exc:
        raise WaiverNotFound(waiver_id) from exc
