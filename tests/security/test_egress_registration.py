"""Every door that registers a worker refuses a URL the egress policy refuses, naming ``base_url``.

The API, the admin console and ``manage.py register_worker`` validate through the same
service, so each is tried with the refusals found from outside (metadata, IPv4-mapped
loopback, ULA, unspecified, a name resolving to the metadata address), on register and on
change; nothing is written, no audit record, and a real server the URL points at hears nothing.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from audit.models import AuditRecord
from security import egress
from security.principals import SYSTEM
from tasks import workers
from tasks.models import Worker

pytestmark = pytest.mark.django_db

API = "/api/v1/workers"
# A name that resolves to the metadata address (through the policy's resolver hook).
REBOUND = "rebound.example.com"
REFUSED = [
    "http://169.254.169.254/",
    "http://[::ffff:169.254.169.254]/",
    "http://[fd00:ec2::254]/",
    "http://0.0.0.0:8765/",
    f"http://{REBOUND}/",
    "http://2130706433/",
    "http://metadata.google.internal/",
]


class _Recorder(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.server.seen.append(self.path)  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_POST = do_GET


@pytest.fixture
def listener() -> Iterator[tuple[int, list[str]]]:
    """A real server on 127.0.0.1 that records every request (port, requests seen)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    server.seen = []  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        yield server.server_address[1], server.seen  # type: ignore[attr-defined]
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(autouse=True)
def dns(monkeypatch) -> None:
    def resolve(host: str, port: int) -> list[tuple[socket.AddressFamily, tuple[Any, ...]]]:
        if host == REBOUND:
            return [(socket.AF_INET, ("169.254.169.254", port))]
        raise socket.gaierror(socket.EAI_NONAME, f"{host} is unknown here")

    monkeypatch.setattr(egress, "resolver", resolve)


def nothing_written() -> bool:
    return not Worker.objects.exists() and not AuditRecord.objects.exists()


@pytest.mark.parametrize("url", REFUSED)
def test_the_api_refuses_the_url_naming_the_field(admin_client_api, url):
    r = admin_client_api.post(API, {"name": "far", "base_url": url}, format="json")
    assert r.status_code == 400, r.content
    assert list(r.json()) == ["base_url"]
    [message] = r.json()["base_url"]
    assert any(words in message for words in ("never called", "refused unless", "numeric address"))
    assert nothing_written()


def test_the_api_says_which_address_a_name_resolves_to(admin_client_api):
    r = admin_client_api.post(API, {"name": "far", "base_url": f"http://{REBOUND}/"}, format="json")
    assert r.json()["base_url"] == [
        f"'{REBOUND}' resolves to 169.254.169.254, a cloud metadata address, which is never called."
    ]


def test_the_api_refuses_an_ipv4_mapped_loopback_worker_and_it_hears_nothing(admin_client_api, listener):
    port, seen = listener
    r = admin_client_api.post(API, {"name": "mapped", "base_url": f"http://[::ffff:127.0.0.1]:{port}"}, format="json")
    assert r.status_code == 400
    assert "IPv4-mapped" in r.json()["base_url"][0]
    assert nothing_written()
    assert seen == []


def test_a_change_to_a_refused_url_is_refused_and_the_row_is_unchanged(admin_client_api):
    workers.worker_register(actor=SYSTEM, name="builder", base_url="http://127.0.0.1:9100")
    before = AuditRecord.objects.count()
    r = admin_client_api.patch(f"{API}/builder", {"base_url": "http://[fd00:ec2::254]/"}, format="json")
    assert r.status_code == 400
    assert list(r.json()) == ["base_url"]
    assert Worker.objects.get().base_url == "http://127.0.0.1:9100"
    assert AuditRecord.objects.count() == before


def test_in_production_the_api_refuses_loopback_and_in_the_embedded_mode_it_accepts_it(admin_client_api, settings):
    settings.EMBEDDED, settings.EGRESS_ALLOWED_HOSTS = False, ["*"]
    r = admin_client_api.post(API, {"name": "local", "base_url": "http://127.0.0.1:9100"}, format="json")
    assert r.status_code == 400
    assert "loopback" in r.json()["base_url"][0]
    assert nothing_written()

    settings.EMBEDDED = True
    r = admin_client_api.post(API, {"name": "local", "base_url": "http://127.0.0.1:9100"}, format="json")
    assert r.status_code == 201


def test_in_production_a_host_off_the_allowlist_is_refused(admin_client_api, settings):
    settings.EMBEDDED, settings.EGRESS_ALLOWED_HOSTS = False, ["*.workers.example"]
    r = admin_client_api.post(API, {"name": "w", "base_url": "https://builder.example.com"}, format="json")
    assert r.status_code == 400
    assert "EGRESS_ALLOWED_HOSTS" in r.json()["base_url"][0]
    r = admin_client_api.post(API, {"name": "w", "base_url": "https://builder.workers.example"}, format="json")
    assert r.status_code == 201, r.content


# --- the admin console and the command line ----------------------------------------------------------


def _form(**overrides: Any) -> dict[str, Any]:
    return {
        "name": "far",
        "base_url": "http://127.0.0.1:9100",
        "capabilities": "[]",
        "max_concurrency": 4,
        "enabled": "on",
        "request_timeout_s": 30,
        "retry_max_attempts": 3,
        "retry_initial_backoff_ms": 500,
        "retry_max_backoff_ms": 5000,
        "breaker_fail_max": 5,
        "breaker_reset_timeout_s": 60,
    } | overrides


@pytest.mark.parametrize("url", ["http://[::ffff:169.254.169.254]/", f"http://{REBOUND}/"])
def test_the_admin_form_refuses_the_url_on_its_field(client, admin_user, url):
    admin_user.is_staff = True
    admin_user.save(update_fields=["is_staff"])
    client.force_login(admin_user)
    response = client.post(reverse("admin:tasks_worker_add"), _form(base_url=url))
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert list(errors) == ["base_url"]
    assert "metadata" in errors["base_url"][0]
    assert nothing_written()


@pytest.mark.parametrize("url", ["http://[fd00:ec2::254]/", f"http://{REBOUND}:8080"])
def test_the_command_refuses_the_url_naming_the_field(url):
    with pytest.raises(CommandError, match=r"^base_url: .*metadata"):
        call_command("register_worker", "far", url, stdout=StringIO())
    assert nothing_written()
