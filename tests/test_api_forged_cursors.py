"""Forged keyset cursors on the task, audit and waiver lists are a 400 naming ``cursor``, never a 500.

A cursor parses as JSON and each value as its field's type, yet can still overflow later: a
date at the calendar's edge with an offset overflows when the driver converts it to UTC, and an
integer past the column's range overflows SQLite's and psycopg's adapters. These tests forge
each kind, on each list, and check that the server still hands out and accepts its own cursors.
"""

from __future__ import annotations

import base64
import json
import uuid
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from django.utils import timezone

from audit.models import AuditRecord
from tasks.models import Gate, Waiver, WaiverReason, WaiverStatus

TASKS = "/api/v1/tasks"
AUDIT = "/api/v1/audit"
WAIVERS = "/api/v1/waivers"
LISTS = [TASKS, AUDIT, WAIVERS]
INVALID = {"cursor": ["Invalid cursor."]}


# The last key of each list's ordering: a UUID for tasks and waivers, the integer id for audit.
def last_key(url: str) -> Any:
    return 1 if url == AUDIT else str(uuid.uuid4())


def forge(*values: Any) -> str:
    raw = json.dumps(list(values)).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


EDGE_DATES = [
    "9999-12-31T23:59:59-05:00",  # year 10000 in UTC
    "0001-01-01T00:00:00+05:00",  # year 0 in UTC
    "9999-12-31 23:59:59.999999-00:01",
]


@pytest.fixture
def rows(make_task, operator) -> None:
    """One row in each list, so that every query really runs with the cursor."""
    task = make_task(title="Something to list")
    Waiver.objects.create(
        title="Skip placeholders",
        reason=WaiverReason.OTHER,
        gates=[Gate.PLACEHOLDERS],
        justification="A justification long enough.",
        expires_at=timezone.now() + timedelta(days=1),
        task=task,
        status=WaiverStatus.PENDING,
        requested_by=operator,
    )
    assert AuditRecord.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("url", LISTS)
@pytest.mark.parametrize("moment", EDGE_DATES)
def test_a_date_at_the_calendars_edge_with_an_offset_is_an_invalid_cursor(admin_client_api, rows, url, moment):
    r = admin_client_api.get(url, {"cursor": forge(moment, last_key(url))})
    assert r.status_code == 400, r.content
    assert r.json() == INVALID


@pytest.mark.django_db
@pytest.mark.parametrize("url", LISTS)
@pytest.mark.parametrize("moment", ["2024-01-01T00:00:00", "2024-01-01", "not a date", 20240101, None, True])
def test_a_date_that_the_server_never_encodes_is_an_invalid_cursor(admin_client_api, rows, url, moment):
    # A naive datetime, a bare date, a number, null (the column is NOT NULL) and a boolean.
    r = admin_client_api.get(url, {"cursor": forge(moment, last_key(url))})
    assert r.status_code == 400, r.content
    assert r.json() == INVALID


@pytest.mark.django_db
@pytest.mark.parametrize("value", [2**63, -(2**63) - 1, 2**70, 10**30, True, 1.5, "1"])
def test_an_audit_id_outside_a_64_bit_integer_or_not_an_integer_is_an_invalid_cursor(admin_client_api, rows, value):
    r = admin_client_api.get(AUDIT, {"cursor": forge("2024-01-01 00:00:00+00:00", value)})
    assert r.status_code == 400, r.content
    assert r.json() == INVALID


@pytest.mark.django_db
@pytest.mark.parametrize("priority", [10**30, 2**64, 32768, -1, False, "high"])
def test_a_priority_outside_its_column_or_not_an_integer_is_an_invalid_cursor(admin_client_api, rows, priority):
    cursor = forge(priority, "2024-01-01 00:00:00+00:00", str(uuid.uuid4()))
    r = admin_client_api.get(TASKS, {"ordering": "-priority", "cursor": cursor})
    assert r.status_code == 400, r.content
    assert r.json() == INVALID


@pytest.mark.django_db
@pytest.mark.parametrize("url", [TASKS, WAIVERS])
@pytest.mark.parametrize("key", ["not-a-uuid", 12, "0" * 33])
def test_a_key_that_is_not_a_uuid_is_an_invalid_cursor(admin_client_api, rows, url, key):
    r = admin_client_api.get(url, {"cursor": forge("2024-01-01 00:00:00+00:00", key)})
    assert r.status_code == 400, r.content
    assert r.json() == INVALID


@pytest.mark.django_db
@pytest.mark.parametrize("url", LISTS)
@pytest.mark.parametrize(
    "cursor",
    [
        "%%%",  # not base64
        base64.urlsafe_b64encode(b"\xff\xfe").decode(),  # not UTF-8
        base64.urlsafe_b64encode(b"[" * 100 + b"]" * 100).decode(),  # nested, wrong shape
        base64.urlsafe_b64encode(b"[1e400, 1]").decode(),  # infinity
        forge("2024-01-01 00:00:00+00:00"),  # too few values
    ],
)
def test_a_cursor_that_does_not_decode_to_the_sort_key_is_invalid(admin_client_api, rows, url, cursor):
    r = admin_client_api.get(url, {"cursor": cursor})
    assert r.status_code == 400, r.content
    assert r.json() == INVALID


@pytest.mark.django_db
@pytest.mark.parametrize("url", LISTS)
def test_a_cursor_at_the_calendars_edge_in_utc_is_valid_and_finds_nothing_beyond_it(admin_client_api, rows, url):
    # The range check must not refuse the extremes that do fit: they are just empty pages.
    key = 0 if url == AUDIT else "00000000-0000-0000-0000-000000000000"
    r = admin_client_api.get(url, {"cursor": forge("0001-01-01 00:00:00+00:00", key)})
    assert r.status_code == 200, r.content
    assert r.json() == {"results": [], "next": None}


@pytest.mark.django_db
@pytest.mark.parametrize(("url", "ordering"), [(TASKS, "-created_at"), (TASKS, "-priority"), (TASKS, "priority")])
def test_the_servers_own_cursors_still_page_through_the_tasks(admin_client_api, make_task, url, ordering):
    for i in range(5):
        make_task(title=f"Task {i}", priority=["low", "high", "critical"][i % 3])
    seen: list[str] = []
    params: dict[str, Any] = {"ordering": ordering, "page_size": 2}
    while True:
        r = admin_client_api.get(url, params)
        assert r.status_code == 200, r.content
        seen += [t["id"] for t in r.json()["results"]]
        if not r.json()["next"]:
            break
        params["cursor"] = parse_qs(urlparse(r.json()["next"]).query)["cursor"][0]
    assert len(seen) == len(set(seen)) == 5


@pytest.mark.django_db
def test_the_servers_own_cursors_still_page_through_the_audit_log(admin_client_api, make_task):
    for i in range(3):
        make_task(title=f"Task {i}")
    total = AuditRecord.objects.count()
    r = admin_client_api.get(AUDIT, {"page_size": 1})
    cursor = parse_qs(urlparse(r.json()["next"]).query)["cursor"][0]
    rest = admin_client_api.get(AUDIT, {"page_size": 500, "cursor": cursor})
    assert rest.status_code == 200
    assert len(rest.json()["results"]) == total - 1


@pytest.mark.django_db
@pytest.mark.parametrize(("url", "param"), [(TASKS, "created_after"), (TASKS, "created_before"), (AUDIT, "since")])
@pytest.mark.parametrize("moment", EDGE_DATES[:2])
def test_a_date_filter_at_the_calendars_edge_is_a_400_naming_it(admin_client_api, rows, url, param, moment):
    r = admin_client_api.get(url, {param: moment})
    assert r.status_code == 400, r.content
    assert set(r.json()) == {param}


@pytest.mark.django_db
@pytest.mark.parametrize("url", LISTS)
def test_an_anonymous_caller_with_a_forged_cursor_gets_401_before_any_decoding(anon_client, url):
    r = anon_client.get(url, {"cursor": forge(EDGE_DATES[0], last_key(url))})
    assert r.status_code == 401
    assert r.json()["code"] == "not_authenticated"


@pytest.mark.django_db
@pytest.mark.parametrize("url", LISTS)
def test_a_user_without_a_role_with_a_forged_cursor_gets_403(nobody_client, url):
    r = nobody_client.get(url, {"cursor": forge(EDGE_DATES[0], last_key(url))})
    assert r.status_code == 403
    assert r.json()["code"] == "permission_denied"
