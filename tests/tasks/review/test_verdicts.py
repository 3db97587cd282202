"""Verdicts after the gates, human overrides, provenance — end to end on the reference worker."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from audit.models import AuditRecord
from tasks import services
from tasks.dispatch.dispatcher import Dispatcher
from tasks.models import Task, TaskEvent, Verdict
from tasks.review import waivers
from tests.tasks.dispatch.test_dispatcher import register, state_of, wait_for

PLACEHOLDER_RESULT = {
    "kind": "echo",
    "files_modified": [
        {"path": "src/handler.py", "operation": "create", "content": "def handler():\n    # PLACEHOLDER: fill in\n"}
    ],
}
CRITERIA = [{"id": "A1", "given": "a request", "when": "it arrives", "then": "it is handled"}]


def audit_actions(resource_id: str) -> list[str]:
    return list(AuditRecord.objects.filter(resource_id=resource_id).order_by("id").values_list("action", flat=True))


@pytest.fixture
def running_dispatcher(reference_worker):
    register(reference_worker)
    d = Dispatcher(concurrency=2, poll_s=0.2, reap_s=0.5)
    d.start()
    yield d
    d.stop(grace_s=0)


@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(60)
def test_a_placeholder_gets_changes_requested_and_a_waiver_lets_the_retry_through(
    running_dispatcher, operator, admin_user, django_user_model
):
    spec = {"title": "write the handler", "capabilities": ["reference"], "input": PLACEHOLDER_RESULT}
    task = services.task_create(spec=spec, actor=operator)
    wait_for(lambda: state_of(task) == "failed")
    task.refresh_from_db()
    first = Verdict.objects.get(task=task)
    assert first.decision == "changes_requested"
    assert first.automatic
    assert [(v["rule"], v["severity"], v["file"], v["line"]) for v in first.violations] == [
        ("placeholders.placeholder_code", "critical", "src/handler.py", 2)
    ]
    assert task.violations[0]["waived_by"] is None
    assert "changes_requested" in list(TaskEvent.objects.filter(task=task).values_list("type", flat=True))

    second_admin = django_user_model.objects.create_user("boss", password="x")
    second_admin.groups.add(admin_user.groups.get())
    waiver = waivers.waiver_request(
        actor=admin_user,
        title="Scaffold for the demo",
        reason="experimental_feature",
        gates=["placeholders"],
        justification="The handler body lands in the follow-up task this week.",
        expires_at=timezone.now() + timedelta(days=2),
        task_id=task.pk,
    )
    waivers.waiver_approve(waiver_id=waiver.pk, actor=second_admin)
    services.task_retry(task_id=task.pk, actor=operator, reason="waiver approved")
    wait_for(lambda: state_of(task) == "completed")

    task.refresh_from_db()
    verdict = Verdict.objects.filter(task=task).order_by("-created_at").first()
    assert verdict.decision == "approved"
    assert verdict.violations == []
    assert [(w["rule"], w["waiver"]) for w in verdict.waived] == [("placeholders.placeholder_code", str(waiver.pk))]
    assert task.violations[0]["waived_by"] == str(waiver.pk)
    assert audit_actions(str(task.pk)) == [
        "task.create",
        "task.start",
        "task.verdict",
        "task.retry",
        "task.start",
        "task.verdict",
    ]
    assert audit_actions(str(waiver.pk)) == ["waiver.request", "waiver.approve"]
    record = AuditRecord.objects.filter(resource_id=str(task.pk), action="task.verdict").order_by("-id").first()
    assert record.data["verdict"] == verdict.provenance_id
    assert record.data["waived"] == [{"rule": "placeholders.placeholder_code", "waiver": str(waiver.pk)}]


@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(60)
def test_risk_tier_1_waits_for_a_human_even_when_the_gates_pass(running_dispatcher, operator):
    spec = {
        "title": "t1",
        "risk_tier": 1,
        "acceptance": CRITERIA,
        "capabilities": ["reference"],
        "input": {"kind": "echo"},
    }
    task = services.task_create(spec=spec, actor=operator)
    wait_for(lambda: state_of(task) == "awaiting_review")
    verdict = Verdict.objects.get(task=task)
    assert (verdict.decision, verdict.threshold) == ("approved", 0.9)
    task.refresh_from_db()
    assert task.lease_owner == ""
    assert task.finished_at is None


def tier1_awaiting(make_task) -> Task:
    task = make_task(risk_tier=1, acceptance=CRITERIA)
    Task.objects.filter(pk=task.pk).update(state="awaiting_review", attempt=1)
    Verdict.objects.create(task=task, attempt=1, decision="approved", automatic=True, score=1.0, threshold=0.9)
    return task


ACTIONS = "/api/v1/tasks/{}/actions"


@pytest.mark.django_db
def test_an_operator_approves_a_task_awaiting_review(operator_client, operator, make_task):
    task = tier1_awaiting(make_task)
    r = operator_client.post(
        ACTIONS.format(task.pk),
        {"action": "override", "decision": "approve", "reason": "Reviewed the diff, fine."},
        format="json",
    )
    assert r.status_code == 200, r.content
    body = r.json()
    assert body["state"] == "completed"
    assert body["verdict"]["decision"] == "approved"
    assert body["verdict"]["automatic"] is False
    assert body["verdict"]["decided_by"] == "otto"
    record = AuditRecord.objects.get(action="task.override")
    assert (record.actor, record.reason) == (f"user:{operator.pk}", "Reviewed the diff, fine.")


@pytest.mark.django_db
def test_request_changes_requeues_with_the_guidance_in_the_spec(operator_client, make_task):
    task = tier1_awaiting(make_task)
    r = operator_client.post(
        ACTIONS.format(task.pk),
        {
            "action": "override",
            "decision": "request_changes",
            "reason": "Missing the error path.",
            "guidance": "Handle the 404 case and test it.",
        },
        format="json",
    )
    assert r.status_code == 200, r.content
    task.refresh_from_db()
    assert task.state == "queued"
    assert task.spec["guidance"][0]["text"] == "Handle the 404 case and test it."
    assert task.spec["guidance"][0]["by"] == "otto"
    assert task.max_attempts == 1 + task.spec["max_attempts"]
    assert Verdict.objects.filter(task=task, decision="changes_requested", automatic=False).count() == 1


@pytest.mark.django_db
def test_reject_fails_the_task(operator_client, make_task):
    task = tier1_awaiting(make_task)
    r = operator_client.post(
        ACTIONS.format(task.pk),
        {"action": "override", "decision": "reject", "reason": "Wrong approach entirely."},
        format="json",
    )
    assert r.json()["state"] == "failed"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"action": "override", "decision": "approve", "reason": "too short"}, "reason"),
        ({"action": "override", "reason": "A long enough reason."}, "decision"),
        ({"action": "override", "decision": "bless", "reason": "A long enough reason."}, "decision"),
        ({"action": "pause", "decision": "approve"}, "decision"),
    ],
)
def test_a_bad_override_is_refused_naming_the_field_and_writes_nothing(operator_client, make_task, body, field):
    task = tier1_awaiting(make_task)
    before = (Verdict.objects.count(), AuditRecord.objects.count(), TaskEvent.objects.count())
    r = operator_client.post(ACTIONS.format(task.pk), body, format="json")
    assert r.status_code == 400
    assert field in r.json()
    assert (Verdict.objects.count(), AuditRecord.objects.count(), TaskEvent.objects.count()) == before
    assert state_of(task) == "awaiting_review"


@pytest.mark.django_db
def test_an_override_is_illegal_on_a_queued_task_and_for_a_viewer(operator_client, viewer_client, make_task):
    queued = make_task()
    body = {"action": "override", "decision": "approve", "reason": "Looks good to me."}
    r = operator_client.post(ACTIONS.format(queued.pk), body, format="json")
    assert (r.status_code, r.json()["state"]) == (409, "queued")
    assert viewer_client.post(ACTIONS.format(tier1_awaiting(make_task).pk), body, format="json").status_code == 403


# --- provenance ---------------------------------------------------------------------

PROVENANCE = "/api/v1/tasks/{}/provenance"


@pytest.mark.django_db
def test_provenance_gives_the_verdict_id_and_trailers(viewer_client, make_task):
    task = tier1_awaiting(make_task)
    verdict = Verdict.objects.get(task=task)
    r = viewer_client.get(PROVENANCE.format(task.pk))
    assert r.status_code == 200
    body = r.json()
    assert body["verdict_id"] == f"CAWS-VERDICT-{verdict.pk}"
    assert body["trailers"] == [f"Agency-Task: {task.pk}", f"Agency-Verdict: CAWS-VERDICT-{verdict.pk}"]


@pytest.mark.django_db
def test_provenance_refuses_anonymous_no_role_and_other_methods(anon_client, nobody_client, viewer_client, make_task):
    task = tier1_awaiting(make_task)
    assert anon_client.get(PROVENANCE.format(task.pk)).status_code == 401
    assert nobody_client.get(PROVENANCE.format(task.pk)).status_code == 403
    assert viewer_client.post(PROVENANCE.format(task.pk)).status_code == 405
    assert viewer_client.get(PROVENANCE.format(make_task().pk)).status_code == 404
    assert viewer_client.get(PROVENANCE.format("0" * 8 + "-0000-0000-0000-" + "0" * 12)).status_code == 404


@pytest.mark.django_db
def test_the_provenance_command_prints_trailers_and_verifies_messages(make_task, operator, tmp_path, capsys):
    task = tier1_awaiting(make_task)
    call_command("provenance", "trailer", str(task.pk))
    trailers = capsys.readouterr().out.strip()
    message = tmp_path / "msg"
    message.write_text(f"Add the handler\n\n{trailers}\n")

    # The automatic verdict of a tier 1 task is the gates' approval recommendation: until a reviewer
    # approves, the task is awaiting_review and no commit may claim it.
    with pytest.raises(CommandError, match="awaiting_review, not completed"):
        call_command("provenance", "verify", str(message))
    from tasks.review.verdicts import task_override

    task_override(task_id=task.pk, actor=operator, decision="reject", reason="Not what we asked for.")
    with pytest.raises(CommandError, match="superseded"):
        call_command("provenance", "verify", str(message))
    call_command("provenance", "trailer", str(task.pk))
    message.write_text(f"Add the handler\n\n{capsys.readouterr().out.strip()}\n")
    with pytest.raises(CommandError, match="rejected, not approved"):
        call_command("provenance", "verify", str(message))
    # A reviewer's approval completes a task: its verdict is what a commit may name.
    reviewed = tier1_awaiting(make_task)
    task_override(task_id=reviewed.pk, actor=operator, decision="approve", reason="Reviewed the diff: good.")
    call_command("provenance", "trailer", str(reviewed.pk))
    message.write_text(f"Add the handler\n\n{capsys.readouterr().out.strip()}\n")
    call_command("provenance", "verify", str(message))
    assert "approved task" in capsys.readouterr().out
    message.write_text("No trailers here\n")
    with pytest.raises(CommandError, match="exactly one"):
        call_command("provenance", "verify", str(message))


@pytest.mark.django_db(transaction=True)
def test_provenance_verify_works_as_a_commit_msg_hook_exit_code(make_task, tmp_path):
    from django.db import connection

    if connection.vendor != "sqlite":
        pytest.skip("the child process finds the SQLite test database by path")
    task = tier1_awaiting(make_task)
    Task.objects.filter(pk=task.pk).update(state="completed")  # as a reviewer's approval of the verdict leaves it
    verdict = Verdict.objects.get(task=task)
    good = tmp_path / "good"
    good.write_text(f"x\n\nAgency-Task: {task.pk}\nAgency-Verdict: {verdict.provenance_id}\n")
    bad = tmp_path / "bad"
    bad.write_text("x\n")
    root = Path(__file__).resolve().parents[3]
    env = {"SQLITE_PATH": str(connection.settings_dict["NAME"]), "PATH": "/usr/bin:/bin"}
    run = [sys.executable, "manage.py", "provenance", "verify"]
    assert subprocess.run([*run, str(good)], cwd=root, env=env, capture_output=True, timeout=60).returncode == 0
    assert subprocess.run([*run, str(bad)], cwd=root, env=env, capture_output=True, timeout=60).returncode == 1
