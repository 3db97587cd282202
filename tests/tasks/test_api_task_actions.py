"""POST /api/v1/tasks/{id}/actions: pause, resume, cancel and retry a task."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from audit.models import AuditRecord
from tasks.models import Task, TaskEvent


def url(task_id: object) -> str:
    return f"/api/v1/tasks/{task_id}/actions"


def in_state(task: Task, state: str, **fields: Any) -> Task:
    # Fine in a test: states the operator API cannot reach (running, failed)
    # belong to the dispatcher, which is not part of these endpoints.
    Task.objects.filter(pk=task.pk).update(state=state, **fields)
    task.refresh_from_db()
    return task


def counts() -> tuple[int, int, int]:
    return Task.objects.count(), TaskEvent.objects.count(), AuditRecord.objects.count()


def snapshot(task: Task) -> dict[str, Any]:
    task.refresh_from_db()
    return {f.attname: getattr(task, f.attname) for f in Task._meta.concrete_fields}


def assert_recorded(task: Task, user, *, action: str, event: str, before: str, after: str, reason: str = "") -> None:
    """The one TaskEvent and the one AuditRecord a transition leaves behind."""
    task.refresh_from_db()
    assert task.state == after
    last = TaskEvent.objects.filter(task=task).order_by("-seq").first()
    assert last.seq == task.event_seq == 2
    assert last.type == event
    data = {"from": before, "to": after, "actor": f"user:{user.id}"}
    if reason:
        data["reason"] = reason
    assert last.data == data

    record = AuditRecord.objects.get(action=f"task.{action}")
    assert record.actor == f"user:{user.id}"
    assert record.resource_type == "task"
    assert record.resource_id == str(task.id)
    assert record.data == {"from": before, "to": after}
    assert record.reason == reason
    assert AuditRecord.objects.filter(resource_id=str(task.id)).count() == 2  # task.create + this one


@pytest.mark.django_db
def test_it_pauses_a_queued_task(operator_client, operator, make_task):
    task = make_task()
    r = operator_client.post(url(task.id), {"action": "pause"}, format="json")
    assert r.status_code == 200, r.content
    body = r.json()
    assert body["state"] == "paused"
    assert [e["type"] for e in body["events"]] == ["created", "paused"]
    assert_recorded(task, operator, action="pause", event="paused", before="queued", after="paused")


@pytest.mark.django_db
def test_it_pauses_a_running_task(operator_client, operator, make_task):
    task = in_state(make_task(), "running", attempt=1)
    r = operator_client.post(url(task.id), {"action": "pause", "reason": "investigating"}, format="json")
    assert r.status_code == 200
    assert_recorded(
        task, operator, action="pause", event="paused", before="running", after="paused", reason="investigating"
    )
    # Pausing stops the attempt; it is not a failed attempt.
    assert task.attempt == 1


@pytest.mark.django_db
def test_it_resumes_a_paused_task(operator_client, operator, make_task):
    task = in_state(make_task(), "paused")
    r = operator_client.post(url(task.id), {"action": "resume"}, format="json")
    assert r.status_code == 200
    assert r.json()["state"] == "queued"
    assert_recorded(task, operator, action="resume", event="resumed", before="paused", after="queued")


@pytest.mark.django_db
@pytest.mark.parametrize("state", ["queued", "paused", "awaiting_review"])
def test_it_cancels_a_task_with_no_attempt_in_flight(operator_client, operator, make_task, state):
    task = in_state(make_task(), state)
    r = operator_client.post(url(task.id), {"action": "cancel", "reason": "duplicate of #12"}, format="json")
    assert r.status_code == 200
    body = r.json()
    assert body["state"] == "canceled"
    assert body["cancel"]["reason"] == "duplicate of #12"
    assert body["cancel"]["requested_by"] == "otto"
    assert_recorded(
        task, operator, action="cancel", event="canceled", before=state, after="canceled", reason="duplicate of #12"
    )
    assert task.cancel_reason == "duplicate of #12"
    assert task.cancel_requested_by == operator
    assert task.cancel_requested_at is not None
    assert task.finished_at == task.cancel_requested_at


@pytest.mark.django_db
def test_it_asks_a_running_task_to_stop(operator_client, operator, make_task):
    task = in_state(make_task(), "running", attempt=1)
    r = operator_client.post(url(task.id), {"action": "cancel"}, format="json")
    assert r.status_code == 200
    assert r.json()["state"] == "canceling"
    assert_recorded(task, operator, action="cancel", event="cancel_requested", before="running", after="canceling")
    # Durable first: the request is stored before any worker has confirmed.
    assert task.cancel_requested_at is not None
    assert task.finished_at is None


@pytest.mark.django_db
def test_it_retries_a_failed_task(operator_client, operator, make_task):
    task = in_state(make_task(), "failed", attempt=3, error="worker crashed")
    r = operator_client.post(url(task.id), {"action": "retry", "reason": "worker fixed"}, format="json")
    assert r.status_code == 200
    assert r.json()["state"] == "queued"
    assert_recorded(
        task, operator, action="retry", event="retried", before="failed", after="queued", reason="worker fixed"
    )
    assert task.error == ""
    assert task.attempt == 3
    assert task.max_attempts == 6  # a fresh budget of the spec's max_attempts


@pytest.mark.django_db
def test_it_retries_a_canceled_task_with_a_fresh_attempt_budget(operator_client, operator, make_task):
    task = make_task(max_attempts=2)
    assert operator_client.post(url(task.id), {"action": "cancel", "reason": "oops"}, format="json").status_code == 200
    in_state(task, "canceled", attempt=2)

    r = operator_client.post(url(task.id), {"action": "retry"}, format="json")
    assert r.status_code == 200
    task.refresh_from_db()
    assert task.state == "queued"
    assert (task.attempt, task.max_attempts) == (2, 4)
    assert (task.cancel_requested_at, task.cancel_requested_by, task.cancel_reason) == (None, None, "")
    assert task.finished_at is None
    assert r.json()["cancel"] is None
    assert [e.type for e in task.events.order_by("seq")] == ["created", "canceled", "retried"]
    assert list(AuditRecord.objects.order_by("id").values_list("action", flat=True)) == [
        "task.create",
        "task.cancel",
        "task.retry",
    ]


@pytest.mark.django_db
def test_it_lets_an_admin_act(admin_client_api, admin_user, make_task):
    task = make_task()
    assert admin_client_api.post(url(task.id), {"action": "pause"}, format="json").status_code == 200
    assert AuditRecord.objects.get(action="task.pause").actor == f"user:{admin_user.id}"


ILLEGAL = [
    ("resume", "queued"),
    ("resume", "running"),
    ("resume", "canceled"),
    ("pause", "paused"),
    ("pause", "canceling"),
    ("pause", "completed"),
    ("pause", "awaiting_review"),
    ("retry", "queued"),
    ("retry", "running"),
    ("retry", "completed"),
    ("cancel", "canceled"),
    ("cancel", "canceling"),
    ("cancel", "completed"),
    ("cancel", "failed"),
]


@pytest.mark.django_db
@pytest.mark.parametrize(("action", "state"), ILLEGAL)
def test_it_refuses_an_illegal_transition(operator_client, make_task, action, state):
    task = in_state(make_task(), state)
    before, rows = counts(), snapshot(task)
    r = operator_client.post(url(task.id), {"action": action, "reason": "try it"}, format="json")
    assert r.status_code == 409
    assert r.json() == {
        "detail": f"Cannot {action} a task that is {state}.",
        "code": "illegal_transition",
        "action": action,
        "state": state,
    }
    assert counts() == before
    assert snapshot(task) == rows


@pytest.mark.django_db
@pytest.mark.parametrize("action", ["restart", "delete", "", "PAUSE", None])
def test_it_names_an_unknown_action(operator_client, make_task, action):
    task = make_task()
    before, rows = counts(), snapshot(task)
    r = operator_client.post(url(task.id), {"action": action}, format="json")
    assert r.status_code == 400
    assert set(r.json()) == {"action"}
    assert counts() == before
    assert snapshot(task) == rows


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({}, {"action"}),
        ({"reason": "no action"}, {"action"}),
        ({"action": "pause", "verdict": "approve"}, {"verdict"}),
        ({"action": "cancel", "reason": "x" * 2001}, {"reason"}),
        ({"action": "cancel", "reason": ["a"]}, {"reason"}),
        ({"action": "cancel", "reason": None}, {"reason"}),
        (["pause"], {"non_field_errors"}),
        ("pause", {"non_field_errors"}),
    ],
)
def test_it_names_the_field_at_fault(operator_client, make_task, body, fields):
    task = make_task()
    before, rows = counts(), snapshot(task)
    r = operator_client.post(url(task.id), body, format="json")
    assert r.status_code == 400
    assert set(r.json()) == fields
    assert counts() == before
    assert snapshot(task) == rows


@pytest.mark.django_db
def test_it_returns_404_for_an_unknown_task(operator_client, make_task):
    make_task()
    before = counts()
    r = operator_client.post(url(uuid.uuid4()), {"action": "cancel"}, format="json")
    assert r.status_code == 404
    assert counts() == before


@pytest.mark.django_db
def test_it_returns_404_for_a_path_that_is_not_a_uuid(operator_client):
    assert operator_client.post(url("nope"), {"action": "cancel"}, format="json").status_code == 404


@pytest.mark.django_db
def test_it_requires_authentication(anon_client, make_task):
    task = make_task()
    before, rows = counts(), snapshot(task)
    assert anon_client.post(url(task.id), {"action": "cancel"}, format="json").status_code == 401
    assert counts() == before
    assert snapshot(task) == rows


@pytest.mark.django_db
def test_it_rejects_a_user_without_a_role(nobody_client, make_task):
    task = make_task()
    before, rows = counts(), snapshot(task)
    assert nobody_client.post(url(task.id), {"action": "cancel"}, format="json").status_code == 403
    assert counts() == before
    assert snapshot(task) == rows


@pytest.mark.django_db
@pytest.mark.parametrize("action", ["pause", "resume", "cancel", "retry"])
def test_it_rejects_a_viewer(viewer_client, make_task, action):
    task = make_task()
    before, rows = counts(), snapshot(task)
    r = viewer_client.post(url(task.id), {"action": action}, format="json")
    assert r.status_code == 403
    assert "operator" in r.json()["detail"]
    assert counts() == before
    assert snapshot(task) == rows


@pytest.mark.django_db
@pytest.mark.parametrize("method", ["get", "put", "patch", "delete"])
def test_it_rejects_other_methods(operator_client, make_task, method):
    task = make_task()
    before, rows = counts(), snapshot(task)
    r = getattr(operator_client, method)(url(task.id), {"action": "cancel"}, format="json")
    assert r.status_code == 405
    assert counts() == before
    assert snapshot(task) == rows
