"""audit_record(): the chain it builds, the canonical form it hashes, and the transactions it lives in."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from django.db import connection, transaction

from audit.chain import GENESIS_HASH, canonical_json_value, normalize_data, record_hash
from audit.models import AuditRecord
from audit.services import AuditEntry, audit_record, audit_records
from audit.verification import verify_chain
from tests.audit.conftest import write_records


def chain() -> list[tuple[int, str, str]]:
    return list(AuditRecord.objects.order_by("seq").values_list("seq", "prev_hash", "hash"))


def record_then_fail(action: str, before: Callable[[], None] | None = None) -> None:
    """A transaction (or savepoint) that writes an audit record and then fails."""
    with transaction.atomic():
        if before:
            before()
        audit_record(actor="system", action=action, resource_type="t", resource_id=1)
        raise RuntimeError("the change failed")


def assert_linked() -> None:
    """seq 1..n without gaps, each record chained onto the one before, the whole chain verifying."""
    rows = chain()
    assert [seq for seq, _, _ in rows] == list(range(1, len(rows) + 1))
    assert [prev for _, prev, _ in rows] == [GENESIS_HASH] + [h for _, _, h in rows[:-1]]
    report = verify_chain()
    assert report.intact, report.first_break
    assert report.verified == len(rows)


@pytest.mark.django_db
def test_the_first_record_chains_onto_the_genesis_hash():
    with transaction.atomic():
        record = audit_record(actor="system", action="task.create", resource_type="task", resource_id=7)
    record.refresh_from_db()
    assert (record.seq, record.prev_hash, record.resource_id) == (1, "0" * 64, "7")
    assert len(record.hash) == 64
    assert record.hash == record_hash(
        seq=1,
        created_at=record.created_at,
        actor="system",
        action="task.create",
        resource_type="task",
        resource_id="7",
        data={},
        reason="",
        prev_hash=GENESIS_HASH,
    )


@pytest.mark.django_db
def test_each_record_chains_onto_the_one_before():
    write_records(5)
    assert_linked()


def test_the_canonical_form_is_pinned():
    """Format version 1 is frozen: this golden hash changes only if someone breaks every stored chain."""
    fields = {
        "seq": 42,
        "created_at": datetime(2025, 3, 1, 12, 0, 0, 5, tzinfo=UTC),
        "actor": "user:3",
        "action": "task.cancel",
        "resource_type": "task",
        "resource_id": "0b9c",
        "data": {"to": "canceled", "from": "queued", "n": 2.0, "é": [1e16, 0.5]},
        "reason": "stop \u2603",
        "prev_hash": "a" * 64,
    }
    text = (
        '[1,42,"2025-03-01T12:00:00.000005+00:00","user:3","task.cancel","task","0b9c",'
        '{"from":"queued","n":2,"to":"canceled","\\u00e9":[10000000000000000,0.5]},"stop \\u2603","' + "a" * 64 + '"]'
    )
    assert record_hash(**fields) == hashlib.sha256(text.encode()).hexdigest()
    assert record_hash(**fields) == "6207dab58b781c2a1c8b376bb41d9f6e86244456255f906add4a9a84afd753a0"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("seq", 43),
        ("created_at", datetime(2025, 3, 1, 12, 0, 0, 6, tzinfo=UTC)),
        ("actor", "user:4"),
        ("action", "task.pause"),
        ("resource_type", "worker"),
        ("resource_id", "0b9d"),
        ("data", {"to": "canceled"}),
        ("reason", "stop"),
        ("prev_hash", "b" * 64),
    ],
)
def test_the_hash_covers_every_field(field, value):
    fields = {
        "seq": 42,
        "created_at": datetime(2025, 3, 1, 12, 0, 0, 5, tzinfo=UTC),
        "actor": "user:3",
        "action": "task.cancel",
        "resource_type": "task",
        "resource_id": "0b9c",
        "data": {"to": "canceled", "from": "queued"},
        "reason": "",
        "prev_hash": "a" * 64,
    }
    assert record_hash(**fields) != record_hash(**{**fields, field: value})


def test_key_order_and_time_zone_do_not_change_the_hash():
    from datetime import timedelta, timezone

    moment = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
    base = {
        "seq": 1,
        "actor": "a",
        "action": "b",
        "resource_type": "c",
        "resource_id": "d",
        "reason": "",
        "prev_hash": "",
    }
    assert record_hash(**base, created_at=moment, data={"a": 1, "b": {"y": 1, "x": 2}}) == record_hash(
        **base, created_at=moment.astimezone(timezone(timedelta(hours=2))), data={"b": {"x": 2, "y": 1}, "a": 1}
    )


@pytest.mark.parametrize(
    ("value", "canonical"),
    [(2.0, 2), (-0.0, 0), (1e16, 10**16), (1.5e300, 15 * 10**299), (0.1, 0.1), (1.5e-10, 1.5e-10), (True, True)],
)
def test_floats_take_the_form_the_databases_give_back(value, canonical):
    assert canonical_json_value({"v": [value]}) == {"v": [canonical]}
    assert type(canonical_json_value(value)) is type(canonical)


@pytest.mark.django_db
def test_stored_data_verifies_whatever_numbers_it_holds():
    """jsonb hands back 1e16 as an int and 2.0 as a float; SQLite keeps the text: both must verify."""
    data = {
        "ints": [0, -1, 2**70],
        "floats": [2.0, -0.0, 0.1, 1e16, 1.5e300, 1.5e-10, 5e-324, 0.30000000000000004],
        "text": 'é \u2028 \U0001f600 \\ "quoted"',
        "nested": {"b": [{"z": None, "a": True}], "a": {}},
    }
    with transaction.atomic():
        audit_record(
            actor="system", action="x", resource_type="t", resource_id="1", data=data, reason="r\nwith newline"
        )
    assert_linked()


@pytest.mark.django_db
def test_data_is_stored_as_json_would_return_it():
    with transaction.atomic():
        record = audit_record(actor="system", action="x", resource_type="t", resource_id=1, data={1: (1, 2), "k": None})
    assert record.data == {"1": [1, 2], "k": None}
    record.refresh_from_db()
    assert record.data == {"1": [1, 2], "k": None}
    assert_linked()


@pytest.mark.django_db
@pytest.mark.parametrize("data", [{"x": float("nan")}, {"x": float("inf")}, {"x": {1, 2}}, {"x": object()}, [1, 2]])
def test_it_refuses_data_that_is_not_a_json_object_and_writes_nothing(data):
    with pytest.raises((ValueError, TypeError)), transaction.atomic():
        audit_record(actor="system", action="x", resource_type="t", resource_id=1, data=data)
    assert not AuditRecord.objects.exists()


def test_normalize_data_treats_none_as_empty():
    assert normalize_data(None) == {}


@pytest.mark.django_db(transaction=True)
def test_the_batch_function_also_refuses_to_run_outside_a_transaction():
    with pytest.raises(RuntimeError, match=r"inside transaction\.atomic"):
        audit_records([AuditEntry(actor="system", action="x", resource_type="t", resource_id=1)])
    assert not AuditRecord.objects.exists()


@pytest.mark.django_db
def test_a_batch_is_written_in_order_in_one_chain():
    write_records(2)
    entries = [AuditEntry(actor="system", action=f"a{i}", resource_type="t", resource_id=i) for i in range(2500)]
    with transaction.atomic():
        written = audit_records(entries)
    assert [r.seq for r in written] == list(range(3, 2503))
    assert list(AuditRecord.objects.filter(seq__gt=2).order_by("seq").values_list("action", flat=True)[:3]) == [
        "a0",
        "a1",
        "a2",
    ]
    assert_linked()
    with transaction.atomic():
        assert audit_records([]) == []


@pytest.mark.django_db(transaction=True)
def test_a_rolled_back_record_leaves_no_gap():
    write_records(1)
    with pytest.raises(RuntimeError, match="the change failed"):
        record_then_fail("doomed")
    write_records(1, start=1)
    assert [seq for seq, _, _ in chain()] == [1, 2]
    assert not AuditRecord.objects.filter(action="doomed").exists()
    assert_linked()


@pytest.mark.django_db(transaction=True)
def test_a_rolled_back_savepoint_does_not_fork_the_chain():
    with transaction.atomic():
        first = audit_record(actor="system", action="kept", resource_type="t", resource_id=1)
        with pytest.raises(RuntimeError, match="the change failed"):
            record_then_fail("undone")  # a savepoint, rolled back
        after = audit_record(actor="system", action="after", resource_type="t", resource_id=3)
        with transaction.atomic():  # a released savepoint keeps its record
            inner = audit_record(actor="system", action="inner", resource_type="t", resource_id=4)
        last = audit_record(actor="system", action="last", resource_type="t", resource_id=5)
    assert (after.seq, after.prev_hash) == (2, first.hash)
    assert (inner.seq, last.seq, last.prev_hash) == (3, 4, inner.hash)
    assert list(AuditRecord.objects.order_by("seq").values_list("action", flat=True)) == [
        "kept",
        "after",
        "inner",
        "last",
    ]
    assert_linked()


@pytest.mark.django_db(transaction=True)
def test_a_transaction_does_not_reuse_the_head_of_the_one_before():
    """The same @atomic function twice, another connection appending in between."""

    @transaction.atomic
    def decide(n: int) -> AuditRecord:
        return audit_record(actor="system", action="decide", resource_type="t", resource_id=n)

    decide(1)

    def elsewhere() -> None:
        try:
            write_records(1, actor="worker:other")
        finally:
            connection.close()

    thread = threading.Thread(target=elsewhere)
    thread.start()
    thread.join()
    third = decide(3)
    assert third.seq == 3
    assert list(AuditRecord.objects.order_by("seq").values_list("actor", flat=True)) == [
        "system",
        "worker:other",
        "system",
    ]
    assert_linked()


@pytest.mark.django_db
def test_a_failure_after_the_record_leaves_neither_change_nor_record(make_task):
    """The DESIGN.md guarantee, from the audit side: the record shares its change's fate."""
    from tasks.models import Task

    task = make_task()
    before = AuditRecord.objects.count()

    def rename() -> None:
        Task.objects.filter(pk=task.pk).update(title="changed")

    with pytest.raises(RuntimeError, match="the change failed"):
        record_then_fail("task.rename", before=rename)
    task.refresh_from_db()
    assert task.title != "changed"
    assert AuditRecord.objects.count() == before
    write_records(1)
    assert_linked()


@pytest.mark.django_db
def test_created_at_does_not_go_back_along_the_chain():
    write_records(20)
    times = list(AuditRecord.objects.order_by("seq").values_list("created_at", flat=True))
    assert times == sorted(times)


def test_the_canonical_json_is_compact_and_sorted():
    text = json.dumps(canonical_json_value({"b": 1.0, "a": [2.5]}), sort_keys=True, separators=(",", ":"))
    assert text == '{"a":[2.5],"b":1}'
