"""/api/v1/workers: the worker registry over HTTP (viewers read, admins change), through tasks.workers."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from audit.models import AuditRecord
from security.principals import SYSTEM
from tasks import workers
from tasks.models import Task, Worker

URL = "/api/v1/workers"
WORKER_URL = "http://127.0.0.1:9100"
TOKEN = "s3cret-token-value"

pytestmark = pytest.mark.django_db


def detail_url(name: str) -> str:
    return f"{URL}/{name}"


def snapshot() -> tuple[list[dict[str, Any]], int]:
    """Every worker column and the audit count: what "nothing was written" compares."""
    return list(Worker.objects.order_by("pk").values()), AuditRecord.objects.count()


@pytest.fixture
def builder() -> Worker:
    return workers.worker_register(
        actor=SYSTEM, name="builder", base_url=WORKER_URL, capabilities=["python"], token=TOKEN
    )


@pytest.fixture
def legacy() -> Worker:
    """A row from before the URL policy, credentials in its URL (the services refuse to make one)."""
    worker = Worker(name="legacy", base_url="https://bob:hunter2-pw@fn.example.net/run?code=abcdefgh1234")
    worker.token = TOKEN
    worker.save()
    return worker


@pytest.fixture
def clients(anon_client, nobody_client, viewer_client, operator_client, admin_client_api) -> dict[str, APIClient]:
    return {
        "anonymous": anon_client,
        "nobody": nobody_client,
        "viewer": viewer_client,
        "operator": operator_client,
        "admin": admin_client_api,
    }


# --- who may do what ------------------------------------------------------------------------

WRITES = [
    ("post", URL, {"name": "fresh", "base_url": WORKER_URL}),
    ("patch", detail_url("builder"), {"max_concurrency": 9}),
    ("post", f"{detail_url('builder')}/disable", {}),
    ("post", f"{detail_url('builder')}/enable", {}),
    ("delete", detail_url("builder"), None),
]


@pytest.mark.parametrize(("method", "path", "body"), WRITES)
@pytest.mark.parametrize(("who", "expected"), [("anonymous", 401), ("nobody", 403), ("viewer", 403), ("operator", 403)])
def test_only_admins_change_the_registry(clients, builder, method, path, body, who, expected):
    before = snapshot()
    r = getattr(clients[who], method)(path, body, format="json")
    assert r.status_code == expected, r.content
    assert set(r.json()) == {"detail", "code"}
    assert snapshot() == before


@pytest.mark.parametrize("path", [URL, detail_url("builder")])
@pytest.mark.parametrize(("who", "expected"), [("anonymous", 401), ("nobody", 403)])
def test_reading_needs_a_role(clients, builder, path, who, expected):
    r = clients[who].get(path)
    assert r.status_code == expected
    assert "builder" not in r.content.decode()


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("put", URL),
        ("delete", URL),
        ("patch", URL),
        ("put", detail_url("builder")),
        ("post", detail_url("builder")),
        ("get", f"{detail_url('builder')}/enable"),
        ("delete", f"{detail_url('builder')}/disable"),
    ],
)
def test_other_methods_are_refused_in_json(admin_client_api, builder, method, path):
    before = snapshot()
    r = getattr(admin_client_api, method)(path, {}, format="json")
    assert r.status_code == 405
    assert r["Content-Type"].startswith("application/json")
    assert snapshot() == before


# --- reads ----------------------------------------------------------------------------------


def test_it_lists_workers_by_name_without_their_token(viewer_client, builder, legacy):
    workers.worker_register(actor=SYSTEM, name="alpha", base_url="https://alpha.example.com", enabled=False)
    r = viewer_client.get(URL)
    assert r.status_code == 200
    rows = r.json()["results"]
    assert [row["name"] for row in rows] == ["alpha", "builder", "legacy"]
    row = rows[1]
    assert row == {
        "name": "builder",
        "base_url": WORKER_URL,
        "capabilities": ["python"],
        "max_concurrency": 4,
        "enabled": True,
        "has_token": True,
        "request_timeout_s": 30.0,
        "retry_max_attempts": 3,
        "retry_initial_backoff_ms": 500,
        "retry_max_backoff_ms": 5000,
        "breaker_fail_max": 5,
        "breaker_reset_timeout_s": 60,
        "health_status": "",
        "health_checked_at": None,
        "health_latency_ms": None,
        "breaker_state": "closed",
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
    }
    assert rows[0]["has_token"] is False
    text = r.content.decode()
    for secret in (TOKEN, "hunter2", "abcdefgh1234", "bob", "token_ciphertext"):
        assert secret not in text


def test_the_list_filters_by_enabled_and_refuses_unknown_parameters(viewer_client, builder):
    workers.worker_register(actor=SYSTEM, name="alpha", base_url="https://alpha.example.com", enabled=False)
    assert [w["name"] for w in viewer_client.get(URL, {"enabled": "false"}).json()["results"]] == ["alpha"]
    assert [w["name"] for w in viewer_client.get(URL, {"enabled": "true"}).json()["results"]] == ["builder"]
    r = viewer_client.get(URL, {"enabeld": "true"})
    assert (r.status_code, r.json()) == (400, {"enabeld": ["Unknown field."]})


def test_a_worker_is_read_by_name_with_its_url_redacted(viewer_client, legacy):
    r = viewer_client.get(detail_url("legacy"))
    assert r.status_code == 200
    assert r.json()["base_url"] == "https://fn.example.net/run"
    assert r.json()["has_token"] is True
    assert "token" not in r.json()


def test_an_unknown_worker_is_404_in_json(viewer_client):
    r = viewer_client.get(detail_url("ghost"))
    assert r.status_code == 404
    assert r.json()["code"] == "not_found"


# --- register ---------------------------------------------------------------------------------


def test_an_admin_registers_a_worker(admin_client_api, admin_user):
    body = {
        "name": "builder",
        "base_url": "https://worker.example.com",
        "capabilities": ["rust", "python"],
        "max_concurrency": 8,
        "token": TOKEN,
        "retry_max_attempts": 2,
    }
    r = admin_client_api.post(URL, body, format="json")
    assert r.status_code == 201, r.content
    assert r.json()["capabilities"] == ["python", "rust"]
    assert r.json()["has_token"] is True
    assert "token" not in r.json()
    assert TOKEN not in r.content.decode()
    worker = Worker.objects.get()
    assert (worker.base_url, worker.max_concurrency, worker.retry_max_attempts, worker.token) == (
        "https://worker.example.com",
        8,
        2,
        TOKEN,
    )
    record = AuditRecord.objects.get()
    assert (record.action, record.actor, record.resource_id) == ("worker.register", f"user:{admin_user.pk}", "builder")
    assert record.data["url"] == "https://worker.example.com"
    assert TOKEN not in str(record.data)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "builder"}, "base_url"),
        ({"base_url": WORKER_URL}, "name"),
        ({"name": "builder", "base_url": "ftp://files.example.com"}, "base_url"),
        ({"name": "builder", "base_url": WORKER_URL, "max_concurrency": "8"}, "max_concurrency"),
        ({"name": "builder", "base_url": WORKER_URL, "enabled": "yes"}, "enabled"),
        ({"name": "builder", "base_url": WORKER_URL, "capabilites": ["python"]}, "capabilites"),
        ({"name": "bad name", "base_url": WORKER_URL}, "name"),
    ],
)
def test_bad_input_is_a_400_naming_the_field_and_nothing_is_written(admin_client_api, body, field):
    r = admin_client_api.post(URL, body, format="json")
    assert r.status_code == 400, r.content
    assert field in r.json()
    assert snapshot() == ([], 0)


@pytest.mark.parametrize(
    "url",
    ["http://user:s3cr3tpw@127.0.0.1:9100", "https://fn.example.net/run?code=abcxyz", "https://w.example.com/?token=1"],
)
def test_credentials_in_the_url_are_refused_pointing_to_the_token_field(admin_client_api, url):
    r = admin_client_api.post(URL, {"name": "builder", "base_url": url}, format="json")
    assert r.status_code == 400
    [message] = r.json()["base_url"]
    assert "`token` field" in message
    # The refusal does not echo the secret it refused.
    assert "s3cr3tpw" not in message
    assert "abcxyz" not in message
    assert snapshot() == ([], 0)


def test_a_taken_name_is_a_409_naming_the_field(admin_client_api, builder):
    before = snapshot()
    r = admin_client_api.post(URL, {"name": "builder", "base_url": "http://127.0.0.1:9200"}, format="json")
    assert r.status_code == 409
    assert list(r.json()) == ["name"]
    assert snapshot() == before


# --- update ---------------------------------------------------------------------------------------


def test_an_admin_changes_some_settings(admin_client_api, builder, admin_user):
    r = admin_client_api.patch(
        detail_url("builder"), {"max_concurrency": 9, "base_url": "https://new.example.com"}, format="json"
    )
    assert r.status_code == 200, r.content
    assert (r.json()["max_concurrency"], r.json()["base_url"]) == (9, "https://new.example.com")
    builder.refresh_from_db()
    assert (builder.max_concurrency, builder.base_url, builder.token, builder.capabilities) == (
        9,
        "https://new.example.com",
        TOKEN,
        ["python"],
    )
    record = AuditRecord.objects.latest("seq")
    assert (record.action, record.actor) == ("worker.update", f"user:{admin_user.pk}")
    assert record.data["changed"] == ["base_url", "max_concurrency"]


def test_the_token_is_replaced_or_removed_but_never_returned(admin_client_api, builder):
    r = admin_client_api.patch(detail_url("builder"), {"token": "a-brand-new-token"}, format="json")
    assert (r.status_code, r.json()["has_token"]) == (200, True)
    assert "a-brand-new-token" not in r.content.decode()
    builder.refresh_from_db()
    assert builder.token == "a-brand-new-token"
    r = admin_client_api.patch(detail_url("builder"), {"token": ""}, format="json")
    assert (r.status_code, r.json()["has_token"]) == (200, False)
    builder.refresh_from_db()
    assert builder.token_ciphertext == ""


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "renamed"}, "name"),
        ({"max_concurrency": 0}, "max_concurrency"),
        ({"retry_max_backoff_ms": 10}, "retry_max_backoff_ms"),  # below the stored 500 ms floor
        ({"base_url": "http://u:p@127.0.0.1:9100"}, "base_url"),
        ({"token": 12345678}, "token"),
        ({"colour": "blue"}, "colour"),
    ],
)
def test_a_bad_change_is_a_400_and_nothing_is_written(admin_client_api, builder, body, field):
    before = snapshot()
    r = admin_client_api.patch(detail_url("builder"), body, format="json")
    assert r.status_code == 400, r.content
    assert field in r.json()
    assert snapshot() == before


def test_changing_an_unknown_worker_is_404(admin_client_api):
    r = admin_client_api.patch(detail_url("ghost"), {"max_concurrency": 2}, format="json")
    assert r.status_code == 404
    assert AuditRecord.objects.count() == 0


# --- enable, disable, delete ------------------------------------------------------------------


def test_an_admin_disables_and_enables_a_worker(admin_client_api, builder):
    r = admin_client_api.post(f"{detail_url('builder')}/disable", {"reason": "maintenance"}, format="json")
    assert (r.status_code, r.json()["enabled"]) == (200, False)
    builder.refresh_from_db()
    assert builder.enabled is False
    record = AuditRecord.objects.latest("seq")
    assert (record.action, record.reason) == ("worker.disable", "maintenance")

    r = admin_client_api.post(f"{detail_url('builder')}/enable", format="json")
    assert (r.status_code, r.json()["enabled"]) == (200, True)
    assert AuditRecord.objects.latest("seq").action == "worker.enable"


def test_enable_refuses_unknown_fields_and_unknown_workers(admin_client_api, builder):
    before = snapshot()
    r = admin_client_api.post(f"{detail_url('builder')}/disable", {"why": "x"}, format="json")
    assert (r.status_code, r.json()) == (400, {"why": ["Unknown field."]})
    assert admin_client_api.post(f"{detail_url('ghost')}/disable", format="json").status_code == 404
    assert snapshot() == before


def test_an_admin_deletes_a_worker(admin_client_api, builder, admin_user):
    r = admin_client_api.delete(detail_url("builder"))
    assert r.status_code == 204
    assert not Worker.objects.exists()
    record = AuditRecord.objects.latest("seq")
    assert (record.action, record.actor, record.resource_id) == ("worker.delete", f"user:{admin_user.pk}", "builder")
    assert admin_client_api.delete(detail_url("builder")).status_code == 404


def test_a_worker_with_a_running_task_is_not_deleted(admin_client_api, builder, make_task):
    task = make_task()
    Task.objects.filter(pk=task.pk).update(state="running", worker=builder, attempt=1)
    before = snapshot()
    r = admin_client_api.delete(detail_url("builder"))
    assert r.status_code == 409
    assert r.json()["code"] == "worker_busy"
    assert snapshot() == before


# --- the schema ----------------------------------------------------------------------------------


def test_the_schema_documents_the_registry(viewer_client):
    r = viewer_client.get("/api/schema/", {"format": "json"})
    doc = r.json()
    paths = doc["paths"]
    assert set(paths[URL]) >= {"get", "post"}
    assert set(paths[f"{URL}/{{name}}"]) >= {"get", "patch", "delete"}
    assert set(paths[f"{URL}/{{name}}/enable"]) >= {"post"}
    assert set(paths[URL]["post"]["responses"]) >= {"201", "400", "401", "403", "409"}
    assert set(paths[f"{URL}/{{name}}"]["patch"]["responses"]) >= {"200", "400", "401", "403", "404"}
    assert set(paths[f"{URL}/{{name}}"]["delete"]["responses"]) >= {"204", "401", "403", "404", "409"}
    worker = doc["components"]["schemas"]["Worker"]["properties"]
    assert "token" not in worker
    assert worker["health_checked_at"]["nullable"] is True
    assert worker["health_latency_ms"]["nullable"] is True
    assert doc["components"]["schemas"]["WorkerRegister"]["properties"]["token"]["writeOnly"] is True


@pytest.mark.django_db
@pytest.mark.parametrize("token", ["Ā", "with space", "tab\there", "nul\x00", "é"])
def test_a_token_that_an_authorization_header_cannot_carry_is_refused(admin_client_api, token):
    body = {"name": "w-token", "base_url": "http://127.0.0.1:9", "token": token}
    response = admin_client_api.post("/api/v1/workers", body, format="json")
    assert response.status_code == 400
    assert "A token is printable ASCII: no spaces, control or non-ASCII characters." in response.json()["token"]
