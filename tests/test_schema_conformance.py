"""Real responses, nulls and errors included, conform to what /api/schema/ documents for them.

The schema is the contract generated clients are built from: a field the server sends as
null must be ``nullable``, and every status an operation answers with must be documented
with the body it really has. Each response here is validated by schemathesis against the
operation's documented response for its status (an undocumented status fails too).
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
import schemathesis
from django.utils import timezone

from tasks.models import Gate, Task, Verdict, Waiver, WaiverReason
from tests.schema_support import validate_response

pytestmark = pytest.mark.django_db


@pytest.fixture
def schema(viewer_client) -> Any:
    return schemathesis.openapi.from_dict(viewer_client.get("/api/schema/", {"format": "json"}).json())


def check(schema: Any, path: str, method: str, response: Any, *, status: int) -> Any:
    """Validate a Django test response against the schema's ``method path`` operation."""
    assert response.status_code == status, response.content[:300]
    validate_response(schema, path, method, response)
    return response.json()


def test_a_fresh_task_with_every_optional_field_null_conforms(schema, viewer_client, make_task):
    task = make_task()
    body = check(schema, "/api/v1/tasks/{task_id}", "GET", viewer_client.get(f"/api/v1/tasks/{task.id}"), status=200)
    assert (body["worker"], body["verdict"], body["cancel"], body["run_after"], body["started_at"]) == (None,) * 5


def test_a_canceled_task_whose_users_were_deleted_conforms(
    schema, admin_client_api, operator_client, operator, make_task
):
    task = make_task()
    assert (
        operator_client.post(
            f"/api/v1/tasks/{task.id}/cancel", {"reason": "No longer needed"}, format="json"
        ).status_code
        == 200
    )
    operator.delete()
    body = check(schema, "/api/v1/tasks/{task_id}", "GET", admin_client_api.get(f"/api/v1/tasks/{task.id}"), status=200)
    assert body["created_by"] is None
    assert body["cancel"]["requested_by"] is None


def test_an_automatic_verdict_without_a_decider_conforms_in_detail_and_provenance(schema, viewer_client, make_task):
    task = make_task()
    Verdict.objects.create(task=task, attempt=1, decision="approved", automatic=True, score=None, threshold=None)
    detail = check(schema, "/api/v1/tasks/{task_id}", "GET", viewer_client.get(f"/api/v1/tasks/{task.id}"), status=200)
    assert detail["verdict"]["decided_by"] is None
    r = viewer_client.get(f"/api/v1/tasks/{task.id}/provenance")
    assert check(schema, "/api/v1/tasks/{task_id}/provenance", "GET", r, status=200)["decided_by"] is None


def test_a_pending_waiver_for_every_task_conforms(schema, admin_client_api, operator):
    waiver = Waiver.objects.create(
        title="Skip placeholders",
        reason=WaiverReason.OTHER,
        gates=[Gate.PLACEHOLDERS],
        justification="A justification long enough.",
        expires_at=timezone.now() + timedelta(days=1),
        requested_by=operator,
    )
    operator.delete()
    r = admin_client_api.get(f"/api/v1/waivers/{waiver.id}")
    body = check(schema, "/api/v1/waivers/{waiver_id}", "GET", r, status=200)
    assert (body["task"], body["requested_by"], body["decided_by"], body["revoked_by"]) == (None,) * 4
    check(schema, "/api/v1/waivers", "GET", admin_client_api.get("/api/v1/waivers"), status=200)


def test_the_lists_conform(schema, viewer_client, make_task):
    task = make_task()
    check(schema, "/api/v1/tasks", "GET", viewer_client.get("/api/v1/tasks", {"page_size": 1}), status=200)
    check(schema, "/api/v1/audit", "GET", viewer_client.get("/api/v1/audit"), status=200)
    r = viewer_client.get(f"/api/v1/tasks/{task.id}/events")
    check(schema, "/api/v1/tasks/{task_id}/events", "GET", r, status=200)


def test_a_created_task_conforms(schema, operator_client):
    r = operator_client.post("/api/v1/tasks", {"title": "Write the notes"}, format="json")
    check(schema, "/api/v1/tasks", "POST", r, status=201)


@pytest.mark.parametrize(
    ("params", "field"), [({"state": "bogus"}, "state"), ({"stat": "failed"}, "stat"), ({"cursor": "%%%"}, "cursor")]
)
def test_a_400_for_bad_query_parameters_conforms(schema, viewer_client, params, field):
    body = check(schema, "/api/v1/tasks", "GET", viewer_client.get("/api/v1/tasks", params), status=400)
    assert field in body


def test_a_400_for_a_bad_body_conforms(schema, operator_client):
    r = operator_client.post("/api/v1/tasks", {"title": ""}, format="json")
    check(schema, "/api/v1/tasks", "POST", r, status=400)
    r = operator_client.post("/api/v1/tasks", "{", content_type="application/json")
    check(schema, "/api/v1/tasks", "POST", r, status=400)


def test_a_401_and_a_403_conform(schema, anon_client, nobody_client):
    check(schema, "/api/v1/tasks", "GET", anon_client.get("/api/v1/tasks"), status=401)
    check(schema, "/api/v1/tasks", "GET", nobody_client.get("/api/v1/tasks"), status=403)


def test_a_404_conforms_for_a_missing_task_and_for_a_task_without_a_verdict(schema, viewer_client, make_task):
    r = viewer_client.get(f"/api/v1/tasks/{uuid.uuid4()}")
    check(schema, "/api/v1/tasks/{task_id}", "GET", r, status=404)
    r = viewer_client.get(f"/api/v1/tasks/{make_task().id}/provenance")
    assert check(schema, "/api/v1/tasks/{task_id}/provenance", "GET", r, status=404)["code"] == "no_verdict"


def test_a_409_for_an_illegal_transition_conforms(schema, operator_client, make_task):
    task = make_task()
    Task.objects.filter(pk=task.pk).update(state="completed")
    r = operator_client.post(f"/api/v1/tasks/{task.id}/actions", {"action": "pause"}, format="json")
    body = check(schema, "/api/v1/tasks/{task_id}/actions", "POST", r, status=409)
    assert body["state"] == "completed"
    r = operator_client.post(f"/api/v1/tasks/{task.id}/cancel", {}, format="json")
    check(schema, "/api/v1/tasks/{task_id}/cancel", "POST", r, status=409)


def test_a_415_and_a_413_conform(schema, settings, operator_client):
    r = operator_client.post("/api/v1/tasks", "title=x", content_type="application/x-www-form-urlencoded")
    check(schema, "/api/v1/tasks", "POST", r, status=415)
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 100
    r = operator_client.post("/api/v1/tasks", {"title": "x" * 200}, format="json")
    check(schema, "/api/v1/tasks", "POST", r, status=413)
