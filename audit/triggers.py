"""The append-only triggers of the audit table: are they in force, and lifting them as the owner.

The triggers themselves are created by migration 0003. Lifting them is DDL
(``ALTER TABLE ... DISABLE TRIGGER`` on PostgreSQL, ``DROP``/``CREATE TRIGGER``
on SQLite), which only the table's owner or a superuser may run on PostgreSQL;
the application's own role must not own the table in production
(docs/audit.md). The one caller in this code base is the test suite's flush
(:mod:`audit.management.commands.flush`), on databases the test run created
and therefore owns.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from django.core import mail
from django.db import transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.base.creation import TEST_DATABASE_PREFIX

from audit.models import AuditRecord

TABLE = AuditRecord._meta.db_table
EXPECTED = {
    "postgresql": ("audit_auditrecord_append_only", "audit_auditrecord_no_truncate"),
    "sqlite": ("audit_auditrecord_no_update", "audit_auditrecord_no_delete", "audit_auditrecord_no_replace"),
}
# pg_trigger.tgenabled: A = always, O = origin (bypassed by session_replication_role = replica),
# R = replica only, D = disabled.
_PG_STATES = {"O": "ENABLE", "A": "ENABLE ALWAYS", "R": "ENABLE REPLICA"}


def trigger_problems(connection: BaseDatabaseWrapper) -> list[str]:
    """What is wrong with the append-only triggers (missing, disabled), or nothing."""
    expected = EXPECTED.get(connection.vendor)
    if expected is None:
        return [f"append-only triggers are not supported on {connection.vendor}"]
    found = _trigger_states(connection)
    problems = []
    for name in expected:
        state = found.get(name)
        if state is None:
            problems.append(f"trigger {name} is missing")
        elif connection.vendor == "postgresql" and state != "A":
            problems.append(f"trigger {name} is not ENABLE ALWAYS (pg_trigger.tgenabled = {state!r})")
    return problems


def _trigger_states(connection: BaseDatabaseWrapper) -> dict[str, str]:
    """Trigger name → state (PostgreSQL's tgenabled; SQLite's CREATE statement)."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "SELECT tgname, tgenabled FROM pg_trigger WHERE tgrelid = to_regclass(%s) AND NOT tgisinternal",
                [connection.ops.quote_name(TABLE)],
            )
        else:
            cursor.execute("SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = %s", [TABLE])
        return dict(cursor.fetchall())


@contextmanager
def append_only_lifted(connection: BaseDatabaseWrapper) -> Iterator[None]:
    """Inside one transaction, let UPDATE/DELETE/TRUNCATE through to the audit table.

    The triggers are restored exactly as they were before the transaction
    commits; if anything fails, the rollback restores them too (DDL is
    transactional on both databases). On PostgreSQL this fails with "must be
    owner of table" for any role but the owner or a superuser.
    """
    with transaction.atomic(using=connection.alias):
        states = _trigger_states(connection)
        table = connection.ops.quote_name(TABLE)
        with connection.cursor() as cursor:
            for name, state in states.items():
                trigger = connection.ops.quote_name(name)
                if connection.vendor == "sqlite":
                    cursor.execute(f"DROP TRIGGER {trigger}")
                elif state != "D":
                    cursor.execute(f"ALTER TABLE {table} DISABLE TRIGGER {trigger}")
        yield
        with connection.cursor() as cursor:
            for name, state in states.items():
                trigger = connection.ops.quote_name(name)
                if connection.vendor == "sqlite":
                    cursor.execute(state)  # the trigger's own CREATE TRIGGER statement
                elif state != "D":
                    cursor.execute(f"ALTER TABLE {table} {_PG_STATES[state]} TRIGGER {trigger}")


def is_test_database(connection: BaseDatabaseWrapper) -> bool:
    """True while this process runs Django's test environment on a database a test run made.

    Both must hold: the test environment is set up (it installs ``mail.outbox``)
    and the connection points at the test database name Django derives from the
    settings (``TEST.NAME``, else ``test_`` + NAME, or an in-memory SQLite).
    """
    if not hasattr(mail, "outbox"):
        return False
    name = str(connection.settings_dict["NAME"])
    test_name = (connection.settings_dict.get("TEST") or {}).get("NAME")
    if test_name:
        return name == str(test_name)
    if connection.vendor == "sqlite" and connection.is_in_memory_db():
        return True
    return name.startswith(TEST_DATABASE_PREFIX)
