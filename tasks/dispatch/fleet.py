"""The fleet's health: dispatcher heartbeats and worker health polls, written and read.

Dispatchers write here (a heartbeat every lease renewal, a worker health poll
every ``WORKER_POLL_S``); ``/api/health`` reads the summary. These rows are
observations, not decisions, so they carry no audit record; the one exception is a health
poll the egress policy refused, a security decision, audited once when the refusal starts
(or changes its host, address or reason), not at every poll.
"""

from __future__ import annotations

import os
import socket
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from audit.services import audit_record
from security.egress import EgressAction
from tasks.models import DispatcherProcess, Worker

WORKER_POLL_S = 10.0
# A dispatcher unseen for this long is taken for dead.
DISPATCHER_STALE_S = 30.0
# How long a stopped or silent dispatcher's row is kept, so an operator can still see what ran
# recently. Every start adds a row (ids are per process), so without pruning the table only grows.
DISPATCHER_FORGET_S = 3600.0


def dispatcher_heartbeat(*, dispatcher_id: str, concurrency: int, inflight: int) -> None:
    now = timezone.now()
    updated = DispatcherProcess.objects.filter(pk=dispatcher_id).update(
        last_seen_at=now, inflight=inflight, concurrency=concurrency, stopped_at=None
    )
    if not updated:
        DispatcherProcess.objects.create(
            id=dispatcher_id,
            hostname=socket.gethostname(),
            pid=os.getpid(),
            concurrency=concurrency,
            inflight=inflight,
            started_at=now,
            last_seen_at=now,
        )


def dispatcher_stopped(*, dispatcher_id: str) -> None:
    DispatcherProcess.objects.filter(pk=dispatcher_id).update(stopped_at=timezone.now(), inflight=0)


def record_worker_health(*, worker_id: int, report: dict[str, Any], latency_ms: float, actor: str = "system") -> None:
    """Store a health poll's outcome; ``actor`` (the polling dispatcher) signs the audit record of a refusal."""
    status = str(report.get("status") or "unknown")
    detail = {k: report[k] for k in ("active_tasks", "capacity", "error") if k in report}
    fields = {
        "health_status": "healthy" if status == "ok" else status,
        "health_checked_at": timezone.now(),
        "health_latency_ms": round(latency_ms, 2),
        "health_detail": detail,
    }
    denial = report.get("egress_denied")
    if not isinstance(denial, dict):
        Worker.objects.filter(pk=worker_id).update(**fields)
        return
    with transaction.atomic():
        worker = Worker.objects.select_for_update().only("name", "health_detail").filter(pk=worker_id).first()
        if worker is None:
            return
        # The error names the host, the address and the reason: the same text is the same refusal.
        repeated = isinstance(worker.health_detail, dict) and worker.health_detail.get("error") == detail.get("error")
        Worker.objects.filter(pk=worker_id).update(**fields)
        if not repeated:
            audit_record(
                actor=actor,
                action=EgressAction.DENIED.value,
                resource_type="worker",
                resource_id=worker.name,
                data=denial,
            )


def record_breaker_state(*, worker: str, state: str) -> None:
    Worker.objects.filter(name=worker).update(breaker_state=state)


def dispatchers_summary() -> dict[str, Any]:
    """The ``dispatcher`` component of /api/health."""
    now = timezone.now()
    live = list(
        DispatcherProcess.objects.filter(
            stopped_at__isnull=True, last_seen_at__gte=now - timedelta(seconds=DISPATCHER_STALE_S)
        ).values("id", "concurrency", "inflight", "last_seen_at")
    )
    if not live:
        return {"status": "degraded", "live": 0, "error": "no dispatcher has been seen in the last 30 s"}
    return {
        "status": "healthy",
        "live": len(live),
        "inflight": sum(d["inflight"] for d in live),
        "capacity": sum(d["concurrency"] for d in live),
        "last_seen_s": round(min((now - d["last_seen_at"]).total_seconds() for d in live), 1),
    }


def workers_summary() -> dict[str, Any]:
    """The ``workers`` component of /api/health, from the dispatchers' latest polls."""
    workers = list(Worker.objects.filter(enabled=True).order_by("name"))
    if not workers:
        return {"status": "not_configured", "enabled": 0}
    stale_before = timezone.now() - timedelta(seconds=3 * WORKER_POLL_S)
    detail = {}
    usable = 0
    for worker in workers:
        fresh = worker.health_checked_at is not None and worker.health_checked_at >= stale_before
        ok = fresh and worker.health_status == "healthy" and worker.breaker_state != "open"
        usable += ok
        detail[worker.name] = {
            "status": worker.health_status or "unknown",
            "breaker": worker.breaker_state,
            "latency_ms": worker.health_latency_ms,
            "checked_s_ago": (
                round((timezone.now() - worker.health_checked_at).total_seconds(), 1)
                if worker.health_checked_at
                else None
            ),
            **worker.health_detail,
        }
    status = "healthy" if usable == len(workers) else "degraded"
    return {"status": status, "enabled": len(workers), "usable": usable, "workers": detail}


def prune_dispatchers(*, older_than_s: float = DISPATCHER_FORGET_S) -> int:
    """Delete the rows of dispatchers stopped, or silent, for longer than ``older_than_s``; returns how many.

    A live dispatcher whose row goes (its clock is far behind ours) writes it again at its next
    heartbeat, so pruning can cost a row its ``started_at`` but never hide a live dispatcher for long.
    """
    cutoff = timezone.now() - timedelta(seconds=older_than_s)
    deleted, _ = DispatcherProcess.objects.filter(Q(stopped_at__lt=cutoff) | Q(last_seen_at__lt=cutoff)).delete()
    return deleted
