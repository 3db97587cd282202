"""A blank text filter (a cleared search box: ``?q=``, ``?actor=``) is no filter, not a 400.

The schema documents these parameters without ``minLength``, so a client (and schemathesis)
may send them empty; the server must agree.
"""

from __future__ import annotations

import pytest

from audit.models import AuditRecord


@pytest.mark.django_db
def test_a_blank_search_lists_every_task(viewer_client, make_task):
    make_task(title="One")
    make_task(title="Two")
    r = viewer_client.get("/api/v1/tasks", {"q": "  "})
    assert r.status_code == 200, r.content
    assert len(r.json()["results"]) == 2


@pytest.mark.django_db
@pytest.mark.parametrize("param", ["actor", "resource_type", "resource_id"])
def test_a_blank_audit_filter_filters_nothing(viewer_client, make_task, param):
    make_task()
    r = viewer_client.get("/api/v1/audit", {param: ""})
    assert r.status_code == 200, r.content
    assert len(r.json()["results"]) == AuditRecord.objects.count() > 0


@pytest.mark.django_db
def test_a_search_still_filters_when_it_is_not_blank(viewer_client, make_task):
    make_task(title="Release notes")
    make_task(title="Fix the login")
    r = viewer_client.get("/api/v1/tasks", {"q": "release"})
    assert [t["title"] for t in r.json()["results"]] == ["Release notes"]


@pytest.mark.django_db
def test_an_anonymous_blank_search_is_still_a_401(anon_client):
    assert anon_client.get("/api/v1/tasks", {"q": ""}).status_code == 401


@pytest.mark.django_db
def test_a_blank_search_from_a_user_without_a_role_is_still_a_403(nobody_client):
    assert nobody_client.get("/api/v1/audit", {"actor": ""}).status_code == 403
