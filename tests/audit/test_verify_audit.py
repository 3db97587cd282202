"""verify_audit: tampering done as the database's owner (triggers bypassed) is found and named.

Each test tampers through the ``owner`` fixture: the PostgreSQL superuser with
the triggers disabled, or a raw connection to the SQLite file with the triggers
dropped (and both put back afterwards, as an attacker covering tracks would).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from audit.models import AuditRecord
from audit.verification import verify_chain
from tests.audit.conftest import write_records

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parents[2]


def verify(*args: str) -> str:
    """verify_audit's message (the summary, or the error) after its exit code, its timing masked."""
    out = StringIO()
    try:
        call_command("verify_audit", *args, stdout=out)
    except CommandError as exc:
        message = f"exit {exc.returncode}: {exc}"
    else:
        message = f"exit 0: {out.getvalue().strip()}"
    return re.sub(r"\d+\.\d s\)", "T s)", message)


def ids_by_seq() -> dict[int, int]:
    return dict(AuditRecord.objects.values_list("seq", "id"))


def test_it_reports_an_intact_chain_with_its_head(owner):
    records = write_records(5)
    assert verify() == f"exit 0: audit chain intact: 5 records, head 5:{records[-1].hash} (T s)"


def test_it_reports_an_empty_log_as_intact(owner):
    assert verify() == "exit 0: audit chain intact: 0 records, empty (T s)"


def test_it_names_the_first_broken_record_after_an_update_and_a_delete(owner):
    """The acceptance test: one record's data edited, a later one deleted, triggers back on."""
    write_records(8)
    ids = ids_by_seq()
    owner.tamper(
        """UPDATE audit_auditrecord SET data = '{"n": 3, "title": "forged"}' WHERE seq = 3""",
        "DELETE FROM audit_auditrecord WHERE seq = 6",
    )
    assert AuditRecord.objects.count() == 7
    assert verify() == (
        f"exit 1: audit chain broken: edited record at seq 3 (id {ids[3]}): its content does not match its hash "
        "(2 records intact before it; checked in T s)"
    )
    report = verify_chain()
    assert (report.first_break.kind, report.first_break.seq, report.first_break.record_id) == ("edited", 3, ids[3])
    assert report.verified == 2


def test_it_names_a_deleted_record(owner):
    write_records(6)
    ids = ids_by_seq()
    owner.tamper("DELETE FROM audit_auditrecord WHERE seq = 4")
    report = verify_chain()
    assert (report.first_break.kind, report.first_break.seq, report.first_break.record_id) == ("deleted", 4, None)
    assert str(report.first_break) == f"deleted record at seq 4: seq 4 missing (next present: seq 5, id {ids[5]})"
    assert "exit 1: audit chain broken: deleted record at seq 4" in verify()


def test_it_names_several_deleted_records(owner):
    write_records(6)
    owner.tamper("DELETE FROM audit_auditrecord WHERE seq IN (2, 3)")
    assert str(verify_chain().first_break).startswith("deleted record at seq 2: seq 2 to 3 missing")


def test_it_names_a_deletion_hidden_by_renumbering(owner):
    write_records(6)
    ids = ids_by_seq()
    owner.tamper(
        "DELETE FROM audit_auditrecord WHERE seq = 3",
        *(("UPDATE audit_auditrecord SET seq = %s WHERE seq = %s", [seq - 1, seq]) for seq in (4, 5, 6)),
    )
    brk = verify_chain().first_break
    assert (brk.kind, brk.seq, brk.record_id) == ("deleted", 3, ids[4])
    assert "the record that followed seq 2 is missing" in brk.detail


def test_it_names_records_swapped_by_seq(owner):
    write_records(6)
    ids = ids_by_seq()
    owner.tamper(
        "UPDATE audit_auditrecord SET seq = 1000 WHERE seq = 2",
        "UPDATE audit_auditrecord SET seq = 2 WHERE seq = 5",
        "UPDATE audit_auditrecord SET seq = 5 WHERE seq = 1000",
    )
    brk = verify_chain().first_break
    assert (brk.kind, brk.seq, brk.record_id) == ("reordered", 2, ids[5])
    assert brk.detail == f"the record written as seq 2 (id {ids[2]}) now sits at seq 5"


def test_it_names_records_swapped_by_content(owner):
    write_records(6)
    ids = ids_by_seq()
    owner.tamper(
        "CREATE TEMP TABLE swap AS SELECT * FROM audit_auditrecord WHERE seq = 2",
        """UPDATE audit_auditrecord SET (created_at, actor, action, resource_type, resource_id, data, reason) =
               (SELECT created_at, actor, action, resource_type, resource_id, data, reason
                  FROM audit_auditrecord WHERE seq = 4)
            WHERE seq = 2""",
        """UPDATE audit_auditrecord SET (created_at, actor, action, resource_type, resource_id, data, reason) =
               (SELECT created_at, actor, action, resource_type, resource_id, data, reason FROM swap)
            WHERE seq = 4""",
        "DROP TABLE swap",
    )
    assert AuditRecord.objects.get(seq=2).resource_id == "t3"
    brk = verify_chain().first_break
    assert (brk.kind, brk.seq, brk.record_id) == ("reordered", 2, ids[2])
    assert brk.detail == f"its content was written as seq 4 (now id {ids[4]} holds other content)"


def test_it_names_an_edited_prev_hash(owner):
    write_records(4)
    ids = ids_by_seq()
    owner.tamper(("UPDATE audit_auditrecord SET prev_hash = %s WHERE seq = 3", ["f" * 64]))
    brk = verify_chain().first_break
    assert (brk.kind, brk.seq, brk.record_id, brk.detail) == ("edited", 3, ids[3], "its prev_hash was changed")


def test_it_names_a_record_rehashed_after_an_edit(owner):
    """Recomputing an edited record's own hash does not help: the next record's link breaks."""
    from audit.verification import Row, iter_rows

    write_records(4)
    row = next(r for r in iter_rows() if r.seq == 2)
    forged = Row(**{**row._asdict(), "actor": "user:999"})
    owner.tamper(("UPDATE audit_auditrecord SET actor = 'user:999', hash = %s WHERE seq = 2", [forged.expected_hash()]))
    brk = verify_chain().first_break
    assert (brk.kind, brk.seq) == ("deleted", 3)
    assert "the record that followed seq 2 is missing" in brk.detail


def test_an_anchor_catches_records_removed_from_the_end(owner):
    records = write_records(5)
    anchor = f"5:{records[-1].hash}"
    assert verify("--anchor", anchor).startswith("exit 0: audit chain intact: 5 records")
    owner.tamper("DELETE FROM audit_auditrecord WHERE seq = 5")
    # Without the anchor a shorter chain is a valid chain; with it, the loss shows.
    assert verify().startswith("exit 0: audit chain intact: 4 records")
    assert verify("--anchor", anchor).startswith(
        "exit 1: audit chain broken: deleted record at seq 5: the chain ends at seq 4, but the anchor names seq 5"
    )


def test_an_anchor_catches_a_rewritten_chain(owner):
    records = write_records(3)
    assert verify("--anchor", f"2:{records[1].hash}").startswith("exit 0")
    assert verify("--anchor", f"2:{'0' * 64}").startswith("exit 1: audit chain broken: edited record at seq 2")


@pytest.mark.parametrize("anchor", ["5", "5:xyz", "x:" + "0" * 64, "5:" + "A" * 64])
def test_it_rejects_a_malformed_anchor(owner, anchor):
    with pytest.raises(CommandError, match="SEQ:HASH"):
        call_command("verify_audit", "--anchor", anchor)


def test_it_exits_3_when_a_trigger_is_disabled_or_missing(owner):
    write_records(2)
    if owner.vendor == "postgresql":
        owner.execute("ALTER TABLE audit_auditrecord DISABLE TRIGGER audit_auditrecord_no_truncate")
        try:
            message = verify()
        finally:
            owner.execute("ALTER TABLE audit_auditrecord ENABLE ALWAYS TRIGGER audit_auditrecord_no_truncate")
        problem = "trigger audit_auditrecord_no_truncate is not ENABLE ALWAYS (pg_trigger.tgenabled = 'D')"
    else:
        with connection.cursor() as cursor:
            cursor.execute("SELECT sql FROM sqlite_master WHERE name = 'audit_auditrecord_no_delete'")
            (sql,) = cursor.fetchone()
        owner.execute("DROP TRIGGER audit_auditrecord_no_delete")
        try:
            message = verify()
        finally:
            owner.execute(sql)
        problem = "trigger audit_auditrecord_no_delete is missing"
    assert message == f"exit 3: audit chain intact: 2 records, head 2:{AuditRecord.objects.get(seq=2).hash} (T s), " + (
        f"but not protected: {problem}"
    )
    assert verify().startswith("exit 0")


def test_the_command_line_exits_non_zero_on_a_broken_chain(owner):
    write_records(3)
    settings_dict = connection.settings_dict
    env = {key: value for key, value in os.environ.items() if key not in ("DATABASE_URL", "SQLITE_PATH")}
    if connection.vendor == "postgresql":
        env["DATABASE_URL"] = (
            f"postgres://{settings_dict['USER']}:{settings_dict['PASSWORD']}@{settings_dict['HOST']}:"
            f"{settings_dict['PORT']}/{settings_dict['NAME']}"
        )
    else:
        env["SQLITE_PATH"] = str(settings_dict["NAME"])

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "manage.py", "verify_audit"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )

    ok = run()
    assert (ok.returncode, ok.stderr) == (0, "")
    assert ok.stdout.startswith("audit chain intact: 3 records, head 3:")
    owner.tamper("UPDATE audit_auditrecord SET reason = 'because' WHERE seq = 2")
    broken = run()
    assert broken.returncode == 1
    assert broken.stdout == ""
    assert "audit chain broken: edited record at seq 2" in broken.stderr
