"""/api/v1/waivers: request, list, read, approve, reject and revoke waivers."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from django.utils import timezone
from rest_framework.test import APIClient

from audit.models import AuditRecord
from tasks.models import Task, Waiver

URL = "/api/v1/waivers"
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
JUSTIFICATION = "The vendored SDK ships its own TODO markers we cannot edit."

pytestmark = pytest.mark.django_db


def detail_url(waiver_id: object) -> str:
    return f"{URL}/{waiver_id}"


def action_url(waiver_id: object, action: str) -> str:
    return f"{URL}/{waiver_id}/{action}"


def body(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "title": "Vendored SDK markers",
        "reason": "third_party_constraint",
        "gates": ["placeholders"],
        "justification": JUSTIFICATION,
        "expires_at": (timezone.now() + timedelta(days=7)).isoformat(),
    }
    data.update(overrides)
    return data


def make_waiver(*, status: str = "pending", requested_by: User | None = None, **fields: Any) -> Waiver:
    """Written directly: list and state tests need statuses and times the services would not make."""
    fields.setdefault("expires_at", timezone.now() + timedelta(days=1))
    fields.setdefault("gates", ["placeholders"])
    return Waiver.objects.create(
        title=fields.pop("title", "A waiver"),
        reason=fields.pop("reason", "other"),
        justification=JUSTIFICATION,
        status=status,
        requested_by=requested_by,
        **fields,
    )


def counts() -> tuple[int, int]:
    return Waiver.objects.count(), AuditRecord.objects.count()


def snapshot(waiver: Waiver) -> dict[str, Any]:
    waiver.refresh_from_db()
    return {f.attname: getattr(waiver, f.attname) for f in Waiver._meta.concrete_fields}


def ids(response) -> list[str]:
    assert response.status_code == 200, response.content
    return [row["id"] for row in response.json()["results"]]


@pytest.fixture
def pending(operator) -> Waiver:
    return make_waiver(requested_by=operator)


# --- GET /api/v1/waivers ------------------------------------------------------------


def test_it_lists_waivers_newest_first(viewer_client, operator, admin_user, make_task):
    task = make_task()
    old = make_waiver(title="old", requested_by=operator, created_at=T0)
    new = make_waiver(
        title="new",
        status="approved",
        requested_by=operator,
        decided_by=admin_user,
        decided_at=T0,
        decision_note="ok",
        task=task,
        gates=["scope", "budget"],
        created_at=T0 + timedelta(minutes=1),
    )
    r = viewer_client.get(URL)
    assert ids(r) == [str(new.id), str(old.id)]
    assert r.json()["next"] is None
    row = r.json()["results"][0]
    assert row == {
        "id": str(new.id),
        "title": "new",
        "reason": "other",
        "gates": ["scope", "budget"],
        "justification": JUSTIFICATION,
        "expires_at": new.expires_at.isoformat().replace("+00:00", "Z"),
        "task": str(task.id),
        "status": "approved",
        "active": True,
        "requested_by": "otto",
        "created_at": "2025-03-01T12:01:00Z",
        "decided_by": "ada",
        "decided_at": "2025-03-01T12:00:00Z",
        "decision_note": "ok",
        "revoked_by": None,
        "revoked_at": None,
        "revoke_reason": "",
    }
    other = r.json()["results"][1]
    assert (other["task"], other["active"], other["decided_by"]) == (None, False, None)


def test_it_returns_an_empty_page(viewer_client):
    r = viewer_client.get(URL)
    assert r.status_code == 200
    assert r.json() == {"results": [], "next": None}


def test_active_is_computed_not_stored(viewer_client):
    lapsed = make_waiver(status="approved", expires_at=timezone.now() - timedelta(seconds=1))
    assert viewer_client.get(detail_url(lapsed.id)).json()["active"] is False


def test_it_filters_by_several_statuses(viewer_client):
    by_status = {s: make_waiver(status=s) for s in ("pending", "approved", "rejected", "revoked", "expired")}
    assert set(ids(viewer_client.get(URL, {"status": "approved"}))) == {str(by_status["approved"].id)}
    wanted = {str(by_status["pending"].id), str(by_status["expired"].id)}
    assert set(ids(viewer_client.get(URL, {"status": "pending,expired"}))) == wanted
    assert set(ids(viewer_client.get(f"{URL}?status=pending&status=expired"))) == wanted


def test_it_filters_by_task_and_gate(viewer_client, make_task):
    task, other = make_task(title="mine"), make_task(title="other")
    mine = make_waiver(task=task, gates=["scope"])
    theirs = make_waiver(task=other, gates=["placeholders", "scope"])
    everywhere = make_waiver(gates=["budget"])
    assert ids(viewer_client.get(URL, {"task": str(task.id)})) == [str(mine.id)]
    assert set(ids(viewer_client.get(URL, {"gate": "scope"}))) == {str(mine.id), str(theirs.id)}
    assert ids(viewer_client.get(URL, {"gate": "budget"})) == [str(everywhere.id)]
    assert ids(viewer_client.get(URL, {"gate": "scope", "task": str(other.id)})) == [str(theirs.id)]
    assert ids(viewer_client.get(URL, {"gate": "acceptance"})) == []


def test_it_pages_with_a_cursor(viewer_client):
    made = [make_waiver(title=f"W{i}", created_at=T0 + timedelta(minutes=i % 3)) for i in range(7)]
    expected = [str(w.id) for w in sorted(made, key=lambda w: (w.created_at, w.id), reverse=True)]
    seen: list[str] = []
    url: str | None = f"{URL}?page_size=3&status=pending"
    while url:
        r = viewer_client.get(url)
        seen += ids(r)
        url = r.json()["next"]
        assert len(seen) <= 7
    assert seen == expected


def test_it_lists_in_a_constant_number_of_queries(viewer_client, operator, admin_user, django_assert_num_queries):
    make_waiver(requested_by=operator)
    with django_assert_num_queries(3) as few:  # token, roles, the page
        assert viewer_client.get(URL).status_code == 200
    for i in range(10):
        make_waiver(title=f"W{i}", status="approved", requested_by=operator, decided_by=admin_user)
    with django_assert_num_queries(len(few.captured_queries)):
        assert len(ids(viewer_client.get(URL))) == 11


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"status": "active"}, "status"),
        ({"task": "not-a-uuid"}, "task"),
        ({"gate": "lint"}, "gate"),
        ({"page_size": 0}, "page_size"),
        ({"cursor": "garbage"}, "cursor"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_it_names_a_bad_filter(viewer_client, query, field):
    r = viewer_client.get(URL, query)
    assert r.status_code == 400
    assert set(r.json()) == {field}


def test_listing_requires_authentication(anon_client):
    r = anon_client.get(URL)
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"].startswith("Token")


def test_listing_refuses_a_user_without_a_role(nobody_client):
    assert nobody_client.get(URL).status_code == 403


# --- POST /api/v1/waivers -----------------------------------------------------------


def test_an_operator_requests_a_waiver(operator_client, operator, make_task):
    task = make_task()
    r = operator_client.post(URL, body(task=str(task.id), gates=["scope", "budget"]), format="json")
    assert r.status_code == 201, r.content
    data = r.json()
    waiver = Waiver.objects.get()
    assert data["id"] == str(waiver.id)
    assert (data["status"], data["active"], data["requested_by"], data["task"]) == (
        "pending",
        False,
        "otto",
        str(task.id),
    )
    assert (data["decided_by"], data["decided_at"], data["revoked_by"]) == (None, None, None)
    assert (waiver.status, waiver.requested_by, waiver.task_id, waiver.gates) == (
        "pending",
        operator,
        task.id,
        ["scope", "budget"],
    )
    record = AuditRecord.objects.get(resource_type="waiver")
    assert (record.action, record.actor, record.resource_id) == (
        "waiver.request",
        f"user:{operator.id}",
        str(waiver.id),
    )
    assert record.data["gates"] == ["scope", "budget"]
    assert record.data["task"] == str(task.id)


def test_a_request_without_a_task_is_global(operator_client):
    r = operator_client.post(URL, body(task=None), format="json")
    assert r.status_code == 201
    assert r.json()["task"] is None
    assert Waiver.objects.get().task_id is None


def test_an_admin_may_request_too(admin_client_api, admin_user):
    assert admin_client_api.post(URL, body(), format="json").status_code == 201
    assert Waiver.objects.get().requested_by == admin_user


def test_requesting_requires_authentication(anon_client):
    r = anon_client.post(URL, body(), format="json")
    assert r.status_code == 401
    assert counts() == (0, 0)


def test_requesting_refuses_a_user_without_a_role(nobody_client):
    assert nobody_client.post(URL, body(), format="json").status_code == 403
    assert counts() == (0, 0)


def test_requesting_refuses_a_viewer(viewer_client):
    r = viewer_client.post(URL, body(), format="json")
    assert r.status_code == 403
    assert "operator" in r.json()["detail"]
    assert counts() == (0, 0)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("title", ""),
        ("title", "x" * 201),
        ("title", 7),
        ("reason", "because"),
        ("gates", []),
        ("gates", "placeholders"),
        ("gates", ["placeholders", "lint"]),
        ("gates", ["scope", "scope"]),
        ("justification", "too short"),
        ("justification", "   padded but short    "),
        ("expires_at", "tomorrow"),
        ("expires_at", "2020-01-01T00:00:00Z"),
        ("task", "not-a-uuid"),
        ("task", str(uuid.UUID(int=1))),
        ("colour", "red"),
    ],
)
def test_a_bad_request_names_the_field_and_writes_nothing(operator_client, field, value):
    r = operator_client.post(URL, body(**{field: value}), format="json")
    assert r.status_code == 400
    assert set(r.json()) == {field}
    assert counts() == (0, 0)


@pytest.mark.parametrize("field", ["title", "reason", "gates", "justification", "expires_at"])
def test_a_missing_field_is_named(operator_client, field):
    data = body()
    del data[field]
    r = operator_client.post(URL, data, format="json")
    assert r.status_code == 400
    assert r.json() == {field: ["This field is required."]}
    assert counts() == (0, 0)


def test_the_expiry_limit_is_explained(operator_client):
    r = operator_client.post(URL, body(expires_at=(timezone.now() + timedelta(days=91)).isoformat()), format="json")
    assert r.status_code == 400
    assert r.json() == {"expires_at": ["Must be at most 90 days ahead."]}
    r = operator_client.post(URL, body(expires_at="2020-01-01T00:00:00Z"), format="json")
    assert r.json() == {"expires_at": ["Must be in the future (and at most 90 days ahead)."]}


def test_an_unknown_task_is_named(operator_client):
    missing = uuid.uuid4()
    r = operator_client.post(URL, body(task=str(missing)), format="json")
    assert r.status_code == 400
    assert r.json() == {"task": [f"No task with id {missing}."]}


@pytest.mark.parametrize("method", ["put", "patch", "delete"])
def test_the_list_rejects_other_methods(operator_client, method):
    r = getattr(operator_client, method)(URL, body(), format="json")
    assert r.status_code == 405
    assert counts() == (0, 0)


# --- GET /api/v1/waivers/{id} -------------------------------------------------------


def test_it_shows_a_waiver(viewer_client, pending):
    r = viewer_client.get(detail_url(pending.id))
    assert r.status_code == 200
    assert (r.json()["id"], r.json()["status"], r.json()["requested_by"]) == (str(pending.id), "pending", "otto")


def test_an_unknown_waiver_is_404(viewer_client):
    r = viewer_client.get(detail_url(uuid.uuid4()))
    assert r.status_code == 404
    assert r.json()["code"] == "not_found"


def test_a_malformed_id_is_404(viewer_client):
    assert viewer_client.get(f"{URL}/not-a-uuid").status_code == 404


def test_reading_requires_authentication(anon_client, pending):
    assert anon_client.get(detail_url(pending.id)).status_code == 401


def test_reading_refuses_a_user_without_a_role(nobody_client, pending):
    assert nobody_client.get(detail_url(pending.id)).status_code == 403


@pytest.mark.parametrize("method", ["post", "put", "patch", "delete"])
def test_the_detail_rejects_other_methods(admin_client_api, pending, method):
    before, rows = counts(), snapshot(pending)
    assert getattr(admin_client_api, method)(detail_url(pending.id), {}, format="json").status_code == 405
    assert counts() == before
    assert snapshot(pending) == rows


# --- POST /api/v1/waivers/{id}/approve and /reject ----------------------------------


@pytest.mark.parametrize(("action", "status"), [("approve", "approved"), ("reject", "rejected")])
def test_an_admin_decides(admin_client_api, admin_user, pending, action, status):
    r = admin_client_api.post(action_url(pending.id, action), {"note": "Checked with the vendor."}, format="json")
    assert r.status_code == 200, r.content
    data = r.json()
    assert (data["status"], data["active"], data["decided_by"], data["decision_note"]) == (
        status,
        status == "approved",
        "ada",
        "Checked with the vendor.",
    )
    pending.refresh_from_db()
    assert (pending.status, pending.decided_by, pending.decision_note) == (
        status,
        admin_user,
        "Checked with the vendor.",
    )
    assert pending.decided_at is not None
    record = AuditRecord.objects.get()
    assert (record.action, record.actor, record.resource_id) == (
        f"waiver.{action}",
        f"user:{admin_user.id}",
        str(pending.id),
    )
    assert record.data == {"from": "pending", "to": status, "gates": ["placeholders"]}
    assert record.reason == "Checked with the vendor."


@pytest.mark.parametrize("action", ["approve", "reject"])
def test_the_note_is_optional(admin_client_api, pending, action):
    r = admin_client_api.post(action_url(pending.id, action), {}, format="json")
    assert r.status_code == 200
    assert r.json()["decision_note"] == ""


@pytest.mark.parametrize("action", ["approve", "reject"])
def test_the_requester_cannot_decide(admin_client_api, admin_user, action):
    waiver = make_waiver(requested_by=admin_user)
    before, rows = counts(), snapshot(waiver)
    r = admin_client_api.post(action_url(waiver.id, action), {}, format="json")
    assert r.status_code == 403
    assert r.json() == {
        "detail": f"You requested this waiver, so you cannot {action} it; another admin must.",
        "code": "requester_cannot_decide",
    }
    assert counts() == before
    assert snapshot(waiver) == rows


def test_a_second_admin_approves_an_admins_request(admin_client_api, admin_user):
    other = User.objects.create_user(username="abe", password="pw-abe")
    other.groups.add(Group.objects.get_or_create(name="admin")[0])
    waiver = make_waiver(requested_by=other)
    assert admin_client_api.post(action_url(waiver.id, "approve"), {}, format="json").status_code == 200


@pytest.mark.parametrize("action", ["approve", "reject", "revoke"])
def test_an_action_requires_authentication(anon_client, pending, action):
    before, rows = counts(), snapshot(pending)
    r = anon_client.post(action_url(pending.id, action), {"reason": "The vendor shipped a fix."}, format="json")
    assert r.status_code == 401
    assert counts() == before
    assert snapshot(pending) == rows


@pytest.mark.parametrize("action", ["approve", "reject", "revoke"])
@pytest.mark.parametrize("client_fixture", ["nobody_client", "viewer_client", "operator_client"])
def test_an_action_needs_the_admin_role(request, pending, action, client_fixture):
    client: APIClient = request.getfixturevalue(client_fixture)
    before, rows = counts(), snapshot(pending)
    r = client.post(action_url(pending.id, action), {"reason": "The vendor shipped a fix."}, format="json")
    assert r.status_code == 403
    if client_fixture != "nobody_client":
        assert r.json()["detail"] == "You need the admin role."
    assert counts() == before
    assert snapshot(pending) == rows


@pytest.mark.parametrize("action", ["approve", "reject", "revoke"])
@pytest.mark.parametrize("method", ["get", "put", "patch", "delete"])
def test_an_action_rejects_other_methods(admin_client_api, pending, action, method):
    before, rows = counts(), snapshot(pending)
    assert getattr(admin_client_api, method)(action_url(pending.id, action)).status_code == 405
    assert counts() == before
    assert snapshot(pending) == rows


@pytest.mark.parametrize("action", ["approve", "reject", "revoke"])
def test_an_action_on_an_unknown_waiver_is_404(admin_client_api, action):
    data = {"reason": "The vendor shipped a fix."} if action == "revoke" else {"note": "Checked."}
    r = admin_client_api.post(action_url(uuid.uuid4(), action), data, format="json")
    assert r.status_code == 404
    assert r.json()["code"] == "not_found"
    assert counts() == (0, 0)


@pytest.mark.parametrize("action", ["approve", "reject"])
@pytest.mark.parametrize(
    ("data", "field"), [({"note": "x" * 2001}, "note"), ({"note": 5}, "note"), ({"approver": "ada"}, "approver")]
)
def test_a_bad_decision_body_names_the_field(admin_client_api, pending, action, data, field):
    before, rows = counts(), snapshot(pending)
    r = admin_client_api.post(action_url(pending.id, action), data, format="json")
    assert r.status_code == 400
    assert set(r.json()) == {field}
    assert counts() == before
    assert snapshot(pending) == rows


@pytest.mark.parametrize("action", ["approve", "reject"])
@pytest.mark.parametrize("status", ["approved", "rejected", "revoked", "expired"])
def test_only_a_pending_waiver_is_decided(admin_client_api, operator, action, status):
    waiver = make_waiver(status=status, requested_by=operator)
    before, rows = counts(), snapshot(waiver)
    r = admin_client_api.post(action_url(waiver.id, action), {}, format="json")
    assert r.status_code == 409
    assert r.json() == {
        "detail": f"Cannot {action} a waiver that is {status}.",
        "code": "illegal_transition",
        "action": action,
        "status": status,
    }
    assert counts() == before
    assert snapshot(waiver) == rows


def test_an_expired_pending_waiver_cannot_be_approved(admin_client_api, operator):
    waiver = make_waiver(requested_by=operator, expires_at=timezone.now() - timedelta(minutes=5))
    before, rows = counts(), snapshot(waiver)
    r = admin_client_api.post(action_url(waiver.id, "approve"), {}, format="json")
    assert r.status_code == 409
    data = r.json()
    assert (data["code"], data["action"], data["status"]) == ("waiver_expired", "approve", "pending")
    assert "request a new one" in data["detail"]
    assert counts() == before
    assert snapshot(waiver) == rows


# --- POST /api/v1/waivers/{id}/revoke -----------------------------------------------


@pytest.mark.parametrize("status", ["pending", "approved"])
def test_an_admin_revokes(admin_client_api, admin_user, operator, status):
    waiver = make_waiver(status=status, requested_by=operator)
    r = admin_client_api.post(action_url(waiver.id, "revoke"), {"reason": "The vendor shipped a fix."}, format="json")
    assert r.status_code == 200, r.content
    data = r.json()
    assert (data["status"], data["active"], data["revoked_by"]) == ("revoked", False, "ada")
    assert data["revoked_at"] is not None
    waiver.refresh_from_db()
    assert (waiver.status, waiver.revoked_by) == ("revoked", admin_user)
    record = AuditRecord.objects.get()
    assert (record.action, record.actor, record.resource_id) == (
        "waiver.revoke",
        f"user:{admin_user.id}",
        str(waiver.id),
    )
    assert record.data == {"from": status, "to": "revoked", "gates": ["placeholders"]}
    assert record.reason == "The vendor shipped a fix."


def test_the_requester_may_revoke(admin_client_api, admin_user):
    waiver = make_waiver(status="approved", requested_by=admin_user)
    r = admin_client_api.post(action_url(waiver.id, "revoke"), {"reason": "No longer needed."}, format="json")
    assert r.status_code == 200


@pytest.mark.parametrize(
    "data",
    [{}, {"reason": ""}, {"reason": "too short"}, {"reason": "    short     "}, {"reason": 12345678901}],
)
def test_a_revoke_needs_a_reason_of_ten_characters(admin_client_api, pending, data):
    before, rows = counts(), snapshot(pending)
    r = admin_client_api.post(action_url(pending.id, "revoke"), data, format="json")
    assert r.status_code == 400
    assert set(r.json()) == {"reason"}
    assert counts() == before
    assert snapshot(pending) == rows


def test_a_revoke_names_an_unknown_field(admin_client_api, pending):
    r = admin_client_api.post(
        action_url(pending.id, "revoke"), {"reason": "The vendor shipped a fix.", "note": "x"}, format="json"
    )
    assert r.status_code == 400
    assert r.json() == {"note": ["Unknown field."]}
    assert snapshot(pending)["status"] == "pending"


@pytest.mark.parametrize("status", ["rejected", "revoked", "expired"])
def test_a_finished_waiver_cannot_be_revoked(admin_client_api, status):
    waiver = make_waiver(status=status)
    before, rows = counts(), snapshot(waiver)
    r = admin_client_api.post(action_url(waiver.id, "revoke"), {"reason": "The vendor shipped a fix."}, format="json")
    assert r.status_code == 409
    assert r.json() == {
        "detail": f"Cannot revoke a waiver that is {status}.",
        "code": "illegal_transition",
        "action": "revoke",
        "status": status,
    }
    assert counts() == before
    assert snapshot(waiver) == rows


# --- the whole story ----------------------------------------------------------------


def test_request_approve_revoke_through_the_api(operator_client, admin_client_api, viewer_client, make_task):
    task = make_task()
    r = operator_client.post(URL, body(task=str(task.id)), format="json")
    waiver_id = r.json()["id"]
    assert admin_client_api.post(action_url(waiver_id, "approve"), {}, format="json").json()["active"] is True
    assert ids(viewer_client.get(URL, {"status": "approved", "task": str(task.id)})) == [waiver_id]
    revoked = admin_client_api.post(action_url(waiver_id, "revoke"), {"reason": "Fixed upstream."}, format="json")
    assert revoked.json()["status"] == "revoked"
    actions = AuditRecord.objects.filter(resource_id=waiver_id).order_by("id").values_list("action", flat=True)
    assert list(actions) == ["waiver.request", "waiver.approve", "waiver.revoke"]
    assert Task.objects.filter(pk=task.pk).exists()
