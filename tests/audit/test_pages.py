"""/audit/: the audit API's search as a page; each record links to its resource; bad filters named."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from audit.models import AuditRecord
from tests.audit.conftest import write_at, write_records

pytestmark = pytest.mark.django_db

URL = "/audit/"


def client_for(user: Any) -> Client:
    client = Client()
    if user is not None:
        client.force_login(user)
    return client


def rows(html: str) -> list[str]:
    return re.findall(r"<tr data-audit-seq=.*?</tr>", html, re.S)


def resources(html: str) -> list[str]:
    return re.findall(r'<tr data-audit-seq="\d+" data-resource="[^:]*:([^"]*)">', html)


def field_errors(html: str) -> dict[str, str]:
    return dict(re.findall(r'<span class="field-error" id="[^"]+" data-field="([^"]+)">(.*?)</span>', html, re.S))


def input_value(html: str, name: str) -> str:
    tag = re.search(rf'<input[^>]*name="{name}"[^>]*>', html).group(0)
    return re.search(r'value="([^"]*)"', tag).group(1)


# --- who may look ---------------------------------------------------------------------------


def test_anonymous_is_sent_to_the_login_page():
    r = client_for(None).get(URL, {"action": "task.cancel"})
    assert r.status_code == 302
    assert r["Location"].startswith("/login/?next=/audit/")


def test_a_user_without_a_role_is_refused(nobody):
    write_records(1)
    r = client_for(nobody).get(URL)
    assert r.status_code == 403
    assert "task.create" not in r.content.decode()


def test_a_viewer_sees_the_records_newest_first(viewer):
    write_records(3, reason="because")
    html = client_for(viewer).get(URL).content.decode()
    found = rows(html)
    assert len(found) == 3
    assert "t2" in found[0]
    assert "t0" in found[2]
    assert "because" in found[0]
    assert "task.create" in found[0]
    assert "n=2, title=task 2" in found[0]  # the data summary


def test_a_users_name_is_shown_beside_its_actor(viewer, operator):
    write_records(1, actor=f"user:{operator.pk}")
    write_records(1, actor="dispatcher:d1", start=1)
    html = client_for(viewer).get(URL).content.decode()
    assert f'otto <span class="muted">(user:{operator.pk})</span>' in html
    assert "dispatcher:d1" in html


def test_it_has_no_controls(viewer):
    write_records(1)
    html = client_for(viewer).get(URL).content.decode()
    assert 'method="post"' not in html.split('<main id="main">', 1)[1]


# --- links to resources -----------------------------------------------------------------------


def test_each_record_links_to_its_resource(viewer):
    task_id, waiver_id = uuid.uuid4(), uuid.uuid4()
    write_records(1, resource_type="task", resource_id=str(task_id))
    write_records(1, resource_type="worker", resource_id="builder", action="worker.disable")
    write_records(1, resource_type="waiver", resource_id=str(waiver_id), action="waiver.approve")
    write_records(1, resource_type="query", resource_id="q7", action="query.run")
    write_records(1, resource_type="task", resource_id="not-a-uuid", start=5)
    html = client_for(viewer).get(URL).content.decode()
    links = re.findall(r'<a href="([^"]+)" data-resource-link>', html)
    assert links == [f"/api/v1/waivers/{waiver_id}", "/workers/#worker-builder", f"/tasks/{task_id}/"]
    assert "query q7" in html


def test_staff_are_sent_to_the_admin_page_of_a_waiver(admin_user):
    admin_user.is_staff = True
    admin_user.save()
    waiver_id = uuid.uuid4()
    write_records(1, resource_type="waiver", resource_id=str(waiver_id), action="waiver.approve")
    html = client_for(admin_user).get(URL).content.decode()
    assert f'href="/admin/tasks/waiver/{waiver_id}/change/" data-resource-link' in html


def test_a_resource_has_a_link_to_its_whole_history(viewer):
    write_records(1, resource_type="worker", resource_id="builder")
    html = client_for(viewer).get(URL).content.decode()
    assert 'href="?resource_type=worker&amp;resource_id=builder"' in html


# --- the filters --------------------------------------------------------------------------------


def test_the_filters_are_the_apis(viewer, operator):
    write_records(2)
    write_records(1, action="task.cancel", actor=f"user:{operator.pk}", resource_id="t9", start=9)
    write_records(1, action="worker.disable", resource_type="worker", resource_id="builder")
    client = client_for(viewer)
    assert len(rows(client.get(URL, {"action": "task.cancel"}).content.decode())) == 1
    assert len(rows(client.get(URL, {"action": "task.cancel,worker.disable"}).content.decode())) == 2
    assert len(rows(client.get(URL, {"actor": f"user:{operator.pk}"}).content.decode())) == 1
    assert len(rows(client.get(URL, {"resource_type": "task"}).content.decode())) == 3
    html = client.get(URL, {"resource_type": "task", "resource_id": "t1"}).content.decode()
    assert len(rows(html)) == 1
    assert "t1" in rows(html)[0]


def test_the_time_range_is_inclusive_then_exclusive(viewer):
    base = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
    for hours in range(4):
        write_at(base + timedelta(hours=hours), resource_id=f"h{hours}")
    html = client_for(viewer).get(URL, {"since": "2025-03-01T13:00Z", "until": "2025-03-01T15:00Z"}).content.decode()
    found = rows(html)
    assert len(found) == 2
    assert "h2" in found[0]
    assert "h1" in found[1]


def test_the_filters_stay_in_the_form(viewer):
    query = {
        "action": "task.cancel",
        "actor": "user:3",
        "resource_type": "task",
        "resource_id": "t1",
        "since": "2025-03-01T13:00Z",
    }
    html = client_for(viewer).get(URL, query).content.decode()
    for name, value in query.items():
        assert input_value(html, name) == value


def test_blank_filters_are_no_filters(viewer):
    write_records(2)
    r = client_for(viewer).get(URL, {"action": "", "actor": "", "since": "", "until": "", "resource_type": ""})
    assert r.status_code == 200
    assert len(rows(r.content.decode())) == 2


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"since": "yesterday"}, "since"),
        ({"until": "2025-13-01"}, "until"),
        ({"resource_id": "t1"}, "resource_type"),
        ({"since": "2025-03-02T00:00Z", "until": "2025-03-01T00:00Z"}, "until"),
        ({"actor": "x" * 201}, "actor"),
    ],
)
def test_a_bad_filter_is_a_400_beside_its_field(viewer, query, field):
    write_records(1)
    r = client_for(viewer).get(URL, query)
    assert r.status_code == 400
    html = r.content.decode()
    assert set(field_errors(html)) == {field}
    assert re.search(rf'<input[^>]*name="{field}"[^>]*aria-invalid="true"', html)
    assert rows(html) == []


@pytest.mark.parametrize(
    ("query", "name"), [({"cursor": "%%%"}, "cursor"), ({"page_size": "0"}, "page_size"), ({"stat": "x"}, "stat")]
)
def test_a_bad_parameter_without_a_field_is_a_400_that_names_it(viewer, query, name):
    write_records(1)
    r = client_for(viewer).get(URL, query)
    assert r.status_code == 400
    html = r.content.decode()
    assert re.search(rf'<li data-field="{name}"><strong>{name}</strong>', html)


def test_the_page_and_the_api_refuse_the_same_queries(viewer, viewer_client):
    for query in ({"since": "yesterday"}, {"resource_id": "t1"}, {"stat": "x"}, {"cursor": "%%%"}):
        page = client_for(viewer).get(URL, query)
        api = viewer_client.get("/api/v1/audit", query)
        assert (page.status_code, api.status_code) == (400, 400), query
        assert set(api.json()) <= set(field_errors(page.content.decode())) | set(
            re.findall(r'<li data-field="([^"]+)">', page.content.decode())
        )


# --- pages ----------------------------------------------------------------------------------------


def test_older_records_are_a_cursor_away_with_the_filters_kept(viewer):
    write_records(5)
    write_records(2, action="task.cancel", start=10)
    client = client_for(viewer)
    html = client.get(URL, {"action": "task.create", "page_size": "2"}).content.decode()
    seen = resources(html)
    assert seen == ["t4", "t3"]
    while (following := re.search(r'<a href="(\?[^"]+)" rel="next">', html)) is not None:
        link = following.group(1).replace("&amp;", "&")
        assert "action=task.create" in link
        assert "page_size=2" in link
        html = client.get(URL + link).content.decode()
        assert 'href="?action=task.create&amp;page_size=2">Newest</a>' in html
        seen += resources(html)
    assert seen == ["t4", "t3", "t2", "t1", "t0"]


def test_a_search_from_the_form_keeps_the_page_size(viewer):
    html = client_for(viewer).get(URL, {"page_size": "20"}).content.decode()
    assert '<input type="hidden" name="page_size" value="20">' in html


def test_it_points_to_the_same_search_in_the_api(viewer):
    html = client_for(viewer).get(URL, {"action": "task.cancel"}).content.decode()
    assert 'href="/api/v1/audit?action=task.cancel"' in html


def test_the_page_costs_the_same_queries_for_any_number_of_records(viewer, operator, admin_user):
    client = client_for(viewer)
    write_records(2, actor=f"user:{operator.pk}")
    client.get(URL)
    with CaptureQueriesContext(connection) as few:
        client.get(URL)
    # The session, its user, the user's roles; the page of records, its actors' names, the two choice lists.
    assert len(few) == 7, [q["sql"][:80] for q in few]
    write_records(40, actor=f"user:{admin_user.pk}", start=2)
    write_records(10, actor="system", start=42)
    assert AuditRecord.objects.count() == 52
    with CaptureQueriesContext(connection) as many:
        html = client.get(URL).content.decode()
    assert len(many) == len(few)
    assert len(rows(html)) == 50
