"""GET /healthz (liveness) and GET /api/health (measured component checks)."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import pytest
from django.conf import settings
from django.db import OperationalError
from django.utils import timezone

from metrics import health
from tasks.dispatch import fleet
from tasks.models import DispatcherProcess, Worker


class BrokenConnection:
    """Stands in for ``django.db.connection`` when the database is down."""

    vendor = "sqlite"

    def cursor(self):
        raise OperationalError("unable to open database file")


class StalledLayer:
    """A channel layer that accepts a message and never delivers it in time."""

    async def new_channel(self, prefix: str = "specific.") -> str:
        return f"{prefix}.stalled!1"

    async def send(self, channel: str, message: dict) -> None:
        return None

    async def receive(self, channel: str) -> dict:
        await asyncio.sleep(2)
        return {}


class FailingLayer(StalledLayer):
    async def send(self, channel: str, message: dict) -> None:
        raise ConnectionError("Error 111 connecting to localhost:6379. Connection refused.")


# --- /healthz ---------------------------------------------------------------------


def test_it_answers_liveness_without_touching_the_database(client):
    # No db fixture: pytest-django turns any database access into an error here.
    r = client.get("/healthz")
    assert r.status_code == 200
    assert r.json() == {"status": "ok"}


@pytest.mark.django_db
def test_it_answers_liveness_in_zero_queries(client, django_assert_num_queries):
    with django_assert_num_queries(0):
        assert client.get("/healthz").status_code == 200


@pytest.mark.django_db
def test_it_answers_liveness_to_a_logged_in_user_too(viewer_client):
    assert viewer_client.get("/healthz").status_code == 200


@pytest.mark.parametrize("method", ["post", "put", "patch", "delete"])
def test_it_rejects_other_methods_on_liveness(client, method):
    assert getattr(client, method)("/healthz").status_code == 405


# --- /api/health ------------------------------------------------------------------


@pytest.mark.django_db
def test_it_reports_every_component(viewer_client):
    fleet.dispatcher_heartbeat(dispatcher_id="d1", concurrency=8, inflight=2)
    r = viewer_client.get("/api/health")
    assert r.status_code == 200, r.json()
    body = r.json()
    assert body["status"] == "healthy"
    assert body["version"] == settings.APP_VERSION
    assert isinstance(body["uptime_s"], int | float)
    assert body["uptime_s"] >= 0

    components = body["components"]
    assert set(components) == {"database", "channel_layer", "websocket", "dispatcher", "workers", "keystore"}

    database = components["database"]
    assert database["status"] == "healthy"
    assert isinstance(database["latency_ms"], int | float)
    assert database["latency_ms"] >= 0
    assert database["vendor"] in ("sqlite", "postgresql")

    layer = components["channel_layer"]
    assert layer["status"] == "healthy"
    assert isinstance(layer["latency_ms"], int | float)
    assert layer["latency_ms"] >= 0
    assert layer["backend"] in ("InMemoryChannelLayer", "RedisChannelLayer")

    assert components["dispatcher"] | {"last_seen_s": 0} == {
        "status": "healthy",
        "live": 1,
        "inflight": 2,
        "capacity": 8,
        "last_seen_s": 0,
    }
    # No worker registered yet: said so, never invented.
    assert components["workers"] == {"status": "not_configured", "enabled": 0}
    # The embedded default's keystore, read for real (its one development key).
    keystore = components["keystore"]
    assert keystore | {"latency_ms": 0} == {
        "status": "healthy",
        "provider": "file",
        "location": f"file://{settings.DATA_DIR}/keystore",
        "master_keys": 1,
        "latency_ms": 0,
    }


@pytest.mark.django_db
def test_no_live_dispatcher_degrades_health_without_failing_it(viewer_client):
    fleet.dispatcher_heartbeat(dispatcher_id="gone", concurrency=8, inflight=0)
    DispatcherProcess.objects.update(last_seen_at=timezone.now() - timedelta(seconds=60))
    r = viewer_client.get("/api/health")
    assert r.status_code == 200
    assert r.json()["status"] == "degraded"
    assert r.json()["components"]["dispatcher"]["live"] == 0


@pytest.mark.django_db
def test_workers_are_reported_from_the_latest_polls_and_breakers(viewer_client):
    fleet.dispatcher_heartbeat(dispatcher_id="d1", concurrency=8, inflight=0)
    up = Worker.objects.create(name="up", base_url="http://127.0.0.1:9")
    down = Worker.objects.create(name="down", base_url="http://127.0.0.1:10")
    fleet.record_worker_health(worker_id=up.pk, report={"status": "ok", "active_tasks": 1, "capacity": 4}, latency_ms=2)
    fleet.record_worker_health(worker_id=down.pk, report={"status": "unreachable", "error": "refused"}, latency_ms=1)
    body = viewer_client.get("/api/health").json()
    workers = body["components"]["workers"]
    assert (body["status"], workers["status"], workers["usable"], workers["enabled"]) == ("degraded", "degraded", 1, 2)
    assert workers["workers"]["up"]["status"] == "healthy"
    assert workers["workers"]["up"]["capacity"] == 4
    assert workers["workers"]["down"]["error"] == "refused"

    fleet.record_worker_health(worker_id=down.pk, report={"status": "ok"}, latency_ms=1)
    assert viewer_client.get("/api/health").json()["components"]["workers"]["status"] == "healthy"
    fleet.record_breaker_state(worker="up", state="open")
    workers = viewer_client.get("/api/health").json()["components"]["workers"]
    assert (workers["status"], workers["workers"]["up"]["breaker"]) == ("degraded", "open")


@pytest.mark.django_db
def test_it_lets_operators_and_admins_read_health(operator_client, admin_client_api):
    assert operator_client.get("/api/health").status_code == 200
    assert admin_client_api.get("/api/health").status_code == 200


@pytest.mark.django_db
def test_it_returns_503_when_the_database_is_down(viewer_client, monkeypatch):
    monkeypatch.setattr(health, "connection", BrokenConnection())
    r = viewer_client.get("/api/health")
    assert r.status_code == 503
    body = r.json()
    assert body["status"] == "unhealthy"
    database = body["components"]["database"]
    assert database["status"] == "unhealthy"
    assert database["error"] == "OperationalError: unable to open database file"
    assert isinstance(database["latency_ms"], int | float)
    # The other checks still ran and say what they found.
    assert body["components"]["channel_layer"]["status"] == "healthy"


@pytest.mark.django_db
def test_it_returns_503_when_the_database_check_reports_unhealthy(viewer_client, monkeypatch):
    monkeypatch.setattr(health, "check_database", lambda: {"status": "unhealthy", "error": "down"})
    r = viewer_client.get("/api/health")
    assert r.status_code == 503
    assert r.json()["status"] == "unhealthy"


@pytest.mark.django_db
def test_it_returns_503_when_the_channel_layer_fails(viewer_client, monkeypatch):
    monkeypatch.setattr(health, "get_channel_layer", FailingLayer)
    r = viewer_client.get("/api/health")
    assert r.status_code == 503
    layer = r.json()["components"]["channel_layer"]
    assert layer["status"] == "unhealthy"
    assert layer["error"].startswith("ConnectionError: ")
    assert r.json()["components"]["database"]["status"] == "healthy"


@pytest.mark.django_db
def test_it_reports_a_missing_channel_layer_as_not_configured(viewer_client, monkeypatch):
    monkeypatch.setattr(health, "get_channel_layer", lambda: None)
    r = viewer_client.get("/api/health")
    assert r.status_code == 200
    assert r.json()["components"]["channel_layer"] == {"status": "not_configured"}


@pytest.mark.django_db
def test_it_gives_up_on_a_stalled_channel_layer(viewer_client, monkeypatch):
    monkeypatch.setattr(health, "get_channel_layer", StalledLayer)
    start = time.monotonic()
    r = viewer_client.get("/api/health")
    elapsed = time.monotonic() - start
    assert r.status_code == 503
    assert r.json()["components"]["channel_layer"]["status"] == "unhealthy"
    assert elapsed < 1.5


@pytest.mark.django_db
def test_it_requires_authentication_for_health(anon_client):
    r = anon_client.get("/api/health")
    assert r.status_code == 401
    assert "components" not in r.json()


@pytest.mark.django_db
def test_it_rejects_a_user_without_a_role_for_health(nobody_client):
    r = nobody_client.get("/api/health")
    assert r.status_code == 403
    assert "components" not in r.json()


@pytest.mark.django_db
@pytest.mark.parametrize("method", ["post", "put", "patch", "delete"])
def test_it_rejects_other_methods_on_health(viewer_client, method):
    assert getattr(viewer_client, method)("/api/health").status_code == 405


@pytest.mark.django_db
def test_the_websocket_component_is_a_real_round_trip(viewer_client):
    websocket = viewer_client.get("/api/health").json()["components"]["websocket"]
    assert websocket["status"] == "healthy"
    assert websocket["latency_ms"] >= 0


@pytest.mark.django_db
def test_a_websocket_round_trip_that_fails_is_unhealthy(viewer_client, monkeypatch):
    async def no_echo(self, event):
        return None  # the frame never comes back

    monkeypatch.setattr(health, "LAYER_TIMEOUT_S", 0.2)
    monkeypatch.setattr(health.EchoConsumer, "health_echo", no_echo)
    r = viewer_client.get("/api/health")
    assert r.status_code == 503
    websocket = r.json()["components"]["websocket"]
    assert websocket["status"] == "unhealthy"
    assert websocket["error"]
