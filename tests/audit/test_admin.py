"""The audit log in the admin: read-only with its hash chain, and fast on a big table."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from audit.admin import AuditRecordAdmin
from audit.models import AuditRecord
from audit.selectors import distinct_values
from config.admin_paginator import EstimatedCountPaginator
from tests.audit.conftest import write_records

CHANGELIST = reverse("admin:audit_auditrecord_changelist")


def console(client: Client, user: User) -> Client:
    user.is_staff = True
    user.save(update_fields=["is_staff"])
    client.force_login(user)
    return client


def listed(response) -> list[int]:
    assert response.status_code == 200
    return [r.seq for r in response.context["cl"].result_list]


@pytest.fixture
def mixed(db) -> None:
    write_records(3, action="task.create")
    write_records(2, action="task.cancel", actor="user:2", resource_type="worker")
    write_records(1, action="worker.register", actor="system", resource_id="alpha")


@pytest.mark.django_db
def test_viewer_sees_the_changelist_with_seq(client, viewer, mixed):
    response = console(client, viewer).get(CHANGELIST)
    assert listed(response) == [6, 5, 4, 3, 2, 1]
    assert "column-seq" in response.text


@pytest.mark.django_db
def test_the_detail_shows_the_hash_chain_read_only(client, viewer, mixed):
    record = AuditRecord.objects.get(seq=2)
    response = console(client, viewer).get(reverse("admin:audit_auditrecord_change", args=[record.pk]))
    assert response.status_code == 200
    assert "Hash chain" in response.text
    assert record.hash in response.text
    assert record.prev_hash in response.text
    assert 'name="_save"' not in response.text
    assert 'name="hash"' not in response.text  # shown, not editable


@pytest.mark.django_db
def test_a_superuser_can_neither_add_change_nor_delete(client, mixed):
    superuser = User.objects.create_superuser("root", password="pw-root")
    client.force_login(superuser)
    record = AuditRecord.objects.get(seq=1)
    assert client.get(reverse("admin:audit_auditrecord_add")).status_code == 403
    change = reverse("admin:audit_auditrecord_change", args=[record.pk])
    assert client.post(change, {"actor": "user:0", "action": "forged"}).status_code == 403
    assert client.post(reverse("admin:audit_auditrecord_delete", args=[record.pk]), {"post": "yes"}).status_code == 403
    assert "delete_selected" not in client.get(CHANGELIST).text
    assert AuditRecord.objects.get(seq=1).hash == record.hash


@pytest.mark.django_db
def test_the_filters_offer_the_values_present(client, viewer, mixed):
    response = console(client, viewer).get(CHANGELIST)
    choices = {
        spec.title: [c["display"] for c in spec.choices(response.context["cl"])]
        for spec in response.context["cl"].filter_specs
    }
    assert choices["action"] == ["All", "task.cancel", "task.create", "worker.register"]
    assert choices["resource type"] == ["All", "task", "worker"]
    assert listed(client.get(CHANGELIST, {"action": "task.cancel"})) == [5, 4]
    assert listed(client.get(CHANGELIST, {"resource_type": "worker"})) == [5, 4]


@pytest.mark.django_db
def test_distinct_values_skip_through_the_index(mixed):
    assert distinct_values("action") == ["task.cancel", "task.create", "worker.register"]
    assert distinct_values("action", limit=2) == ["task.cancel", "task.create"]
    assert distinct_values("resource_type") == ["task", "worker"]


@pytest.mark.django_db
def test_distinct_values_of_an_empty_log():
    assert distinct_values("action") == []


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("term", "expected"),
    [
        ("user:2", [5, 4]),
        ("worker.register", [6]),
        ("alpha", [6]),
        ("t1", [5, 2]),
        ("task", []),
        ("", [6, 5, 4, 3, 2, 1]),
    ],
)
def test_search_matches_actor_action_or_resource_id_exactly(client, viewer, mixed, term, expected):
    assert listed(console(client, viewer).get(CHANGELIST, {"q": term})) == expected


@pytest.mark.django_db
def test_the_changelist_costs_the_same_whatever_the_size(client, viewer, mixed):
    console(client, viewer).get(CHANGELIST)

    def count() -> int:
        with CaptureQueriesContext(connection) as ctx:
            assert client.get(CHANGELIST).status_code == 200
        return len(ctx.captured_queries)

    few = count()
    write_records(40, start=10)
    assert count() == few


def test_the_changelist_estimates_its_count_and_never_counts_twice():
    assert AuditRecordAdmin.paginator is EstimatedCountPaginator
    assert AuditRecordAdmin.show_full_result_count is False


@pytest.mark.postgres
@pytest.mark.django_db
def test_distinct_values_are_index_probes_on_postgres(mixed):
    with connection.cursor() as c:
        c.execute("SET LOCAL enable_seqscan = off")
        c.execute("EXPLAIN SELECT (SELECT MIN(action) FROM audit_auditrecord WHERE action > 'task.cancel')")
        plan = "\n".join(row[0] for row in c.fetchall())
    assert "audit_action_time_idx" in plan, plan
