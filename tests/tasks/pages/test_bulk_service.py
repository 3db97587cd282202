"""services.task_bulk_action: one service call (and transaction, event, audit record) per task."""

from __future__ import annotations

import uuid

import pytest

from audit.models import AuditRecord
from config.errors import InvalidInput, NotAuthenticated, PermissionDenied
from tasks import services
from tasks.models import Task

pytestmark = pytest.mark.django_db


def test_it_applies_each_task_and_reports_the_refused_ones_with_their_reasons(operator, make_task, canceled_task):
    a, b = make_task(title="a"), make_task(title="b")
    missing = uuid.uuid4()
    outcome = services.task_bulk_action(
        actor=operator, action="cancel", task_ids=[a.pk, b.pk, canceled_task.pk, missing, a.pk], reason="r"
    )
    assert outcome.applied == {str(a.pk): "canceled", str(b.pk): "canceled"}
    assert {k: v.code for k, v in outcome.refused.items()} == {
        str(canceled_task.pk): "illegal_transition",
        str(missing): "not_found",
    }
    assert "Cannot cancel a task that is canceled." in outcome.refused[str(canceled_task.pk)].message
    assert outcome.skipped_by_code() == {"illegal_transition": 1, "not_found": 1}
    # The duplicate id was acted on once: one audit record each.
    assert AuditRecord.objects.filter(action="task.cancel", resource_id=str(a.pk)).count() == 1


def test_a_refused_task_does_not_undo_the_others(operator, make_task, canceled_task):
    first = make_task(title="first")
    outcome = services.task_bulk_action(actor=operator, action="retry", task_ids=[canceled_task.pk, first.pk])
    assert list(outcome.applied) == [str(canceled_task.pk)]
    assert Task.objects.get(pk=canceled_task.pk).state == "queued"
    assert list(outcome.refused) == [str(first.pk)]


@pytest.mark.parametrize(("who", "error"), [("viewer", PermissionDenied), ("nobody", PermissionDenied)])
def test_the_actor_is_checked_before_anything_is_done(request, who, error, make_task):
    task = make_task()
    before = AuditRecord.objects.count()
    with pytest.raises(error):
        services.task_bulk_action(actor=request.getfixturevalue(who), action="cancel", task_ids=[task.pk])
    assert Task.objects.get(pk=task.pk).state == "queued"
    assert AuditRecord.objects.count() == before


def test_anonymous_is_not_authenticated(make_task):
    from django.contrib.auth.models import AnonymousUser

    with pytest.raises(NotAuthenticated):
        services.task_bulk_action(actor=AnonymousUser(), action="cancel", task_ids=[make_task().pk])


def test_bad_input_names_the_field(operator, make_task, monkeypatch):
    task = make_task()
    with pytest.raises(InvalidInput) as bad_action:
        services.task_bulk_action(actor=operator, action="delete", task_ids=[task.pk])
    assert "action" in bad_action.value.fields
    with pytest.raises(InvalidInput) as none:
        services.task_bulk_action(actor=operator, action="cancel", task_ids=[])
    assert "task_ids" in none.value.fields
    monkeypatch.setattr(services, "BULK_ACTION_LIMIT", 1)
    with pytest.raises(InvalidInput) as too_many:
        services.task_bulk_action(actor=operator, action="cancel", task_ids=[task.pk, uuid.uuid4()])
    assert "at most 1 tasks" in str(too_many.value.fields["task_ids"])
    assert Task.objects.get(pk=task.pk).state == "queued"
