"""Regression: an override needs a judged result of the task's latest attempt.

Found from outside: a task whose gates failed attempt 1 was retried, attempt 2 failed with no
result, and an override still approved it (the check accepted any verdict of any earlier
attempt): the task ended ``completed`` with an empty result and provenance trailers naming the
failed attempt. The admin buttons used the same check.
"""

from __future__ import annotations

import pytest
from django.urls import reverse

from audit.models import AuditRecord
from security.principals import Principal
from tasks import services
from tasks.dispatch import claims, reports
from tasks.dispatch.reports import AttemptReport
from tasks.exceptions import IllegalTransition
from tasks.models import Task, Verdict, Worker
from tasks.review import verdicts

pytestmark = pytest.mark.django_db

D = Principal.dispatcher("override-check")
PLACEHOLDER = {
    "status": "completed",
    "output": "done",
    "files_modified": [
        {"path": "src/a.py", "operation": "create", "content": "def f():\n    raise NotImplementedError\n"}
    ],
}


def attempt(task: Task, worker: Worker, report: dict) -> Task:
    claims.task_claim(actor=D, limit=10, pick_worker=lambda t: worker, lease_s=30)
    task.refresh_from_db()
    reports.apply_reports(actor=D, reports=[AttemptReport(str(task.pk), task.attempt, **report)])
    task.refresh_from_db()
    return task


@pytest.fixture
def failed_without_result(operator) -> Task:
    worker = Worker.objects.create(name="ov", base_url="http://127.0.0.1:9")
    task = services.task_create(spec={"title": "gated", "max_attempts": 1}, actor=operator)
    task = attempt(task, worker, {"kind": "result", "result": PLACEHOLDER})
    assert task.state == "failed"
    assert verdicts.overridable(task)  # judged by the gates: a reviewer may overrule them
    services.task_retry(task_id=task.pk, actor=operator, reason="try again")
    task = attempt(task, worker, {"kind": "failed", "error": "connection reset", "retryable": False})
    assert (task.state, task.attempt, task.result) == ("failed", 2, None)
    return task


def test_the_service_refuses_to_approve_a_latest_attempt_without_a_result(failed_without_result, operator) -> None:
    task = failed_without_result
    audit = AuditRecord.objects.count()
    with pytest.raises(IllegalTransition, match="latest attempt has no judged result"):
        verdicts.task_override(task_id=task.pk, actor=operator, decision="approve", reason="ship it anyway")
    task.refresh_from_db()
    assert task.state == "failed"
    assert Verdict.objects.filter(task=task).count() == 1  # the gates' verdict of attempt 1 only
    assert AuditRecord.objects.count() == audit
    assert verdicts.provenance(task)["attempt"] == 1


def test_the_api_answers_409(failed_without_result, operator_client) -> None:
    task = failed_without_result
    r = operator_client.post(
        f"/api/v1/tasks/{task.pk}/actions",
        {"action": "override", "decision": "approve", "reason": "ship it anyway"},
        format="json",
    )
    assert r.status_code == 409, r.content
    assert r.json()["code"] == "illegal_transition"
    task.refresh_from_db()
    assert task.state == "failed"


def test_the_admin_offers_no_override_button(failed_without_result, client, operator) -> None:
    operator.is_staff = True
    operator.save(update_fields=["is_staff"])
    client.force_login(operator)
    page = client.get(reverse("admin:tasks_task_change", args=[failed_without_result.pk]))
    assert page.status_code == 200
    assert "task-override" not in page.text
    assert "retry" in page.text.lower()  # the way forward it does offer
