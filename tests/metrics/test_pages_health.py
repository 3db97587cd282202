"""The health page at /health/: the components of /api/health in a table that polls itself."""

from __future__ import annotations

import pytest
from django.utils import timezone

from metrics import pages
from tasks.models import Worker
from tests.metrics.page_html import tag_count, texts_by

pytestmark = pytest.mark.django_db

URL = "/health/"
HTMX = {"HTTP_HX_REQUEST": "true"}


def healthy_worker(name: str) -> Worker:
    return Worker.objects.create(
        name=name,
        base_url=f"http://{name}.local",
        health_status="healthy",
        health_checked_at=timezone.now(),
        health_latency_ms=3.2,
        health_detail={"active_tasks": 1, "capacity": 4},
    )


def test_anonymous_is_sent_to_the_login_page(client):
    r = client.get(URL)
    assert r.status_code == 302
    assert r["Location"] == "/login/?next=/health/"


def test_a_user_without_a_role_gets_403(client, nobody):
    client.force_login(nobody)
    for headers in ({}, HTMX):
        r = client.get(URL, **headers)
        assert r.status_code == 403
        assert b"data-component" not in r.content


def test_a_viewer_reads_every_component_in_a_table(client, viewer):
    client.force_login(viewer)
    r = client.get(URL)
    assert r.status_code == 200
    html = r.content.decode()
    rows = texts_by(html, "data-component")
    assert set(rows) == {"database", "channel_layer", "websocket", "dispatcher", "workers", "keystore"}
    assert rows["database"].startswith("Database healthy")
    assert " ms " in rows["database"]  # its measured latency
    assert "vendor: " in rows["database"]
    # No dispatcher runs in the tests: the component says so in words.
    assert "degraded" in rows["dispatcher"]
    assert "no dispatcher has been seen" in rows["dispatcher"]
    assert rows["keystore"].startswith("Keystore healthy")
    assert "provider: file" in rows["keystore"]
    assert html.count('<th scope="col">') >= 4
    assert tag_count(html, "h1") == 1


def test_the_components_refresh_every_five_seconds(client, viewer):
    client.force_login(viewer)
    html = client.get(URL).content.decode()
    assert 'hx-get="/health/?part=components" hx-trigger="every 5s" hx-swap="innerHTML"' in html


def test_each_workers_latest_poll_is_listed(client, viewer):
    healthy_worker("local")
    Worker.objects.create(name="off", base_url="http://off.local", enabled=False)  # not polled, not listed
    client.force_login(viewer)
    rows = texts_by(client.get(URL).content.decode(), "data-worker")
    assert set(rows) == {"local"}
    assert rows["local"].startswith("local healthy closed 3.2 ms")
    assert "1 / 4" in rows["local"]


def test_an_error_is_shown_escaped(client, viewer, monkeypatch):
    report = {
        "status": "unhealthy",
        "version": "0.1.0",
        "uptime_s": 1.0,
        "components": {
            "database": {"status": "unhealthy", "error": "OperationalError: <script>alert(1)</script>", "latency_ms": 2}
        },
    }
    monkeypatch.setattr(pages, "system_health", lambda: report)
    client.force_login(viewer)
    html = client.get(URL).content.decode()
    assert "<script>alert(1)</script>" not in html
    assert "OperationalError: &lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert texts_by(html, "data-health")["overall"] == "unhealthy"


def test_an_htmx_request_gets_the_components_fragment_alone(client, viewer):
    client.force_login(viewer)
    for r in (client.get(URL, **HTMX), client.get(f"{URL}?part=components")):
        assert r.status_code == 200
        html = r.content.decode()
        assert html.lstrip().startswith('<div data-part="health-components">')
        assert "<html" not in html
        assert "database" in texts_by(html, "data-component")


def test_the_summary_fragment_has_one_badge_a_component(client, viewer):
    client.force_login(viewer)
    html = client.get(f"{URL}?part=summary").content.decode()
    assert html.lstrip().startswith('<dl class="facts" data-part="health-summary">')
    assert set(texts_by(html, "data-health")) == {
        "overall",
        "database",
        "channel_layer",
        "websocket",
        "dispatcher",
        "workers",
        "keystore",
    }


def test_the_page_takes_a_fixed_number_of_queries(client, viewer, django_assert_num_queries):
    client.force_login(viewer)
    healthy_worker("w0")
    # session, user, groups; SELECT 1, dispatchers, workers, stored secrets (keystore)
    with django_assert_num_queries(7):
        client.get(URL)
    for i in range(1, 20):
        healthy_worker(f"w{i}")
    with django_assert_num_queries(7):
        client.get(URL)
