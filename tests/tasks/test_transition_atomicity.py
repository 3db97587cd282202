"""A transition that fails part-way writes nothing (the walks of the table: test_transitions.py)."""

from __future__ import annotations

import pytest
from django.db import transaction

from audit.models import AuditRecord
from tasks import services, transitions
from tasks.models import Task, TaskEvent


@pytest.mark.django_db
def test_a_failure_mid_transition_writes_nothing(operator, make_task, monkeypatch) -> None:
    task = make_task()
    events_before = TaskEvent.objects.count()
    audit_before = AuditRecord.objects.count()

    def broken_audit(entries):
        raise RuntimeError("disk full")

    monkeypatch.setattr(transitions, "audit_records", broken_audit)
    with pytest.raises(RuntimeError, match="disk full"):
        services.task_cancel(task_id=task.pk, actor=operator, reason="stop")

    task.refresh_from_db()
    assert task.state == "queued"
    assert task.cancel_requested_at is None
    assert task.event_seq == 1
    assert TaskEvent.objects.count() == events_before
    assert AuditRecord.objects.count() == audit_before


@pytest.mark.django_db
def test_a_failed_create_leaves_no_task(operator, monkeypatch) -> None:
    def broken_audit(entries):
        raise RuntimeError("disk full")

    monkeypatch.setattr(transitions, "audit_records", broken_audit)
    with pytest.raises(RuntimeError):
        services.task_create(spec={"title": "never"}, actor=operator)
    assert not Task.objects.exists()
    assert not TaskEvent.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_the_audit_function_refuses_to_run_outside_a_transaction() -> None:
    from audit.services import audit_record

    assert not transaction.get_connection().in_atomic_block
    with pytest.raises(RuntimeError, match=r"inside transaction\.atomic"):
        audit_record(actor="system", action="task.create", resource_type="task", resource_id=1)
    assert not AuditRecord.objects.exists()
