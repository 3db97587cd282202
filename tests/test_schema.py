"""The OpenAPI schema at /api/schema/ and its docs at /api/docs/, served without a CDN."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from config.openapi import WHITESPACE, non_blank_pattern
from tasks.spec import SCOPE_PATH_PATTERN

SCHEMA = "/api/schema/"
DOCS = "/api/docs/"

TASK_PATHS = {
    "/api/v1/tasks": {"get", "post"},
    "/api/v1/tasks/{task_id}": {"get"},
    "/api/v1/tasks/{task_id}/events": {"get"},
    "/api/v1/tasks/{task_id}/actions": {"post"},
    "/api/v1/tasks/{task_id}/cancel": {"post"},
}


class AssetCollector(HTMLParser):
    """Every URL a page makes the browser load: script src, link href, img src."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        wanted = {"script": "src", "link": "href", "img": "src", "iframe": "src"}.get(tag)
        for name, value in attrs:
            if name == wanted and value:
                self.urls.append(value)


def schema(client) -> dict[str, Any]:
    r = client.get(SCHEMA, {"format": "json"})
    assert r.status_code == 200, r.content
    return r.json()


def docs_assets(client) -> list[str]:
    r = client.get(DOCS)
    assert r.status_code == 200
    assert r["Content-Type"].startswith("text/html")
    collector = AssetCollector()
    collector.feed(r.content.decode())
    return collector.urls


def response_schema(doc: dict[str, Any], path: str, method: str, status: str = "200") -> dict[str, Any]:
    content = doc["paths"][path][method]["responses"][status]["content"]["application/json"]["schema"]
    if "$ref" in content:
        return doc["components"]["schemas"][content["$ref"].rsplit("/", 1)[1]]
    return content


@pytest.mark.django_db
def test_it_serves_the_schema_as_yaml(viewer_client):
    r = viewer_client.get(SCHEMA)
    assert r.status_code == 200
    assert r["Content-Type"].startswith("application/vnd.oai.openapi")
    text = r.content.decode()
    assert text.startswith("openapi: 3.")
    assert "title: Agent Agency API" in text


@pytest.mark.django_db
def test_it_serves_the_schema_as_json(viewer_client):
    doc = schema(viewer_client)
    assert doc["openapi"].startswith("3.")


@pytest.mark.django_db
def test_it_documents_every_task_endpoint(viewer_client):
    paths = schema(viewer_client)["paths"]
    for path, methods in TASK_PATHS.items():
        assert path in paths, path
        assert set(paths[path]) >= methods, path
    assert "/api/health" in paths


@pytest.mark.django_db
def test_it_documents_token_and_session_authentication(viewer_client):
    schemes = schema(viewer_client)["components"]["securitySchemes"]
    assert schemes["tokenAuth"]["in"] == "header"
    assert schemes["cookieAuth"]["in"] == "cookie"


@pytest.mark.django_db
def test_it_documents_the_working_spec(viewer_client):
    doc = schema(viewer_client)
    spec = doc["components"]["schemas"]["WorkingSpec"]
    assert spec["required"] == ["title"]
    assert set(spec["properties"]) == {
        "title",
        "description",
        "risk_tier",
        "mode",
        "scope",
        "change_budget",
        "acceptance",
        "priority",
        "capabilities",
        "input",
        "timeout_s",
        "max_attempts",
    }
    assert (spec["properties"]["risk_tier"]["minimum"], spec["properties"]["risk_tier"]["maximum"]) == (1, 3)


@pytest.mark.django_db
def test_it_documents_the_list_filters(viewer_client):
    params = {p["name"] for p in schema(viewer_client)["paths"]["/api/v1/tasks"]["get"]["parameters"]}
    assert params >= {"state", "priority", "worker", "created_after", "created_before", "q", "ordering", "cursor"}


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("path", "keys"),
    [("/api/v1/tasks", {"results", "next"}), ("/api/v1/tasks/{task_id}/events", {"results", "last_seq"})],
)
def test_it_documents_the_shape_of_list_responses(viewer_client, path, keys):
    documented = response_schema(schema(viewer_client), path, "get")
    assert documented.get("type") == "object"
    assert set(documented.get("properties", {})) == keys


@pytest.mark.django_db
def test_it_documents_the_health_response(viewer_client):
    documented = response_schema(schema(viewer_client), "/api/health", "get")
    assert {"status", "version", "uptime_s", "components"} <= set(documented["properties"])


@pytest.mark.django_db
def test_it_documents_every_task_id_as_a_uuid(viewer_client):
    doc = schema(viewer_client)
    for path in TASK_PATHS:
        for operation in doc["paths"][path].values():
            for param in operation.get("parameters", []):
                if param["name"] == "task_id":
                    assert param["schema"] == {"type": "string", "format": "uuid"}, path


@pytest.mark.django_db
def test_it_serves_the_docs_page(viewer_client):
    r = viewer_client.get(DOCS)
    assert r.status_code == 200
    html = r.content.decode()
    assert "swagger-ui" in html
    assert SCHEMA in html


@pytest.mark.django_db
def test_it_loads_nothing_from_a_cdn(viewer_client):
    html = viewer_client.get(DOCS).content.decode()
    assets = docs_assets(viewer_client)
    assert assets, "the docs page references no assets at all"
    for asset in assets:
        assert not asset.startswith(("http://", "https://", "//")), asset
    for host in ("cdn.jsdelivr.net", "unpkg.com", "cdnjs.cloudflare.com", "fonts.googleapis.com"):
        assert host not in html


@pytest.mark.django_db
def test_it_serves_every_asset_the_docs_page_needs(viewer_client, anon_client):
    assets = docs_assets(viewer_client)
    assert any(a.endswith("swagger-ui-bundle.js") for a in assets)
    assert any(a.endswith("swagger-ui.css") for a in assets)
    for asset in assets:
        # Static files are public: the browser fetches them before anyone logs in.
        r = anon_client.get(asset)
        assert r.status_code == 200, asset
        body = b"".join(r.streaming_content) if r.streaming else r.content
        assert len(body) > 100, asset
        if asset.endswith(".js"):
            assert "javascript" in r["Content-Type"], asset
        elif asset.endswith(".css"):
            assert r["Content-Type"].startswith("text/css"), asset


@pytest.mark.django_db
@pytest.mark.parametrize("path", [SCHEMA, DOCS])
def test_it_refuses_anonymous_visitors(anon_client, path):
    assert anon_client.get(path).status_code in (401, 403)


@pytest.mark.django_db
@pytest.mark.parametrize("path", [SCHEMA, DOCS])
def test_it_refuses_a_user_without_a_role(nobody_client, path):
    assert nobody_client.get(path).status_code == 403


@pytest.mark.django_db
@pytest.mark.parametrize("path", [SCHEMA, DOCS])
@pytest.mark.parametrize("method", ["post", "put", "delete"])
def test_it_rejects_other_methods(admin_client_api, path, method):
    assert getattr(admin_client_api, method)(path).status_code == 405


# --- agreement with the server: nulls, errors, strict bodies, blank strings -------------------

NULLABLE = {
    "Task": {"worker", "created_by", "run_after", "started_at", "finished_at"},
    "TaskDetail": {"worker", "created_by", "verdict", "cancel", "result"},
    "Verdict": {"decided_by", "score", "threshold"},
    "Waiver": {"task", "requested_by", "decided_by", "decided_at", "revoked_by", "revoked_at"},
    "CancelRequest": {"requested_by"},
    "Provenance": {"decided_by", "score"},
}


def operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(path, method, op) for path, ops in doc["paths"].items() for method, op in ops.items()]


@pytest.mark.django_db
@pytest.mark.parametrize(("component", "fields"), NULLABLE.items())
def test_it_marks_every_field_the_server_may_send_as_null_nullable(viewer_client, component, fields):
    properties = schema(viewer_client)["components"]["schemas"][component]["properties"]
    for field in fields:
        assert properties[field].get("nullable") is True, f"{component}.{field}"


@pytest.mark.django_db
def test_it_documents_on_each_operation_the_errors_it_can_answer_with(viewer_client):
    doc = schema(viewer_client)
    for path, method, op in operations(doc):
        responses = op["responses"]
        expected = {"401", "403"}
        if any(p["in"] == "query" for p in op.get("parameters", [])) or "requestBody" in op:
            expected.add("400")
        if "{" in path:
            expected.add("404")
        if "requestBody" in op:
            expected |= {"413", "415"}
        assert expected <= set(responses), (method, path, sorted(responses))
        for status in expected:
            ref = responses[status]["content"]["application/json"]["schema"]["$ref"]
            assert ref.endswith("/ValidationError" if status == "400" else "/Error"), (method, path, status)


@pytest.mark.django_db
@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/tasks/{task_id}/actions",
        "/api/v1/tasks/{task_id}/cancel",
        "/api/v1/waivers/{waiver_id}/approve",
        "/api/v1/waivers/{waiver_id}/reject",
        "/api/v1/waivers/{waiver_id}/revoke",
    ],
)
def test_it_documents_the_409_of_state_changes(viewer_client, path):
    response = schema(viewer_client)["paths"][path]["post"]["responses"]["409"]
    assert response["content"]["application/json"]["schema"]["$ref"].endswith("/Error")


@pytest.mark.django_db
def test_it_shares_one_error_component(viewer_client):
    components = schema(viewer_client)["components"]["schemas"]
    assert set(components["Error"]["required"]) == {"detail", "code"}
    assert components["ValidationError"]["type"] == "object"


@pytest.mark.django_db
@pytest.mark.parametrize(
    "component",
    [
        "WorkingSpec",
        "Scope",
        "ChangeBudget",
        "AcceptanceCriterion",
        "LifecycleAction",
        "OverrideAction",
        "Cancel",
        "WaiverRequest",
        "WaiverDecision",
        "WaiverRevoke",
    ],
)
def test_it_closes_every_strict_body_to_unknown_keys(viewer_client, component):
    assert schema(viewer_client)["components"]["schemas"][component]["additionalProperties"] is False


@pytest.mark.django_db
@pytest.mark.parametrize("component", ["Task", "TaskDetail", "Waiver", "Error"])
def test_it_leaves_responses_open_for_fields_added_later(viewer_client, component):
    assert "additionalProperties" not in schema(viewer_client)["components"]["schemas"][component]


@pytest.mark.django_db
def test_it_states_that_required_strings_may_not_be_blank(viewer_client):
    components = schema(viewer_client)["components"]["schemas"]
    title = components["WorkingSpec"]["properties"]["title"]
    assert title["minLength"] == 1
    assert title["pattern"] == non_blank_pattern(1)
    assert components["OverrideAction"]["properties"]["reason"]["pattern"] == non_blank_pattern(10)
    assert "pattern" not in components["WorkingSpec"]["properties"]["description"]  # blank allowed
    # A scope path states its own rule (relative, no "..", not trimmed), which refuses "" too.
    assert components["Scope"]["properties"]["in"]["items"]["pattern"] == SCOPE_PATH_PATTERN


@pytest.mark.django_db
def test_it_documents_the_action_body_as_one_of_two_required_shapes(viewer_client):
    doc = schema(viewer_client)
    body = doc["paths"]["/api/v1/tasks/{task_id}/actions"]["post"]["requestBody"]
    assert body["required"] is True
    shapes = doc["components"]["schemas"]["TaskActionRequest"]["oneOf"]
    assert [s["$ref"].rsplit("/", 1)[1] for s in shapes] == ["LifecycleAction", "OverrideAction"]
    assert doc["components"]["schemas"]["OverrideAction"]["required"] == ["action", "decision", "reason"]


@pytest.mark.django_db
def test_it_documents_input_as_an_object(viewer_client):
    assert schema(viewer_client)["components"]["schemas"]["WorkingSpec"]["properties"]["input"]["type"] == "object"


@pytest.mark.django_db
def test_it_leaves_drfs_format_switch_undocumented(viewer_client):
    for path, method, op in operations(schema(viewer_client)):
        assert "format" not in {p["name"] for p in op.get("parameters", [])}, (method, path)


@pytest.mark.django_db
def test_it_documents_only_json_request_bodies(viewer_client):
    for path, method, op in operations(schema(viewer_client)):
        if "requestBody" in op:
            assert set(op["requestBody"]["content"]) == {"application/json"}, (method, path)


def test_the_whitespace_of_the_patterns_is_exactly_what_str_strip_removes():
    spelled = {c for c in map(chr, range(0x110000)) if re.fullmatch(f"[{WHITESPACE}]", c)}
    assert spelled == {c for c in map(chr, range(0x110000)) if c.isspace()}


@given(st.text(alphabet=st.sampled_from(" \t\n\x1c\x1d\u3000\xa0ab"), max_size=16), st.integers(1, 5))
def test_the_non_blank_pattern_accepts_exactly_what_drf_accepts_once_trimmed(text, least):
    assert bool(re.search(non_blank_pattern(least), text)) == (len(text.strip()) >= least)
