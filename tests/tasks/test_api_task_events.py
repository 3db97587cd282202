"""GET /api/v1/tasks/{id}/events: a task's timeline, after a sequence number."""

from __future__ import annotations

import uuid

import pytest

from audit.models import AuditRecord
from tasks import services
from tasks.models import Task, TaskEvent


def url(task_id: object) -> str:
    return f"/api/v1/tasks/{task_id}/events"


@pytest.fixture
def task(make_task, operator) -> Task:
    """A task with five events: created, paused, resumed, paused, canceled."""
    task = make_task()
    services.task_pause(task_id=task.id, actor=operator)
    services.task_resume(task_id=task.id, actor=operator)
    services.task_pause(task_id=task.id, actor=operator, reason="hold on")
    services.task_cancel(task_id=task.id, actor=operator, reason="not needed")
    return task


def seqs(response) -> list[int]:
    assert response.status_code == 200, response.content
    return [e["seq"] for e in response.json()["results"]]


@pytest.mark.django_db
def test_it_lists_the_whole_timeline(viewer_client, task, operator):
    r = viewer_client.get(url(task.id))
    assert seqs(r) == [1, 2, 3, 4, 5]
    body = r.json()
    assert [e["type"] for e in body["results"]] == ["created", "paused", "resumed", "paused", "canceled"]
    assert body["last_seq"] == 5
    assert body["results"][3]["data"] == {
        "from": "queued",
        "to": "paused",
        "actor": f"user:{operator.id}",
        "reason": "hold on",
    }
    assert body["results"][0]["created_at"]


@pytest.mark.django_db
def test_it_lists_only_events_after_a_sequence_number(viewer_client, task):
    r = viewer_client.get(url(task.id), {"after": 3})
    assert seqs(r) == [4, 5]
    assert r.json()["last_seq"] == 5


@pytest.mark.django_db
def test_it_returns_nothing_new_after_the_last_event(viewer_client, task):
    r = viewer_client.get(url(task.id), {"after": 5})
    assert seqs(r) == []
    # last_seq echoes the cursor so a poller can keep asking with it.
    assert r.json()["last_seq"] == 5
    assert viewer_client.get(url(task.id), {"after": 99}).json() == {"results": [], "last_seq": 99}


@pytest.mark.django_db
def test_it_limits_the_page(viewer_client, task):
    r = viewer_client.get(url(task.id), {"limit": 2})
    assert seqs(r) == [1, 2]
    assert r.json()["last_seq"] == 2
    assert seqs(viewer_client.get(url(task.id), {"after": 2, "limit": 2})) == [3, 4]


@pytest.mark.django_db
def test_it_keeps_timelines_apart(viewer_client, task, make_task):
    other = make_task()
    assert seqs(viewer_client.get(url(other.id))) == [1]
    assert seqs(viewer_client.get(url(task.id))) == [1, 2, 3, 4, 5]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"after": -1}, "after"),
        ({"after": "x"}, "after"),
        ({"after": "1.5"}, "after"),
        ({"limit": 0}, "limit"),
        ({"limit": 1001}, "limit"),
        ({"limit": "all"}, "limit"),
        ({"since": 1}, "since"),
    ],
)
def test_it_names_a_bad_parameter(viewer_client, task, params, field):
    r = viewer_client.get(url(task.id), params)
    assert r.status_code == 400
    assert set(r.json()) == {field}


@pytest.mark.django_db
def test_it_returns_404_for_an_unknown_task(viewer_client):
    r = viewer_client.get(url(uuid.uuid4()))
    assert r.status_code == 404
    assert r.json()["code"] == "not_found"


@pytest.mark.django_db
def test_it_returns_404_for_a_path_that_is_not_a_uuid(viewer_client):
    assert viewer_client.get(url("nope")).status_code == 404


@pytest.mark.django_db
def test_it_requires_authentication(anon_client, task):
    r = anon_client.get(url(task.id))
    assert r.status_code == 401
    assert "results" not in r.json()


@pytest.mark.django_db
def test_it_rejects_a_user_without_a_role(nobody_client, task):
    r = nobody_client.get(url(task.id))
    assert r.status_code == 403
    assert "results" not in r.json()


@pytest.mark.django_db
def test_it_lets_an_operator_read(operator_client, task):
    assert seqs(operator_client.get(url(task.id))) == [1, 2, 3, 4, 5]


@pytest.mark.django_db
@pytest.mark.parametrize("method", ["post", "put", "patch", "delete"])
def test_it_rejects_other_methods(admin_client_api, task, method):
    before = (TaskEvent.objects.count(), AuditRecord.objects.count())
    r = getattr(admin_client_api, method)(url(task.id), {"type": "forged", "seq": 6}, format="json")
    assert r.status_code == 405
    assert (TaskEvent.objects.count(), AuditRecord.objects.count()) == before
