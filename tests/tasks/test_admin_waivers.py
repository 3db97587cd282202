"""The waiver admin: operators request, admins decide through the services, nobody edits or deletes."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Group, User
from django.contrib.messages import get_messages
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from audit.models import AuditRecord
from tasks.admin import common as admin_common
from tasks.models import Waiver

CHANGELIST = reverse("admin:tasks_waiver_changelist")
ADD = reverse("admin:tasks_waiver_add")
JUSTIFICATION = "The vendored SDK ships its own TODO markers we cannot edit."


def change_url(waiver: Waiver) -> str:
    return reverse("admin:tasks_waiver_change", args=[waiver.pk])


def console(client: Client, user: User) -> Client:
    """Log ``user`` in to the admin; admin access needs is_staff on top of a role."""
    user.is_staff = True
    user.save(update_fields=["is_staff"])
    client.force_login(user)
    return client


def make_waiver(*, status: str = "pending", requested_by: User | None = None, **fields: Any) -> Waiver:
    fields.setdefault("expires_at", timezone.now() + timedelta(days=1))
    fields.setdefault("gates", ["placeholders"])
    return Waiver.objects.create(
        title=fields.pop("title", "A waiver"),
        reason="other",
        justification=JUSTIFICATION,
        status=status,
        requested_by=requested_by,
        **fields,
    )


def action_post(client: Client, action: str, selected: list[Waiver], note: str = "") -> Any:
    data = {"action": action, "_selected_action": [str(w.pk) for w in selected], "index": "0", "note": note}
    return client.post(CHANGELIST, data)


def messages_of(response: Any) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def counts() -> tuple[int, int, int]:
    return Waiver.objects.count(), AuditRecord.objects.count(), LogEntry.objects.count()


def add_form(**overrides: Any) -> dict[str, Any]:
    expires = timezone.now() + timedelta(days=7)
    data: dict[str, Any] = {
        "title": "Vendored SDK markers",
        "reason": "third_party_constraint",
        "gates": ["placeholders", "scope"],
        "justification": JUSTIFICATION,
        "expires_at_0": expires.strftime("%Y-%m-%d"),
        "expires_at_1": expires.strftime("%H:%M:%S"),
        "task": "",
    }
    data.update(overrides)
    return data


@pytest.fixture
def second_admin(db) -> User:
    user = User.objects.create_user(username="abe", password="pw-abe")
    user.groups.add(Group.objects.get_or_create(name="admin")[0])
    return user


# --- access -------------------------------------------------------------------------


def test_anonymous_is_sent_to_login(client, db):
    waiver = make_waiver()
    for url in (CHANGELIST, change_url(waiver), ADD):
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("admin:login"))


def test_staff_without_a_role_is_denied(client, nobody):
    waiver = make_waiver()
    console(client, nobody)
    assert client.get(CHANGELIST).status_code == 403
    assert client.get(change_url(waiver)).status_code == 403
    assert client.get(ADD).status_code == 403


def test_viewer_reads_the_list_and_a_waiver(client, viewer, operator, make_task):
    task = make_task()
    scoped = make_waiver(title="Scoped one", requested_by=operator, task=task, gates=["scope", "budget"])
    make_waiver(title="Global one", status="approved", requested_by=operator)
    console(client, viewer)

    response = client.get(CHANGELIST)
    assert response.status_code == 200
    text = response.text
    assert "Scoped one" in text
    assert "Global one" in text
    assert "scope, budget" in text
    assert "every task" in text
    assert reverse("admin:tasks_task_change", args=[task.pk]) in text
    assert "otto" in text
    assert response.context["action_form"] is None  # no actions, and no delete

    response = client.get(change_url(scoped))
    assert response.status_code == 200
    assert 'name="_save"' not in response.text
    assert dict(response.context["adminform"].form.fields) == {}


def test_viewer_cannot_add(client, viewer):
    console(client, viewer)
    assert client.get(ADD).status_code == 403
    assert client.post(ADD, add_form()).status_code == 403
    assert counts() == (0, 0, 0)


# --- list ---------------------------------------------------------------------------


def test_the_list_shows_active_as_computed(client, viewer):
    make_waiver(title="Live", status="approved")
    make_waiver(title="Lapsed", status="approved", expires_at=timezone.now() - timedelta(minutes=1))
    response = console(client, viewer).get(CHANGELIST)
    rows = {w.title: w for w in response.context["cl"].result_list}
    assert rows["Live"].is_active()
    assert not rows["Lapsed"].is_active()
    assert response.text.count('alt="True"') == 1


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"status__exact": "approved"}, {"approved global", "approved lapsed", "approved task"}),
        ({"active": "yes"}, {"approved global", "approved task"}),
        ({"active": "no"}, {"pending", "approved lapsed", "revoked"}),
        ({"gate": "scope"}, {"approved task", "revoked"}),
        ({"gate": "placeholders"}, {"pending", "approved global", "approved lapsed"}),
        ({"scope": "global"}, {"pending", "approved global", "approved lapsed", "revoked"}),
        ({"scope": "task"}, {"approved task"}),
        ({"reason__exact": "other"}, {"pending", "approved global", "approved lapsed", "approved task", "revoked"}),
    ],
)
def test_the_filters(client, viewer, make_task, query, expected):
    task = make_task()
    past = timezone.now() - timedelta(minutes=1)
    make_waiver(title="pending")
    make_waiver(title="approved global", status="approved")
    make_waiver(title="approved lapsed", status="approved", expires_at=past)
    make_waiver(title="approved task", status="approved", task=task, gates=["scope"])
    make_waiver(title="revoked", status="revoked", gates=["scope", "budget"])
    response = console(client, viewer).get(CHANGELIST, query)
    assert response.status_code == 200
    assert {w.title for w in response.context["cl"].result_list} == expected


def test_the_list_query_count_does_not_grow_with_rows(client, viewer, operator, django_assert_num_queries):
    console(client, viewer)
    make_waiver(requested_by=operator)
    with CaptureQueriesContext(connection) as few:
        assert client.get(CHANGELIST).status_code == 200
    for i in range(15):
        make_waiver(title=f"W{i}", requested_by=operator)
    with django_assert_num_queries(len(few.captured_queries)):
        assert client.get(CHANGELIST).status_code == 200


# --- add form -----------------------------------------------------------------------


def test_operator_requests_a_waiver_through_the_service(client, operator, make_task):
    task = make_task()
    console(client, operator)
    assert client.get(ADD).status_code == 200
    audits = AuditRecord.objects.count()

    response = client.post(ADD, add_form(task=str(task.pk)))

    assert response.status_code == 302, response.context["adminform"].form.errors if response.context else ""
    waiver = Waiver.objects.get()
    assert response["Location"] == change_url(waiver)
    assert (waiver.status, waiver.requested_by, waiver.task_id, waiver.gates) == (
        "pending",
        operator,
        task.pk,
        ["placeholders", "scope"],
    )
    assert waiver.justification == JUSTIFICATION
    assert AuditRecord.objects.count() == audits + 1
    record = AuditRecord.objects.get(action="waiver.request")
    assert (record.actor, record.resource_id) == (f"user:{operator.pk}", str(waiver.pk))


def test_a_waiver_without_a_task_is_global(client, operator):
    response = console(client, operator).post(ADD, add_form())
    assert response.status_code == 302
    assert Waiver.objects.get().task_id is None


@pytest.mark.parametrize(
    ("overrides", "field", "expected"),
    [
        ({"title": ""}, "title", "This field is required."),
        ({"justification": "too short"}, "justification", "at least 20 characters"),
        ({"justification": "    short enough?     "}, "justification", "at least 20 characters"),
        ({"gates": []}, "gates", "This field is required."),
        ({"gates": ["lint"]}, "gates", "Select a valid choice."),
        ({"reason": "because"}, "reason", "Select a valid choice."),
        (
            {"expires_at_0": (timezone.now() - timedelta(days=1)).strftime("%Y-%m-%d")},
            "expires_at",
            "Must be in the future (and at most 90 days ahead).",
        ),
        (
            {"expires_at_0": (timezone.now() + timedelta(days=120)).strftime("%Y-%m-%d")},
            "expires_at",
            "Must be at most 90 days ahead.",
        ),
        ({"task": str(uuid.uuid4())}, "task", "Select a valid choice."),
        ({"task": "not-a-uuid"}, "task", "valid UUID"),
    ],
)
def test_a_bad_request_is_refused_on_the_field_and_writes_nothing(client, operator, overrides, field, expected):
    console(client, operator)
    before = counts()
    response = client.post(ADD, add_form(**overrides))
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert any(expected in e for e in errors[field]), errors
    assert counts() == before


# --- actions ------------------------------------------------------------------------


def test_operator_is_offered_no_action(client, operator):
    make_waiver()
    response = console(client, operator).get(CHANGELIST)
    assert response.context["action_form"] is None


def test_admin_is_offered_approve_reject_revoke_and_no_delete(client, admin_user):
    make_waiver()
    response = console(client, admin_user).get(CHANGELIST)
    choices = [name for name, _ in response.context["action_form"].fields["action"].choices if name]
    assert choices == ["approve_waivers", "reject_waivers", "revoke_waivers"]


@pytest.mark.parametrize(("action", "status"), [("approve_waivers", "approved"), ("reject_waivers", "rejected")])
def test_an_admin_decides_through_the_service(client, admin_user, operator, action, status):
    waivers = [make_waiver(title=f"W{i}", requested_by=operator) for i in range(2)]
    response = action_post(console(client, admin_user), action, waivers, note="Checked with the vendor.")
    assert response.status_code == 302
    verb = action.removesuffix("_waivers")
    for waiver in waivers:
        waiver.refresh_from_db()
        assert (waiver.status, waiver.decided_by, waiver.decision_note) == (
            status,
            admin_user,
            "Checked with the vendor.",
        )
        record = AuditRecord.objects.get(resource_id=str(waiver.pk))
        assert (record.action, record.actor, record.reason) == (
            f"waiver.{verb}",
            f"user:{admin_user.pk}",
            "Checked with the vendor.",
        )
    (text,) = messages_of(response)
    assert text.startswith(f"{verb.capitalize()} applied to 2: ")
    assert {"W0", "W1"} == set(text.removesuffix(".").split(": ", 1)[1].split(", "))


def test_the_requesters_own_waiver_is_refused_and_reported(client, admin_user, operator):
    own = make_waiver(title="Mine", requested_by=admin_user)
    theirs = make_waiver(title="Theirs", requested_by=operator)
    response = action_post(console(client, admin_user), "approve_waivers", [own, theirs])
    own.refresh_from_db()
    theirs.refresh_from_db()
    assert (own.status, theirs.status) == ("pending", "approved")
    assert AuditRecord.objects.filter(resource_id=str(own.pk)).count() == 0
    texts = messages_of(response)
    assert "Mine: You requested this waiver, so you cannot approve it; another admin must." in texts
    assert "Approve applied to 1: Theirs." in texts


def test_an_illegal_transition_is_reported_and_writes_nothing(client, admin_user, operator):
    done = make_waiver(title="Done", status="rejected", requested_by=operator)
    lapsed = make_waiver(title="Lapsed", requested_by=operator, expires_at=timezone.now() - timedelta(minutes=1))
    before = counts()
    response = action_post(console(client, admin_user), "approve_waivers", [done, lapsed])
    assert counts() == before
    texts = messages_of(response)
    assert "Done: Cannot approve a waiver that is rejected." in texts
    assert any(t.startswith("Lapsed: Cannot approve a waiver that expired at") for t in texts)


def test_revoke_needs_a_reason(client, admin_user, operator):
    waiver = make_waiver(status="approved", requested_by=operator)
    console(client, admin_user)
    before = counts()
    response = action_post(client, "revoke_waivers", [waiver], note="short")
    assert counts() == before
    assert Waiver.objects.get(pk=waiver.pk).status == "approved"
    assert "Give a reason of at least 10 characters to revoke. Nothing was changed." in messages_of(response)

    response = action_post(client, "revoke_waivers", [waiver], note="The vendor shipped a fix.")
    waiver.refresh_from_db()
    assert (waiver.status, waiver.revoked_by) == ("revoked", admin_user)
    record = AuditRecord.objects.get(action="waiver.revoke")
    assert (record.resource_id, record.reason) == (str(waiver.pk), "The vendor shipped a fix.")
    assert "Revoke applied to 1: A waiver." in messages_of(response)


def test_the_requester_admin_may_revoke_their_own(client, admin_user, second_admin):
    waiver = make_waiver(status="approved", requested_by=admin_user, decided_by=second_admin)
    action_post(console(client, admin_user), "revoke_waivers", [waiver], note="No longer needed here.")
    assert Waiver.objects.get(pk=waiver.pk).status == "revoked"


def test_an_operator_cannot_post_an_admin_action(client, operator):
    waiver = make_waiver()
    before = counts()
    response = action_post(console(client, operator), "approve_waivers", [waiver])
    assert response.status_code == 200  # no action is offered, so the list is just shown again
    assert Waiver.objects.get(pk=waiver.pk).status == "pending"
    assert counts() == before


def test_a_bulk_action_over_the_limit_changes_nothing(client, admin_user, monkeypatch):
    monkeypatch.setattr(admin_common, "BULK_ACTION_LIMIT", 2)
    waivers = [make_waiver(title=f"W{i}") for i in range(3)]
    before = counts()
    response = action_post(console(client, admin_user), "approve_waivers", waivers)
    assert counts() == before
    assert any("at most 2 waivers" in m for m in messages_of(response))


# --- no edits, no deletes -----------------------------------------------------------


def test_a_waiver_is_read_only_for_everyone(client, db):
    waiver = make_waiver()
    superuser = User.objects.create_superuser("root", password="pw-root")
    client.force_login(superuser)
    response = client.get(change_url(waiver))
    assert response.status_code == 200
    assert dict(response.context["adminform"].form.fields) == {}
    assert 'name="status"' not in response.text
    response = client.post(change_url(waiver), {"title": "Renamed", "status": "approved"})
    assert response.status_code == 403
    waiver.refresh_from_db()
    assert (waiver.title, waiver.status) == ("A waiver", "pending")


def test_waivers_cannot_be_deleted_by_anyone(client, admin_user):
    waiver = make_waiver()
    superuser = User.objects.create_superuser("root", password="pw-root")
    for user in (admin_user, superuser):
        console(client, user)
        delete = reverse("admin:tasks_waiver_delete", args=[waiver.pk])
        assert client.get(delete).status_code == 403
        assert client.post(delete, {"post": "yes"}).status_code == 403
        response = client.get(CHANGELIST)
        assert "delete_selected" not in dict(response.context["action_form"].fields["action"].choices)
        action_post(client, "delete_selected", [waiver])
        assert Waiver.objects.filter(pk=waiver.pk).exists()
