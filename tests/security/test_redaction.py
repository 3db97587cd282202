"""One redacting filter on every log handler, and a canary secret that never leaks anywhere."""

from __future__ import annotations

import io
import json
import logging
import secrets
import sqlite3
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from io import StringIO

import pytest
import tenacity
from django.core.management import call_command
from django.db import connection
from django.test import Client, RequestFactory
from django.views.debug import technical_500_response

from audit.models import AuditRecord
from security import keystore
from security.redaction import MASK, RedactingFilter, redact_text, register_secret
from tasks import services
from tasks.dispatch.dispatcher import Dispatcher
from tasks.models import Task, TaskEvent, Worker
from tests.tasks.dispatch.test_dispatcher import wait_for


@pytest.fixture
def log_output() -> Iterator[io.StringIO]:
    """What the configured console handler (with its redacting filter) writes, at DEBUG for every logger."""
    root = logging.getLogger()
    handlers = [h for h in root.handlers if any(isinstance(f, RedactingFilter) for f in h.filters)]
    assert handlers, "the console handler has no redacting filter (config/settings.py LOGGING)"
    stream = io.StringIO()
    old_streams = [h.setStream(stream) for h in handlers]
    old_level = root.level
    root.setLevel(logging.DEBUG)
    try:
        yield stream
    finally:
        root.setLevel(old_level)
        for handler, old in zip(handlers, old_streams, strict=True):
            handler.setStream(old)


def test_a_registered_secret_is_masked_in_message_arguments_and_tracebacks(log_output):
    secret = "registered-" + secrets.token_hex(8)
    register_secret(secret)
    log = logging.getLogger("anything.at.all")
    log.warning("calling with %s", secret)
    try:
        raise RuntimeError(f"the worker said {secret}")
    except RuntimeError:
        log.exception("failed")
    text = log_output.getvalue()
    assert "calling with ***" in text
    assert "RuntimeError: the worker said ***" in text
    assert secret not in text


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("headers {'Authorization': 'Bearer abc.def-123'}", "headers {'Authorization': 'Bearer ***'}"),
        ("Authorization: Token 9944b09199c62bcf9418ad846dd0e4bbdfc6ee4b", "Authorization: Token ***"),
        ("Cookie: sessionid=abc123; csrftoken=xyz", "Cookie: ***"),
        ("set sessionid=abcdef123 for the user", "set sessionid=*** for the user"),
        ("GET https://bob:hunter2@example.com/x", "GET https://***@example.com/x"),
        ("url: /cb?code=abc&state=ok&access_token=tt", "url: /cb?code=***&state=ok&access_token=***"),
        ("X-Vault-Token: hvs.CAESIJ", "X-Vault-Token: ***"),
        ("an ordinary line with port 8000 and 1 attempt", "an ordinary line with port 8000 and 1 attempt"),
    ],
)
def test_credential_shapes_are_masked_whatever_their_value(line, expected):
    assert redact_text(line) == expected


def test_tenacity_and_urllib3_records_go_through_the_filter(log_output):
    secret = "tenacity-" + secrets.token_hex(8)
    register_secret(secret)

    @tenacity.retry(
        stop=tenacity.stop_after_attempt(2),
        wait=tenacity.wait_none(),
        before_sleep=tenacity.before_sleep_log(logging.getLogger("tenacity.test"), logging.WARNING),
        reraise=True,
    )
    def call() -> None:
        raise ConnectionError(f"http://127.0.0.1:9/execute?token={secret}")

    with pytest.raises(ConnectionError):
        call()
    logging.getLogger("urllib3.connectionpool").debug('"POST /x?api_key=%s HTTP/1.1" 500', secret)
    text = log_output.getvalue()
    assert "Retrying" in text
    assert "api_key=***" in text
    assert secret not in text


def test_a_short_value_is_not_masked_everywhere():
    register_secret("1")
    assert redact_text("HTTP 501 after 1 attempt") == "HTTP 501 after 1 attempt"


# --- the canary through the whole flow ------------------------------------------------------


class EchoingWorker(BaseHTTPRequestHandler):
    """A hostile worker: answers every call with a 500 that echoes the credentials it was sent."""

    def _echo(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        body = json.dumps({"error": f"bad request with {self.headers.get('Authorization')}"}).encode()
        self.send_response(500)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _echo

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def echoing_worker() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), EchoingWorker)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.django_db(transaction=True)
def test_a_canary_secret_never_appears_outside_its_ciphertext(
    settings, fresh_keystore, monkeypatch, log_output, echoing_worker, operator, admin_user, client, django_user_model
):
    canary = "canary-" + secrets.token_urlsafe(24)
    monkeypatch.setenv("AGENCY_MASTER_KEYS", "vIz6dO5qTq4c4qVwyVpEWY0TvwWwj6n0S8bMNEdYJ1E=")
    monkeypatch.setenv("AGENCY_SECRET_WORKERS_CANARY", canary)
    settings.KEYSTORE_URL = "env://"
    # The worker credential comes from the keystore (an audited read).
    call_command(
        "register_worker",
        "canary",
        echoing_worker,
        "--capability",
        "reference",
        "--token-secret",
        "workers.canary",
        stdout=StringIO(),
    )
    Worker.objects.filter(name="canary").update(retry_initial_backoff_ms=10, retry_max_backoff_ms=20)
    # A task whose calls fail against a worker that echoes the token back.
    task = services.task_create(
        spec={"title": "canary", "input": {"kind": "echo"}, "capabilities": ["reference"], "max_attempts": 1},
        actor=operator,
    )
    dispatcher = Dispatcher(concurrency=1, poll_s=0.1, reap_s=0.5)
    dispatcher.start()
    try:
        wait_for(lambda: Task.objects.get(pk=task.pk).state == "failed")
    finally:
        dispatcher.stop(grace_s=0)
    # An error page rendered while the token is in a local variable.
    token = Worker.objects.get(name="canary").token
    assert token == canary
    try:
        raise ValueError(f"worker call failed with token {token}")
    except ValueError:
        page = technical_500_response(RequestFactory().get("/x"), *sys.exc_info()).content.decode()
    assert "worker call failed with token ***" in page

    seen: dict[str, str] = {"logs": log_output.getvalue(), "error page": page}
    assert "POST /execute" in seen["logs"] or "execute" in seen["logs"]  # the failing call did log
    seen["audit data"] = json.dumps(list(AuditRecord.objects.values("actor", "action", "data", "reason")), default=str)
    assert '"secret.read"' in seen["audit data"]
    seen["timeline"] = json.dumps(list(TaskEvent.objects.filter(task=task).values("type", "data")), default=str)
    client.force_login(admin_user)  # the admin role: every API output and page the worker touches
    console = Client()
    console.force_login(django_user_model.objects.create_superuser("root", password="x" * 20))
    for path in (
        "/api/v1/workers",
        "/api/v1/workers/canary",
        f"/api/v1/tasks/{task.pk}",
        f"/api/v1/tasks/{task.pk}/events",
        "/api/v1/audit",
        "/api/health",
        "/workers/",
        f"/tasks/{task.pk}/",
        f"/admin/tasks/worker/{Worker.objects.get(name='canary').pk}/change/",
        f"/admin/tasks/task/{task.pk}/change/",
        "/admin/audit/auditrecord/",
    ):
        response = (console if path.startswith("/admin/") else client).get(path)
        assert response.status_code == 200, (path, response.status_code)
        seen[path] = response.content.decode()
    dump = StringIO()
    call_command("dumpdata", stdout=dump)
    seen["dumpdata"] = dump.getvalue()
    assert "token_ciphertext" in seen["dumpdata"]
    if connection.vendor == "sqlite":
        raw = sqlite3.connect(connection.settings_dict["NAME"])
        seen["sqlite file"] = "\n".join(raw.iterdump())
        raw.close()
    leaks = [where for where, text in seen.items() if canary in text]
    assert leaks == [], f"the canary leaked into {leaks}"
    assert MASK in seen["logs"] + seen["timeline"] + page
    assert keystore.provider().scheme == "env"
