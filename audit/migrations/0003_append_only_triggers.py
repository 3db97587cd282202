"""Triggers that make audit_auditrecord append-only, on PostgreSQL and on SQLite.

PostgreSQL: one plpgsql function raising SQLSTATE 23000 (integrity_constraint_violation,
so Django raises IntegrityError on both databases), a row trigger before UPDATE or DELETE
and a statement trigger before TRUNCATE. Both are ENABLE ALWAYS: they fire even under
``session_replication_role = replica`` (which only a superuser may set anyway). Only the
table's owner (or a superuser) can disable or drop them: see docs/audit.md for the roles a
deployment needs.

SQLite: RAISE(ABORT) before UPDATE and before DELETE, and before an INSERT onto an existing
id or seq, because INSERT OR REPLACE deletes the row it replaces without firing DELETE
triggers (unless recursive_triggers is on).

Note for later migrations: on SQLite, Django alters a table by re-creating it, which drops
its triggers. A migration that alters audit_auditrecord must re-create them afterwards
(tests/audit/test_triggers.py and verify_audit both fail when they are missing).
"""

from django.db import migrations

POSTGRESQL_FORWARD = [
    """
    CREATE FUNCTION audit_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'audit records are append-only: % on % refused', TG_OP, TG_TABLE_NAME
            USING ERRCODE = 'integrity_constraint_violation';
    END;
    $$
    """,
    """
    CREATE TRIGGER audit_auditrecord_append_only BEFORE UPDATE OR DELETE ON audit_auditrecord
        FOR EACH ROW EXECUTE FUNCTION audit_refuse_change()
    """,
    """
    CREATE TRIGGER audit_auditrecord_no_truncate BEFORE TRUNCATE ON audit_auditrecord
        FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change()
    """,
    "ALTER TABLE audit_auditrecord ENABLE ALWAYS TRIGGER audit_auditrecord_append_only",
    "ALTER TABLE audit_auditrecord ENABLE ALWAYS TRIGGER audit_auditrecord_no_truncate",
]
POSTGRESQL_REVERSE = [
    "DROP TRIGGER IF EXISTS audit_auditrecord_no_truncate ON audit_auditrecord",
    "DROP TRIGGER IF EXISTS audit_auditrecord_append_only ON audit_auditrecord",
    "DROP FUNCTION IF EXISTS audit_refuse_change()",
]

SQLITE_FORWARD = [
    """
    CREATE TRIGGER audit_auditrecord_no_update BEFORE UPDATE ON audit_auditrecord
    BEGIN
        SELECT RAISE(ABORT, 'audit records are append-only: UPDATE on audit_auditrecord refused');
    END
    """,
    """
    CREATE TRIGGER audit_auditrecord_no_delete BEFORE DELETE ON audit_auditrecord
    BEGIN
        SELECT RAISE(ABORT, 'audit records are append-only: DELETE on audit_auditrecord refused');
    END
    """,
    """
    CREATE TRIGGER audit_auditrecord_no_replace BEFORE INSERT ON audit_auditrecord
    WHEN EXISTS (SELECT 1 FROM audit_auditrecord WHERE id = NEW.id OR seq = NEW.seq)
    BEGIN
        SELECT RAISE(ABORT, 'audit records are append-only: INSERT over an existing id or seq refused');
    END
    """,
]
SQLITE_REVERSE = [
    "DROP TRIGGER IF EXISTS audit_auditrecord_no_replace",
    "DROP TRIGGER IF EXISTS audit_auditrecord_no_delete",
    "DROP TRIGGER IF EXISTS audit_auditrecord_no_update",
]

STATEMENTS = {
    "postgresql": (POSTGRESQL_FORWARD, POSTGRESQL_REVERSE),
    "sqlite": (SQLITE_FORWARD, SQLITE_REVERSE),
}


def _run(schema_editor, direction: int) -> None:
    vendor = schema_editor.connection.vendor
    if vendor not in STATEMENTS:
        raise RuntimeError(f"no append-only triggers for the {vendor} backend: audit records would be mutable")
    for sql in STATEMENTS[vendor][direction]:
        # params=None: the plpgsql format string's % signs are not placeholders.
        schema_editor.execute(sql, params=None)


def create_triggers(apps, schema_editor):
    _run(schema_editor, 0)


def drop_triggers(apps, schema_editor):
    _run(schema_editor, 1)


class Migration(migrations.Migration):
    dependencies = [
        ("audit", "0002_hash_chain"),
    ]

    operations = [
        migrations.RunPython(create_triggers, drop_triggers, elidable=False),
    ]
