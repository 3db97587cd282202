"""Concurrent writers build one chain: nobody appends to a predecessor someone else already took."""

from __future__ import annotations

import threading

import pytest
from django.db import connection, transaction

from audit.models import AuditRecord
from audit.services import AuditEntry, audit_record, audit_records
from audit.verification import verify_chain

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]

THREADS = 4
WRITES = 50


def run_threads(target) -> None:
    barrier = threading.Barrier(THREADS)
    errors: list[BaseException] = []

    def run(n: int) -> None:
        try:
            barrier.wait()
            target(n)
        except BaseException as exc:  # collected and re-raised in the test's thread
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(n,)) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not any(thread.is_alive() for thread in threads)
    assert errors == []


def assert_one_intact_chain(expected: int) -> None:
    report = verify_chain()
    assert report.intact, report.first_break
    assert report.verified == expected
    assert list(AuditRecord.objects.order_by("seq").values_list("seq", flat=True)) == list(range(1, expected + 1))


def test_four_threads_of_fifty_single_record_transactions_make_one_chain():
    def write(n: int) -> None:
        for i in range(WRITES):
            with transaction.atomic():
                audit_record(actor=f"worker:{n}", action="task.progress", resource_type="task", resource_id=i)

    run_threads(write)
    assert_one_intact_chain(THREADS * WRITES)
    for n in range(THREADS):
        mine = AuditRecord.objects.filter(actor=f"worker:{n}").order_by("seq")
        assert list(mine.values_list("resource_id", flat=True)) == [str(i) for i in range(WRITES)]


def test_batches_rollbacks_and_single_records_interleave_into_one_chain():
    """Like the dispatcher: several records per transaction, some transactions rolled back."""

    def write(n: int) -> None:
        for i in range(WRITES // 5):
            try:
                with transaction.atomic():
                    for j in range(5):
                        audit_record(actor=f"dispatcher:{n}", action="task.start", resource_type="task", resource_id=j)
                    audit_records(
                        [
                            AuditEntry(
                                actor=f"dispatcher:{n}", action="task.complete", resource_type="task", resource_id=i
                            )
                        ]
                    )
                    if i % 3 == 2:
                        raise LookupError("rolled back")
            except LookupError:
                pass

    run_threads(write)
    committed = THREADS * sum(6 for i in range(WRITES // 5) if i % 3 != 2)
    assert_one_intact_chain(committed)
