"""Claims: a dispatcher takes due queued tasks and starts an attempt on each.

Like :mod:`tasks.services`, a claim locks the task rows, decides under the lock, and
applies each start through :func:`tasks.transitions.transition` in one transaction.
Leases of the attempts started here: :mod:`tasks.dispatch.leases`; what the attempts
come to: :mod:`tasks.dispatch.reports`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import connection, transaction

from config.rows import fetch, select_list
from metrics import instruments
from security import roles
from security.principals import Principal, require
from tasks.dispatch.leases import lease_until
from tasks.models import EventType, Task, Worker
from tasks.states import ACTIVE_STATES, Cause, TaskState
from tasks.transitions import TaskWrites, transition

# A claim reads at most this many queued tasks for each one it may take, so that tasks no
# worker can take now (capabilities, capacity, open breakers) do not block those behind them.
CLAIM_READ_FACTOR = 4
# First key of the per-worker capacity locks (pg_advisory_xact_lock(class, worker id)): "capa".
CAPACITY_LOCK_CLASS = int.from_bytes(b"capa", "big")


@dataclass(frozen=True)
class Claim:
    task_id: str
    attempt: int
    worker_id: int
    spec: dict[str, Any]
    deadline: datetime


def worker_load(*, lock: Iterable[int] = ()) -> dict[int, int]:
    """Active attempts per worker, across all dispatchers.

    ``lock``: ids of workers whose capacity lock to take first (PostgreSQL advisory
    locks, in id order, held until the caller's transaction ends). A claim that routes
    to a worker takes its lock before counting, so claims by several dispatchers count
    one after another and each sees the attempts the others committed: together they
    never start more than the worker's ``max_concurrency``. In READ COMMITTED the count
    is a new statement, so it sees the previous holder's commit. SQLite needs no lock:
    its IMMEDIATE transactions already run one at a time.
    """
    ids = sorted(lock)
    if ids and connection.vendor == "postgresql":
        if not connection.in_atomic_block:
            raise RuntimeError("worker_load(lock=...) must run inside the claim's transaction.")
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_advisory_xact_lock(%s, id) FROM unnest(%s::int[]) AS id ORDER BY id",
                [CAPACITY_LOCK_CLASS, ids],
            )
    # Hand-written, as every claim counts (the ORM's values().annotate() cost several times the query).
    quote = connection.ops.quote_name
    states = sorted(str(state) for state in ACTIVE_STATES)
    sql = (
        f"SELECT worker_id, COUNT(*) FROM {quote(Task._meta.db_table)} "  # noqa: S608 - model names; values bound
        f"WHERE state IN ({', '.join(['%s'] * len(states))}) AND worker_id IS NOT NULL GROUP BY worker_id"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, states)
        return dict(cursor.fetchall())


def task_claim(
    *,
    actor: Principal,
    limit: int,
    pick_worker: Callable[[Task], Worker | None],
    lease_s: float,
    room: Callable[[], bool] = lambda: True,
) -> list[Claim]:
    """Claim up to ``limit`` due queued tasks and start an attempt on each (a dispatcher's service).

    PostgreSQL: ``FOR UPDATE SKIP LOCKED`` lets dispatchers claim side by side
    without waiting on each other. SQLite: the IMMEDIATE transaction holds the
    database write lock, so claims are serial. Tasks no worker can take now
    (capabilities, capacity, open breakers) stay queued; more candidates than
    ``limit`` are read so that they do not block the ones behind them, until ``room()``
    says no worker could take one more (the caller knows its workers' load).

    The claimed rows are written in bulk (:class:`~tasks.transitions.TaskWrites`), their
    leases on the database's clock in the same statement.
    """
    acting = require(actor, roles.is_dispatcher, "claim tasks")
    if limit <= 0:
        return []
    dispatcher_id = acting.name
    claims: list[Claim] = []
    lease = lease_until(lease_s)  # one expression on the database clock, set in the claim's UPDATE
    with transaction.atomic():
        w = TaskWrites()
        now = w.now

        def wanted() -> int:
            return limit - len(claims) if room() else 0

        for task in _due_candidates(now=now, limit=limit, wanted=wanted):
            worker = pick_worker(task)
            if worker is None:
                continue
            attempt = task.attempt + 1
            instruments.observe_claim(task, now)  # before the transition moves updated_at and run_after
            transition(
                w,
                task,
                to=TaskState.RUNNING,
                cause=Cause.CLAIM,
                actor=acting,
                event=EventType.ATTEMPT_STARTED,
                data={"attempt": attempt, "worker": worker.name, "dispatcher": dispatcher_id},
                audit_action="task.start",
                audit_data={"attempt": attempt, "worker": worker.name},
                attempt=attempt,
                worker_id=worker.pk,
                lease_owner=dispatcher_id,
                lease_expires_at=lease,
                started_at=task.started_at or now,
                progress_percent=0,
                progress_phase="",
                run_after=None,
            )
            deadline = now + timedelta(seconds=int(task.spec.get("timeout_s", 600)))
            claims.append(Claim(str(task.pk), attempt, worker.pk, task.spec, deadline))
        if claims:
            w.flush()
    return claims


def _due_candidates(*, now: datetime, limit: int, wanted: Callable[[], int]) -> Iterator[Task]:
    """Due queued tasks in claim order, locked (``SKIP LOCKED``), read a page at a time.

    The first page is as long as the caller's ``limit``, so a claim in the common case
    reads (and locks) just the rows it takes. Each task the caller skips makes it read
    further, up to ``CLAIM_READ_FACTOR * limit`` rows in all.
    """
    budget = max(limit * CLAIM_READ_FACTOR, 32)
    seen: list[Any] = []
    while (need := wanted()) > 0 and len(seen) < budget:
        size = min(need if not seen else max(need, 8), budget - len(seen))
        page = _due_page(now, size, seen)
        seen += [task.pk for task in page]
        for task in page:
            if wanted() <= 0:
                return
            yield task
        if len(page) < size:
            return  # nothing more is due


def _due_page(now: datetime, size: int, seen: list[Any]) -> list[Task]:
    """One page of :func:`_due_candidates`: a hand-written statement, as the claim is the hot path.

    The ORM's version (``select_for_update(skip_locked=True)…order_by("-priority",
    "created_at")``) spent a tenth of the dispatcher's CPU resolving and hashing its ORDER BY
    expressions; this is the statement it produced, on the partial index ``task_claim_idx``.
    SQLite has no row locks (its IMMEDIATE transaction holds the database), so no FOR UPDATE.
    """
    quote, ops = connection.ops.quote_name, connection.ops
    pk = Task._meta.pk
    sql = (
        f"SELECT {select_list(Task, 't')} FROM {quote(Task._meta.db_table)} t "  # noqa: S608 - model names; values bound
        "WHERE t.state = %s AND (t.run_after IS NULL OR t.run_after <= %s)"
    )
    params: list[Any] = [TaskState.QUEUED.value, ops.adapt_datetimefield_value(now)]
    if seen:
        sql += f" AND NOT (t.{quote(pk.column)} IN ({', '.join(['%s'] * len(seen))}))"
        params += [pk.get_db_prep_value(task_id, connection) for task_id in seen]
    sql += " ORDER BY t.priority DESC, t.created_at ASC LIMIT %s"
    params.append(size)
    if connection.features.has_select_for_update_skip_locked:
        sql += " FOR UPDATE SKIP LOCKED"
    return [task for (task,) in fetch(sql, params, [Task])]
