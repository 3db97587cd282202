"""The audit endpoint in the OpenAPI schema: its filters and its page shape."""

from __future__ import annotations

import pytest


@pytest.mark.django_db
def test_the_schema_documents_the_audit_search(viewer_client):
    doc = viewer_client.get("/api/schema/", {"format": "json"}).json()
    operation = doc["paths"]["/api/v1/audit"]
    assert set(operation) == {"get"}
    params = {p["name"] for p in operation["get"]["parameters"]}
    assert params >= {"action", "actor", "resource_type", "resource_id", "since", "until", "cursor", "page_size"}
    ref = operation["get"]["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    page = doc["components"]["schemas"][ref.rsplit("/", 1)[1]]
    assert set(page["properties"]) == {"results", "next"}
    record = doc["components"]["schemas"]["AuditRecord"]
    assert {"seq", "prev_hash", "hash", "data", "reason"} <= set(record["properties"])
