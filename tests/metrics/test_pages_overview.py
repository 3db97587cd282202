"""The overview page at /: KPI tiles, the charts fragment, the health summary."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from metrics import kpis
from metrics.pages import TILES
from tasks.models import Task, Worker
from tasks.states import TaskState
from tests.metrics.page_html import tag_count, texts_by

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}


def finished(state: str, *, ago_s: float = 60, run_s: float = 3) -> Task:
    end = timezone.now() - timedelta(seconds=ago_s)
    return Task.objects.create(
        title="t", spec={}, state=state, started_at=end - timedelta(seconds=run_s), finished_at=end
    )


def test_anonymous_is_sent_to_the_login_page(client):
    r = client.get("/")
    assert r.status_code == 302
    assert r["Location"] == "/login/?next=/"


def test_an_anonymous_htmx_request_is_told_where_to_sign_in(client):
    r = client.get("/?part=charts", **HTMX)
    assert r.status_code == 401
    assert r["HX-Redirect"].startswith("/login/?next=/")


def test_a_user_without_a_role_gets_403_and_no_figures(client, nobody):
    client.force_login(nobody)
    finished(TaskState.COMPLETED)
    for headers in ({}, HTMX):
        r = client.get("/", **headers)
        assert r.status_code == 403
        assert b"data-kpi" not in r.content
        assert b"<svg" not in r.content


def test_a_viewer_sees_every_tile_with_its_value(client, viewer):
    finished(TaskState.COMPLETED, run_s=2)
    finished(TaskState.FAILED)
    Task.objects.create(title="waiting", spec={})
    Worker.objects.create(
        name="w1", base_url="http://w1.local", health_status="healthy", health_checked_at=timezone.now()
    )
    client.force_login(viewer)

    r = client.get("/")
    assert r.status_code == 200
    html = r.content.decode()
    tiles = texts_by(html, "data-kpi")
    assert tiles == {
        "completed_per_minute": "0.2",
        "success_rate": "50.0 %",
        "p95_run_time_s": "2.0 s",
        "queue_depth": "1",
        "running": "0",
        "failed_last_hour": "1",
        "workers_healthy": "1",
        "workers_enabled": "1",
        "breakers_open": "0",
        "chat_sessions_active": "0",
    }
    assert set(tiles) == set(kpis.KPI_NAMES)  # every KPI has an element live.js can fill
    assert "workers_enabled" not in {t.name for t in TILES}  # the second half of the workers tile
    assert '<span data-kpi="workers_healthy">1</span> / <span data-kpi="workers_enabled">1</span>' in html
    assert tag_count(html, "h1") == 1


def test_the_page_subscribes_to_the_kpi_stream_and_refreshes_its_charts_on_snapshots(client, viewer):
    client.force_login(viewer)
    html = client.get("/").content.decode()
    assert '<div hidden data-stream="/api/v1/metrics/stream"></div>' in html
    assert 'hx-get="/?part=charts"' in html
    assert 'hx-trigger="agency-snapshot from:body throttle:10s"' in html
    assert html.count('role="img"') == 2


def test_the_page_shows_the_health_summary(client, viewer):
    client.force_login(viewer)
    badges = texts_by(client.get("/").content.decode(), "data-health")
    assert badges["database"] == "healthy"
    assert {"overall", "database", "channel_layer", "dispatcher", "workers", "keystore"} <= set(badges)
    assert badges["keystore"] == "healthy"


def test_the_charts_fragment_alone_answers_an_htmx_request(client, viewer):
    finished(TaskState.COMPLETED)
    finished(TaskState.FAILED)
    client.force_login(viewer)
    for r in (client.get("/", **HTMX), client.get("/?part=charts")):
        assert r.status_code == 200
        html = r.content.decode()
        assert html.lstrip().startswith('<div class="cols" data-part="charts">')
        assert "<html" not in html
        assert "data-kpi" not in html
        assert "Throughput over the last 60 minutes: 1 completed, 1 failed" in html
        assert "Run times of the 1 tasks completed in the last hour" in html
        assert html.count("<svg") == 2


def test_the_page_takes_a_fixed_number_of_queries(client, viewer, django_assert_num_queries):
    client.force_login(viewer)

    def rows(n: int) -> None:
        for i in range(n):
            finished(TaskState.COMPLETED if i % 3 else TaskState.FAILED, ago_s=30 + i * 50, run_s=i)
            Task.objects.create(title="waiting", spec={})
            Worker.objects.create(name=f"w{n}-{i}", base_url="http://w.local")

    # session, user, the user's groups; the snapshot's 5, throughput, histogram; health: SELECT 1,
    # dispatchers, workers
    rows(1)
    with django_assert_num_queries(14):
        assert client.get("/").status_code == 200
    rows(25)
    with django_assert_num_queries(14):
        assert client.get("/").status_code == 200


def test_the_charts_fragment_takes_a_fixed_number_of_queries(client, viewer, django_assert_num_queries):
    client.force_login(viewer)
    for i in range(30):
        finished(TaskState.COMPLETED, ago_s=i * 100, run_s=i)
    with django_assert_num_queries(5):  # session, user, groups, throughput, histogram
        assert client.get("/", **HTMX).status_code == 200
