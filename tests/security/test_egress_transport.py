"""The egress policy at connect time: the worker transport against a real HTTP server on 127.0.0.1.

The server records every request it gets, and every outbound ``connect()`` is recorded too,
so "refused" means provably nothing left this process. Where it matters, the same call with
the policy allowing it is shown to land, so a refusal is the policy's doing and not a server
that could not have been reached anyway. All traffic stays on 127.0.0.1, with short timeouts.
"""

from __future__ import annotations

import datetime as dt
import json
import socket
import ssl
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from security import egress
from security.egress import Reason
from tasks.dispatch.breakers import BreakerRegistry
from tasks.dispatch.worker_client import AbortHandle, AttemptOutcome, WorkerClient, WorkerConfig
from tasks.dispatch.worker_client.transport import new_session

pytestmark = pytest.mark.timeout(30)

TOKEN = "egress-test-token-0123456789"
METADATA_URL = "http://169.254.169.254/latest/meta-data/"


# --- a worker that records what reaches it -------------------------------------------------------------


@dataclass
class Recorder:
    port: int
    seen: list[dict[str, Any]]
    redirect_to: list[str] = field(default_factory=list)  # when set, every answer is a 302 there
    sni: list[str | None] = field(default_factory=list)


class _Handler(BaseHTTPRequestHandler):
    # HTTP/1.0: one request a connection, so every call opens (and checks) a connection of its own.
    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self._answer()

    def _answer(self) -> None:
        recorder: Recorder = self.server.recorder  # type: ignore[attr-defined]
        recorder.seen.append({"path": self.path, "authorization": self.headers.get("Authorization")})
        if recorder.redirect_to:
            self.send_response(302)
            self.send_header("Location", recorder.redirect_to[0])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if self.path.endswith("/health"):
            body = {"status": "ok", "active_tasks": 0, "capacity": 4}
        else:
            body = {"type": "result", "status": "completed", "output": "done"}
        payload = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


class _KeepAliveHandler(_Handler):
    protocol_version = "HTTP/1.1"  # the connection stays open and goes back to the client's pool


def _serve(tls: ssl.SSLContext | None = None, *, keep_alive: bool = False) -> Iterator[Recorder]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _KeepAliveHandler if keep_alive else _Handler)
    server.daemon_threads = True
    recorder = Recorder(port=server.server_address[1], seen=[])
    server.recorder = recorder  # type: ignore[attr-defined]
    if tls is not None:
        tls.sni_callback = lambda sock, name, ctx: recorder.sni.append(name)  # type: ignore[assignment]
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield recorder
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    yield from _serve()


@pytest.fixture
def keep_alive_recorder() -> Iterator[Recorder]:
    yield from _serve(keep_alive=True)


@pytest.fixture
def connections(monkeypatch) -> list[Any]:
    """Every outbound connect() of this process (they still go ahead)."""
    attempts: list[Any] = []
    real = socket.socket.connect

    def connect(self: socket.socket, address: Any) -> Any:
        attempts.append(address)
        return real(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    return attempts


@pytest.fixture
def dns(monkeypatch) -> dict[str, list[str]]:
    """The names the policy's resolver knows (name -> addresses); a test changes them as it goes."""
    answers: dict[str, list[str]] = {}

    def resolve(host: str, port: int) -> list[tuple[socket.AddressFamily, tuple[Any, ...]]]:
        if host not in answers:
            raise socket.gaierror(socket.EAI_NONAME, f"{host} is unknown here")
        return [(socket.AF_INET6, (a, port, 0, 0)) if ":" in a else (socket.AF_INET, (a, port)) for a in answers[host]]

    monkeypatch.setattr(egress, "resolver", resolve)
    return answers


def client_for(base_url: str, registry: BreakerRegistry | None = None) -> WorkerClient:
    config = WorkerConfig(
        name=f"w-{uuid.uuid4().hex[:8]}",
        base_url=base_url,
        token=TOKEN,
        connect_timeout_s=1.0,
        retry_initial_backoff_ms=10,
        retry_max_backoff_ms=20,
    )
    return WorkerClient(config, breakers=registry or BreakerRegistry())


def execute(client: WorkerClient, calls: list[dict[str, Any]] | None = None) -> AttemptOutcome:
    return client.execute(
        task_id=str(uuid.uuid4()),
        attempt=1,
        spec={"title": "t"},
        deadline=dt.datetime.now(dt.UTC) + dt.timedelta(seconds=10),
        abort=AbortHandle(),
        on_event=lambda event: None,
        on_call=calls.append if calls is not None else None,
    )


# --- refused at connect time, nothing sent ----------------------------------------------------------------


def test_an_ipv4_mapped_loopback_worker_receives_nothing_not_even_a_health_poll(recorder, connections, settings):
    registry = BreakerRegistry()
    client = client_for(f"http://[::ffff:127.0.0.1]:{recorder.port}", registry)
    calls: list[dict[str, Any]] = []

    outcome = execute(client, calls)
    health = client.health()
    cancelled = client.cancel(task_id=str(uuid.uuid4()), attempt=1)

    assert (outcome.kind, outcome.http_calls, outcome.not_dispatched) == ("failed", 1, True)  # not retried
    assert outcome.egress_denied is not None
    assert outcome.egress_denied["reason"] == Reason.IPV4_MAPPED
    assert outcome.egress_denied["address"] == "::ffff:7f00:1"
    assert outcome.egress_denied["url"] == f"http://[::ffff:127.0.0.1]:{recorder.port}/execute"
    assert "refused by the egress policy" in outcome.error
    assert [c["status"] for c in calls] == [None]
    assert "refused by the egress policy" in calls[0]["error"]
    assert registry.get(client.config).fail_counter == 1  # the worker's fault, for routing
    assert health["status"] == "unreachable"
    assert health["egress_denied"]["reason"] == Reason.IPV4_MAPPED
    assert cancelled is False
    assert recorder.seen == []
    assert connections == []

    # The same worker, once the policy is told to allow the mapped range: it was reachable all along.
    settings.EGRESS_ALLOWED_NETWORKS = ["::ffff:127.0.0.0/104"]
    assert execute(client).kind == "result"
    assert [s["authorization"] for s in recorder.seen] == [f"Bearer {TOKEN}"]


@pytest.mark.parametrize(
    "host",
    ["2130706433", "0177.0.0.1", "0x7f000001", "0x7f.1", "127.1", "[::ffff:7f00:1]", "[::127.0.0.1]", "0.0.0.0"],  # noqa: S104
)
def test_loopback_spelled_any_other_way_is_refused_and_never_reaches_the_worker(recorder, connections, host):
    # Each of these reaches the recorder if called (the resolver and the kernel read them as 127.0.0.1).
    client = client_for(f"http://{host}:{recorder.port}")
    outcome = execute(client)
    assert outcome.egress_denied is not None, outcome.error
    assert client.health()["status"] == "unreachable"
    assert recorder.seen == []
    assert connections == []


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/",
        "http://2852039166/",
        "http://0251.0376.0251.0376/",
        "http://0xa9fea9fe/",
        "http://[::ffff:169.254.169.254]/",
        "http://[fd00:ec2::254]/",
        "http://[fe80::1]/",
        "http://metadata.google.internal/",
    ],
)
def test_metadata_and_link_local_addresses_are_never_connected_to(connections, url):
    outcome = execute(client_for(url))
    assert outcome.egress_denied is not None
    assert outcome.http_calls == 1
    assert connections == []


def test_in_production_loopback_is_refused_and_in_the_embedded_mode_it_is_allowed(recorder, connections, settings):
    url = f"http://127.0.0.1:{recorder.port}"
    settings.EMBEDDED, settings.EGRESS_ALLOWED_HOSTS = False, ["*"]
    outcome = execute(client_for(url))
    assert outcome.egress_denied is not None
    assert outcome.egress_denied["reason"] == Reason.LOOPBACK
    assert recorder.seen == []
    assert connections == []

    settings.EMBEDDED = True
    assert execute(client_for(url)).kind == "result"
    assert len(recorder.seen) == 1
    assert connections == [("127.0.0.1", recorder.port)]


# --- names, and names that change ---------------------------------------------------------------------


def test_a_name_resolving_to_a_refused_address_is_refused_before_connecting(recorder, connections, dns):
    dns["worker.test"] = ["169.254.169.254"]
    outcome = execute(client_for(f"http://worker.test:{recorder.port}"))
    assert outcome.egress_denied is not None
    assert (outcome.egress_denied["host"], outcome.egress_denied["address"]) == ("worker.test", "169.254.169.254")
    assert connections == []


def test_an_answer_with_one_refused_address_among_allowed_ones_is_refused_whole(recorder, connections, dns):
    dns["worker.test"] = ["127.0.0.1", "169.254.169.254"]
    outcome = execute(client_for(f"http://worker.test:{recorder.port}"))
    assert outcome.egress_denied is not None
    assert recorder.seen == []
    assert connections == []


def test_a_dns_answer_that_changes_after_registration_is_refused_at_the_next_connection(
    recorder, connections, dns, settings
):
    # Registered while the name resolved to an allowed address...
    dns["worker.test"] = ["127.0.0.1"]
    url = f"http://worker.test:{recorder.port}"
    assert egress.check_worker_url(url) == url
    client = client_for(url)
    assert execute(client).kind == "result"
    assert client.health()["status"] == "ok"
    assert len(recorder.seen) == 2
    assert connections == [("127.0.0.1", recorder.port)] * 2  # the checked address, pinned

    # ...then the answer changes to the metadata address: the next execute and health poll are refused.
    dns["worker.test"] = ["169.254.169.254"]
    outcome = execute(client)
    health = client.health()
    assert outcome.egress_denied is not None
    assert outcome.egress_denied["reason"] == Reason.METADATA
    assert health["status"] == "unreachable"
    assert health["egress_denied"]["address"] == "169.254.169.254"
    assert len(recorder.seen) == 2
    assert len(connections) == 2


def test_a_pooled_keep_alive_connection_is_not_used_once_the_name_resolves_to_a_refused_address(
    keep_alive_recorder, connections, dns
):
    recorder = keep_alive_recorder
    dns["worker.test"] = ["127.0.0.1"]
    client = client_for(f"http://worker.test:{recorder.port}")
    assert execute(client).kind == "result"
    assert execute(client).kind == "result"
    assert len(recorder.seen) == 2
    assert connections == [("127.0.0.1", recorder.port)]  # one connection, reused

    dns["worker.test"] = ["169.254.169.254"]
    outcome = execute(client)
    assert outcome.egress_denied is not None
    assert outcome.egress_denied["address"] == "169.254.169.254"
    assert client.health()["status"] == "unreachable"
    assert len(recorder.seen) == 2  # not even over the open connection to the old address
    assert len(connections) == 1


def test_a_worker_that_closes_the_connection_after_answering_gets_its_result_read(recorder):
    # HTTP/1.0 (Connection: close): http.client closes the socket as soon as the body is complete.
    outcome = execute(client_for(f"http://127.0.0.1:{recorder.port}"))
    assert (outcome.kind, outcome.error) == ("result", "")
    assert outcome.result is not None
    assert outcome.result["output"] == "done"


# --- redirects --------------------------------------------------------------------------------------


def test_a_redirect_to_an_internal_address_is_not_followed(recorder, connections):
    recorder.redirect_to.append(METADATA_URL)
    client = client_for(f"http://127.0.0.1:{recorder.port}")
    calls: list[dict[str, Any]] = []

    outcome = execute(client, calls)
    health = client.health()

    assert (outcome.kind, outcome.retryable, outcome.http_calls) == ("failed", False, 1)
    assert "redirect" in outcome.error
    assert "never followed" in outcome.error
    assert METADATA_URL in outcome.error
    assert [c["status"] for c in calls] == [302]
    assert health["status"] == "unreachable"
    assert "redirect" in health["error"]
    assert [s["path"] for s in recorder.seen] == ["/execute", "/health"]
    assert set(connections) == {("127.0.0.1", recorder.port)}


def test_the_session_does_not_follow_a_redirect_even_when_asked_to(recorder, connections):
    recorder.redirect_to.append(f"http://127.0.0.1:{recorder.port}/second-hop")
    response = new_session().get(f"http://127.0.0.1:{recorder.port}/first", timeout=2)  # allow_redirects defaults on
    assert response.status_code == 302
    assert response.is_redirect
    assert [s["path"] for s in recorder.seen] == ["/first"]
    assert len(connections) == 1


# --- TLS: the address is pinned, the name is verified ---------------------------------------------------------


def _certificate(tmp_path: Path, name: str) -> tuple[ssl.SSLContext, Path]:
    """A server context with a self-signed certificate for ``name``, and that certificate as a CA file."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / f"{name}.pem", tmp_path / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    return context, cert_path


@pytest.fixture
def tls_worker(tmp_path) -> Iterator[tuple[Recorder, Path]]:
    """A TLS server on 127.0.0.1 whose certificate names worker.test only (no IP address), and its CA file."""
    context, ca = _certificate(tmp_path, "worker.test")
    for recorder in _serve(context):
        yield recorder, ca


def test_https_connects_to_the_checked_address_but_verifies_and_names_the_host(tls_worker, connections, dns):
    recorder, ca = tls_worker
    dns["worker.test"] = dns["alias.test"] = ["127.0.0.1"]

    # Verified against the name: the certificate holds no IP address, so a check against the
    # pinned address would have failed.
    response = new_session().get(f"https://worker.test:{recorder.port}/health", verify=str(ca), timeout=2)
    assert response.status_code == 200
    assert connections == [("127.0.0.1", recorder.port)]
    assert recorder.sni == ["worker.test"]  # SNI is the name, not the pinned address

    # Same address, same trusted certificate, another name: verification refuses it.
    with pytest.raises(requests.exceptions.SSLError, match=r"worker\.test|hostname|match"):
        new_session().get(f"https://alias.test:{recorder.port}/health", verify=str(ca), timeout=2)
    assert len(recorder.seen) == 1
