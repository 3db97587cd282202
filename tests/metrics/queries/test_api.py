"""/api/v1/queries: anonymous, the wrong role, bad input, and a saved query run end to end."""

from __future__ import annotations

import pytest

from audit.models import AuditRecord
from metrics.models import QueryRun, SavedQuery
from metrics.queries import services
from tests.metrics.queries.test_readonly import readonly_role

pytestmark = pytest.mark.django_db(transaction=True)
__all__ = ["readonly_role"]

BODY = {
    "name": "failed by title",
    "sql": "SELECT title, state FROM tasks_task WHERE state = :state ORDER BY title",
    "parameters": [{"name": "state", "type": "text", "default": "queued"}],
    "shared": True,
}


@pytest.fixture(autouse=True)
def _role(readonly_role) -> None:
    return None


def test_anonymous_gets_401_everywhere(anon_client):
    assert anon_client.get("/api/v1/queries").status_code == 401
    assert anon_client.post("/api/v1/queries", BODY, format="json").status_code == 401
    assert not SavedQuery.objects.exists()


def test_no_role_gets_403(nobody_client):
    assert nobody_client.get("/api/v1/queries").status_code == 403


def test_a_viewer_may_not_save_a_query(viewer_client):
    response = viewer_client.post("/api/v1/queries", BODY, format="json")
    assert response.status_code == 403
    assert not SavedQuery.objects.exists()


def test_an_admin_saves_and_a_viewer_runs_it_and_sees_the_run(admin_client_api, viewer_client, make_task):
    make_task(title="b")
    make_task(title="a")
    created = admin_client_api.post("/api/v1/queries", BODY, format="json")
    assert created.status_code == 201, created.json()
    query_id = created.json()["id"]
    assert viewer_client.get("/api/v1/queries").json()[0]["name"] == "failed by title"
    ran = viewer_client.post(
        f"/api/v1/queries/{query_id}/run", {"params": {"state": "queued"}, "limit": 1}, format="json"
    )
    assert ran.status_code == 200, ran.json()
    assert ran.json() | {"duration_ms": 0} == {
        "columns": ["title", "state"],
        "rows": [["a", "queued"]],
        "more": True,
        "duration_ms": 0,
    }
    page2 = viewer_client.post(f"/api/v1/queries/{query_id}/run", {"limit": 1, "offset": 1}, format="json")
    assert page2.json()["rows"] == [["b", "queued"]]
    runs = viewer_client.get(f"/api/v1/queries/{query_id}/runs").json()
    assert [(r["outcome"], r["rows"]) for r in runs] == [("ok", 1), ("ok", 1)]
    assert AuditRecord.objects.filter(action=services.QUERY_RUN).count() == 2


def test_a_refused_query_is_a_400_naming_sql_and_is_audited(admin_client_api):
    created = admin_client_api.post(
        "/api/v1/queries", {"name": "sneaky", "sql": "DELETE FROM tasks_task"}, format="json"
    ).json()
    response = admin_client_api.post(f"/api/v1/queries/{created['id']}/run", {}, format="json")
    assert response.status_code == 400
    assert "sql" in response.json()
    assert QueryRun.objects.get().outcome == "refused"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**BODY, "name": ""}, "name"),
        ({**BODY, "sql": ""}, "sql"),
        ({**BODY, "parameters": [{"name": "9x"}]}, "parameters"),
        ({**BODY, "extra": 1}, "extra"),
        ({**BODY, "shared": 0}, "shared"),
        ({**BODY, "name": 7}, "name"),
    ],
)
def test_bad_input_names_its_field_and_writes_nothing(admin_client_api, body, field):
    response = admin_client_api.post("/api/v1/queries", body, format="json")
    assert response.status_code == 400
    assert field in response.json()
    assert not SavedQuery.objects.exists()


def test_bad_run_parameters_name_their_field(admin_client_api):
    query_id = admin_client_api.post("/api/v1/queries", BODY, format="json").json()["id"]
    response = admin_client_api.post(f"/api/v1/queries/{query_id}/run", {"params": {"nope": 1}}, format="json")
    assert response.status_code == 400
    assert "params.nope" in response.json()
    response = admin_client_api.post(f"/api/v1/queries/{query_id}/run", {"limit": 0}, format="json")
    assert "limit" in response.json()


def test_an_admin_changes_and_deletes_a_query(admin_client_api, viewer_client):
    query_id = admin_client_api.post("/api/v1/queries", BODY, format="json").json()["id"]
    assert viewer_client.patch(f"/api/v1/queries/{query_id}", {"name": "x"}, format="json").status_code == 403
    changed = admin_client_api.patch(f"/api/v1/queries/{query_id}", {"name": "renamed"}, format="json")
    assert (changed.status_code, changed.json()["name"]) == (200, "renamed")
    assert viewer_client.delete(f"/api/v1/queries/{query_id}").status_code == 403
    assert admin_client_api.delete(f"/api/v1/queries/{query_id}").status_code == 204
    assert admin_client_api.get(f"/api/v1/queries/{query_id}").status_code == 404
    actions = list(AuditRecord.objects.filter(resource_type="query").order_by("seq").values_list("action", flat=True))
    assert actions == [services.QUERY_CREATE, services.QUERY_UPDATE, services.QUERY_DELETE]


def test_a_private_query_is_404_for_a_viewer(admin_client_api, viewer_client):
    query_id = admin_client_api.post("/api/v1/queries", {**BODY, "shared": False}, format="json").json()["id"]
    assert viewer_client.get(f"/api/v1/queries/{query_id}").status_code == 404
    assert viewer_client.post(f"/api/v1/queries/{query_id}/run", {}, format="json").status_code == 404


def test_a_second_query_of_the_same_name_is_a_conflict(admin_client_api):
    assert admin_client_api.post("/api/v1/queries", BODY, format="json").status_code == 201
    response = admin_client_api.post("/api/v1/queries", BODY, format="json")
    assert response.status_code == 409
    assert response.json()["code"] == "query_name_taken"
    assert SavedQuery.objects.count() == 1


def test_null_params_run_with_the_defaults(admin_client_api, make_task):
    make_task(title="only")
    query_id = admin_client_api.post("/api/v1/queries", BODY, format="json").json()["id"]
    response = admin_client_api.post(f"/api/v1/queries/{query_id}/run", {"params": None}, format="json")
    assert (response.status_code, response.json()["rows"]) == (200, [["only", "queued"]])


def test_a_stranger_gets_json_and_never_a_500(admin_client_api, client):
    query_id = admin_client_api.post("/api/v1/queries", BODY, format="json").json()["id"]
    bad_token = client.get("/api/v1/queries", HTTP_AUTHORIZATION="Token agy_forged-key-0000000000000000")
    assert (bad_token.status_code, bad_token["Content-Type"]) == (401, "application/json")
    other = query_id[:-1] + ("1" if query_id.endswith("0") else "0")  # a well-formed id of no query
    for path in ("/api/v1/queries/not-a-uuid", f"/api/v1/queries/{other}/run"):
        response = admin_client_api.post(path, {}, format="json")
        assert response.status_code in (404, 405)
        assert response["Content-Type"].startswith("application/json")
    nested: object = "x"
    for _ in range(200):
        nested = [nested]
    deep = admin_client_api.post(f"/api/v1/queries/{query_id}/run", {"params": {"state": nested}}, format="json")
    assert deep.status_code == 400
    big = admin_client_api.post("/api/v1/queries", {**BODY, "sql": "SELECT 1 -- " + "x" * 3_000_000}, format="json")
    assert big.status_code in (400, 413)
    assert big["Content-Type"].startswith("application/json")


def test_on_postgresql_without_the_read_only_url_a_run_is_a_503_that_says_why(admin_client_api, settings):
    from django.db import connection

    from metrics.queries import readonly

    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL only: SQLite needs no URL")
    query_id = admin_client_api.post("/api/v1/queries", BODY, format="json").json()["id"]
    readonly.close_idle()
    settings.DATABASE_READONLY_URL = ""
    response = admin_client_api.post(f"/api/v1/queries/{query_id}/run", {}, format="json")
    assert response.status_code == 503
    assert "DATABASE_READONLY_URL is not set" in response.json()["detail"]
    assert QueryRun.objects.get().outcome == "refused"
