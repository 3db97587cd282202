"""The waiver services and the active-waiver selector the verdict relies on."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from django.utils import timezone

from audit.models import AuditRecord
from config.errors import InvalidInput
from tasks.models import Task, Waiver, WaiverStatus
from tasks.review import waivers
from tasks.review.waiver_selectors import active_waivers_for
from tasks.review.waivers import (
    IllegalWaiverTransition,
    RequesterCannotDecide,
    WaiverExpired,
    WaiverForbidden,
    WaiverNotFound,
    waiver_approve,
    waiver_reject,
    waiver_request,
    waiver_revoke,
    waivers_expire,
)

pytestmark = pytest.mark.django_db

JUSTIFICATION = "The vendored SDK ships its own TODO markers we cannot edit."


@pytest.fixture
def second_admin(db) -> User:
    user = User.objects.create_user(username="abe", password="pw-abe")
    user.groups.add(Group.objects.get_or_create(name="admin")[0])
    return user


def request_fields(**overrides: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "title": "Vendored SDK markers",
        "reason": "third_party_constraint",
        "gates": ["placeholders"],
        "justification": JUSTIFICATION,
        "expires_at": timezone.now() + timedelta(days=7),
    }
    fields.update(overrides)
    return fields


def make_waiver(
    *, status: str = WaiverStatus.APPROVED, task: Task | None = None, gates: list[str] | None = None, **fields: Any
) -> Waiver:
    """A waiver written directly: the selector tests need states and expiries the services refuse to make."""
    fields.setdefault("expires_at", timezone.now() + timedelta(days=1))
    return Waiver.objects.create(
        title=fields.pop("title", "A waiver"),
        reason="other",
        gates=gates or ["placeholders"],
        justification=JUSTIFICATION,
        task=task,
        status=status,
        **fields,
    )


def counts() -> tuple[int, int]:
    return Waiver.objects.count(), AuditRecord.objects.count()


def snapshot(waiver: Waiver) -> dict[str, Any]:
    waiver.refresh_from_db()
    return {f.attname: getattr(waiver, f.attname) for f in Waiver._meta.concrete_fields}


# --- request ------------------------------------------------------------------------


def test_an_operator_requests_a_pending_waiver(operator, make_task):
    task = make_task()
    expires = timezone.now() + timedelta(days=3)
    waiver = waiver_request(actor=operator, **request_fields(expires_at=expires, task_id=task.pk))

    waiver.refresh_from_db()
    assert waiver.status == "pending"
    assert not waiver.is_active()
    assert (waiver.task_id, waiver.requested_by, waiver.expires_at) == (task.pk, operator, expires)
    assert waiver.gates == ["placeholders"]
    assert (waiver.decided_by, waiver.decided_at, waiver.revoked_by, waiver.revoked_at) == (None, None, None, None)

    record = AuditRecord.objects.get(action="waiver.request")
    assert (record.actor, record.resource_type, record.resource_id) == (f"user:{operator.pk}", "waiver", str(waiver.pk))
    assert record.data == {
        "title": "Vendored SDK markers",
        "reason": "third_party_constraint",
        "gates": ["placeholders"],
        "task": str(task.pk),
        "expires_at": expires.isoformat(),
    }
    assert record.reason == JUSTIFICATION


def test_a_waiver_without_a_task_is_global(operator):
    waiver = waiver_request(actor=operator, **request_fields(gates=["scope", "budget"]))
    assert waiver.task_id is None
    assert AuditRecord.objects.get(action="waiver.request").data["task"] is None


def test_the_justification_is_stored_stripped(operator):
    waiver = waiver_request(actor=operator, **request_fields(justification=f"   {JUSTIFICATION}\n"))
    waiver.refresh_from_db()
    assert waiver.justification == JUSTIFICATION


@pytest.mark.parametrize("persona", ["viewer", "nobody"])
def test_only_an_operator_may_request(request, persona):
    user = request.getfixturevalue(persona)
    with pytest.raises(WaiverForbidden, match="Only an operator may request a waiver"):
        waiver_request(actor=user, **request_fields())
    assert counts() == (0, 0)


def test_anonymous_cannot_request():
    with pytest.raises(WaiverForbidden):
        waiver_request(actor=None, **request_fields())
    assert counts() == (0, 0)


BAD_REQUESTS = [
    ("title", ""),
    ("title", "x" * 201),
    ("title", 42),
    ("reason", "because"),
    ("reason", None),
    ("gates", []),
    ("gates", "placeholders"),
    ("gates", ["placeholders", "lint"]),
    ("gates", ["scope", "scope"]),
    ("justification", "too short"),
    ("justification", " " * 30 + "short" + " " * 30),
    ("expires_at", "tomorrow"),
    ("task_id", "not-a-uuid"),
]


@pytest.mark.parametrize(("field", "value"), BAD_REQUESTS)
def test_a_bad_request_names_the_field_and_writes_nothing(operator, field, value):
    with pytest.raises(InvalidInput) as caught:
        waiver_request(actor=operator, **request_fields(**{field: value}))
    assert set(caught.value.fields) == {"task" if field == "task_id" else field}
    assert counts() == (0, 0)


def test_duplicate_gates_are_named(operator):
    with pytest.raises(InvalidInput) as caught:
        waiver_request(actor=operator, **request_fields(gates=["scope", "budget", "scope"]))
    assert caught.value.fields == {"gates": ["Duplicate gates: scope."]}


@pytest.mark.parametrize(
    ("delta", "message"),
    [
        (timedelta(seconds=-1), "Must be in the future (and at most 90 days ahead)."),
        (timedelta(0), "Must be in the future (and at most 90 days ahead)."),
        (timedelta(days=90, minutes=1), "Must be at most 90 days ahead."),
    ],
)
def test_the_expiry_must_be_in_the_next_90_days(operator, delta, message):
    with pytest.raises(InvalidInput) as caught:
        waiver_request(actor=operator, **request_fields(expires_at=timezone.now() + delta))
    assert caught.value.fields == {"expires_at": [message]}
    assert counts() == (0, 0)


def test_an_expiry_just_inside_90_days_is_accepted(operator):
    waiver = waiver_request(actor=operator, **request_fields(expires_at=timezone.now() + timedelta(days=89)))
    assert waiver.status == "pending"


def test_an_unknown_task_is_named(operator):
    missing = "8d1b0a52-0c4c-4f4e-9c39-3c1c7f0c3c11"
    with pytest.raises(InvalidInput) as caught:
        waiver_request(actor=operator, **request_fields(task_id=missing))
    assert caught.value.fields == {"task": [f"No task with id {missing}."]}
    assert counts() == (0, 0)


# --- approve and reject -------------------------------------------------------------


@pytest.mark.parametrize(
    ("service", "action", "status"), [(waiver_approve, "approve", "approved"), (waiver_reject, "reject", "rejected")]
)
def test_an_admin_decides_a_pending_waiver(operator, admin_user, service, action, status):
    waiver = waiver_request(actor=operator, **request_fields())
    service(waiver_id=waiver.pk, actor=admin_user, note="Checked with the vendor.")

    waiver.refresh_from_db()
    assert waiver.status == status
    assert waiver.is_active() is (status == "approved")
    assert waiver.decided_by == admin_user
    assert waiver.decided_at is not None
    assert waiver.decision_note == "Checked with the vendor."
    record = AuditRecord.objects.get(action=f"waiver.{action}")
    assert (record.actor, record.resource_type, record.resource_id) == (
        f"user:{admin_user.pk}",
        "waiver",
        str(waiver.pk),
    )
    assert record.data == {"from": "pending", "to": status, "gates": ["placeholders"]}
    assert record.reason == "Checked with the vendor."
    assert AuditRecord.objects.filter(resource_id=str(waiver.pk)).count() == 2


@pytest.mark.parametrize("service", [waiver_approve, waiver_reject])
def test_the_requester_cannot_decide_their_own_waiver(admin_user, service):
    waiver = waiver_request(actor=admin_user, **request_fields())
    before, rows = counts(), snapshot(waiver)
    with pytest.raises(RequesterCannotDecide, match="You requested this waiver") as caught:
        service(waiver_id=waiver.pk, actor=admin_user)
    assert caught.value.code == "requester_cannot_decide"
    assert counts() == before
    assert snapshot(waiver) == rows


def test_another_admin_approves_what_an_admin_requested(admin_user, second_admin):
    waiver = waiver_request(actor=admin_user, **request_fields())
    waiver_approve(waiver_id=waiver.pk, actor=second_admin)
    waiver.refresh_from_db()
    assert (waiver.status, waiver.decided_by) == ("approved", second_admin)


@pytest.mark.parametrize("service", [waiver_approve, waiver_reject])
@pytest.mark.parametrize("persona", ["operator", "viewer", "nobody"])
def test_only_an_admin_decides(request, admin_user, service, persona):
    waiver = waiver_request(actor=admin_user, **request_fields())
    before, rows = counts(), snapshot(waiver)
    with pytest.raises(WaiverForbidden, match="Only an admin may"):
        service(waiver_id=waiver.pk, actor=request.getfixturevalue(persona))
    assert counts() == before
    assert snapshot(waiver) == rows


@pytest.mark.parametrize("service", [waiver_approve, waiver_reject])
@pytest.mark.parametrize("status", ["approved", "rejected", "revoked", "expired"])
def test_only_a_pending_waiver_is_decided(admin_user, service, status):
    waiver = make_waiver(status=status)
    before, rows = counts(), snapshot(waiver)
    with pytest.raises(IllegalWaiverTransition) as caught:
        service(waiver_id=waiver.pk, actor=admin_user)
    action = service.__name__.removeprefix("waiver_")
    assert str(caught.value) == f"Cannot {action} a waiver that is {status}."
    assert (caught.value.action, caught.value.status, caught.value.code) == (action, status, "illegal_transition")
    assert counts() == before
    assert snapshot(waiver) == rows


def test_an_expired_pending_waiver_cannot_be_approved(admin_user):
    waiver = make_waiver(status="pending", expires_at=timezone.now() - timedelta(minutes=1))
    before, rows = counts(), snapshot(waiver)
    with pytest.raises(WaiverExpired, match=r"expired at .*; request a new one") as caught:
        waiver_approve(waiver_id=waiver.pk, actor=admin_user)
    assert (caught.value.status, caught.value.code) == ("pending", "waiver_expired")
    assert counts() == before
    assert snapshot(waiver) == rows


def test_an_expired_pending_waiver_can_still_be_rejected(admin_user):
    waiver = make_waiver(status="pending", expires_at=timezone.now() - timedelta(minutes=1))
    waiver_reject(waiver_id=waiver.pk, actor=admin_user, note="Too late anyway.")
    waiver.refresh_from_db()
    assert waiver.status == "rejected"


def test_a_decision_note_is_limited(operator, admin_user):
    waiver = waiver_request(actor=operator, **request_fields())
    before = counts()
    with pytest.raises(InvalidInput) as caught:
        waiver_approve(waiver_id=waiver.pk, actor=admin_user, note="x" * 2001)
    assert set(caught.value.fields) == {"note"}
    assert counts() == before


@pytest.mark.parametrize("service", [waiver_approve, waiver_reject])
@pytest.mark.parametrize("waiver_id", ["8d1b0a52-0c4c-4f4e-9c39-3c1c7f0c3c11", "not-a-uuid"])
def test_an_unknown_waiver_is_not_found(admin_user, service, waiver_id):
    with pytest.raises(WaiverNotFound, match=f"Waiver {waiver_id} does not exist"):
        service(waiver_id=waiver_id, actor=admin_user)


def test_a_failure_after_the_change_leaves_neither_change_nor_record(operator, admin_user, monkeypatch):
    waiver = waiver_request(actor=operator, **request_fields())
    before, rows = counts(), snapshot(waiver)

    def broken(**kwargs: Any) -> None:
        raise RuntimeError("audit store down")

    monkeypatch.setattr(waivers, "audit_record", broken)
    with pytest.raises(RuntimeError):
        waiver_approve(waiver_id=waiver.pk, actor=admin_user)
    assert counts() == before
    assert snapshot(waiver) == rows


# --- revoke -------------------------------------------------------------------------


@pytest.mark.parametrize("status", ["pending", "approved"])
def test_an_admin_revokes_a_live_waiver(admin_user, status):
    waiver = make_waiver(status=status)
    waiver_revoke(waiver_id=waiver.pk, actor=admin_user, reason="The vendor shipped a fix.")

    waiver.refresh_from_db()
    assert waiver.status == "revoked"
    assert not waiver.is_active()
    assert (waiver.revoked_by, waiver.decided_by) == (admin_user, None)
    assert waiver.revoked_at is not None
    assert waiver.revoke_reason == "The vendor shipped a fix."
    record = AuditRecord.objects.get(action="waiver.revoke")
    assert (record.actor, record.resource_id) == (f"user:{admin_user.pk}", str(waiver.pk))
    assert record.data == {"from": status, "to": "revoked", "gates": ["placeholders"]}
    assert record.reason == "The vendor shipped a fix."


def test_the_requester_may_revoke_their_own_waiver(admin_user, second_admin):
    waiver = waiver_request(actor=admin_user, **request_fields())
    waiver_approve(waiver_id=waiver.pk, actor=second_admin)
    waiver_revoke(waiver_id=waiver.pk, actor=admin_user, reason="No longer needed.")
    waiver.refresh_from_db()
    assert waiver.status == "revoked"


@pytest.mark.parametrize("status", ["rejected", "revoked", "expired"])
def test_a_finished_waiver_cannot_be_revoked(admin_user, status):
    waiver = make_waiver(status=status)
    before, rows = counts(), snapshot(waiver)
    with pytest.raises(IllegalWaiverTransition, match=f"Cannot revoke a waiver that is {status}."):
        waiver_revoke(waiver_id=waiver.pk, actor=admin_user, reason="The vendor shipped a fix.")
    assert counts() == before
    assert snapshot(waiver) == rows


@pytest.mark.parametrize("reason", ["", "too short", "   short    ", None])
def test_a_revoke_needs_a_reason_of_ten_characters(admin_user, reason):
    waiver = make_waiver()
    before, rows = counts(), snapshot(waiver)
    with pytest.raises(InvalidInput) as caught:
        waiver_revoke(waiver_id=waiver.pk, actor=admin_user, reason=reason)
    assert set(caught.value.fields) == {"reason"}
    assert counts() == before
    assert snapshot(waiver) == rows


@pytest.mark.parametrize("persona", ["operator", "viewer"])
def test_only_an_admin_revokes(request, persona):
    waiver = make_waiver()
    with pytest.raises(WaiverForbidden, match="Only an admin may revoke a waiver"):
        waiver_revoke(waiver_id=waiver.pk, actor=request.getfixturevalue(persona), reason="The vendor shipped a fix.")
    waiver.refresh_from_db()
    assert waiver.status == "approved"
    assert AuditRecord.objects.count() == 0


# --- expiry -------------------------------------------------------------------------


def test_expiry_marks_live_waivers_whose_time_passed(db):
    now = timezone.now()
    past = now - timedelta(seconds=1)
    pending = make_waiver(status="pending", expires_at=past)
    approved = make_waiver(status="approved", expires_at=past)
    exactly_now = make_waiver(status="approved", expires_at=now)
    future = make_waiver(status="approved", expires_at=now + timedelta(hours=1))
    rejected = make_waiver(status="rejected", expires_at=past)
    revoked = make_waiver(status="revoked", expires_at=past)

    assert waivers_expire(now=now) == 3

    statuses = dict(Waiver.objects.values_list("pk", "status"))
    assert statuses == {
        pending.pk: "expired",
        approved.pk: "expired",
        exactly_now.pk: "expired",
        future.pk: "approved",
        rejected.pk: "rejected",
        revoked.pk: "revoked",
    }
    records = {r.resource_id: r for r in AuditRecord.objects.filter(action="waiver.expire")}
    assert set(records) == {str(pending.pk), str(approved.pk), str(exactly_now.pk)}
    assert {r.actor for r in records.values()} == {"system"}
    assert records[str(pending.pk)].data == {"from": "pending", "to": "expired", "expires_at": past.isoformat()}
    assert records[str(approved.pk)].data["from"] == "approved"
    assert AuditRecord.objects.count() == 3


def test_expiry_is_idempotent(db):
    make_waiver(expires_at=timezone.now() - timedelta(days=1))
    assert waivers_expire() == 1
    assert waivers_expire() == 0
    assert AuditRecord.objects.count() == 1


def test_expiry_works_through_a_backlog_in_batches(db, monkeypatch):
    monkeypatch.setattr(waivers, "EXPIRE_BATCH", 2)
    past = timezone.now() - timedelta(hours=1)
    for i in range(5):
        make_waiver(title=f"W{i}", expires_at=past)
    assert waivers_expire() == 5
    assert set(Waiver.objects.values_list("status", flat=True)) == {"expired"}
    assert AuditRecord.objects.filter(action="waiver.expire").count() == 5


def test_an_expired_waiver_cannot_be_approved_or_revoked_afterwards(admin_user):
    waiver = make_waiver(status="pending", expires_at=timezone.now() - timedelta(seconds=1))
    waivers_expire()
    with pytest.raises(IllegalWaiverTransition, match="that is expired"):
        waiver_approve(waiver_id=waiver.pk, actor=admin_user)
    with pytest.raises(IllegalWaiverTransition, match="that is expired"):
        waiver_revoke(waiver_id=waiver.pk, actor=admin_user, reason="The vendor shipped a fix.")


# --- the active-waiver selector -----------------------------------------------------


def test_only_approved_unexpired_waivers_are_active(make_task):
    task = make_task()
    active = make_waiver(task=task)
    for status in ("pending", "rejected", "revoked", "expired"):
        make_waiver(task=task, status=status)
    assert active_waivers_for(task_id=task.pk) == [active]


def test_an_expired_waiver_is_inactive_before_expiry_has_run(make_task):
    task = make_task()
    lapsed = make_waiver(task=task, expires_at=timezone.now() - timedelta(seconds=1))
    assert Waiver.objects.get(pk=lapsed.pk).status == "approved"
    assert active_waivers_for(task_id=task.pk) == []
    assert not lapsed.is_active()


def test_now_decides_what_is_active(make_task):
    task = make_task()
    expires = timezone.now() + timedelta(hours=1)
    waiver = make_waiver(task=task, expires_at=expires)
    assert active_waivers_for(task_id=task.pk, now=expires - timedelta(seconds=1)) == [waiver]
    assert active_waivers_for(task_id=task.pk, now=expires) == []


def test_global_waivers_apply_to_every_task_and_task_waivers_to_theirs(make_task):
    task, other = make_task(title="mine"), make_task(title="other")
    everywhere = make_waiver(title="global")
    mine = make_waiver(title="mine", task=task)
    theirs = make_waiver(title="theirs", task=other)
    assert active_waivers_for(task_id=task.pk) == [mine, everywhere]
    assert active_waivers_for(task_id=other.pk) == [theirs, everywhere]
    assert active_waivers_for(task_id=str(task.pk)) == [mine, everywhere]


def test_task_scoped_waivers_come_first_whatever_their_expiry(make_task):
    task = make_task()
    now = timezone.now()
    global_long = make_waiver(title="global long", expires_at=now + timedelta(days=30))
    task_short = make_waiver(title="task short", task=task, expires_at=now + timedelta(hours=1))
    task_long = make_waiver(title="task long", task=task, expires_at=now + timedelta(days=2))
    global_short = make_waiver(title="global short", expires_at=now + timedelta(hours=2))
    assert active_waivers_for(task_id=task.pk) == [task_long, task_short, global_long, global_short]


def test_gates_narrow_to_waivers_covering_any_of_them(make_task):
    task = make_task()
    placeholders = make_waiver(title="p", task=task, gates=["placeholders"])
    scope_budget = make_waiver(title="sb", gates=["scope", "budget"])
    acceptance = make_waiver(title="a", gates=["acceptance"])
    assert active_waivers_for(task_id=task.pk, gates=["placeholders"]) == [placeholders]
    assert active_waivers_for(task_id=task.pk, gates=["budget"]) == [scope_budget]
    assert set(active_waivers_for(task_id=task.pk, gates=["budget", "acceptance"])) == {scope_budget, acceptance}
    assert active_waivers_for(task_id=task.pk, gates=("placeholders", "scope"))[0] == placeholders
    assert len(active_waivers_for(task_id=task.pk, gates=None)) == 3
    assert active_waivers_for(task_id=task.pk, gates=[]) == []


def test_a_gate_name_matches_whole_elements_only(make_task):
    task = make_task()
    make_waiver(task=task, gates=["scope"])
    assert active_waivers_for(task_id=task.pk, gates=["scop"]) == []
    assert active_waivers_for(task_id=task.pk, gates=['"scope"']) == []


def test_the_selector_takes_one_query(make_task, django_assert_num_queries):
    task = make_task()
    make_waiver(task=task, gates=["scope", "budget"])
    make_waiver(gates=["placeholders"])
    with django_assert_num_queries(1):
        assert len(active_waivers_for(task_id=task.pk, gates=["budget", "placeholders"])) == 2


def test_an_approved_waiver_becomes_active_end_to_end(operator, admin_user, make_task):
    task = make_task()
    waiver = waiver_request(actor=operator, **request_fields(task_id=task.pk))
    assert active_waivers_for(task_id=task.pk, gates=["placeholders"]) == []
    waiver_approve(waiver_id=waiver.pk, actor=admin_user)
    assert active_waivers_for(task_id=task.pk, gates=["placeholders"]) == [waiver]
    waiver_revoke(waiver_id=waiver.pk, actor=admin_user, reason="The vendor shipped a fix.")
    assert active_waivers_for(task_id=task.pk, gates=["placeholders"]) == []
    assert list(AuditRecord.objects.filter(resource_type="waiver").order_by("id").values_list("action", flat=True)) == [
        "waiver.request",
        "waiver.approve",
        "waiver.revoke",
    ]
