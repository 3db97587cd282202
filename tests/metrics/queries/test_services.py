"""Saved queries as a service: roles, field errors, and every run recorded and audited."""

from __future__ import annotations

import pytest

from audit.models import AuditRecord
from config.errors import InvalidInput, PermissionDenied
from metrics.models import QueryRun, SavedQuery
from metrics.queries import services
from metrics.queries.errors import QueryRefused, QueryTimedOut
from tests.metrics.queries.test_readonly import readonly_role

pytestmark = pytest.mark.django_db(transaction=True)
__all__ = ["readonly_role"]  # a fixture: the read-only role on PostgreSQL


@pytest.fixture(autouse=True)
def _role(readonly_role) -> None:
    return None


def saved(admin_user, **overrides) -> SavedQuery:
    fields = {
        "name": "by state",
        "sql": "SELECT title FROM tasks_task WHERE state = :state ORDER BY title",
        "parameters": [{"name": "state", "type": "text", "default": "queued"}],
    } | overrides
    return services.query_create(actor=admin_user, **fields)


def test_an_admin_saves_a_query_and_it_is_audited(admin_user):
    query = saved(admin_user)
    record = AuditRecord.objects.get(action=services.QUERY_CREATE)
    assert (record.resource_id, record.data["name"]) == (str(query.pk), "by state")


def test_a_viewer_cannot_save_or_change_a_query(viewer, admin_user):
    with pytest.raises(PermissionDenied, match="admin role to save queries"):
        saved(viewer)
    query = saved(admin_user, shared=True)
    with pytest.raises(PermissionDenied):
        services.query_update(actor=viewer, query_id=query.pk, name="mine now")
    with pytest.raises(PermissionDenied):
        services.query_delete(actor=viewer, query_id=query.pk)
    assert SavedQuery.objects.get().name == "by state"


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"name": ""}, "name"),
        ({"sql": " "}, "sql"),
        ({"parameters": [{"name": "1bad", "type": "text"}]}, "parameters[0].name"),
        ({"parameters": [{"name": "n", "type": "uuid"}]}, "parameters[0].type"),
        ({"parameters": [{"name": "n", "type": "integer", "default": "x"}]}, "parameters[0].default"),
        ({"shared": "yes"}, "shared"),
    ],
)
def test_bad_fields_are_named_and_nothing_is_written(admin_user, overrides, field):
    with pytest.raises(InvalidInput) as caught:
        saved(admin_user, **overrides)
    assert field in caught.value.fields
    assert not SavedQuery.objects.exists()
    assert not AuditRecord.objects.filter(action=services.QUERY_CREATE).exists()


def test_a_viewer_runs_a_shared_query_with_typed_parameters_and_the_run_is_audited(viewer, admin_user, make_task):
    make_task(title="one")
    query = saved(admin_user, shared=True)
    page = services.query_run(actor=viewer, query_id=query.pk, params={"state": "queued"})
    assert page.rows == [["one"]]
    run = QueryRun.objects.get()
    assert (run.user, run.rows, run.outcome, run.parameters) == (viewer, 1, "ok", {"state": "queued"})
    record = AuditRecord.objects.get(action=services.QUERY_RUN)
    assert record.actor == f"user:{viewer.pk}"
    assert record.data | {"duration_ms": 0} == {
        "run": run.pk,
        "kind": "page",
        "parameters": {"state": "queued"},
        "duration_ms": 0,
        "rows": 1,
        "outcome": "ok",
        "error": "",
    }


def test_a_private_query_is_not_found_for_others(viewer, admin_user):
    query = saved(admin_user)
    with pytest.raises(services.QueryNotFound):
        services.query_run(actor=viewer, query_id=query.pk)


def test_a_refused_run_is_recorded_and_audited_then_raised(admin_user):
    query = saved(admin_user, name="sneaky", sql="DELETE FROM tasks_task", parameters=[])
    with pytest.raises(QueryRefused):
        services.query_run(actor=admin_user, query_id=query.pk)
    run = QueryRun.objects.get()
    assert run.outcome == "refused"
    assert run.error
    assert AuditRecord.objects.get(action=services.QUERY_RUN).data["outcome"] == "refused"


def test_a_timed_out_run_is_recorded(admin_user, settings):
    settings.QUERY_TIMEOUT_S = 0.3
    forever = "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT count(*) FROM r"
    query = saved(admin_user, name="forever", sql=forever, parameters=[])
    with pytest.raises(QueryTimedOut):
        services.query_run(actor=admin_user, query_id=query.pk)
    assert QueryRun.objects.get().outcome == "timeout"


@pytest.mark.parametrize(
    ("params", "field"),
    [({"state": ["queued"]}, "params.state"), ({"other": "x"}, "params.other"), ("state=queued", "params")],
)
def test_bad_parameters_are_named_and_no_run_is_recorded(admin_user, params, field):
    query = saved(admin_user)
    with pytest.raises(InvalidInput) as caught:
        services.query_run(actor=admin_user, query_id=query.pk, params=params)
    assert field in caught.value.fields
    assert not QueryRun.objects.exists()
