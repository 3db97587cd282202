"""POST /api/v1/tasks: submit a CAWS working spec, get a queued task."""

from __future__ import annotations

from typing import Any

import pytest

from audit.models import AuditRecord
from tasks.models import Priority, Task, TaskEvent

URL = "/api/v1/tasks"

FULL_SPEC: dict[str, Any] = {
    "title": "Add a retry budget to the dispatcher",
    "description": "Retries must stop after max_attempts.",
    "risk_tier": 1,
    "mode": "fix",
    "scope": {"in": ["tasks/dispatch/dispatcher.py", "tasks/"], "out": ["tasks/migrations"]},
    "change_budget": {"max_files": 5, "max_lines": 200},
    "acceptance": [
        {"id": "A1", "given": "a failing worker", "when": "the task runs", "then": "it is retried"},
        {"id": "A2", "given": "no attempts left", "when": "it fails again", "then": "it is failed"},
    ],
    "priority": "high",
    "capabilities": ["python", "git", "python"],
    "input": {"repo": "agency", "branch": "main", "nested": {"n": [1, 2]}},
    "timeout_s": 900,
    "max_attempts": 5,
}


def counts() -> tuple[int, int, int]:
    return Task.objects.count(), TaskEvent.objects.count(), AuditRecord.objects.count()


def post_rejected(client, body: Any) -> dict[str, Any]:
    """POST ``body``, expect a 400, prove nothing was written, return the errors."""
    before = counts()
    r = client.post(URL, body, format="json")
    assert r.status_code == 400, r.content
    assert counts() == before
    return r.json()


@pytest.mark.django_db
def test_it_creates_a_task_from_a_minimal_spec(operator_client, operator):
    r = operator_client.post(URL, {"title": "Write the release notes"}, format="json")
    assert r.status_code == 201, r.content
    body = r.json()

    task = Task.objects.get()
    assert body["id"] == str(task.id)
    assert body["state"] == "queued"
    assert body["title"] == "Write the release notes"
    assert body["priority"] == "medium"
    assert body["risk_tier"] == 3
    assert body["attempt"] == 0
    assert body["max_attempts"] == 3
    assert body["created_by"] == "otto"
    assert body["cancel"] is None
    assert [(e["seq"], e["type"]) for e in body["events"]] == [(1, "created")]

    # The defaults are filled in and stored, so a worker sees the whole spec.
    assert body["spec"] == task.spec
    assert task.spec == {
        "title": "Write the release notes",
        "description": "",
        "risk_tier": 3,
        "mode": "feature",
        "acceptance": [],
        "priority": "medium",
        "capabilities": [],
        "input": {},
        "timeout_s": 600,
        "max_attempts": 3,
    }
    assert task.state == "queued"
    assert task.priority == Priority.MEDIUM
    assert task.created_by == operator
    assert task.event_seq == 1

    event = TaskEvent.objects.get()
    assert (event.task_id, event.seq, event.type) == (task.id, 1, "created")
    assert event.data == {"from": None, "to": "queued", "state": "queued", "actor": f"user:{operator.id}"}

    record = AuditRecord.objects.get()
    assert record.actor == f"user:{operator.id}"
    assert record.action == "task.create"
    assert record.resource_type == "task"
    assert record.resource_id == str(task.id)
    assert record.data == {
        "from": None,
        "to": "queued",
        "title": "Write the release notes",
        "priority": "medium",
        "risk_tier": 3,
    }


@pytest.mark.django_db
def test_it_creates_a_task_from_a_full_spec(operator_client):
    r = operator_client.post(URL, FULL_SPEC, format="json")
    assert r.status_code == 201, r.content

    task = Task.objects.get()
    assert task.title == FULL_SPEC["title"]
    assert task.priority == Priority.HIGH
    assert task.risk_tier == 1
    assert task.max_attempts == 5
    assert task.state == "queued"
    # Paths lose a trailing slash; capabilities are deduplicated and sorted.
    assert task.spec["scope"] == {"in": ["tasks/dispatch/dispatcher.py", "tasks"], "out": ["tasks/migrations"]}
    assert task.spec["capabilities"] == ["git", "python"]
    assert task.spec["change_budget"] == {"max_files": 5, "max_lines": 200}
    assert task.spec["acceptance"] == FULL_SPEC["acceptance"]
    assert task.spec["input"] == FULL_SPEC["input"]
    assert task.spec["mode"] == "fix"
    assert task.spec["timeout_s"] == 900
    assert task.spec["description"] == FULL_SPEC["description"]
    assert r.json()["priority"] == "high"
    assert TaskEvent.objects.filter(task=task, seq=1, type="created").count() == 1
    assert AuditRecord.objects.filter(action="task.create", resource_id=str(task.id)).count() == 1


@pytest.mark.django_db
def test_it_lets_an_admin_create(admin_client_api, admin_user):
    r = admin_client_api.post(URL, {"title": "x"}, format="json")
    assert r.status_code == 201
    assert AuditRecord.objects.get().actor == f"user:{admin_user.id}"


@pytest.mark.django_db
def test_it_requires_authentication(anon_client):
    before = counts()
    r = anon_client.post(URL, {"title": "x"}, format="json")
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"].startswith("Token")
    assert counts() == before


@pytest.mark.django_db
def test_it_rejects_a_user_without_a_role(nobody_client):
    before = counts()
    assert nobody_client.post(URL, {"title": "x"}, format="json").status_code == 403
    assert counts() == before


@pytest.mark.django_db
def test_it_rejects_a_viewer(viewer_client):
    before = counts()
    r = viewer_client.post(URL, {"title": "x"}, format="json")
    assert r.status_code == 403
    assert "operator" in r.json()["detail"]
    assert counts() == before


@pytest.mark.django_db
def test_it_rejects_a_bad_token(anon_client):
    anon_client.credentials(HTTP_AUTHORIZATION="Token not-a-real-token")
    assert anon_client.post(URL, {"title": "x"}, format="json").status_code == 401
    assert Task.objects.count() == 0


@pytest.mark.django_db
def test_it_names_an_unknown_top_level_field(operator_client):
    errors = post_rejected(operator_client, {"title": "x", "risk_teir": 1, "colour": "red"})
    assert errors == {"colour": ["Unknown field."], "risk_teir": ["Unknown field."]}


@pytest.mark.django_db
def test_it_names_an_unknown_field_inside_scope(operator_client):
    errors = post_rejected(operator_client, {"title": "x", "scope": {"inn": ["a"]}})
    assert errors == {"scope": {"inn": ["Unknown field."]}}


@pytest.mark.django_db
def test_it_names_an_unknown_field_inside_an_acceptance_criterion(operator_client):
    criterion = {"id": "A1", "given": "g", "when": "w", "then": "t", "whom": "me"}
    errors = post_rejected(operator_client, {"title": "x", "acceptance": [criterion]})
    # DRF keys the errors of a list by the index of the item at fault.
    assert errors == {"acceptance": {"0": {"whom": ["Unknown field."]}}}


@pytest.mark.django_db
def test_it_names_an_unknown_field_inside_the_change_budget(operator_client):
    errors = post_rejected(operator_client, {"title": "x", "change_budget": {"max_files": 1, "max_line": 2}})
    assert set(errors) == {"change_budget"}
    assert "max_line" in errors["change_budget"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("title", True),
        ("title", ["x"]),
        ("title", None),
        ("description", None),
        ("risk_tier", "high"),
        ("risk_tier", 1.5),
        ("mode", "rewrite"),
        ("scope", ["src"]),
        ("scope", "src"),
        ("change_budget", 10),
        ("acceptance", {"id": "A1"}),
        ("capabilities", "python"),
        ("capabilities", ["Not Valid!"]),
        ("input", ["a", "list"]),
        ("input", "text"),
        ("timeout_s", "soon"),
        ("timeout_s", 0),
        ("timeout_s", 86_401),
        ("max_attempts", 0),
        ("max_attempts", 21),
    ],
)
def test_it_names_a_field_of_the_wrong_type_or_range(operator_client, field, value):
    errors = post_rejected(operator_client, {"title": "x", field: value})
    assert set(errors) == {field}


@pytest.mark.django_db
@pytest.mark.parametrize("tier", [0, 4, -1])
def test_it_rejects_a_risk_tier_outside_1_to_3(operator_client, tier):
    assert set(post_rejected(operator_client, {"title": "x", "risk_tier": tier})) == {"risk_tier"}


@pytest.mark.django_db
@pytest.mark.parametrize("priority", ["urgent", "HIGH", 30, ""])
def test_it_rejects_an_unknown_priority(operator_client, priority):
    assert set(post_rejected(operator_client, {"title": "x", "priority": priority})) == {"priority"}


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/etc/passwd", "../outside", "src/../../etc", "src\\win", ""])
def test_it_rejects_a_scope_path_outside_the_repository(operator_client, path):
    errors = post_rejected(operator_client, {"title": "x", "scope": {"in": [path]}})
    assert set(errors) == {"scope"}
    assert set(errors["scope"]) == {"in"}


@pytest.mark.django_db
def test_it_rejects_an_absolute_path_in_scope_out(operator_client):
    errors = post_rejected(operator_client, {"title": "x", "scope": {"out": ["/var"]}})
    assert set(errors["scope"]) == {"out"}


@pytest.mark.django_db
def test_it_rejects_a_path_both_in_and_out_of_scope(operator_client):
    errors = post_rejected(operator_client, {"title": "x", "scope": {"in": ["src", "docs/"], "out": ["docs"]}})
    assert set(errors) == {"scope"}
    assert "docs" in errors["scope"][0]


@pytest.mark.django_db
def test_it_rejects_duplicate_acceptance_ids(operator_client):
    criteria = [{"id": "A1", "given": "g", "when": "w", "then": "t"}] * 2
    errors = post_rejected(operator_client, {"title": "x", "acceptance": criteria})
    assert set(errors) == {"acceptance"}
    assert "A1" in str(errors["acceptance"])


@pytest.mark.django_db
def test_it_rejects_an_incomplete_acceptance_criterion(operator_client):
    errors = post_rejected(operator_client, {"title": "x", "acceptance": [{"id": "A1", "given": "g"}]})
    assert set(errors["acceptance"]["0"]) == {"when", "then"}


@pytest.mark.django_db
@pytest.mark.parametrize("title", ["", "   ", "x" * 201])
def test_it_rejects_an_empty_or_overlong_title(operator_client, title):
    assert set(post_rejected(operator_client, {"title": title})) == {"title"}


@pytest.mark.django_db
def test_it_requires_a_title(operator_client):
    assert post_rejected(operator_client, {"description": "no title"}) == {"title": ["This field is required."]}


@pytest.mark.django_db
@pytest.mark.parametrize("body", ["title", 42, True])
def test_it_rejects_a_body_that_is_not_an_object(operator_client, body):
    errors = post_rejected(operator_client, body)
    assert set(errors) == {"non_field_errors"}


@pytest.mark.django_db
def test_it_rejects_malformed_json(operator_client):
    before = counts()
    r = operator_client.post(URL, '{"title": ', content_type="application/json")
    assert r.status_code == 400
    assert "JSON parse error" in r.json()["detail"]
    assert counts() == before


@pytest.mark.django_db
def test_it_names_every_bad_field_at_once(operator_client):
    errors = post_rejected(operator_client, {"title": "", "risk_tier": 9, "priority": "now", "extra": 1})
    assert set(errors) == {"title", "risk_tier", "priority", "extra"}


@pytest.mark.django_db
@pytest.mark.parametrize("method", ["put", "patch", "delete"])
def test_it_rejects_other_methods(operator_client, method):
    r = getattr(operator_client, method)(URL, {"title": "x"}, format="json")
    assert r.status_code == 405
    assert Task.objects.count() == 0


@pytest.mark.django_db
@pytest.mark.parametrize(
    "extra",
    [
        {"title": 123},
        {"description": 5},
        {"capabilities": [1]},
        {"scope": {"in": [5]}},
        {"acceptance": [{"id": 1, "given": "g", "when": "w", "then": "t"}]},
    ],
)
def test_it_rejects_a_number_where_the_spec_wants_a_string(operator_client, extra):
    post_rejected(operator_client, {"title": "x", **extra})


@pytest.mark.django_db
@pytest.mark.parametrize("extra", [{"risk_tier": "2"}, {"timeout_s": "600"}, {"max_attempts": 2.0}])
def test_it_rejects_a_string_or_float_where_the_spec_wants_an_integer(operator_client, extra):
    post_rejected(operator_client, {"title": "x", **extra})


@pytest.mark.django_db(transaction=True)
def test_the_answer_is_the_task_as_created_even_if_a_dispatcher_takes_it_at_the_commit(operator_client):
    """A dispatcher may claim the task the moment its creation commits (here: on the commit itself).
    The answer is still the created task, not whatever the dispatcher made of it since."""
    from security.principals import Principal
    from tasks.dispatch import claims
    from tasks.models import Worker
    from tasks.transitions import task_changed

    worker = Worker.objects.create(name="fast", base_url="http://127.0.0.1:9", max_concurrency=10)

    def claim_at_once(sender, change, **kwargs) -> None:
        if change.to_state == "queued":
            claims.task_claim(
                actor=Principal.dispatcher("fast:1:abc"), limit=1, pick_worker=lambda t: worker, lease_s=30
            )

    task_changed.connect(claim_at_once)
    try:
        r = operator_client.post(URL, {"title": "Echo", "input": {"kind": "echo"}}, format="json")
    finally:
        task_changed.disconnect(claim_at_once)

    assert r.status_code == 201, r.content
    assert r.json()["state"] == "queued"
    assert [e["type"] for e in r.json()["events"]] == ["created"]
    assert Task.objects.get(pk=r.json()["id"]).state == "running"  # the dispatcher did take it
