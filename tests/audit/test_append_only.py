"""The database refuses UPDATE, DELETE (and TRUNCATE) of audit records, whatever door the application uses.

These run as the application's own database role: on PostgreSQL the non-superuser
of scripts/pg-cluster, which in this test cluster even *owns* the test database;
on SQLite the application's connection. The production role set-up of
docs/audit.md is checked last, with the superuser's help.
"""

from __future__ import annotations

import uuid

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.db.migrations.executor import MigrationExecutor

from audit.models import AuditRecord
from audit.triggers import trigger_problems
from audit.verification import verify_chain
from tests.audit.conftest import write_records

REFUSED = "audit records are append-only"


def refused(statement) -> str:
    """Run ``statement`` in a savepoint; return the database's refusal."""
    with pytest.raises(IntegrityError) as caught, transaction.atomic():
        statement()
    return str(caught.value)


def raw(sql: str, params: list | None = None):
    def run() -> None:
        with connection.cursor() as cursor:
            cursor.execute(sql, params)

    return run


@pytest.fixture
def two(db) -> list[AuditRecord]:
    return write_records(2)


def assert_untouched(records: list[AuditRecord]) -> None:
    stored = {r.pk: (r.seq, r.actor, r.action, r.data, r.hash) for r in AuditRecord.objects.all()}
    assert stored == {r.pk: (r.seq, r.actor, r.action, r.data, r.hash) for r in records}


@pytest.mark.django_db
def test_the_triggers_are_in_force_after_migrate():
    assert trigger_problems(connection) == []


@pytest.mark.django_db
def test_orm_queryset_update_is_refused(two):
    assert REFUSED in refused(lambda: AuditRecord.objects.filter(pk=two[0].pk).update(actor="user:999"))
    assert REFUSED in refused(lambda: AuditRecord.objects.update(reason="rewritten"))
    assert_untouched(two)


@pytest.mark.django_db
def test_orm_queryset_delete_is_refused(two):
    assert REFUSED in refused(lambda: AuditRecord.objects.filter(pk=two[1].pk).delete())
    assert REFUSED in refused(lambda: AuditRecord.objects.all().delete())
    assert_untouched(two)


@pytest.mark.django_db
def test_saving_or_deleting_an_instance_is_refused(two):
    record = AuditRecord.objects.get(pk=two[0].pk)
    record.action = "forged"
    assert REFUSED in refused(record.save)
    assert REFUSED in refused(AuditRecord.objects.get(pk=two[1].pk).delete)
    assert_untouched(two)


@pytest.mark.django_db
def test_raw_sql_update_and_delete_are_refused(two):
    assert REFUSED in refused(raw("UPDATE audit_auditrecord SET data = %s WHERE id = %s", ['{"x": 1}', two[0].pk]))
    assert REFUSED in refused(raw("UPDATE audit_auditrecord SET seq = seq + 100"))
    assert REFUSED in refused(raw("DELETE FROM audit_auditrecord WHERE id = %s", [two[1].pk]))
    assert REFUSED in refused(raw("DELETE FROM audit_auditrecord"))
    assert_untouched(two)


@pytest.mark.django_db
def test_an_upsert_onto_a_record_is_refused(two):
    """INSERT ... ON CONFLICT DO UPDATE fires the UPDATE trigger on both databases."""
    sql = (
        "INSERT INTO audit_auditrecord (id, created_at, actor, action, resource_type, resource_id, data, reason,"
        " seq, prev_hash, hash) SELECT id, created_at, actor, action, resource_type, resource_id, data, reason,"
        " seq, prev_hash, hash FROM audit_auditrecord WHERE id = %s"
        " ON CONFLICT (id) DO UPDATE SET actor = 'user:999'"
    )
    assert REFUSED in refused(raw(sql, [two[0].pk]))
    assert_untouched(two)


@pytest.mark.django_db
def test_sqlite_insert_or_replace_over_a_record_is_refused(two):
    """REPLACE deletes the old row without firing DELETE triggers; an INSERT trigger stops it."""
    if connection.vendor != "sqlite":
        pytest.skip("SQLite's INSERT OR REPLACE")
    sql = (
        "INSERT OR REPLACE INTO audit_auditrecord (id, created_at, actor, action, resource_type, resource_id, data,"
        " reason, seq, prev_hash, hash) SELECT id, created_at, 'user:999', action, resource_type, resource_id, data,"
        " reason, seq, prev_hash, hash FROM audit_auditrecord WHERE id = %s"
    )
    assert REFUSED in refused(raw(sql, [two[0].pk]))
    # The same via a new id onto an existing seq (the UNIQUE constraint's REPLACE path).
    assert REFUSED in refused(raw(sql.replace("SELECT id,", "SELECT id + 1000,"), [two[0].pk]))
    assert_untouched(two)


@pytest.mark.postgres
@pytest.mark.django_db
def test_postgres_truncate_is_refused(two):
    assert REFUSED in refused(raw("TRUNCATE audit_auditrecord"))
    assert REFUSED in refused(raw("TRUNCATE audit_auditrecord, tasks_task CASCADE"))
    assert_untouched(two)


@pytest.mark.postgres
@pytest.mark.django_db
def test_postgres_application_role_cannot_switch_the_triggers_off_by_session_setting(two):
    with connection.cursor() as cursor:
        cursor.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
        assert cursor.fetchone() == (False,), "the tests must run as a non-superuser role"
    replica_mode = raw("SET session_replication_role = replica")
    with pytest.raises(DatabaseError, match='permission denied to set parameter "session_replication_role"'):
        transaction.atomic()(replica_mode)()
    assert_untouched(two)


@pytest.mark.django_db
def test_the_refusal_rolls_back_only_its_savepoint(two):
    """The caller's transaction goes on: the refusal is an ordinary constraint error."""
    with transaction.atomic():
        refused(lambda: AuditRecord.objects.filter(pk=two[0].pk).update(actor="user:999"))
        write_records(1, start=2)
    assert AuditRecord.objects.count() == 3
    assert verify_chain().intact


# --- the test suite's own flush -----------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_flush_empties_a_test_database_and_puts_the_triggers_back():
    write_records(3)
    call_command("flush", interactive=False, verbosity=0)
    assert not AuditRecord.objects.exists()
    assert trigger_problems(connection) == []
    records = write_records(2)
    assert REFUSED in refused(lambda: AuditRecord.objects.filter(pk=records[0].pk).delete())


@pytest.mark.django_db(transaction=True)
def test_flush_refuses_any_other_database(monkeypatch):
    write_records(2)
    monkeypatch.setattr("audit.management.commands.flush.is_test_database", lambda connection: False)
    with pytest.raises(CommandError, match="The audit log is append-only, so flush cannot empty this database"):
        call_command("flush", interactive=False, verbosity=0)
    assert AuditRecord.objects.count() == 2


@pytest.mark.django_db
def test_only_the_test_runs_database_counts_as_a_test_database():
    from audit.triggers import is_test_database

    assert is_test_database(connection)

    class Production:
        vendor = connection.vendor
        settings_dict = {**connection.settings_dict, "NAME": "agency"}

        def is_in_memory_db(self) -> bool:
            return False

    assert not is_test_database(Production())


# --- migrations --------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_migrations_are_reversible_and_chain_existing_records():
    executor = MigrationExecutor(connection)
    try:
        executor.migrate([("audit", "0001_initial")])
        assert trigger_problems(connection) != []
        # Records from before the chain: written with the historical model of 0001.
        old_model = executor.loader.project_state(("audit", "0001_initial")).apps.get_model("audit", "AuditRecord")
        old_model.objects.bulk_create(
            old_model(
                actor="system", action=f"old.{i}", resource_type="t", resource_id=str(uuid.uuid4()), data={"i": i}
            )
            for i in range(5)
        )
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())
    assert trigger_problems(connection) == []
    report = verify_chain()
    assert (report.intact, report.verified) == (True, 5)
    assert list(AuditRecord.objects.order_by("seq").values_list("action", flat=True)) == [f"old.{i}" for i in range(5)]
    new = write_records(1)[0]
    assert new.seq == 6
    assert verify_chain().verified == 6
