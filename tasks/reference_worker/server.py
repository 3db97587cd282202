"""The reference worker's HTTP server: worker protocol v1 on the standard library only.

No Django here, on purpose: tests and benchmarks spawn this as
``python -m tasks.reference_worker`` many times, and a worker is a separate
service in production too. Each connection gets a thread (``ThreadingHTTPServer``);
HTTP/1.1 keep-alive is on, so a dispatcher's connection pool is reused, and NDJSON
progress goes out with chunked transfer encoding as it happens.
"""

from __future__ import annotations

import contextlib
import hmac
import ipaddress
import json
import random
import socket
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from security.sandbox import Sandbox
from tasks.reference_worker import kinds
from tasks.reference_worker.protocol import (
    IDEMPOTENCY_HEADER,
    JSON_TYPE,
    NDJSON_TYPE,
    PROTOCOL_HEADER,
    PROTOCOL_VERSION,
    ExecuteRequest,
    ProtocolError,
    decode_json_object,
    failed_result,
    now_iso,
    parse_cancel,
    parse_execute,
)
from tasks.reference_worker.registry import Execution, Registry
from tasks.reference_worker.requestlog import RequestLog
from tasks.reference_worker.streaming import NdjsonStream
from tasks.reference_worker.workspace import open_workspace

ROUTES = {"/execute": "POST", "/cancel": "POST", "/health": "GET", "/_log": "GET"}


@dataclass(frozen=True)
class WorkerConfig:
    host: str = "127.0.0.1"
    port: int = 8081
    token: str | None = None
    capacity: int = 16
    request_log: str | None = None
    log_memory: int = 10_000
    remember: int = 100_000
    fail_rate: float = 0.0
    seed: int | None = None
    latency_ms: int = 0
    always_fail: bool = False
    retry_after_s: int = 0
    drain_timeout_s: float = 5.0
    max_body_bytes: int = 10 * 1024 * 1024
    # Where results' files_modified are applied (DIR/<task_id>/); None reports them unapplied.
    workspace: str | None = None


class UnsafeBind(ValueError):
    """Listening beyond loopback without a bearer token: anyone who can reach the port could run work."""


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` listens on loopback only: a loopback address, or a name whose
    every address is one. An empty host or a wildcard (``0.0.0.0``, ``::``) is every interface."""
    literal = host.strip().removeprefix("[").removesuffix("]")
    if not literal:
        return False
    try:
        return ipaddress.ip_address(literal).is_loopback
    except ValueError:
        pass
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(literal, None)}
    except (OSError, UnicodeError):
        return False
    return bool(addresses) and all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addresses)


def check_bind(host: str, token: str | None) -> None:
    """Refuse a non-loopback address without a token (:class:`UnsafeBind`)."""
    if not token and not is_loopback(host):
        raise UnsafeBind(
            f"refusing to listen on {host!r} without a bearer token: anyone who reaches it could run work;"
            " configure a token, or listen on 127.0.0.1"
        )


class ReferenceWorkerServer(ThreadingHTTPServer):
    daemon_threads = True  # a hung or idle keep-alive connection must not hold up shutdown
    request_queue_size = 256  # benchmark bursts open many connections at once

    def __init__(self, config: WorkerConfig) -> None:
        check_bind(config.host, config.token)  # embedding code gets the same refusal as the command line
        self.config = config
        self.sandbox: Sandbox | None = open_workspace(config.workspace) if config.workspace else None
        self.registry = Registry(capacity=config.capacity, remember=config.remember)
        self.request_log = RequestLog(config.request_log, config.log_memory)
        self._rng = random.Random(config.seed)
        self._rng_lock = threading.Lock()
        self._serving = False
        if ":" in config.host:
            self.address_family = socket.AF_INET6
        super().__init__((config.host, config.port), WorkerHandler)

    def start(self) -> threading.Thread:
        """Serve from a daemon thread: how ``cli.serve`` runs it, and how a host process can embed it."""
        thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.1}, name="reference-worker", daemon=True
        )
        thread.start()
        self._serving = True
        return thread

    def stop(self, drain_timeout_s: float | None = None) -> None:
        """Drain: refuse new work (503 ``draining``), let running executions finish, abort the rest.

        An aborted execution's stream is cut without a result line, which clients treat as
        a retryable transport failure: the work goes elsewhere instead of being reported failed.
        """
        timeout = self.config.drain_timeout_s if drain_timeout_s is None else drain_timeout_s
        self.registry.draining = True
        if not self.registry.wait_idle(timeout):
            self.registry.stop_all("shutdown")
            self.registry.wait_idle(1.0)
        if self._serving:
            self.shutdown()
        self.server_close()
        self.request_log.close()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        host = f"[{host}]" if ":" in str(host) else host
        return f"http://{host}:{port}"

    def chaos_says_fail(self) -> bool:
        if self.config.always_fail:
            return True
        if self.config.fail_rate <= 0:
            return False
        with self._rng_lock:  # one seeded sequence across threads keeps chaos runs reproducible in count
            return self._rng.random() < self.config.fail_rate


class WorkerHandler(BaseHTTPRequestHandler):
    server: ReferenceWorkerServer
    protocol_version = "HTTP/1.1"
    server_version = f"AgencyReferenceWorker/{PROTOCOL_VERSION}"
    # Progress lines are small; Nagle plus delayed ACK would hold each one back ~40 ms.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        """Silenced: the request log is the record, and a stderr line per request slows benchmarks."""

    def do_GET(self) -> None:
        self._route("GET")

    def do_POST(self) -> None:
        self._route("POST")

    def do_PUT(self) -> None:
        self._route("PUT")

    def do_PATCH(self) -> None:
        self._route("PATCH")

    def do_DELETE(self) -> None:
        self._route("DELETE")

    def _route(self, method: str) -> None:
        # One handler object serves every request of a keep-alive connection.
        self._body_read = False
        self._log_entry: dict[str, Any] | None = None
        url = urlsplit(self.path)
        expected = ROUTES.get(url.path)
        if expected is None:
            self._discard_body()
            self._send_error(ProtocolError(404, "not_found", f"No endpoint {url.path}."))
        elif method != expected:
            self._discard_body()
            self._send_error(ProtocolError(405, "method_not_allowed", f"{url.path} takes {expected}."), expected)
        elif url.path == "/health":
            self._health()
        elif url.path == "/_log":
            self._log(parse_qs(url.query))
        else:
            self._logged(url.path)

    # --- endpoints -----------------------------------------------------------------------------

    def _health(self) -> None:
        registry = self.server.registry
        status = "draining" if registry.draining else "ok"
        body = {
            "status": status,
            "active_tasks": registry.active(),
            "capacity": registry.capacity,
            "protocol": int(PROTOCOL_VERSION),
            "kinds": list(kinds.KINDS),
        }
        self._send_json(503 if registry.draining else 200, body)

    def _log(self, query: dict[str, list[str]]) -> None:
        try:
            self._authorize()
            since = int(query.get("since", ["0"])[0])
        except ProtocolError as exc:
            self._send_error(exc)
            return
        except ValueError:
            self._send_error(ProtocolError(400, "invalid_request", "since: must be an integer.", field="since"))
            return
        self._send_json(200, self.server.request_log.query(since=since, task_id=query.get("task_id", [None])[0]))

    def _logged(self, path: str) -> None:
        """Run /execute or /cancel and append what happened to the request log, whatever it was."""
        self._log_started = time.monotonic()
        entry: dict[str, Any] = {"time": now_iso(), "method": "POST", "path": path}
        self._log_entry = entry
        try:
            if path == "/execute":
                self._execute(entry)
            else:
                self._cancel(entry)
        except ProtocolError as exc:
            entry.update(status=exc.status, outcome=exc.code)
            self._discard_body()
            self._send_error(exc)
        finally:
            self._commit_log()

    def _commit_log(self) -> None:
        """Append this request's log entry, once, just before the last bytes of the answer go out.

        Before, not after: a client that has its answer must find the entry in ``/_log``,
        or tests that check "executed once" right after a result would race the worker.
        """
        entry, self._log_entry = self._log_entry, None
        if entry is not None:
            entry["duration_ms"] = round((time.monotonic() - self._log_started) * 1000, 1)
            self.server.request_log.append(entry)

    def _execute(self, entry: dict[str, Any]) -> None:
        config = self.server.config
        self._check_protocol()
        self._authorize()
        request = parse_execute(decode_json_object(self._read_body()), self.headers.get(IDEMPOTENCY_HEADER))
        entry.update(task_id=request.task_id, attempt=request.attempt, idempotency_key=request.idempotency_key)
        task = kinds.parse_task_input(request.spec)
        delay_ms = config.latency_ms + task.faults.latency_ms
        if delay_ms:
            time.sleep(delay_ms / 1000)
        call = self.server.registry.count_call(request.idempotency_key)
        entry["call"] = call
        injected = task.faults.status_for_call(call) or (503 if self.server.chaos_says_fail() else None)
        if injected:
            retry_after = config.retry_after_s if task.faults.retry_after_s is None else task.faults.retry_after_s
            raise ProtocolError(injected, "injected_fault", f"Injected HTTP {injected}.", retry_after=retry_after)
        admitted = self.server.registry.admit(request)
        if isinstance(admitted, dict):
            entry.update(status=200, outcome="replayed", result_status=admitted["status"], delivered=True)
            self._send_json(200, admitted, {"Idempotency-Replayed": "true"})
            return
        entry.update(status=200, outcome="executed")
        self._run(admitted, task, request, entry)

    def _cancel(self, entry: dict[str, Any]) -> None:
        self._check_protocol()
        self._authorize()
        request = parse_cancel(decode_json_object(self._read_body()))
        entry.update(task_id=request.task_id, attempt=request.attempt, idempotency_key=request.idempotency_key)
        state, result_status = self.server.registry.cancel(request.idempotency_key)
        entry.update(status=200, outcome=state)
        body = {"task_id": request.task_id, "attempt": request.attempt, "state": state, "result_status": result_status}
        self._send_json(200, body)

    # --- running an execution -------------------------------------------------------------------

    def _run(self, execution: Execution, task: kinds.TaskInput, request: ExecuteRequest, entry: dict[str, Any]) -> None:
        """Run the work in this thread; the response is a view on it, not its owner.

        If the client goes away (or a fault drops the connection) the work still runs
        to its result, which is stored under the key: the retry that follows gets 409
        while it runs and the replayed result after, never a second run.
        """
        drop_after = task.faults.drop_mid_stream
        stream = NdjsonStream(self, drop_after) if task.streams and self._accepts_ndjson() else None
        result: dict[str, Any] | None = None
        try:
            if stream is not None:
                stream.start()
            result = kinds.run(task, request, execution, stream.emit if stream else _discard, self.server.sandbox)
        except kinds.Aborted:
            result = None
        except Exception as exc:  # a bug in a kind must still end the attempt with a result
            result = failed_result(
                error=f"Internal error in the worker: {exc!r}", error_code="internal", retryable=True
            )
        finally:
            self.server.registry.finish(execution, result)
        if result is None:
            entry.update(outcome="aborted", delivered=False)
            self.drop_connection()
            return
        entry.update(result_status=result["status"], error_code=result.get("error_code"))
        if stream is not None:
            stream.cut_if_due()
            entry["delivered"] = stream.open
            self._commit_log()
            stream.finish(result)
        elif drop_after is not None:
            entry["delivered"] = False
            self.drop_connection()
        else:
            entry["delivered"] = True
            self._send_json(200, result)

    # --- plumbing --------------------------------------------------------------------------------

    def _check_protocol(self) -> None:
        version = self.headers.get(PROTOCOL_HEADER)
        if version is not None and version.strip() != PROTOCOL_VERSION:
            raise ProtocolError(
                400,
                "unsupported_protocol",
                f"{PROTOCOL_HEADER}: {version!r} is not supported; this worker speaks {PROTOCOL_VERSION}.",
                field=PROTOCOL_HEADER,
            )

    def _authorize(self) -> None:
        token = self.server.config.token
        if not token:
            return  # no token configured: local development only, documented as such
        header = self.headers.get("Authorization", "")
        scheme, _, presented = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(presented.strip().encode(), token.encode()):
            raise ProtocolError(401, "unauthorized", "Missing or wrong bearer token.")

    def _read_body(self) -> bytes:
        self._body_read = True
        length = self.headers.get("Content-Length")
        if self.headers.get("Transfer-Encoding") or length is None:
            self.close_connection = True
            raise ProtocolError(411, "length_required", "Send the body with a Content-Length.")
        try:
            size = int(length)
        except ValueError as exc:
            self.close_connection = True
            raise ProtocolError(400, "invalid_request", "Content-Length is not a number.") from exc
        if size > self.server.config.max_body_bytes:
            self.close_connection = True
            raise ProtocolError(413, "body_too_large", f"Body over {self.server.config.max_body_bytes} bytes.")
        body = self.rfile.read(size)
        content_type = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if content_type != JSON_TYPE:
            raise ProtocolError(415, "unsupported_media_type", f"Content-Type must be {JSON_TYPE}.", field="body")
        return body

    def _discard_body(self) -> None:
        """Consume an unread body so the keep-alive connection stays in step (or close it)."""
        if self._body_read:
            return
        self._body_read = True
        try:
            size = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            size = -1
        if 0 <= size <= self.server.config.max_body_bytes and not self.headers.get("Transfer-Encoding"):
            self.rfile.read(size)
        else:
            self.close_connection = True

    def _accepts_ndjson(self) -> bool:
        accept = self.headers.get("Accept", "*/*").lower()
        return any(t in accept for t in (NDJSON_TYPE, "*/*", "application/*"))

    def _send_error(self, exc: ProtocolError, allow: str | None = None) -> None:
        headers = {}
        if exc.retry_after is not None:
            headers["Retry-After"] = str(exc.retry_after)
        if exc.status == 401:
            headers["WWW-Authenticate"] = 'Bearer realm="agency-worker"'
        if allow:
            headers["Allow"] = allow
        self._send_json(exc.status, exc.body(), headers)

    def _send_json(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> bool:
        """Send a whole JSON response; False if the client had already gone."""
        data = json.dumps(body, separators=(",", ":")).encode()
        self._commit_log()
        try:
            self.send_response(status)
            self.send_header("Content-Type", JSON_TYPE)
            self.send_header("Content-Length", str(len(data)))
            self.send_header(PROTOCOL_HEADER, PROTOCOL_VERSION)
            self.send_header("Cache-Control", "no-store")
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(data)
            return True
        except OSError:
            self.close_connection = True
            return False

    def drop_connection(self) -> None:
        """Close the socket without finishing the response: what a crash or a network cut looks like."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)


def _discard(event: dict[str, Any]) -> None:
    """Events of an execution answered in JSON: only the result is sent."""
