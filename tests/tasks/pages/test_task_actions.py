"""POST /tasks/<id>/actions/: cancel, pause, resume, retry and override through the API's services."""

from __future__ import annotations

import uuid

import pytest

from audit.models import AuditRecord
from tasks.models import Task, Verdict

pytestmark = pytest.mark.django_db

PLACEHOLDER = {
    "status": "completed",
    "output": "half done",
    "files_modified": [
        {"path": "src/a.py", "operation": "create", "content": "def f():\n    raise NotImplementedError\n"}
    ],
}


def act(task: Task) -> str:
    return f"/tasks/{task.pk}/actions/"


def fresh(task: Task) -> Task:
    return Task.objects.get(pk=task.pk)


def test_anonymous_posts_are_sent_to_log_in_and_change_nothing(client, make_task):
    task = make_task()
    r = client.post(act(task), {"action": "cancel"})
    assert r.status_code == 302
    assert r["Location"].startswith("/login/")
    assert fresh(task).state == "queued"


@pytest.mark.parametrize("who", ["viewer_page", "nobody_page"])
@pytest.mark.parametrize("action", ["cancel", "pause", "override"])
def test_roles_below_operator_get_403_and_nothing_is_written(request, who, action, make_task):
    task = make_task()
    before = AuditRecord.objects.count()
    r = request.getfixturevalue(who).post(act(task), {"action": action, "decision": "approve", "reason": "x" * 20})
    assert r.status_code == 403
    assert fresh(task).state == "queued"
    assert fresh(task).cancel_requested_at is None
    assert AuditRecord.objects.count() == before


def test_cancel_of_a_queued_task_is_final_at_once(operator_page, operator, make_task):
    task = make_task()
    r = operator_page.post(act(task), {"action": "cancel", "reason": "duplicate"})
    assert r.status_code == 302
    assert r["Location"] == f"/tasks/{task.pk}/"
    task = fresh(task)
    assert (task.state, task.cancel_reason, task.cancel_requested_by) == ("canceled", "duplicate", operator)
    record = AuditRecord.objects.get(action="task.cancel")
    assert (record.resource_id, record.actor, record.reason) == (str(task.pk), f"user:{operator.pk}", "duplicate")
    assert record.data == {"from": "queued", "to": "canceled"}
    page = operator_page.get(r["Location"]).content.decode()
    assert "Canceled." in page
    assert '<dd data-fact="cancel-requested">' in page


def test_cancel_of_a_running_task_is_requested_until_the_worker_stops(operator_page, make_task, run):
    task = run(make_task())
    r = operator_page.post(act(task), {"action": "cancel", "reason": ""})
    assert fresh(task).state == "canceling"
    page = operator_page.get(r["Location"]).content.decode()
    assert "Cancel requested; the worker is being told to stop." in page
    assert "not yet: waiting for the worker to stop attempt 1" in page


@pytest.mark.parametrize(
    ("setup", "action", "after"),
    [("queued", "pause", "paused"), ("paused", "resume", "queued"), ("canceled", "retry", "queued")],
)
def test_pause_resume_and_retry_each_write_their_audit_record(operator_page, operator, make_task, setup, action, after):
    from tasks import services

    task = make_task()
    if setup == "paused":
        services.task_pause(task_id=task.pk, actor=operator)
    elif setup == "canceled":
        services.task_cancel(task_id=task.pk, actor=operator)
    before = AuditRecord.objects.filter(action=f"task.{action}").count()
    r = operator_page.post(act(task), {"action": action})
    assert r.status_code == 302
    assert fresh(task).state == after
    assert AuditRecord.objects.filter(action=f"task.{action}", resource_id=str(task.pk)).count() == before + 1


def test_an_illegal_action_is_a_409_shown_on_the_page(operator_page, make_task):
    task = make_task()
    before = AuditRecord.objects.count()
    r = operator_page.post(act(task), {"action": "resume"})
    body = r.content.decode()
    assert r.status_code == 409
    assert "Cannot resume a task that is queued." in body
    assert '<div class="error" role="alert" data-status="409">' in body
    assert "<h1>" in body  # the detail page itself, not a bare error page
    assert fresh(task).state == "queued"
    assert AuditRecord.objects.count() == before


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"action": "explode"}, "action"),
        ({}, "action"),
        ({"action": "cancel", "decision": "approve"}, "decision"),
        ({"action": "cancel", "reason": "x" * 2001}, "reason"),
        ({"action": "cancel", "colour": "red"}, "colour"),
    ],
)
def test_bad_input_is_a_400_naming_the_field(operator_page, make_task, data, field):
    task = make_task()
    before = AuditRecord.objects.count()
    r = operator_page.post(act(task), data)
    assert r.status_code == 400
    assert f"{field}: " in r.content.decode()
    assert fresh(task).state == "queued"
    assert AuditRecord.objects.count() == before


@pytest.fixture
def gated(make_task, run, report) -> Task:
    task = report(run(make_task(max_attempts=1)), kind="result", result=PLACEHOLDER)
    assert task.state == "failed"
    return task


def test_an_override_approves_a_result_the_gates_failed(operator_page, operator, gated):
    r = operator_page.post(
        act(gated), {"action": "override", "decision": "approve", "reason": "The stub is intended.", "guidance": ""}
    )
    assert r.status_code == 302
    assert fresh(gated).state == "completed"
    verdict = Verdict.objects.filter(task=gated, automatic=False).get()
    assert (verdict.decision, verdict.decided_by) == ("approved", operator)
    record = AuditRecord.objects.get(action="task.override")
    assert record.resource_id == str(gated.pk)
    assert "Override recorded: approve." in operator_page.get(r["Location"]).content.decode()


def test_a_short_override_reason_is_shown_next_to_its_field(operator_page, gated):
    r = operator_page.post(act(gated), {"action": "override", "decision": "approve", "reason": "ok", "guidance": ""})
    body = r.content.decode()
    assert r.status_code == 400
    assert '<ul class="field-error" id="override-reason-errors">' in body
    assert "at least 10 characters" in body
    assert ">ok</textarea>" in body  # the value kept
    assert fresh(gated).state == "failed"
    assert not AuditRecord.objects.filter(action="task.override").exists()


def test_an_override_on_a_task_not_awaiting_a_verdict_is_a_409(operator_page, make_task):
    task = make_task()
    r = operator_page.post(act(task), {"action": "override", "decision": "approve", "reason": "x" * 12})
    assert r.status_code == 409
    assert "Cannot override a task that is queued." in r.content.decode()


def test_an_htmx_post_gets_the_refreshed_summary(operator_page, make_task):
    task = make_task()
    r = operator_page.post(act(task), {"action": "pause"}, headers={"HX-Request": "true"})
    body = r.content.decode()
    assert r.status_code == 200
    assert "<html" not in body
    assert '<span class="badge paused" data-state>paused</span>' in body
    assert "Paused." in body


def test_an_unknown_task_is_a_404(operator_page):
    assert operator_page.post(f"/tasks/{uuid.uuid4()}/actions/", {"action": "cancel"}).status_code == 404


def test_it_needs_a_post(operator_page, make_task):
    assert operator_page.get(act(make_task())).status_code == 405
