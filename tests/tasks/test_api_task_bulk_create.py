"""POST /api/v1/tasks with a list: many tasks in one transaction, all or none, errors by index."""

from __future__ import annotations

import pytest

from audit.models import AuditRecord
from tasks import services
from tasks.models import Task, TaskEvent

URL = "/api/v1/tasks"

pytestmark = pytest.mark.django_db


def counts() -> tuple[int, int, int]:
    return Task.objects.count(), TaskEvent.objects.count(), AuditRecord.objects.count()


def test_a_list_creates_every_task_with_one_event_and_one_audit_record_each(operator_client, operator):
    specs = [{"title": f"bulk {n}", "priority": "high" if n % 2 else "low"} for n in range(5)]
    response = operator_client.post(URL, specs, format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert [t["title"] for t in body] == [f"bulk {n}" for n in range(5)]
    assert {t["state"] for t in body} == {"queued"}
    tasks = Task.objects.filter(title__startswith="bulk ")
    assert tasks.count() == 5
    for task in tasks:
        assert task.created_by == operator
        assert list(task.events.values_list("seq", "type")) == [(1, "created")]
        assert AuditRecord.objects.filter(action="task.create", resource_id=str(task.pk)).count() == 1
    assert {t["id"] for t in body} == {str(t.pk) for t in tasks}


def test_one_bad_spec_writes_nothing_and_is_named_by_its_index(operator_client):
    before = counts()
    response = operator_client.post(
        URL, [{"title": "fine"}, {"title": ""}, {"title": "ok", "risk_tier": 9}], format="json"
    )
    assert response.status_code == 400
    errors = response.json()
    assert set(errors) == {"1", "2"}
    assert "title" in errors["1"]
    assert "risk_tier" in errors["2"]
    assert counts() == before


@pytest.mark.parametrize("body", [[], [{"title": "x"}] * (services.MAX_BULK_CREATE + 1), ["not a spec"]])
def test_an_empty_or_overlong_list_or_a_list_of_non_objects_is_refused(operator_client, body):
    before = counts()
    response = operator_client.post(URL, body, format="json")
    assert response.status_code == 400
    assert counts() == before


def test_anonymous_and_viewers_cannot_create_in_bulk(anon_client, viewer_client, nobody_client):
    assert anon_client.post(URL, [{"title": "x"}], format="json").status_code == 401
    assert nobody_client.post(URL, [{"title": "x"}], format="json").status_code == 403
    assert viewer_client.post(URL, [{"title": "x"}], format="json").status_code == 403
    assert not Task.objects.exists()


def test_a_thousand_tasks_in_one_request_are_one_transaction_of_bulk_writes(
    operator_client, django_assert_max_num_queries
):
    specs = [{"title": f"many {n}"} for n in range(services.MAX_BULK_CREATE)]
    # Bulk writes: one INSERT per batch of rows (SQLite takes about 38 task rows a statement), not per task.
    with django_assert_max_num_queries(100):
        response = operator_client.post(URL, specs, format="json")
    assert response.status_code == 201
    assert Task.objects.count() == services.MAX_BULK_CREATE
    assert TaskEvent.objects.count() == services.MAX_BULK_CREATE
