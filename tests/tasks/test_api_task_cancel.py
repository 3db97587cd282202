"""POST /api/v1/tasks/{id}/cancel: the shorthand for the cancel action."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from rest_framework.test import APIClient

from audit.models import AuditRecord
from tasks.models import Task, TaskEvent


def url(task_id: object) -> str:
    return f"/api/v1/tasks/{task_id}/cancel"


def counts() -> tuple[int, int, int]:
    return Task.objects.count(), TaskEvent.objects.count(), AuditRecord.objects.count()


def snapshot(task: Task) -> dict[str, Any]:
    task.refresh_from_db()
    return {f.attname: getattr(task, f.attname) for f in Task._meta.concrete_fields}


@pytest.mark.django_db
def test_it_cancels_a_queued_task(operator_client, operator, make_task):
    task = make_task()
    r = operator_client.post(url(task.id), {"reason": "superseded"}, format="json")
    assert r.status_code == 200, r.content
    body = r.json()
    assert body["state"] == "canceled"
    assert body["cancel"]["reason"] == "superseded"
    assert body["cancel"]["requested_by"] == "otto"
    assert [e["type"] for e in body["events"]] == ["created", "canceled"]

    task.refresh_from_db()
    assert task.state == "canceled"
    assert task.cancel_reason == "superseded"
    assert task.cancel_requested_by == operator
    assert task.finished_at is not None

    event = TaskEvent.objects.get(task=task, seq=2)
    assert event.type == "canceled"
    assert event.data == {"from": "queued", "to": "canceled", "actor": f"user:{operator.id}", "reason": "superseded"}

    record = AuditRecord.objects.get(action="task.cancel")
    assert record.actor == f"user:{operator.id}"
    assert (record.resource_type, record.resource_id) == ("task", str(task.id))
    assert record.data == {"from": "queued", "to": "canceled"}
    assert record.reason == "superseded"


@pytest.mark.django_db
def test_it_cancels_without_a_reason_or_a_body(operator_client, make_task):
    task = make_task()
    r = operator_client.post(url(task.id))
    assert r.status_code == 200
    task.refresh_from_db()
    assert (task.state, task.cancel_reason) == ("canceled", "")
    assert "reason" not in TaskEvent.objects.get(task=task, seq=2).data


@pytest.mark.django_db
def test_it_refuses_to_cancel_twice(operator_client, make_task):
    """The acceptance criterion: cancel, then 409 when cancelling again."""
    task = make_task()
    assert operator_client.post(url(task.id), {"reason": "first"}, format="json").status_code == 200
    before, rows = counts(), snapshot(task)

    r = operator_client.post(url(task.id), {"reason": "second"}, format="json")
    assert r.status_code == 409
    assert r.json()["state"] == "canceled"
    assert r.json()["action"] == "cancel"
    assert counts() == before
    assert snapshot(task) == rows
    assert AuditRecord.objects.filter(action="task.cancel").count() == 1


@pytest.mark.django_db
def test_it_asks_a_running_task_to_stop(operator_client, make_task):
    task = make_task()
    Task.objects.filter(pk=task.pk).update(state="running", attempt=1)
    r = operator_client.post(url(task.id), format="json")
    assert r.status_code == 200
    assert r.json()["state"] == "canceling"
    assert TaskEvent.objects.get(task=task, seq=2).type == "cancel_requested"
    # A second cancel while the worker is stopping is still an illegal transition.
    assert operator_client.post(url(task.id), format="json").status_code == 409


@pytest.mark.django_db
@pytest.mark.parametrize("state", ["completed", "failed", "canceled", "canceling"])
def test_it_refuses_to_cancel_a_finished_task(operator_client, make_task, state):
    task = make_task()
    Task.objects.filter(pk=task.pk).update(state=state)
    before, rows = counts(), snapshot(task)
    r = operator_client.post(url(task.id), format="json")
    assert r.status_code == 409
    assert r.json()["state"] == state
    assert counts() == before
    assert snapshot(task) == rows


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"reason": "x" * 2001}, "reason"),
        ({"reason": None}, "reason"),
        ({"reason": {"why": "x"}}, "reason"),
        ({"action": "pause"}, "action"),
        ({"force": True}, "force"),
        (["reason"], "non_field_errors"),
    ],
)
def test_it_names_the_field_at_fault(operator_client, make_task, body, field):
    task = make_task()
    before, rows = counts(), snapshot(task)
    r = operator_client.post(url(task.id), body, format="json")
    assert r.status_code == 400
    assert set(r.json()) == {field}
    assert counts() == before
    assert snapshot(task) == rows


@pytest.mark.django_db
def test_it_returns_404_for_an_unknown_task(operator_client, make_task):
    make_task()
    before = counts()
    assert operator_client.post(url(uuid.uuid4())).status_code == 404
    assert counts() == before


@pytest.mark.django_db
def test_it_requires_authentication(anon_client, make_task):
    task = make_task()
    before, rows = counts(), snapshot(task)
    r = anon_client.post(url(task.id))
    assert r.status_code == 401
    assert counts() == before
    assert snapshot(task) == rows


@pytest.mark.django_db
def test_it_rejects_a_user_without_a_role(nobody_client, make_task):
    task = make_task()
    before, rows = counts(), snapshot(task)
    assert nobody_client.post(url(task.id)).status_code == 403
    assert counts() == before
    assert snapshot(task) == rows


@pytest.mark.django_db
def test_it_rejects_a_viewer(viewer_client, make_task):
    task = make_task()
    before, rows = counts(), snapshot(task)
    r = viewer_client.post(url(task.id), {"reason": "mine now"}, format="json")
    assert r.status_code == 403
    assert counts() == before
    assert snapshot(task) == rows


@pytest.mark.django_db
def test_it_requires_a_csrf_token_with_session_authentication(operator, make_task):
    task = make_task()
    browser = APIClient(enforce_csrf_checks=True)
    browser.force_login(operator)

    r = browser.post(url(task.id), {"reason": "forged"}, format="json")
    assert r.status_code == 403
    assert "CSRF" in r.json()["detail"]
    assert snapshot(task)["state"] == "queued"

    browser.get(f"/api/v1/tasks/{task.id}", HTTP_ACCEPT="text/html")  # sets the csrftoken cookie
    token = browser.cookies["csrftoken"].value
    r = browser.post(url(task.id), {"reason": "real"}, format="json", HTTP_X_CSRFTOKEN=token)
    assert r.status_code == 200
    assert snapshot(task)["state"] == "canceled"


@pytest.mark.django_db
@pytest.mark.parametrize("method", ["get", "put", "patch", "delete"])
def test_it_rejects_other_methods(operator_client, make_task, method):
    task = make_task()
    before, rows = counts(), snapshot(task)
    assert getattr(operator_client, method)(url(task.id)).status_code == 405
    assert counts() == before
    assert snapshot(task) == rows
