"""/workers/: the fleet's health, load and breakers for every role; enable, disable and register for admins."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from audit.models import AuditRecord
from security.principals import SYSTEM, Principal
from tasks import workers
from tasks.dispatch import claims, reports
from tasks.models import Worker
from tasks.pages import workers as page

pytestmark = pytest.mark.django_db

URL = "/workers/"
REGISTER = "/workers/register/"
TOKEN = "page-secret-token-0123"
DISPATCHER = Principal.dispatcher("workers-page-tests")


def client_for(user: Any) -> Client:
    client = Client()
    if user is not None:
        client.force_login(user)
    return client


@pytest.fixture
def clients(viewer, operator, admin_user, nobody) -> dict[str, Client]:
    return {
        "anonymous": client_for(None),
        "nobody": client_for(nobody),
        "viewer": client_for(viewer),
        "operator": client_for(operator),
        "admin": client_for(admin_user),
    }


@pytest.fixture
def builder() -> Worker:
    return workers.worker_register(
        actor=SYSTEM,
        name="builder",
        base_url="http://127.0.0.1:9100",
        capabilities=["python"],
        max_concurrency=2,
        token=TOKEN,
    )


def snapshot() -> tuple[list[dict[str, Any]], int]:
    """Every worker column and the audit count: what "nothing was written" compares."""
    return list(Worker.objects.order_by("pk").values()), AuditRecord.objects.count()


def row_html(html: str, name: str) -> str:
    match = re.search(rf'<tr id="worker-{re.escape(name)}".*?</tr>', html, re.S)
    assert match, f"no row for {name}"
    return match.group(0)


def running_at(worker: Worker, make_task, n: int) -> None:
    """``n`` tasks claimed by a dispatcher for ``worker`` (running there)."""
    for i in range(n):
        make_task(title=f"load {worker.name} {i}")
    claims.task_claim(actor=DISPATCHER, limit=n, pick_worker=lambda task: worker, lease_s=60)


def breaker_change(worker: Worker, old: str, new: str, task_id: str | None = None) -> None:
    reports.record_breaker_change(actor=DISPATCHER, worker=worker.name, old=old, new=new, task_id=task_id)


# --- who sees what -----------------------------------------------------------------------------


def test_anonymous_is_sent_to_the_login_page(clients):
    r = clients["anonymous"].get(URL)
    assert r.status_code == 302
    assert r["Location"] == "/login/?next=/workers/"


def test_anonymous_htmx_is_told_to_redirect(clients):
    r = clients["anonymous"].get(URL, HTTP_HX_REQUEST="true")
    assert r.status_code == 401
    assert r["HX-Redirect"].startswith("/login/")


def test_a_user_without_a_role_is_refused(clients, builder):
    r = clients["nobody"].get(URL)
    assert r.status_code == 403
    assert "builder" not in r.content.decode()


def test_a_viewer_sees_the_fleet_without_controls(clients, builder):
    r = clients["viewer"].get(URL)
    assert r.status_code == 200
    html = r.content.decode()
    row = row_html(html, "builder")
    assert "http://127.0.0.1:9100" in row
    assert "python" in row
    assert "0 / 2" in row
    assert "/disable/" not in html
    assert "/enable/" not in html
    assert 'method="post"' not in html.split('<main id="main">', 1)[1]
    assert "Register a worker" not in html
    assert REGISTER not in html
    assert "/api/proxy/" not in html
    assert TOKEN not in html


def test_an_admin_sees_the_controls_and_a_token_field_that_is_empty(clients, builder):
    html = clients["admin"].get(URL).content.decode()
    row = row_html(html, "builder")
    assert 'action="/workers/builder/disable/"' in row
    assert 'hx-post="/workers/builder/disable/"' in row
    assert "/api/proxy/workers/builder/health" in row
    assert f'action="{REGISTER}"' in html
    token_input = re.search(r'<input[^>]*name="token"[^>]*>', html).group(0)
    assert 'type="password"' in token_input
    assert "value=" not in token_input
    assert TOKEN not in html


# --- what the table shows ---------------------------------------------------------------------


def test_a_row_shows_the_latest_probe(clients, builder):
    checked = timezone.now() - timedelta(seconds=4)
    Worker.objects.filter(pk=builder.pk).update(
        health_status="healthy",
        health_checked_at=checked,
        health_latency_ms=12.5,
        health_detail={"active_tasks": 1, "capacity": 4},
    )
    row = row_html(clients["viewer"].get(URL).content.decode(), "builder")
    assert 'class="badge healthy">healthy<' in row
    assert "reports 1 active of 4" in row
    assert "12.5 ms" in row
    assert checked.strftime("%Y-%m-%d %H:%M:%S") in row
    assert "(stale)" not in row


def test_an_old_or_missing_probe_is_stale(clients, builder):
    row = row_html(clients["viewer"].get(URL).content.decode(), "builder")
    assert "unknown" in row
    assert "(stale)" in row
    assert "never" in row
    Worker.objects.filter(pk=builder.pk).update(
        health_status="unreachable",
        health_checked_at=timezone.now() - timedelta(seconds=page.STALE_AFTER_S + 5),
        health_detail={"error": "ConnectionError: refused"},
    )
    row = row_html(clients["viewer"].get(URL).content.decode(), "builder")
    assert 'class="badge unhealthy">unreachable<' in row
    assert "(stale)" in row
    assert "ConnectionError: refused" in row


def test_load_counts_the_attempts_running_at_each_worker(clients, builder, make_task):
    other = workers.worker_register(actor=SYSTEM, name="other", base_url="http://127.0.0.1:9101")
    running_at(builder, make_task, 2)
    running_at(other, make_task, 1)
    html = clients["viewer"].get(URL).content.decode()
    assert "2 / 2" in row_html(html, "builder")
    assert "full" in row_html(html, "builder")
    assert "1 / 4" in row_html(html, "other")


def test_the_breaker_and_its_recent_changes_are_shown(clients, builder, make_task):
    task = make_task(title="tripped it")
    breaker_change(builder, "closed", "open", task_id=str(task.pk))
    breaker_change(builder, "open", "half_open")
    row = row_html(clients["viewer"].get(URL).content.decode(), "builder")
    assert 'class="badge half_open">half_open<' in row
    changes = re.findall(r"<li>.*?</li>", row, re.S)
    assert "open → half_open" in changes[0]  # newest first
    assert "closed → open" in changes[1]
    assert f'href="/tasks/{task.pk}/"' in changes[1]


def test_the_breaker_history_is_bounded_per_worker(clients, builder):
    for i in range(page.BREAKER_HISTORY_PER_WORKER + 3):
        old, new = ("closed", "open") if i % 2 == 0 else ("open", "closed")
        breaker_change(builder, old, new)
    row = row_html(clients["viewer"].get(URL).content.decode(), "builder")
    assert len(re.findall(r"<li>", row)) == page.BREAKER_HISTORY_PER_WORKER


def test_the_table_is_a_live_fragment(clients, builder):
    html = clients["viewer"].get(URL).content.decode()
    table = re.search(r'<div id="workers-table"[^>]*>', html).group(0)
    assert 'hx-get="/workers/"' in table
    assert "every 5s" in table
    assert "agency-task from:body throttle:2s" in table
    assert 'data-stream="/api/v1/tasks/stream"' in html
    r = clients["viewer"].get(URL, HTTP_HX_REQUEST="true")
    assert r.status_code == 200
    fragment = r.content.decode()
    assert fragment.lstrip().startswith('<div id="workers-table"')
    assert "<html" not in fragment
    assert "HX-Request" in r["Vary"]


@pytest.mark.parametrize("htmx", [False, True])
def test_the_page_costs_the_same_queries_for_any_fleet(clients, make_task, django_assert_num_queries, htmx):
    headers = {"HTTP_HX_REQUEST": "true"} if htmx else {}

    def grow(n: int) -> None:
        for i in range(Worker.objects.count(), n):
            w = workers.worker_register(actor=SYSTEM, name=f"w{i}", base_url=f"http://127.0.0.1:{9200 + i}")
            running_at(w, make_task, 1)
            breaker_change(w, "closed", "open")

    grow(1)
    client = clients["admin"]
    client.get(URL, **headers)
    with CaptureQueriesContext(connection) as small:
        assert client.get(URL, **headers).status_code == 200
    # The session, its user, the user's roles; the workers, their loads, their breaker changes;
    # for the page (not its htmx table), the task stream's current id it was rendered at.
    expected = 6 if htmx else 7
    assert len(small) == expected, [q["sql"][:80] for q in small]
    grow(6)
    with django_assert_num_queries(expected):
        r = client.get(URL, **headers)
    assert r.content.decode().count('<tr id="worker-') == 6


# --- enable and disable -------------------------------------------------------------------------


def test_an_admin_disables_a_worker(clients, builder, admin_user):
    r = clients["admin"].post(f"/workers/{builder.name}/disable/")
    assert r.status_code == 302
    assert r["Location"] == "/workers/#worker-builder"
    builder.refresh_from_db()
    assert builder.enabled is False
    record = AuditRecord.objects.get(action="worker.disable")
    assert (record.actor, record.resource_type, record.resource_id) == (f"user:{admin_user.pk}", "worker", "builder")
    page_html = clients["admin"].get(r["Location"]).content.decode()
    assert "Worker builder disabled." in page_html
    row = row_html(page_html, "builder")
    assert ">disabled<" in row
    assert 'action="/workers/builder/enable/"' in row


def test_an_admin_enables_a_worker_with_htmx_and_gets_the_refreshed_table(clients, builder, admin_user):
    workers.worker_set_enabled(actor=SYSTEM, name="builder", enabled=False)
    r = clients["admin"].post(f"/workers/{builder.name}/enable/", HTTP_HX_REQUEST="true")
    assert r.status_code == 200
    fragment = r.content.decode()
    assert fragment.lstrip().startswith('<div id="workers-table"')
    row = row_html(fragment, "builder")
    assert ">enabled<" in row
    assert 'action="/workers/builder/disable/"' in row
    builder.refresh_from_db()
    assert builder.enabled is True
    assert AuditRecord.objects.filter(action="worker.enable", actor=f"user:{admin_user.pk}").count() == 1


def test_disabling_a_disabled_worker_writes_nothing(clients, builder):
    workers.worker_set_enabled(actor=SYSTEM, name="builder", enabled=False)
    before = snapshot()
    assert clients["admin"].post("/workers/builder/disable/").status_code == 302
    assert snapshot() == before


def test_an_unknown_worker_is_a_404(clients):
    r = clients["admin"].post("/workers/ghost/disable/")
    assert r.status_code == 404
    assert "ghost" in r.content.decode()


@pytest.mark.parametrize("path", ["/workers/builder/disable/", "/workers/builder/enable/", REGISTER])
def test_the_controls_take_post_only(clients, builder, path):
    assert clients["admin"].get(path).status_code == 405


@pytest.mark.parametrize("who", ["nobody", "viewer", "operator"])
@pytest.mark.parametrize(
    ("path", "data"),
    [
        ("/workers/builder/disable/", {}),
        ("/workers/builder/enable/", {}),
        (REGISTER, {"name": "fresh", "base_url": "http://127.0.0.1:9300", "token": "t0ken-t0ken"}),
    ],
)
def test_only_admins_may_change_the_registry(clients, builder, who, path, data):
    before = snapshot()
    r = clients[who].post(path, data)
    assert r.status_code == 403
    assert snapshot() == before


@pytest.mark.parametrize("path", ["/workers/builder/disable/", REGISTER])
def test_anonymous_posts_are_sent_to_login_and_write_nothing(clients, builder, path):
    before = snapshot()
    r = clients["anonymous"].post(path, {"name": "fresh", "base_url": "http://127.0.0.1:9300"})
    assert r.status_code == 302
    assert r["Location"].startswith("/login/")
    assert snapshot() == before


# --- register -------------------------------------------------------------------------------


def test_an_admin_registers_a_worker(clients, admin_user):
    r = clients["admin"].post(
        REGISTER,
        {
            "name": "gpu-1",
            "base_url": "http://localhost:9400",
            "token": TOKEN,
            "capabilities": "python, shell gpu",
            "max_concurrency": "3",
        },
    )
    assert r.status_code == 302, r.content.decode()
    assert r["Location"] == "/workers/#worker-gpu-1"
    worker = Worker.objects.get(name="gpu-1")
    assert (worker.base_url, worker.capabilities, worker.max_concurrency) == (
        "http://localhost:9400",
        ["gpu", "python", "shell"],
        3,
    )
    assert worker.token == TOKEN
    assert TOKEN not in worker.token_ciphertext
    record = AuditRecord.objects.get(action="worker.register", resource_id="gpu-1")
    assert record.actor == f"user:{admin_user.pk}"
    assert "token" in record.data["changed"]
    assert TOKEN not in str(record.data)
    html = clients["admin"].get(r["Location"]).content.decode()
    assert "Worker gpu-1 registered." in html
    assert "3" in row_html(html, "gpu-1")
    assert TOKEN not in html


def test_defaults_apply_to_the_fields_left_empty(clients):
    r = clients["admin"].post(REGISTER, {"name": "plain", "base_url": "http://127.0.0.1:9500"})
    assert r.status_code == 302
    worker = Worker.objects.get(name="plain")
    assert (worker.max_concurrency, worker.capabilities, worker.token_ciphertext) == (4, [], "")


def field_errors(html: str) -> dict[str, str]:
    return dict(re.findall(r'<span class="field-error" id="[^"]+" data-field="([^"]+)">(.*?)</span>', html, re.S))


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"name": "", "base_url": "http://127.0.0.1:9500"}, "name"),
        ({"name": "has space", "base_url": "http://127.0.0.1:9500"}, "name"),
        ({"name": "x", "base_url": "ftp://127.0.0.1/"}, "base_url"),
        ({"name": "x", "base_url": "http://user:pw@127.0.0.1:9500"}, "base_url"),
        ({"name": "x", "base_url": ""}, "base_url"),
        ({"name": "x", "base_url": "http://127.0.0.1:9500", "max_concurrency": "many"}, "max_concurrency"),
        ({"name": "x", "base_url": "http://127.0.0.1:9500", "max_concurrency": "0"}, "max_concurrency"),
        ({"name": "x", "base_url": "http://127.0.0.1:9500", "capabilities": "ok, Not-OK"}, "capabilities"),
        ({"name": "x", "base_url": "http://127.0.0.1:9500", "token": "has space"}, "token"),
    ],
)
def test_bad_input_is_a_400_naming_the_field_and_writes_nothing(clients, data, field):
    before = snapshot()
    r = clients["admin"].post(REGISTER, data)
    assert r.status_code == 400
    html = r.content.decode()
    errors = field_errors(html)
    assert set(errors) == {field}, errors
    assert re.search(rf'<input[^>]*name="{field}"[^>]*aria-invalid="true"', html)
    assert snapshot() == before


def test_the_form_keeps_what_was_typed_but_the_token(clients):
    r = clients["admin"].post(
        REGISTER, {"name": "keep-me", "base_url": "ftp://nope", "token": TOKEN, "capabilities": "python"}
    )
    assert r.status_code == 400
    html = r.content.decode()
    assert 'value="keep-me"' in html
    assert 'value="ftp://nope"' in html
    assert 'value="python"' in html
    assert TOKEN not in html


def test_a_name_in_use_is_a_409_beside_the_name(clients, builder):
    before = snapshot()
    r = clients["admin"].post(REGISTER, {"name": "builder", "base_url": "http://127.0.0.1:9600"})
    assert r.status_code == 409
    assert "already registered" in field_errors(r.content.decode())["name"]
    assert snapshot() == before
