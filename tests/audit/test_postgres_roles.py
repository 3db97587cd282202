"""PostgreSQL: what the superuser can and cannot bypass, and the production role set-up of docs/audit.md.

In the test cluster the application role owns the test database, so it could
``ALTER TABLE ... DISABLE TRIGGER`` (DDL is the owner's right). Production
must not give it that: a migration role owns the tables and the trigger
function, and the application role holds only SELECT and INSERT on the audit
table. These tests build exactly that role with the superuser's help and show
it cannot change, remove or unprotect a record.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection

from audit.models import AuditRecord
from tests.audit.conftest import superuser_dsn, write_records

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

REFUSED = "audit records are append-only"


def test_the_triggers_fire_even_for_a_superuser_in_replica_mode(pg_superuser):
    """ENABLE ALWAYS: session_replication_role = replica (a superuser's switch) does not turn them off."""
    import psycopg

    write_records(2)
    pg_superuser.execute("SET session_replication_role = replica")
    try:
        for sql in (
            "UPDATE audit_auditrecord SET actor = 'user:999'",
            "DELETE FROM audit_auditrecord",
            "TRUNCATE audit_auditrecord",
        ):
            with pytest.raises(psycopg.errors.IntegrityConstraintViolation, match=REFUSED):
                pg_superuser.execute(sql)
    finally:
        pg_superuser.execute("RESET session_replication_role")


@pytest.fixture
def app_role(pg_superuser) -> Iterator[Any]:
    """A login role with the production grants of docs/audit.md, connected to the test database."""
    import psycopg

    role, password = f"agency_app_test_{secrets.token_hex(4)}", secrets.token_urlsafe(16)
    database = connection.settings_dict["NAME"]
    pg_superuser.execute(
        f"CREATE ROLE {role} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD '{password}'"  # one-off test role
    )
    try:
        pg_superuser.execute(f"GRANT USAGE ON SCHEMA public TO {role}")
        pg_superuser.execute(f"GRANT SELECT, INSERT ON audit_auditrecord TO {role}")
        pg_superuser.execute(f"GRANT USAGE ON SEQUENCE audit_auditrecord_id_seq TO {role}")
        with psycopg.connect(superuser_dsn(), user=role, password=password, dbname=database, autocommit=True) as conn:
            yield conn
    finally:
        pg_superuser.execute(f"DROP OWNED BY {role}")
        pg_superuser.execute(f"DROP ROLE {role}")


def test_the_production_application_role_can_append_but_not_change_or_unprotect(app_role):
    import psycopg

    write_records(2)
    # What audit_record() needs: the chain lock, the head, an INSERT (rolled back here, to keep the chain valid).
    with app_role.transaction(force_rollback=True):
        app_role.execute("SELECT pg_advisory_xact_lock(1)")
        seq, prev = app_role.execute("SELECT seq, hash FROM audit_auditrecord ORDER BY seq DESC LIMIT 1").fetchone()
        app_role.execute(
            "INSERT INTO audit_auditrecord (created_at, actor, action, resource_type, resource_id, data, reason,"
            " seq, prev_hash, hash) VALUES (now(), 'system', 'x', 't', '1', '{}', '', %s, %s, %s) RETURNING id",
            [seq + 1, prev, "0" * 64],
        )
    for sql in (
        "UPDATE audit_auditrecord SET actor = 'user:999'",
        "DELETE FROM audit_auditrecord",
        "TRUNCATE audit_auditrecord",
    ):
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied for table audit_auditrecord"):
            app_role.execute(sql)
    for sql in (
        "ALTER TABLE audit_auditrecord DISABLE TRIGGER audit_auditrecord_append_only",
        "DROP TRIGGER audit_auditrecord_append_only ON audit_auditrecord",
        "DROP TABLE audit_auditrecord",
    ):
        with pytest.raises(
            psycopg.errors.InsufficientPrivilege, match=r"must be owner of (table|relation) audit_auditrecord"
        ):
            app_role.execute(sql)
    with pytest.raises(
        psycopg.errors.InsufficientPrivilege,
        match=r"permission denied for schema public|must be owner of function audit_refuse_change",
    ):
        app_role.execute(
            "CREATE OR REPLACE FUNCTION audit_refuse_change() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RETURN OLD; END $$"
        )
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="session_replication_role"):
        app_role.execute("SET session_replication_role = replica")
    assert AuditRecord.objects.count() == 2
