"""GET /api/v1/tasks/{id}: the task, its spec, latest events and cancel request."""

from __future__ import annotations

import uuid

import pytest

from audit.models import AuditRecord
from tasks import services
from tasks.models import Task, TaskEvent, Worker


def url(task_id: object) -> str:
    return f"/api/v1/tasks/{task_id}"


@pytest.mark.django_db
def test_it_shows_a_task(viewer_client, make_task):
    task = make_task(title="Ship it", priority="critical", risk_tier=1, input={"k": "v"})
    r = viewer_client.get(url(task.id))
    assert r.status_code == 200
    body = r.json()
    assert body["id"] == str(task.id)
    assert body["title"] == "Ship it"
    assert body["state"] == "queued"
    assert body["priority"] == "critical"
    assert body["risk_tier"] == 1
    assert body["spec"] == task.spec
    assert body["spec"]["input"] == {"k": "v"}
    assert body["result"] is None
    assert body["worker"] is None
    assert body["created_by"] == "otto"
    assert body["cancel"] is None
    assert [(e["seq"], e["type"]) for e in body["events"]] == [(1, "created")]


@pytest.mark.django_db
def test_it_renders_the_browsable_api(viewer_client, make_task):
    task = make_task(title="Visible in the browser")
    r = viewer_client.get(url(task.id), HTTP_ACCEPT="text/html")
    assert r.status_code == 200
    assert "Visible in the browser" in r.content.decode()


@pytest.mark.django_db
def test_it_shows_the_worker_by_name(viewer_client, make_task):
    task = make_task()
    worker = Worker.objects.create(name="alpha", base_url="http://127.0.0.1:9001")
    Task.objects.filter(pk=task.pk).update(worker=worker)
    assert viewer_client.get(url(task.id)).json()["worker"] == "alpha"


@pytest.mark.django_db
def test_it_shows_the_cancel_request(viewer_client, make_task, operator):
    task = make_task()
    services.task_cancel(task_id=task.id, actor=operator, reason="wrong repo")
    body = viewer_client.get(url(task.id)).json()
    task.refresh_from_db()
    assert body["state"] == "canceled"
    assert body["cancel"]["requested_by"] == "otto"
    assert body["cancel"]["reason"] == "wrong repo"
    assert body["cancel"]["requested_at"]
    assert body["finished_at"]
    assert [e["type"] for e in body["events"]] == ["created", "canceled"]


@pytest.mark.django_db
def test_it_shows_only_the_latest_twenty_events_oldest_first(viewer_client, make_task, operator):
    task = make_task()
    for _ in range(12):  # 1 created + 24 pause/resume events = 25 events
        services.task_pause(task_id=task.id, actor=operator)
        services.task_resume(task_id=task.id, actor=operator)
    events = viewer_client.get(url(task.id)).json()["events"]
    assert [e["seq"] for e in events] == list(range(6, 26))


@pytest.mark.django_db
def test_it_returns_404_for_an_unknown_task(viewer_client, make_task):
    make_task()
    r = viewer_client.get(url(uuid.uuid4()))
    assert r.status_code == 404
    assert r.json()["code"] == "not_found"


@pytest.mark.django_db
@pytest.mark.parametrize("task_id", ["not-a-uuid", "123", "1e4a2b3c"])
def test_it_returns_404_for_a_path_that_is_not_a_uuid(viewer_client, task_id):
    assert viewer_client.get(url(task_id)).status_code == 404


@pytest.mark.django_db
def test_it_requires_authentication(anon_client, make_task):
    task = make_task()
    r = anon_client.get(url(task.id))
    assert r.status_code == 401
    assert "title" not in r.json()


@pytest.mark.django_db
def test_it_rejects_a_user_without_a_role(nobody_client, make_task):
    task = make_task()
    r = nobody_client.get(url(task.id))
    assert r.status_code == 403
    assert "title" not in r.json()


@pytest.mark.django_db
def test_it_does_not_reveal_whether_a_task_exists_to_outsiders(anon_client, nobody_client):
    assert anon_client.get(url(uuid.uuid4())).status_code == 401
    assert nobody_client.get(url(uuid.uuid4())).status_code == 403


@pytest.mark.django_db
@pytest.mark.parametrize("method", ["put", "patch", "delete", "post"])
def test_it_rejects_other_methods(operator_client, make_task, method):
    task = make_task()
    r = getattr(operator_client, method)(url(task.id), {"title": "changed", "state": "completed"}, format="json")
    assert r.status_code == 405
    task.refresh_from_db()
    assert (task.title, task.state) == ("Write the release notes", "queued")
    assert Task.objects.count() == TaskEvent.objects.count() == AuditRecord.objects.count() == 1


@pytest.mark.django_db
def test_it_is_read_only_for_a_viewer_too(viewer_client, make_task):
    task = make_task()
    assert viewer_client.delete(url(task.id)).status_code == 405
    assert Task.objects.filter(pk=task.pk).exists()


@pytest.mark.django_db
def test_it_shows_a_task_in_a_constant_number_of_queries(viewer_client, make_task, django_assert_max_num_queries):
    task = make_task()
    viewer_client.get(url(task.id))  # warm per-process caches
    # Token + user, groups, task with worker and users joined, latest events, latest verdict.
    with django_assert_max_num_queries(5):
        assert viewer_client.get(url(task.id)).status_code == 200
