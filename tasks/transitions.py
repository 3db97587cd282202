"""The one path by which a task changes state, and the bulk write path every change takes.

:func:`transition` is the only code that assigns ``Task.state`` (a test scans the tree for
any other). It checks the (from, to, cause) table of :mod:`tasks.states`, sets the state
and the fields that go with it, adds the TaskEvent and the audit record, and registers one
after-commit publication of :class:`TaskChanged` on :data:`task_changed`, to which live
listeners (SSE, chat ``watch``, alerts) connect without touching any service. A rolled-back
transaction publishes nothing.

:class:`TaskWrites` collects the changes of one transaction over locked tasks (one task for
an operator's action, tens for a dispatcher's claim or batch of results) and
:meth:`TaskWrites.flush` writes them with one INSERT per table for new rows, one UPDATE
statement per set of changed fields (``executemany``, which psycopg pipelines), and the audit
records last, so the audit chain's lock is held only from there to the commit. Saving rows
one by one capped PostgreSQL dispatch at 177-189 tasks/s (docs/performance.md).

Callers lock the rows first and decide under the lock; this module checks that the decision
is a legal transition and writes it, never decides where a task goes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any

import django.dispatch
from django.db import connections, models, router, transaction
from django.db.models.sql.subqueries import UpdateQuery
from django.utils import timezone

from audit.services import AuditEntry, audit_records
from config.rows import insert_rows
from security.principals import Principal
from tasks.exceptions import IllegalTransition
from tasks.models import Task, TaskEvent, Verdict
from tasks.states import NEW, Cause, is_legal


@dataclass(frozen=True)
class TaskChanged:
    """What a "task changed" publication says: which task, its timeline entry, from, to, why."""

    task_id: str
    seq: int
    from_state: str
    to_state: str
    cause: str


@dataclass(frozen=True)
class TimelineEntry:
    """One timeline entry (TaskEvent) as it was written: what the live task streams carry."""

    task_id: str
    seq: int
    type: str
    data: dict[str, Any]
    created_at: datetime


# Sent once per transition after its transaction commits: ``task_changed.send(sender=Task, change=...)``.
task_changed = django.dispatch.Signal()
# Sent once per committed batch of writes that changed states or timelines, with every
# transition and every timeline entry of the batch in order (``changes=``, ``entries=``):
# for listeners that publish in bulk (the SSE streams), so a dispatcher's batch of 64
# results costs one publication, not 64.
task_writes_committed = django.dispatch.Signal()


def transition(
    w: TaskWrites,
    task: Task,
    *,
    to: str,
    cause: Cause,
    actor: Principal,
    event: str,
    data: dict[str, Any] | None = None,
    audit_action: str,
    audit_data: dict[str, Any] | None = None,
    reason: str = "",
    **fields: Any,
) -> None:
    """Move locked ``task`` to ``to`` because of ``cause``, with ``fields`` changed alongside.

    ``event`` and ``data`` are the timeline entry (``from`` and ``to`` are added),
    ``audit_action`` and ``audit_data`` the audit record (``from`` and ``to`` added too).
    Raises :class:`IllegalTransition` (409) when the table does not hold (from, to, cause);
    nothing is written then.
    """
    current = NEW if task._state.adding else task.state
    if not is_legal(current, to, cause):
        raise IllegalTransition(action=str(cause), state=current or "new")
    change = {"from": current or None, "to": to}
    w.apply(task, {"state": to, "updated_at": w.now, **fields})
    seq = w.event(task, event, {**change, **(data or {})})
    w.record(
        actor=actor.actor,
        action=audit_action,
        resource_type="task",
        resource_id=task.pk,
        data={**change, **(audit_data or {})},
        reason=reason,
    )
    w.publish(TaskChanged(str(task.pk), seq, current, to, str(cause)))


class TaskWrites:
    """The pending writes of one transaction: new tasks, task fields, events, verdicts, audit records."""

    def __init__(self) -> None:
        self.now: datetime = timezone.now()
        self._new: list[Task] = []
        self._dirty: dict[Any, tuple[Task, set[str]]] = {}
        self._events: list[TaskEvent] = []
        self._verdicts: list[Verdict] = []
        self._audit: list[AuditEntry] = []
        self._changes: list[TaskChanged] = []

    def set(self, task: Task, **values: Any) -> None:
        """Change fields of a locked task other than its state (that takes :func:`transition`)."""
        if "state" in values:
            raise ValueError("a task's state changes only through tasks.transitions.transition()")
        self.apply(task, values)

    def apply(self, task: Task, values: dict[str, Any]) -> None:
        """Set ``values`` on ``task`` now and write them at :meth:`flush`; :func:`transition` calls this."""
        for name, value in values.items():
            setattr(task, name, value)
        if task._state.adding:
            if not any(t is task for t in self._new):
                self._new.append(task)
        else:
            self._fields(task).update(values)

    def event(self, task: Task, type: str, data: dict[str, Any]) -> int:
        """Add the task's next timeline entry (its ``event_seq`` moves on now, the row at flush)."""
        task.event_seq += 1
        # created_at given: its default (timezone.now, through the lazy settings) was the dearest
        # part of building a claim's events.
        self._events.append(TaskEvent(task=task, seq=task.event_seq, type=type, data=data, created_at=self.now))
        if not task._state.adding:
            self._fields(task).add("event_seq")
        return task.event_seq

    def verdict(self, verdict: Verdict) -> None:
        self._verdicts.append(verdict)

    def record(self, **entry: Any) -> None:
        """An audit record (the keyword arguments of :class:`audit.services.AuditEntry`)."""
        self._audit.append(AuditEntry(**entry))

    def publish(self, change: TaskChanged) -> None:
        self._changes.append(change)

    def flush(self) -> None:
        """Write everything collected; call it inside the transaction that holds the row locks."""
        if not transaction.get_connection().in_atomic_block:
            raise RuntimeError("TaskWrites.flush() must run inside the transaction that locked the tasks")
        insert_rows(self._new)
        groups: dict[tuple[str, ...], list[Task]] = {}
        for task, fields in self._dirty.values():
            groups.setdefault(tuple(sorted(fields)), []).append(task)
        for fields, tasks in groups.items():
            update_rows(tasks, fields)
        insert_rows(self._events)
        insert_rows(self._verdicts)
        audit_records(self._audit)
        if self._changes or self._events:
            # One callback for the batch; each transition still gets its own publication.
            entries = (
                [TimelineEntry(str(e.task_id), e.seq, e.type, e.data, e.created_at) for e in self._events]
                if task_writes_committed.receivers
                else []
            )
            transaction.on_commit(partial(_publish, self._changes, entries))
        self._new, self._dirty, self._events, self._verdicts, self._audit, self._changes = [], {}, [], [], [], []

    def _fields(self, task: Task) -> set[str]:
        entry = self._dirty.get(task.pk)
        if entry is None or entry[0] is not task:
            entry = self._dirty[task.pk] = (task, set())
        return entry[1]


# Rows per UPDATE statement (SQLite allows 32,766 parameters; a task row set is ~15 fields).
UPDATE_CHUNK = 500


def _compile(expression: Any, model: type[models.Model], connection: Any) -> tuple[str, list[Any]]:
    """SQL and parameters of a Django expression as the SET side of an UPDATE on ``model``."""
    query = UpdateQuery(model)
    resolved = expression.resolve_expression(query, allow_joins=False, for_save=True)
    sql, params = query.get_compiler(connection=connection).compile(resolved)
    return sql, list(params)


def _publish(changes: list[TaskChanged], entries: list[TimelineEntry]) -> None:
    if task_writes_committed.receivers:
        task_writes_committed.send(sender=Task, changes=changes, entries=entries)
    if task_changed.receivers:
        for change in changes:
            task_changed.send(sender=Task, change=change)


def update_rows(objs: Sequence[models.Model], fields: Sequence[str]) -> None:
    """Write ``fields`` of each of ``objs`` with one UPDATE statement per :data:`UPDATE_CHUNK` rows.

    The same values as ``obj.save(update_fields=fields)`` each. A column whose value is the
    same in every row (a claim's state, lease owner and worker; a batch's ``updated_at``) is
    set once, as a plain ``SET col = %s``; the others come from a ``FROM (VALUES …)`` list
    joined on the primary key (both databases support ``UPDATE … FROM``; SQLite since 3.33;
    PostgreSQL gets a cast per column, since VALUES rows carry no column types). A claim of
    64 tasks used to cost 64 UPDATEs through ``executemany``, which showed as PostgreSQL CPU,
    and preparing every column of every row showed as dispatcher CPU. Django's
    ``bulk_update`` builds a CASE per field and row instead. No signals are sent and no
    ``pre_save`` runs: for models that have neither hooks nor ``auto_now`` fields among ``fields``.
    """
    if not objs or not fields:
        return
    model = type(objs[0])
    meta = model._meta
    connection = connections[router.db_for_write(model)]
    quote = connection.ops.quote_name
    columns = [meta.get_field(name) for name in fields]
    postgres = connection.vendor == "postgresql"
    table = quote(meta.db_table)
    pk = meta.pk
    with connection.cursor() as cursor:
        for start in range(0, len(objs), UPDATE_CHUNK):
            chunk = objs[start : start + UPDATE_CHUNK]
            rows = [[getattr(obj, f.attname) for f in columns] for obj in chunk]
            first = rows[0]
            same = [all(row[i] == first[i] for row in rows) for i in range(len(columns))]
            fixed = [(f, first[i]) for i, f in enumerate(columns) if same[i]]
            varying = [i for i in range(len(columns)) if not same[i]]
            params: list[Any] = []
            assignments = []
            for f, value in fixed:
                if hasattr(value, "resolve_expression"):  # e.g. a lease on the database clock
                    expression_sql, expression_params = _compile(value, model, connection)
                    assignments.append(f"{quote(f.column)} = {expression_sql}")
                    params += expression_params
                else:
                    assignments.append(f"{quote(f.column)} = %s")
                    params.append(f.get_db_prep_save(value, connection))
            if not varying:
                params += [pk.get_db_prep_value(obj.pk, connection) for obj in chunk]
                marks = ", ".join(["%s"] * len(chunk))
                sql = f"UPDATE {table} SET {', '.join(assignments)} WHERE {quote(pk.column)} IN ({marks})"  # noqa: S608
                cursor.execute(sql, params)
                continue
            moving = [columns[i] for i in varying]
            if any(hasattr(rows[0][i], "resolve_expression") for i in varying):
                raise ValueError("an expression must be the same for every row of an update")
            if postgres:
                names = ["pk", *(f"c{i}" for i in range(len(moving)))]
                alias = f"v({', '.join(names)})"
                refs = [f"v.{n}::{f.cast_db_type(connection)}" for n, f in zip(names, [pk, *moving], strict=True)]
            else:  # SQLite names the columns of VALUES column1, column2, …
                alias = "v"
                refs = [f"v.column{i + 1}" for i in range(len(moving) + 1)]
            assignments += [f"{quote(f.column)} = {ref}" for f, ref in zip(moving, refs[1:], strict=True)]
            for obj, row in zip(chunk, rows, strict=True):
                params.append(pk.get_db_prep_value(obj.pk, connection))
                params += [columns[i].get_db_prep_save(row[i], connection) for i in varying]
            row_marks = "(" + ", ".join(["%s"] * (len(moving) + 1)) + ")"
            sql = (
                f"UPDATE {table} SET {', '.join(assignments)} "  # noqa: S608 - names from the model's own metadata
                f"FROM (VALUES {', '.join([row_marks] * len(chunk))}) AS {alias} "
                f"WHERE {table}.{quote(pk.column)} = {refs[0]}"
            )
            cursor.execute(sql, params)
