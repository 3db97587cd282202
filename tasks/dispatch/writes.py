"""Bulk writes for the dispatcher's transactions over many locked tasks.

A claim or a writer batch changes tens of tasks at once. Saving each row and
creating each event and verdict one by one costs a statement and the ORM's work
each, which capped PostgreSQL dispatch at 177-189 tasks/s (docs/performance.md).
:class:`TaskWrites` collects the changes of one transaction and
:meth:`TaskWrites.flush` writes them with one UPDATE statement
per set of changed fields (``executemany``, which psycopg pipelines), one INSERT
per table, and the audit records last, so the audit chain lock is held only
from there to the commit.

Callers still lock the rows first and decide under the lock; this module only
changes how the decisions reach the database, never what they are.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.db import connections, models, router

from audit.services import AuditEntry, audit_records
from tasks.models import Task, TaskEvent, Verdict
from tasks.services import new_event


class TaskWrites:
    """The pending writes of one transaction: task fields, events, verdicts, audit records."""

    def __init__(self) -> None:
        self._dirty: dict[Any, tuple[Task, set[str]]] = {}
        self._events: list[TaskEvent] = []
        self._verdicts: list[Verdict] = []
        self._audit: list[AuditEntry] = []

    def set(self, task: Task, **values: Any) -> None:
        """Change fields of a locked task; they are written at :meth:`flush`."""
        for name, value in values.items():
            setattr(task, name, value)
        self._fields(task).update(values)

    def event(self, task: Task, type: str, data: dict[str, Any]) -> None:
        """Add the task's next timeline entry (its ``event_seq`` moves on now, the row at flush)."""
        self._events.append(new_event(task, type, data))
        self._fields(task).add("event_seq")

    def verdict(self, verdict: Verdict) -> None:
        self._verdicts.append(verdict)

    def record(self, **entry: Any) -> None:
        """An audit record (the keyword arguments of :class:`audit.services.AuditEntry`)."""
        self._audit.append(AuditEntry(**entry))

    def flush(self) -> None:
        """Write everything collected; call it inside the transaction that holds the row locks."""
        groups: dict[tuple[str, ...], list[Task]] = {}
        for task, fields in self._dirty.values():
            groups.setdefault(tuple(sorted(fields)), []).append(task)
        for fields, tasks in groups.items():
            update_rows(tasks, fields)
        TaskEvent.objects.bulk_create(self._events)
        Verdict.objects.bulk_create(self._verdicts)
        audit_records(self._audit)

    def _fields(self, task: Task) -> set[str]:
        entry = self._dirty.get(task.pk)
        if entry is None or entry[0] is not task:
            entry = self._dirty[task.pk] = (task, set())
        return entry[1]


def update_rows(objs: Sequence[models.Model], fields: Sequence[str]) -> None:
    """``UPDATE … SET <fields> WHERE pk = …`` for each of ``objs``, as one ``executemany``.

    The same values as ``obj.save(update_fields=fields)`` each, without the per-row
    ORM work (Django's ``bulk_update`` is slower still: it builds a CASE per field
    and row). No signals are sent and no ``pre_save`` runs: for models that have
    neither hooks nor ``auto_now`` fields among ``fields``.
    """
    if not objs or not fields:
        return
    model = type(objs[0])
    meta = model._meta
    using = router.db_for_write(model)
    connection = connections[using]
    quote = connection.ops.quote_name
    columns = [meta.get_field(name) for name in fields]
    sql = (
        f"UPDATE {quote(meta.db_table)} SET "  # noqa: S608 - names from the model's own metadata
        + ", ".join(f"{quote(field.column)} = %s" for field in columns)
        + f" WHERE {quote(meta.pk.column)} = %s"
    )
    params = [
        [field.get_db_prep_save(getattr(obj, field.attname), connection) for field in columns]
        + [meta.pk.get_db_prep_value(obj.pk, connection)]
        for obj in objs
    ]
    with connection.cursor() as cursor:
        cursor.executemany(sql, params)
