"""GET /api/v1/audit: access, filters, strict query parameters, keyset pagination, indexes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlparse

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from audit.models import AuditRecord
from audit.services import AuditEntry, audit_records
from tests.audit.conftest import write_at, write_records

URL = "/api/v1/audit"
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def seqs(response) -> list[int]:
    assert response.status_code == 200, response.content
    return [row["seq"] for row in response.json()["results"]]


def walk(client, query: str) -> list[int]:
    """Follow ``next`` links from the first page to the last, collecting seqs."""
    seen: list[int] = []
    url: str | None = f"{URL}?{query}"
    pages = 0
    while url:
        r = client.get(url)
        seen += seqs(r)
        url = r.json()["next"]
        pages += 1
        assert pages < 50, "pagination does not terminate"
    return seen


@pytest.fixture
def log(db) -> list[AuditRecord]:
    """Eight records over three hours, with ties in created_at, two actors, two resources, four actions."""
    spec = [
        (T0, "user:1", "task.create", "task", "a"),
        (T0, "user:1", "task.create", "task", "b"),
        (T0 + timedelta(hours=1), "dispatcher:d1", "task.start", "task", "a"),
        (T0 + timedelta(hours=1), "dispatcher:d1", "task.start", "task", "b"),
        (T0 + timedelta(hours=1), "dispatcher:d1", "task.complete", "task", "a"),
        (T0 + timedelta(hours=2), "user:2", "task.cancel", "task", "b"),
        (T0 + timedelta(hours=2), "system", "worker.register", "worker", "alpha"),
        (T0 + timedelta(hours=3), "user:2", "task.cancel", "task", "a"),
    ]
    return [
        write_at(when, actor=actor, action=action, resource_type=rtype, resource_id=rid, reason=f"r{i}")
        for i, (when, actor, action, rtype, rid) in enumerate(spec)
    ]


def newest_first(records: list[AuditRecord]) -> list[int]:
    return [r.seq for r in sorted(records, key=lambda r: (r.created_at, r.id), reverse=True)]


# --- access ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_it_requires_authentication(anon_client, log):
    r = anon_client.get(URL)
    assert r.status_code == 401
    assert "results" not in r.json()


@pytest.mark.django_db
def test_it_rejects_a_user_without_a_role(nobody_client, log):
    r = nobody_client.get(URL)
    assert r.status_code == 403
    assert "results" not in r.json()


@pytest.mark.django_db
def test_viewers_operators_and_admins_read_it(viewer_client, operator_client, admin_client_api, log):
    for client in (viewer_client, operator_client, admin_client_api):
        assert seqs(client.get(URL)) == newest_first(log)


@pytest.mark.django_db
def test_it_accepts_session_authentication(client, viewer, log):
    client.force_login(viewer)
    assert seqs(client.get(URL)) == newest_first(log)


@pytest.mark.django_db
@pytest.mark.parametrize("method", ["post", "put", "patch", "delete"])
def test_it_rejects_other_methods_and_writes_nothing(admin_client_api, log, method):
    r = getattr(admin_client_api, method)(URL, {"actor": "user:9", "action": "forged"}, format="json")
    assert r.status_code == 405
    assert AuditRecord.objects.count() == len(log)
    assert not AuditRecord.objects.filter(action="forged").exists()


# --- the response ------------------------------------------------------------------------


@pytest.mark.django_db
def test_it_shows_every_field_with_the_hash_chain(viewer_client, log):
    row = viewer_client.get(URL, {"page_size": 1}).json()["results"][0]
    last = log[-1]
    assert row == {
        "id": last.id,
        "seq": 8,
        "created_at": "2025-03-01T15:00:00Z",
        "actor": "user:2",
        "action": "task.cancel",
        "resource_type": "task",
        "resource_id": "a",
        "data": {},
        "reason": "r7",
        "prev_hash": log[-2].hash,
        "hash": last.hash,
    }


@pytest.mark.django_db
def test_it_returns_an_empty_page(viewer_client):
    r = viewer_client.get(URL)
    assert r.status_code == 200
    assert r.json() == {"results": [], "next": None}


@pytest.mark.django_db
def test_it_renders_the_browsable_api(viewer_client, log):
    r = viewer_client.get(URL, HTTP_ACCEPT="text/html")
    assert r.status_code == 200
    assert "worker.register" in r.content.decode()


# --- filters -----------------------------------------------------------------------------


def pick(log: list[AuditRecord], **match: str) -> list[int]:
    return newest_first([r for r in log if all(getattr(r, k) == v for k, v in match.items())])


@pytest.mark.django_db
def test_it_filters_by_one_action(viewer_client, log):
    assert seqs(viewer_client.get(URL, {"action": "task.start"})) == pick(log, action="task.start")
    assert seqs(viewer_client.get(URL, {"action": "task"})) == []  # exact, not a prefix


@pytest.mark.django_db
@pytest.mark.parametrize(
    "query",
    [
        "action=task.cancel,worker.register",
        "action=task.cancel&action=worker.register",
        "action=task.cancel, worker.register,",
    ],
)
def test_it_filters_by_several_actions(viewer_client, log, query):
    expected = newest_first([r for r in log if r.action in ("task.cancel", "worker.register")])
    assert seqs(viewer_client.get(f"{URL}?{query}")) == expected


@pytest.mark.django_db
def test_it_filters_by_actor(viewer_client, log):
    assert seqs(viewer_client.get(URL, {"actor": "dispatcher:d1"})) == pick(log, actor="dispatcher:d1")
    assert seqs(viewer_client.get(URL, {"actor": "user"})) == []


@pytest.mark.django_db
def test_it_filters_by_resource(viewer_client, log):
    assert seqs(viewer_client.get(URL, {"resource_type": "task", "resource_id": "a"})) == pick(
        log, resource_type="task", resource_id="a"
    )
    assert seqs(viewer_client.get(URL, {"resource_type": "worker"})) == pick(log, resource_type="worker")
    assert seqs(viewer_client.get(URL, {"resource_type": "worker", "resource_id": "a"})) == []


@pytest.mark.django_db
def test_it_filters_by_time_since_inclusive_until_exclusive(viewer_client, log):
    since, until = (T0 + timedelta(hours=1)).isoformat(), (T0 + timedelta(hours=2)).isoformat()
    in_window = newest_first([r for r in log if T0 + timedelta(hours=1) <= r.created_at < T0 + timedelta(hours=2)])
    assert seqs(viewer_client.get(URL, {"since": since, "until": until})) == in_window == [5, 4, 3]
    assert seqs(viewer_client.get(URL, {"since": (T0 + timedelta(hours=3)).isoformat()})) == [8]
    assert seqs(viewer_client.get(URL, {"until": (T0 + timedelta(hours=1)).isoformat()})) == [2, 1]
    assert seqs(viewer_client.get(URL, {"since": "2025-03-01", "until": "2025-03-02"})) == newest_first(log)


@pytest.mark.django_db
def test_it_combines_filters(viewer_client, log):
    r = viewer_client.get(
        URL, {"action": "task.cancel,task.start", "resource_type": "task", "resource_id": "b", "actor": "user:2"}
    )
    assert seqs(r) == [6]


# --- bad input ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_it_names_unknown_query_parameters(viewer_client):
    r = viewer_client.get(URL, {"resource": "task", "acter": "x"})
    assert r.status_code == 400
    assert r.json() == {"acter": ["Unknown field."], "resource": ["Unknown field."]}


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"since": "yesterday"}, "since"),
        ({"until": "2025-13-01"}, "until"),
        ({"since": "2025-03-02", "until": "2025-03-01"}, "until"),
        ({"since": "2025-03-01", "until": "2025-03-01"}, "until"),
        ({"resource_id": "a"}, "resource_type"),
        ({"actor": "x" * 201}, "actor"),
        ({"action": "x" * 101}, "action"),
        ({"actor": ["a", "b"]}, "actor"),
        ({"page_size": "0"}, "page_size"),
        ({"page_size": "501"}, "page_size"),
        ({"page_size": "ten"}, "page_size"),
        ({"cursor": "garbage!"}, "cursor"),
        ({"cursor": "WzFd"}, "cursor"),  # base64 of [1]: wrong length
    ],
)
def test_it_names_the_field_at_fault(viewer_client, log, params, field):
    r = viewer_client.get(URL, params)
    assert r.status_code == 400
    assert set(r.json()) == {field}


@pytest.mark.django_db
def test_it_accepts_the_format_parameter(viewer_client, log):
    assert seqs(viewer_client.get(URL, {"format": "json"})) == newest_first(log)


# --- pagination --------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("page_size", [1, 2, 3, 8])
def test_it_walks_every_page_once_in_order(viewer_client, log, page_size):
    assert walk(viewer_client, f"page_size={page_size}") == newest_first(log)


@pytest.mark.django_db
def test_it_keeps_filters_across_pages(viewer_client, log):
    assert walk(viewer_client, "resource_type=task&resource_id=a&page_size=1") == pick(
        log, resource_type="task", resource_id="a"
    )
    first = viewer_client.get(URL, {"action": "task.start,task.create", "page_size": 2}).json()["next"]
    query = parse_qs(urlparse(first).query)
    assert query["action"] == ["task.start,task.create"]
    assert query["page_size"] == ["2"]
    assert query["cursor"]


@pytest.mark.django_db
def test_it_does_not_repeat_a_record_written_while_paging(viewer_client, log):
    r = viewer_client.get(URL, {"page_size": 3})
    first = seqs(r)
    write_records(1)
    rest = walk(viewer_client, urlparse(r.json()["next"]).query)
    assert first + rest == newest_first(log)


@pytest.mark.django_db
def test_it_defaults_to_pages_of_fifty(viewer_client):
    write_records(51)
    r = viewer_client.get(URL)
    assert seqs(r) == list(range(51, 1, -1))
    assert r.json()["next"]


@pytest.mark.django_db
def test_it_lists_in_a_constant_number_of_queries(viewer_client, django_assert_max_num_queries):
    write_records(3)
    viewer_client.get(URL)  # warm the per-process caches

    def count() -> int:
        with CaptureQueriesContext(connection) as ctx:
            assert viewer_client.get(URL, {"page_size": 50}).status_code == 200
        return len(ctx.captured_queries)

    few = count()
    write_records(30, start=3)
    assert count() == few
    # Token + user, the viewer's groups, one page of records.
    with django_assert_max_num_queries(3):
        viewer_client.get(URL, {"page_size": 50})


# --- indexes -----------------------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db
@pytest.mark.parametrize(
    ("params", "index"),
    [
        ({"action": "task.start"}, "audit_action_time_idx"),
        ({"actor": "user:2"}, "audit_actor_time_idx"),
        ({"resource_type": "task", "resource_id": "a"}, "audit_resource_time_idx"),
        ({"since": T0.isoformat(), "until": (T0 + timedelta(hours=2)).isoformat()}, "audit_time_idx"),
        ({}, "audit_time_idx"),
    ],
)
def test_each_filter_is_one_index_scan_in_keyset_order(viewer_client, log, params, index):
    """No sort node: the index delivers the rows in page order, at any cursor depth."""
    entries = [
        AuditEntry(actor=f"dispatcher:{i % 7}", action=f"bulk.{i % 5}", resource_type="task", resource_id=str(i))
        for i in range(5000)
    ]
    with transaction.atomic():
        audit_records(entries)
    with connection.cursor() as c:
        c.execute("ANALYZE audit_auditrecord")
    first = viewer_client.get(URL, {**params, "page_size": 1}).json()
    cursor = parse_qs(urlparse(first["next"]).query)["cursor"][0] if first["next"] else None
    with CaptureQueriesContext(connection) as ctx:
        viewer_client.get(URL, {**params, "page_size": 1, **({"cursor": cursor} if cursor else {})})
    page_sql = next(q["sql"] for q in ctx.captured_queries if 'FROM "audit_auditrecord"' in q["sql"])
    with connection.cursor() as c:
        c.execute(f"EXPLAIN {page_sql}")
        plan = "\n".join(row[0] for row in c.fetchall())
    assert f"Index Scan using {index}" in plan, plan
    # Filters and cursor are index bounds: no row is read only to be thrown away, none is sorted.
    assert "Filter" not in plan, plan
    assert "Sort" not in plan, plan
