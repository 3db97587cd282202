"""export_audit: JSON lines in chain order, a time window, stdout or a file, clear errors."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from audit.chain import record_hash
from audit.models import AuditRecord
from tests.audit.conftest import write_at

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def dated(db) -> list[AuditRecord]:
    """Five records an hour apart from T0."""
    return [
        write_at(T0 + timedelta(hours=i), resource_id=f"t{i}", data={"n": i, "title": f"task {i}"}) for i in range(5)
    ]


def export(*args: str) -> list[dict[str, Any]]:
    out = StringIO()
    call_command("export_audit", *args, stdout=out)
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_it_writes_one_json_line_per_record_in_chain_order(dated):
    lines = export("--since", "2025-03-01")
    assert [line["seq"] for line in lines] == [1, 2, 3, 4, 5]
    first = lines[0]
    assert set(first) == {
        "id",
        "seq",
        "created_at",
        "actor",
        "action",
        "resource_type",
        "resource_id",
        "data",
        "reason",
        "prev_hash",
        "hash",
    }
    assert first["created_at"] == "2025-03-01T12:00:00.000000+00:00"
    assert (first["actor"], first["data"], first["prev_hash"]) == ("user:1", {"n": 0, "title": "task 0"}, "0" * 64)
    assert [line["prev_hash"] for line in lines[1:]] == [line["hash"] for line in lines[:-1]]


def test_each_line_holds_what_its_hash_needs(dated):
    for line in export("--since", "2025-01-01"):
        fields = {k: line[k] for k in ("seq", "actor", "action", "resource_type", "resource_id", "data", "reason")}
        created = datetime.fromisoformat(line["created_at"])
        assert record_hash(**fields, created_at=created, prev_hash=line["prev_hash"]) == line["hash"]


@pytest.mark.parametrize(
    ("args", "seqs"),
    [
        (["--since", "2025-03-01T14:00:00+00:00"], [3, 4, 5]),
        (["--since", "2025-03-01T14:00:00"], [3, 4, 5]),  # no offset: UTC
        (["--since", "2025-03-01T15:00:00+01:00"], [3, 4, 5]),
        (["--since", "2025-03-01T13:00:00Z", "--until", "2025-03-01T15:00:00Z"], [2, 3]),
        (["--since", "2025-03-02"], []),
        (["--since", "2025-02-28", "--until", "2025-03-01"], []),
    ],
)
def test_it_exports_a_time_window_since_inclusive_until_exclusive(dated, args, seqs):
    assert [line["seq"] for line in export(*args)] == seqs


def test_it_writes_to_a_file(dated, tmp_path):
    target = tmp_path / "audit.jsonl"
    err = StringIO()
    out = StringIO()
    call_command("export_audit", "--since", "2025-03-01", "--output", str(target), stdout=out, stderr=err)
    assert out.getvalue() == ""
    assert err.getvalue().strip() == f"exported 5 audit records to {target}"
    lines = target.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["seq"] for line in lines] == [1, 2, 3, 4, 5]


@pytest.mark.django_db
def test_it_keeps_unicode_readable(records):
    records(1, reason="café ☃")
    (line,) = export("--since", "2000-01-01")
    assert line["reason"] == "café ☃"


@pytest.mark.django_db
@pytest.mark.parametrize("value", ["yesterday", "2025-13-01", "01/03/2025", ""])
def test_it_names_a_bad_since(value):
    with pytest.raises(CommandError, match=r"argument --since: .* is not an ISO 8601 date or datetime"):
        call_command("export_audit", "--since", value)


@pytest.mark.django_db
def test_it_requires_since():
    with pytest.raises(CommandError, match="the following arguments are required: --since"):
        call_command("export_audit")


@pytest.mark.django_db
def test_it_refuses_an_until_before_since():
    with pytest.raises(CommandError, match="--until must be later than --since"):
        call_command("export_audit", "--since", "2025-03-02", "--until", "2025-03-01")


@pytest.mark.django_db
def test_it_names_an_unwritable_output(tmp_path):
    with pytest.raises(CommandError, match="cannot write"):
        call_command("export_audit", "--since", "2025-03-01", "--output", str(tmp_path / "missing" / "a.jsonl"))


@pytest.mark.django_db
def test_it_streams_in_chunks(records, django_assert_max_num_queries):
    records(25)
    with django_assert_max_num_queries(1):
        # one query on SQLite (chunked fetches of one cursor); PostgreSQL uses a server-side cursor
        assert len(export("--since", "2000-01-01", "--chunk-size", "10")) == 25
