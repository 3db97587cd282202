"""POST /tasks/bulk/: cancel or retry over a selection or over everything matching the filter."""

from __future__ import annotations

import uuid

import pytest

from audit.models import AuditRecord
from tasks import services
from tasks.models import Task

pytestmark = pytest.mark.django_db

URL = "/tasks/bulk/"


def states(*tasks: Task) -> list[str]:
    return [Task.objects.get(pk=t.pk).state for t in tasks]


def audits(action: str) -> int:
    return AuditRecord.objects.filter(action=action).count()


def page_messages(client, response) -> str:
    return client.get(response["Location"]).content.decode()


def test_anonymous_posts_are_sent_to_log_in_and_change_nothing(client, make_task):
    task = make_task()
    r = client.post(URL, {"action": "cancel", "scope": "selected", "task_ids": [task.pk]})
    assert r.status_code == 302
    assert r["Location"].startswith("/login/")
    assert states(task) == ["queued"]


@pytest.mark.parametrize("who", ["viewer_page", "nobody_page"])
def test_roles_below_operator_get_403_and_nothing_is_written(request, who, make_task):
    client = request.getfixturevalue(who)
    task = make_task()
    before = AuditRecord.objects.count()
    for scope in ("selected", "matching"):
        r = client.post(URL, {"action": "cancel", "scope": scope, "task_ids": [task.pk], "query": "", "confirmed": "1"})
        assert r.status_code == 403
    assert states(task) == ["queued"]
    assert AuditRecord.objects.count() == before


def test_it_cancels_the_selection_and_counts_what_it_skipped(operator_page, make_task, canceled_task):
    a, b = make_task(title="a"), make_task(title="b")
    before = audits("task.cancel")
    r = operator_page.post(
        URL, {"action": "cancel", "scope": "selected", "task_ids": [a.pk, b.pk, canceled_task.pk], "reason": "cleanup"}
    )
    assert r.status_code == 302
    assert r["Location"] == "/tasks/"
    assert states(a, b, canceled_task) == ["canceled", "canceled", "canceled"]
    assert audits("task.cancel") == before + 2
    record = AuditRecord.objects.filter(action="task.cancel", resource_id=str(a.pk)).get()
    assert record.reason == "cleanup"
    assert "Cancelled 2, skipped 1 (not cancellable from their state)." in page_messages(operator_page, r)


def test_cancelling_a_running_task_says_it_is_still_stopping(operator_page, make_task, run):
    task = run(make_task())
    r = operator_page.post(URL, {"action": "cancel", "scope": "selected", "task_ids": [task.pk]})
    assert states(task) == ["canceling"]
    assert "Cancelled 1 (1 still stopping at their worker)." in page_messages(operator_page, r)


def test_all_matching_asks_for_the_count_first_and_writes_nothing(operator_page, make_task, run):
    queued = [make_task(title=f"q{i}") for i in range(3)]
    before = AuditRecord.objects.count()
    r = operator_page.post(URL, {"action": "cancel", "scope": "matching", "query": "state=queued"})
    body = r.content.decode()
    assert r.status_code == 200
    assert "Cancel 3 tasks matching state=queued?" in body
    assert 'name="confirmed" value="3"' in body
    assert states(*queued) == ["queued"] * 3
    assert AuditRecord.objects.count() == before


def test_all_matching_runs_once_the_count_is_confirmed(operator_page, make_task, canceled_task):
    queued = [make_task(title=f"q{i}") for i in range(3)]
    r = operator_page.post(
        URL, {"action": "cancel", "scope": "matching", "query": "state=queued", "confirmed": "3", "reason": "drain"}
    )
    assert r.status_code == 302
    assert r["Location"] == "/tasks/?state=queued"
    assert states(*queued) == ["canceled"] * 3
    assert states(canceled_task) == ["canceled"]
    assert AuditRecord.objects.filter(action="task.cancel", reason="drain").count() == 3
    assert "Cancelled 3." in page_messages(operator_page, r)


def test_a_changed_count_asks_again_and_writes_nothing(operator_page, make_task):
    queued = [make_task(title=f"q{i}") for i in range(3)]
    before = AuditRecord.objects.count()
    r = operator_page.post(URL, {"action": "cancel", "scope": "matching", "query": "state=queued", "confirmed": "2"})
    body = r.content.decode()
    assert r.status_code == 409
    assert "You confirmed 2 tasks, but 3 match the filter now." in body
    assert 'name="confirmed" value="3"' in body
    assert states(*queued) == ["queued"] * 3
    assert AuditRecord.objects.count() == before


def test_it_retries_everything_matching(operator_page, failed_task, canceled_task, make_task):
    other = make_task()
    r = operator_page.post(
        URL, {"action": "retry", "scope": "matching", "query": "state=failed,canceled", "confirmed": "2"}
    )
    assert r.status_code == 302
    assert states(failed_task, canceled_task, other) == ["queued", "queued", "queued"]
    assert audits("task.retry") == 2
    assert "Retried 2." in page_messages(operator_page, r)


def test_more_than_the_cap_is_refused_with_the_cap_stated(operator_page, make_task, monkeypatch):
    monkeypatch.setattr(services, "BULK_ACTION_LIMIT", 2)
    tasks = [make_task(title=f"q{i}") for i in range(3)]
    before = AuditRecord.objects.count()
    r = operator_page.post(URL, {"action": "cancel", "scope": "matching", "query": "", "confirmed": "3"})
    assert r.status_code == 400
    assert "3 tasks match all tasks; a bulk action takes at most 2." in r.content.decode()
    r = operator_page.post(URL, {"action": "cancel", "scope": "selected", "task_ids": [t.pk for t in tasks]})
    assert r.status_code == 400
    assert "task_ids" in r.content.decode()
    assert "at most 2 tasks" in r.content.decode()
    assert states(*tasks) == ["queued"] * 3
    assert AuditRecord.objects.count() == before


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"action": "delete", "scope": "selected", "task_ids": ["{id}"]}, "action"),
        ({"action": "cancel", "scope": "everything", "task_ids": ["{id}"]}, "scope"),
        ({"action": "cancel", "scope": "selected"}, "task_ids"),
        ({"action": "cancel", "scope": "selected", "task_ids": ["not-a-uuid"]}, "task_ids"),
        ({"action": "cancel", "scope": "matching", "query": "state=bogus"}, "query"),
        ({"action": "cancel", "scope": "matching", "query": "", "confirmed": "-1"}, "confirmed"),
    ],
)
def test_bad_input_is_a_400_naming_the_field(operator_page, make_task, data, field):
    task = make_task()
    data = {k: [v.format(id=task.pk) for v in val] if isinstance(val, list) else val for k, val in data.items()}
    before = AuditRecord.objects.count()
    r = operator_page.post(URL, data)
    assert r.status_code == 400
    assert f"<strong>{field}</strong>" in r.content.decode()
    assert states(task) == ["queued"]
    assert AuditRecord.objects.count() == before


def test_an_unknown_task_in_the_selection_is_skipped(operator_page, make_task):
    task = make_task()
    r = operator_page.post(URL, {"action": "cancel", "scope": "selected", "task_ids": [task.pk, uuid.uuid4()]})
    assert states(task) == ["canceled"]
    assert "Cancelled 1, skipped 1 (no longer exist)." in page_messages(operator_page, r)


def test_it_needs_a_post(operator_page):
    assert operator_page.get(URL).status_code == 405
