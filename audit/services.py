"""The one function through which every decision is recorded, and the chain lock behind it.

Every record is linked to the one before it (:mod:`audit.chain`), so two
transactions must never append to the same predecessor. The writer therefore
holds the *chain lock* from its first audit record until it commits:

- PostgreSQL: ``pg_advisory_xact_lock`` on a fixed key, released by COMMIT or
  ROLLBACK. The head (last ``seq`` and ``hash``) is read in a *second*
  statement: in READ COMMITTED a statement's snapshot is taken when it starts,
  so a read in the same statement as a lock wait would miss the record that the
  previous holder just committed.
- SQLite: the IMMEDIATE transaction (config/settings.py) already holds the
  database's one write lock from BEGIN; even a DEFERRED one could not fork the
  chain, since its stale INSERT would fail with SQLITE_BUSY.

Commits thus happen in ``seq`` order, and ``seq`` stays gapless: a rolled-back
writer's numbers were never visible, the next writer reads the committed head.
The unique constraint on ``seq`` is the last line: any locking mistake fails
loudly instead of forking the chain.

The lock costs two statements (lock, read head) before the first record of a
transaction; later records of the same transaction reuse the head it left (see
:func:`_held_head`), so a dispatcher batch of N decisions pays N INSERTs and
one lock. Take audit records last in a transaction, after the row locks it
needs: the chain lock is held until commit, and every audit writer waits on it.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.db import connections, router
from django.db.backends.base.base import BaseDatabaseWrapper
from django.utils import timezone

from audit.chain import GENESIS_HASH, normalize_data, record_hash
from audit.models import AuditRecord
from config.rows import insert_rows

# Key of the PostgreSQL advisory lock that serialises appends ("auditchn" as a bigint).
CHAIN_LOCK_KEY = int.from_bytes(b"auditchn", "big")


@dataclass(frozen=True, kw_only=True)
class AuditEntry:
    """One record to write through :func:`audit_records`."""

    actor: str
    action: str
    resource_type: str
    resource_id: Any
    data: dict[str, Any] | None = None
    reason: str = ""


@dataclass(frozen=True)
class _Head:
    seq: int
    hash: str
    # ``connection.run_on_commit`` when this head was written: the transaction's identity.
    hooks: list[Any]


_heads: weakref.WeakKeyDictionary[BaseDatabaseWrapper, _Head] = weakref.WeakKeyDictionary()


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
    entry = AuditEntry(
        actor=actor, action=action, resource_type=resource_type, resource_id=resource_id, data=data, reason=reason
    )
    return audit_records([entry])[0]


def audit_records(entries: Sequence[AuditEntry]) -> list[AuditRecord]:
    """Write several audit records, in order, with one chain lock and bulk INSERTs.

    For code that records many decisions in one transaction (bulk imports, a
    benchmark's set-up); the same rules as :func:`audit_record` apply.
    """
    using = router.db_for_write(AuditRecord)
    connection = connections[using]
    if not connection.in_atomic_block:
        raise RuntimeError("audit_record() must be called inside transaction.atomic().")
    # Validate before taking the lock: a bad payload must not hold up every other writer.
    prepared = [(entry, normalize_data(entry.data)) for entry in entries]
    if not prepared:
        return []
    seq, prev_hash = _held_head(connection) or _lock_chain(connection)
    records = []
    for entry, data in prepared:
        seq += 1
        record = AuditRecord(
            seq=seq,
            prev_hash=prev_hash,
            # Taken under the lock, so that on one clock created_at never goes back along seq.
            created_at=timezone.now(),
            actor=entry.actor,
            action=entry.action,
            resource_type=entry.resource_type,
            resource_id=str(entry.resource_id),
            data=data,
            reason=entry.reason or "",
        )
        record.hash = prev_hash = record_hash(
            seq=record.seq,
            created_at=record.created_at,
            actor=record.actor,
            action=record.action,
            resource_type=record.resource_type,
            resource_id=record.resource_id,
            data=record.data,
            reason=record.reason,
            prev_hash=record.prev_hash,
        )
        records.append(record)
    insert_rows(records, using)
    _heads[connection] = _Head(seq, prev_hash, connection.run_on_commit)
    return records


def _lock_chain(connection: BaseDatabaseWrapper) -> tuple[int, str]:
    """Take the chain lock for the rest of the transaction; return the committed head."""
    table = connection.ops.quote_name(AuditRecord._meta.db_table)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [CHAIN_LOCK_KEY])
        cursor.execute(f"SELECT seq, hash FROM {table} ORDER BY seq DESC LIMIT 1")  # noqa: S608 - our table name
        row = cursor.fetchone()
    return (row[0], row[1]) if row else (0, GENESIS_HASH)


def _held_head(connection: BaseDatabaseWrapper) -> tuple[int, str] | None:
    """The head this transaction last wrote, if the records behind it are still in it.

    Django replaces ``connection.run_on_commit`` with a new list whenever the
    transaction commits or rolls back and whenever a savepoint rolls back. So
    while the list is the one we saw, no record we wrote has been undone and the
    chain lock (held until the transaction ends) is still ours. The list object
    is kept alive by the cache, so its identity cannot be reused. Anything else
    re-reads the head under the lock, which is always correct.
    """
    head = _heads.get(connection)
    if head is None or head.hooks is not connection.run_on_commit:
        return None
    return head.seq, head.hash
