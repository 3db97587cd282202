"""A NUL character anywhere in a string input is a 400 naming the field, never a database error.

PostgreSQL text cannot hold NUL (psycopg refuses it at query time, a 500); DRF's string fields
refuse it up front. The contract test does not generate NUL (.ci/schemathesis.toml), so it is
pinned here, for bodies and query parameters alike.
"""

from __future__ import annotations

import pytest

from tasks.models import Task


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"title": "Nul\x00title"}, "title"),
        ({"title": "Fine", "description": "a\x00b"}, "description"),
        ({"title": "Fine", "acceptance": [{"id": "a1", "given": "\x00", "when": "w", "then": "t"}]}, "acceptance"),
    ],
)
def test_a_nul_in_a_spec_string_is_a_400_naming_the_field(operator_client, spec, field):
    r = operator_client.post("/api/v1/tasks", spec, format="json")
    assert r.status_code == 400, r.content
    assert field in r.json()
    assert not Task.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize(("url", "param"), [("/api/v1/tasks", "q"), ("/api/v1/audit", "actor")])
def test_a_nul_in_a_query_parameter_is_a_400_naming_it(viewer_client, url, param):
    r = viewer_client.get(url, {param: "a\x00b"})
    assert r.status_code == 400, r.content
    assert set(r.json()) == {param}


@pytest.mark.django_db
def test_a_nul_from_an_anonymous_caller_is_still_a_401(anon_client):
    assert anon_client.post("/api/v1/tasks", {"title": "\x00"}, format="json").status_code == 401


@pytest.mark.django_db
def test_a_nul_from_a_viewer_is_still_a_403(viewer_client):
    assert viewer_client.post("/api/v1/tasks", {"title": "\x00"}, format="json").status_code == 403
