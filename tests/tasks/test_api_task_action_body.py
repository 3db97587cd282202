"""POST /api/v1/tasks/{id}/actions and /cancel take exactly the bodies the schema documents.

A lifecycle action (pause, resume, cancel, retry) is ``{action, reason?}``; an override is
``{action: "override", decision, reason (10+ characters once trimmed), guidance?}``. Strings must
be JSON strings (DRF would turn ``0`` into ``"0"``), an empty body is not an action, and a refused
body changes nothing.
"""

from __future__ import annotations

from typing import Any

import pytest

from audit.models import AuditRecord
from tasks.models import Task, TaskEvent


def url(task: Task, what: str = "actions") -> str:
    return f"/api/v1/tasks/{task.id}/{what}"


def written() -> tuple[int, int]:
    return TaskEvent.objects.count(), AuditRecord.objects.count()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"action": "pause", "guidance": ""}, "decision"),  # an empty guidance is still an override's key
        ({"action": "pause", "decision": "approve"}, "decision"),
        ({"action": "pause", "reason": 0}, "reason"),
        ({"action": "pause", "reason": ["why"]}, "reason"),
        ({"action": "pause", "extra": 1}, "extra"),
        ({"action": "override", "decision": "approve", "reason": "  short   "}, "reason"),
        ({"action": "override", "decision": "approve", "reason": 1234567890}, "reason"),
        ({"action": "override", "decision": "approve", "reason": "Long enough.", "guidance": 5}, "guidance"),
        ({"action": "override", "reason": "Long enough reason."}, "decision"),
        ({"action": "override", "decision": "approve", "reason": "Long enough.", "extra": 1}, "extra"),
        ({}, "action"),
    ],
)
def test_a_body_outside_the_documented_shapes_is_a_400_naming_the_field(operator_client, make_task, body, field):
    task = make_task()
    before = written()
    r = operator_client.post(url(task), body, format="json")
    assert r.status_code == 400, r.content
    assert field in r.json()
    task.refresh_from_db()
    assert task.state == "queued"
    assert written() == before


@pytest.mark.django_db
def test_an_empty_post_is_not_an_action(operator_client, make_task):
    task = make_task()
    r = operator_client.post(url(task))
    assert r.status_code == 400
    assert r.json() == {"action": ["This field is required."]}


@pytest.mark.django_db
def test_an_override_reason_is_counted_after_trimming(operator_client, make_task):
    task = make_task()
    r = operator_client.post(
        url(task), {"action": "override", "decision": "approve", "reason": "   123456789   "}, format="json"
    )
    assert r.status_code == 400
    assert r.json() == {"reason": ["An override needs a reason of at least 10 characters."]}


@pytest.mark.django_db
def test_a_lifecycle_action_with_a_reason_still_works(operator_client, make_task):
    task = make_task()
    r = operator_client.post(url(task), {"action": "pause", "reason": "Lunch break"}, format="json")
    assert r.status_code == 200, r.content
    assert r.json()["state"] == "paused"


@pytest.mark.django_db
@pytest.mark.parametrize("body", [{"reason": 0}, {"reason": None}, {"reason": "x" * 2001}, {"why": "typo"}])
def test_the_cancel_shorthand_refuses_a_reason_that_is_not_a_short_string(operator_client, make_task, body):
    task = make_task()
    before = written()
    r = operator_client.post(url(task, "cancel"), body, format="json")
    assert r.status_code == 400
    task.refresh_from_db()
    assert task.state == "queued"
    assert written() == before


@pytest.mark.django_db
@pytest.mark.parametrize("what", ["actions", "cancel"])
def test_an_anonymous_caller_is_refused_before_the_body_is_read(anon_client, make_task, what):
    r = anon_client.post(url(make_task(), what), {"action": "pause", "reason": 0}, format="json")
    assert r.status_code == 401


@pytest.mark.django_db
@pytest.mark.parametrize("what", ["actions", "cancel"])
def test_a_viewer_is_refused_whatever_the_body(viewer_client, make_task, what):
    body: dict[str, Any] = {"action": "pause"}
    r = viewer_client.post(url(make_task(), what), body, format="json")
    assert r.status_code == 403
