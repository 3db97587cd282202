"""The chat commands: through the task services with the user who typed them."""

from __future__ import annotations

import uuid

import pytest

from audit.models import AuditRecord
from chat import commands, services
from chat.models import ChatWatch, MessageRole
from chat.watch import process
from tasks.models import Task
from tasks.transitions import TaskChanged

pytestmark = pytest.mark.django_db


@pytest.fixture
def session(operator):
    return services.session_create(actor=operator, title="ops")


def say(actor, session, text):
    return commands.execute(actor=actor, session=session, text=text)


def test_help_lists_every_command(operator, session):
    reply = say(operator, session, "help")
    for name in commands.COMMANDS:
        assert name in reply.content


def test_anything_else_is_echoed_with_a_hint(operator, session):
    reply = say(operator, session, "what is running?")
    assert "You said: what is running?" in reply.content
    assert "help" in reply.content


def test_status_takes_a_unique_prefix_of_the_id(operator, session, make_task):
    task = make_task(title="Index the archive")
    reply = say(operator, session, f"status {str(task.pk)[:8]}")
    assert "Index the archive" in reply.content
    assert "queued" in reply.content
    assert reply.metadata["task_id"] == str(task.pk)
    assert say(operator, session, f"status {task.pk}").metadata["task_id"] == str(task.pk)


def test_a_prefix_that_is_too_short_unknown_or_not_hex_is_refused(operator, session, make_task):
    make_task()
    assert "at least 4" in say(operator, session, "status ab").content
    assert "No task id starts with" in say(operator, session, "status ffffffff").content
    assert "is not a task id" in say(operator, session, "status zzzzzz").content


def test_an_ambiguous_prefix_names_the_candidates(operator, session, make_task, monkeypatch):
    ids = iter([uuid.UUID("aaaa0000-0000-4000-8000-000000000001"), uuid.UUID("aaaa0000-0000-4000-8000-000000000002")])
    monkeypatch.setattr(Task._meta.get_field("id"), "_get_default", lambda: next(ids))
    make_task(), make_task()
    reply = say(operator, session, "status aaaa")
    assert "ambiguous" in reply.content
    assert reply.metadata["error"] == "command_error"


def test_list_filters_by_state_and_refuses_an_unknown_one(operator, session, make_task):
    make_task(title="One")
    assert "One" in say(operator, session, "list queued").content
    assert say(operator, session, "list failed").content == "No tasks in state failed."
    assert "Unknown state" in say(operator, session, "list bogus").content


def test_submit_creates_a_task_with_its_tier_and_names_a_bad_tier(operator, session):
    reply = say(operator, session, "submit Write the notes tier 2")
    task = Task.objects.get(pk=reply.metadata["task_id"])
    assert (task.title, task.risk_tier, task.created_by) == ("Write the notes", 2, operator)
    bad = say(operator, session, "submit Write the notes tier 9")
    assert bad.metadata["error"] == "invalid"
    assert "risk_tier" in bad.content
    assert Task.objects.count() == 1


def test_cancel_is_the_users_cancel_with_its_audit_record(operator, session, make_task):
    task = make_task()
    reply = say(operator, session, f"cancel {str(task.pk)[:6]} not needed")
    task.refresh_from_db()
    assert task.state == "canceled"
    assert task.cancel_reason == "not needed"
    assert "canceled" in reply.content
    record = AuditRecord.objects.filter(action="task.cancel", resource_id=str(task.pk)).get()
    assert record.actor == f"user:{operator.pk}"


def test_a_viewer_typing_cancel_is_refused_and_nothing_changes(viewer, make_task):
    task = make_task()
    session = services.session_create(actor=viewer)
    reply = say(viewer, session, f"cancel {task.pk}")
    assert reply.metadata["error"] == "permission_denied"
    assert "operator role" in reply.content
    task.refresh_from_db()
    assert task.state == "queued"
    assert not AuditRecord.objects.filter(action="task.cancel").exists()


def test_pause_resume_and_an_illegal_retry_answer_as_the_api_does(operator, session, make_task):
    task = make_task()
    assert "paused" in say(operator, session, f"pause {task.pk}").content
    assert "resumed" in say(operator, session, f"resume {task.pk}").content
    refused = say(operator, session, f"retry {task.pk}")
    assert refused.metadata["error"] == "illegal_transition"


def test_health_reports_the_components(operator, session):
    reply = say(operator, session, "health")
    assert reply.content.startswith("Overall ")
    assert "database" in reply.content


def test_watch_turns_the_tasks_changes_into_system_messages_until_it_ends(operator, session, make_task):
    task = make_task(title="Watched")
    assert "Watching" in say(operator, session, f"watch {task.pk}").content
    assert ChatWatch.objects.filter(session=session, task=task).exists()
    process([([TaskChanged(str(task.pk), 2, "queued", "running", "claim")], [])])
    process([([TaskChanged(str(task.pk), 3, "running", "completed", "report")], [])])
    messages = list(session.messages.order_by("seq"))
    assert [m.role for m in messages] == [MessageRole.SYSTEM, MessageRole.SYSTEM]
    assert "queued → running" in messages[0].content
    assert "running → completed" in messages[1].content
    assert "no longer watching" in messages[1].content
    assert messages[1].metadata["to_state"] == "completed"
    assert not ChatWatch.objects.exists()
    # An unwatched task's changes write nothing.
    process([([TaskChanged(str(task.pk), 4, "completed", "queued", "retry")], [])])
    assert session.messages.count() == 2


def test_watch_stops_writing_once_the_session_is_closed(operator, session, make_task):
    task = make_task()
    say(operator, session, f"watch {task.pk}")
    services.session_close(actor=operator, session_id=session.pk)
    assert not ChatWatch.objects.exists()  # closing drops the session's watches
    ChatWatch.objects.create(session=session, task=task)  # as if a watch had been left behind
    process([([TaskChanged(str(task.pk), 2, "queued", "running", "claim")], [])])
    assert session.messages.count() == 0
    assert not ChatWatch.objects.exists()


def test_the_chat_worker_lookup_sees_a_worker_registered_enabled_disabled_or_removed_at_once(admin_user):
    from chat import assist
    from tasks import workers

    assist.forget_chat_worker()
    assert assist.chat_worker() is None  # remembered: no chat worker
    workers.worker_register(actor=admin_user, name="talker", base_url="http://127.0.0.1:9", capabilities=["chat"])
    assert assist.chat_worker().name == "talker"
    workers.worker_set_enabled(actor=admin_user, name="talker", enabled=False)
    assert assist.chat_worker() is None
    workers.worker_set_enabled(actor=admin_user, name="talker", enabled=True)
    assert assist.chat_worker().name == "talker"
    workers.worker_delete(actor=admin_user, name="talker")
    assert assist.chat_worker() is None
