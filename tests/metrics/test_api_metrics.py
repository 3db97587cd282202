"""GET /api/v1/metrics: the KPI snapshot with throughput and run times, held to its schema."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import schemathesis
from django.utils import timezone

from metrics import kpis
from tasks.models import Task, Worker
from tasks.states import TaskState
from tests.schema_support import validate_response

pytestmark = pytest.mark.django_db

URL = "/api/v1/metrics"


@pytest.fixture
def schema(viewer_client) -> Any:
    return schemathesis.openapi.from_dict(viewer_client.get("/api/schema/", {"format": "json"}).json())


def conforms(schema: Any, response: Any) -> dict:
    """Validate a test response against what /api/schema/ documents for GET /api/v1/metrics."""
    validate_response(schema, URL, "GET", response)
    return response.json()


def finished(state: str, *, ago_s: float, run_s: float) -> Task:
    end = timezone.now() - timedelta(seconds=ago_s)
    return Task.objects.create(
        title="t", spec={}, state=state, started_at=end - timedelta(seconds=run_s), finished_at=end
    )


def test_anonymous_gets_401_as_json(anon_client, schema):
    r = anon_client.get(URL)
    assert r.status_code == 401
    assert conforms(schema, r)["code"] == "not_authenticated"


def test_a_user_without_a_role_gets_403(nobody_client, schema):
    r = nobody_client.get(URL)
    assert r.status_code == 403
    assert conforms(schema, r)["code"] == "permission_denied"


def test_a_viewer_reads_the_figures(viewer_client, schema):
    finished(TaskState.COMPLETED, ago_s=30, run_s=2)
    finished(TaskState.COMPLETED, ago_s=90, run_s=40)
    finished(TaskState.FAILED, ago_s=30, run_s=1)
    Task.objects.create(title="waiting", spec={})
    Worker.objects.create(
        name="w1", base_url="http://w1.local", health_status="healthy", health_checked_at=timezone.now()
    )

    r = viewer_client.get(URL)
    assert r.status_code == 200
    body = conforms(schema, r)
    assert body["kpis"] == {
        "completed_per_minute": pytest.approx(0.4),
        "success_rate": pytest.approx(2 / 3),
        "p95_run_time_s": pytest.approx(40.0),
        "queue_depth": 1,
        "running": 0,
        "failed_last_hour": 1,
        "workers_healthy": 1,
        "workers_enabled": 1,
        "breakers_open": 0,
        "chat_sessions_active": 0,
    }
    assert body["display"]["success_rate"] == "66.6 %"
    assert (body["display"]["workers_healthy"], body["display"]["workers_enabled"]) == ("1", "1")
    assert len(body["throughput"]) == 60
    assert sum(p["completed"] for p in body["throughput"]) == 2
    assert sum(p["failed"] for p in body["throughput"]) == 1
    assert [(b["bucket"], b["count"]) for b in body["run_time_histogram"]] == [
        ("< 1 s", 0),
        ("1-5 s", 1),
        ("5-30 s", 0),
        ("30 s-2 min", 1),
        ("2-10 min", 0),
        ("≥ 10 min", 0),
    ]


def test_the_unknowns_of_an_empty_system_are_null_and_conform(viewer_client, schema):
    body = conforms(schema, viewer_client.get(URL))
    assert (body["kpis"]["success_rate"], body["kpis"]["p95_run_time_s"]) == (None, None)
    assert (body["display"]["success_rate"], body["display"]["p95_run_time_s"]) == ("—", "—")
    assert body["run_time_histogram"][-1]["max_s"] is None


def test_it_answers_with_the_same_keys_as_the_sse_snapshot(viewer_client):
    body = viewer_client.get(URL).json()
    assert set(body["kpis"]) == set(body["display"]) == set(kpis.KPI_NAMES)
    assert set(body) == {"generated_at", "kpis", "display", "throughput", "run_time_histogram"}


def test_it_refuses_post_with_405(viewer_client, operator_client):
    for client in (viewer_client, operator_client):
        r = client.post(URL, {}, format="json")
        assert r.status_code == 405
        assert r.json()["code"] == "method_not_allowed"


def test_it_takes_a_fixed_number_of_queries(viewer_client, django_assert_num_queries):
    for i in range(20):
        finished(TaskState.COMPLETED if i % 4 else TaskState.FAILED, ago_s=i * 60, run_s=i)
    # token + user's groups, the snapshot's 5, throughput 1, histogram 1
    with django_assert_num_queries(9):
        assert viewer_client.get(URL).status_code == 200
