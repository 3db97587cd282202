"""Fixtures of the audit tests: writing records, and the table owner's way around the triggers.

Tampering needs what an attacker with the database's keys would have, which the
application itself must not: on PostgreSQL the cluster *superuser* (reached over
the unix socket of scripts/pg-cluster, or ``AGENCY_PG_SUPERUSER_DSN``); on
SQLite, whoever can write the file. Tests that need it skip, saying why, when
it is out of reach.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from django.db import connection, transaction

from audit.models import AuditRecord
from audit.services import audit_record

TABLE = "audit_auditrecord"
PG_TRIGGERS = ("audit_auditrecord_append_only", "audit_auditrecord_no_truncate")


def write_records(n: int, *, start: int = 0, **fields: Any) -> list[AuditRecord]:
    """``n`` audit records, each in its own transaction (as decisions are)."""
    records = []
    for i in range(start, start + n):
        values = {
            "actor": "user:1",
            "action": "task.create",
            "resource_type": "task",
            "resource_id": f"t{i}",
            "data": {"n": i, "title": f"task {i}"},
            **fields,
        }
        with transaction.atomic():
            records.append(audit_record(**values))
    return records


def write_at(moment: datetime, **fields: Any) -> AuditRecord:
    """One audit record created at ``moment`` (the clock audit_record reads, stopped there)."""
    values = {"actor": "user:1", "action": "task.create", "resource_type": "task", "resource_id": "t", **fields}
    with mock.patch("audit.services.timezone.now", return_value=moment), transaction.atomic():
        return audit_record(**values)


@pytest.fixture
def records(db) -> Callable[..., list[AuditRecord]]:
    return write_records


def superuser_dsn() -> str | None:
    """How to reach the PostgreSQL superuser: ``AGENCY_PG_SUPERUSER_DSN``, else the socket of scripts/pg-cluster.

    The script's cluster lets its superuser ``postgres`` in over the unix socket
    in ``$PGC_SOCKET_DIR`` (default ``$PGC_DATA.run``, ``/tmp/agency-pg.run``),
    on the same port number as the TCP listener the application uses.
    """
    dsn = os.environ.get("AGENCY_PG_SUPERUSER_DSN", "").strip()
    if dsn:
        return dsn
    socket_dir = os.environ.get("PGC_SOCKET_DIR") or os.environ.get("PGC_DATA", "/tmp/agency-pg") + ".run"  # noqa: S108
    port = str(connection.settings_dict.get("PORT") or 5432)
    if not Path(socket_dir, f".s.PGSQL.{port}").exists():
        return None
    return f"host={socket_dir} port={port} user=postgres"


@pytest.fixture
def pg_superuser(transactional_db) -> Iterator[Any]:
    """A psycopg connection to the test database as the cluster superuser (autocommit)."""
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL only")
    import psycopg

    dsn = superuser_dsn()
    hint = "set AGENCY_PG_SUPERUSER_DSN, e.g. 'host=/tmp/agency-pg.run port=55432 user=postgres'"
    if dsn is None:
        pytest.skip(f"the PostgreSQL superuser is not reachable from here: {hint}")
    try:
        conn = psycopg.connect(dsn, dbname=connection.settings_dict["NAME"], autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.skip(f"the PostgreSQL superuser is not reachable ({exc}): {hint}")
    with conn:
        if not conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()[0]:
            pytest.skip(f"{dsn!r} does not log in as a superuser: {hint}")
        yield conn


class TableOwner:
    """Runs SQL on the test database as its owner would: superuser on PostgreSQL, the file's writer on SQLite.

    :meth:`tamper` gets the append-only triggers out of the way first and puts
    them back afterwards (PostgreSQL: ``DISABLE TRIGGER`` then ``ENABLE
    ALWAYS``; SQLite: drop them, then re-create them from their own stored
    SQL); :meth:`execute` leaves them as they are. Each statement commits at
    once. Parameters are written ``%s`` on both databases.
    """

    def __init__(self, superuser: Any = None) -> None:
        self.superuser = superuser
        self.vendor = connection.vendor

    def execute(self, *statements: str | tuple[str, Sequence[Any]]) -> None:
        if self.superuser is not None:
            for sql, params in _split(statements):
                self.superuser.execute(sql, params or None)
            return
        with _sqlite_file() as raw:
            for sql, params in _split(statements):
                raw.execute(sql.replace("%s", "?"), params)

    def tamper(self, *statements: str | tuple[str, Sequence[Any]]) -> None:
        if self.superuser is not None:
            self.execute(f"ALTER TABLE {TABLE} DISABLE TRIGGER USER")
            try:
                self.execute(*statements)
            finally:
                self.execute(*(f"ALTER TABLE {TABLE} ENABLE ALWAYS TRIGGER {name}" for name in PG_TRIGGERS))
            return
        with _sqlite_file() as raw:
            triggers = raw.execute(
                "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = ?", [TABLE]
            ).fetchall()
            for name, _ in triggers:
                raw.execute(f"DROP TRIGGER {name}")
            try:
                for sql, params in _split(statements):
                    raw.execute(sql.replace("%s", "?"), params)
            finally:
                for _, sql in triggers:
                    raw.execute(sql)


def _split(statements: Iterable[str | tuple[str, Sequence[Any]]]) -> Iterator[tuple[str, Sequence[Any]]]:
    for statement in statements:
        yield (statement, ()) if isinstance(statement, str) else statement


@contextmanager
def _sqlite_file() -> Iterator[sqlite3.Connection]:
    raw = sqlite3.connect(str(connection.settings_dict["NAME"]), isolation_level=None, timeout=10)
    try:
        yield raw
    finally:
        raw.close()


@pytest.fixture
def owner(request, transactional_db) -> TableOwner:
    """The test database's owner (committed data: the tests using it are transactional)."""
    if connection.vendor == "postgresql":
        return TableOwner(request.getfixturevalue("pg_superuser"))
    return TableOwner()
