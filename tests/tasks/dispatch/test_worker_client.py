"""The worker client against a real reference worker process on loopback.

Delays are checked against the worker's own request log (arrival times it stamped),
not against the client's idea of when it sent something. Backoffs are small so the
file stays fast; every test uses its own task ids and its own breaker registry.
"""

from __future__ import annotations

import itertools
import json
import logging
import random
import socket
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests

from tasks.dispatch.breakers import BreakerRegistry
from tasks.dispatch.worker_client import AbortHandle, AttemptOutcome, WorkerClient, WorkerConfig
from tests.tasks.conftest import RunningWorker, closed_loopback_port

pytestmark = pytest.mark.timeout(30)

# How long abort() may take to unblock a thread stuck in recv(); the brief is ~100 ms.
ABORT_WITHIN_S = 0.15


def _config(worker: RunningWorker, **overrides: Any) -> WorkerConfig:
    settings: dict[str, Any] = {
        "name": f"w-{uuid.uuid4().hex[:8]}",
        "base_url": worker.url,
        "token": worker.token or "",
        "retry_initial_backoff_ms": 20,
        "retry_max_backoff_ms": 100,
    }
    return WorkerConfig(**{**settings, **overrides})


def _client(config: WorkerConfig, *, log: logging.Logger | None = None) -> WorkerClient:
    return WorkerClient(config, breakers=BreakerRegistry(), log=log)


def _execute(
    client: WorkerClient,
    input: dict[str, Any],
    *,
    task_id: str | None = None,
    deadline_s: float = 30,
    abort: AbortHandle | None = None,
    on_event: Callable[[dict[str, Any]], None] | None = None,
    calls: list[dict[str, Any]] | None = None,
) -> AttemptOutcome:
    return client.execute(
        task_id=task_id or str(uuid.uuid4()),
        attempt=1,
        spec={"title": "t", "input": input},
        deadline=datetime.now(UTC) + timedelta(seconds=deadline_s),
        abort=abort or AbortHandle(),
        on_event=on_event or (lambda event: None),
        on_call=calls.append if calls is not None else None,
    )


def _arrivals(worker: RunningWorker, task_id: str) -> list[float]:
    """When each request of ``task_id`` reached the worker, in seconds, from its own log."""
    entries = [e for e in worker.log(task_id=task_id) if e["path"] == "/execute"]
    return [datetime.fromisoformat(e["time"]).timestamp() for e in sorted(entries, key=lambda e: e["time"])]


def _gaps(times: list[float]) -> list[float]:
    return [later - earlier for earlier, later in itertools.pairwise(times)]


def _run_in_thread(target: Callable[[], AttemptOutcome]) -> tuple[threading.Thread, dict[str, Any]]:
    box: dict[str, Any] = {}

    def run() -> None:
        box["outcome"] = target()
        box["returned_at"] = time.monotonic()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, box


def _wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < end, "condition not reached in time"
        time.sleep(0.01)


def _active_tasks(worker: RunningWorker) -> int:
    return requests.get(f"{worker.url}/health", timeout=2).json()["active_tasks"]


# --- results -----------------------------------------------------------------------------------


def test_an_echo_is_one_call_with_a_json_result(reference_worker: RunningWorker) -> None:
    config = _config(reference_worker)
    calls: list[dict[str, Any]] = []
    task_id = str(uuid.uuid4())

    outcome = _execute(_client(config), {"kind": "echo", "output": "hi"}, task_id=task_id, calls=calls)

    assert outcome.kind == "result"
    assert outcome.result is not None
    assert outcome.result["status"] == "completed"
    assert outcome.result["output"] == "hi"
    assert (outcome.http_calls, outcome.retryable, outcome.breaker_open, outcome.error) == (1, False, False, "")
    assert calls == [
        {
            "worker": config.name,
            "url": f"{reference_worker.url}/execute",
            "attempt": 1,
            "try": 1,
            "status": 200,
            "latency_ms": calls[0]["latency_ms"],
            "error": None,
        }
    ]
    [entry] = reference_worker.log(task_id=task_id)
    assert entry["idempotency_key"] == f"{task_id}:1"
    assert entry["outcome"] == "executed"


def test_a_stream_hands_over_progress_log_and_artifact_events_then_the_result(
    reference_worker: RunningWorker,
) -> None:
    events: list[dict[str, Any]] = []
    artifact = {"path": "report.html", "media_type": "text/html"}

    outcome = _execute(
        _client(_config(reference_worker)),
        {"kind": "sleep", "seconds": 0.2, "interval_s": 0.05, "artifacts": [artifact]},
        on_event=events.append,
    )

    assert outcome.kind == "result"
    assert outcome.result is not None
    assert outcome.result["output"] == {"slept_s": 0.2}
    assert {e["type"] for e in events} == {"log", "progress", "artifact"}
    assert events[-1] == {"type": "progress", "percent": 100, "phase": "done", "message": "Slept 0.2 s."}
    assert {"type": "artifact", **artifact} in events


def test_a_failed_result_is_a_result_whose_retryable_comes_from_the_worker(reference_worker: RunningWorker) -> None:
    outcome = _execute(_client(_config(reference_worker)), {"kind": "fail", "error": "model refused"})

    assert outcome.kind == "result"
    assert outcome.result is not None
    assert outcome.result["status"] == "failed"
    assert outcome.error == "model refused"
    assert outcome.retryable is True  # absent "retryable" means true (protocol §4)
    assert outcome.http_calls == 1


def test_an_exception_from_on_event_propagates_and_leaves_the_breaker_unjudged(reference_worker: RunningWorker) -> None:
    config = _config(reference_worker)
    registry = BreakerRegistry()
    client = WorkerClient(config, breakers=registry)

    def on_event(event: dict[str, Any]) -> None:
        raise RuntimeError("timeline write failed")

    with pytest.raises(RuntimeError, match="timeline write failed"):
        _execute(client, {"kind": "sleep", "seconds": 0.1}, on_event=on_event)

    assert registry.get(config).fail_counter == 0
    assert _execute(client, {"kind": "echo"}).kind == "result"


# --- retries -------------------------------------------------------------------------------------


def test_503s_then_success_takes_three_calls_with_backoff_inside_the_policy(reference_worker: RunningWorker) -> None:
    config = _config(reference_worker, retry_initial_backoff_ms=100, retry_max_backoff_ms=1000)
    task_id = str(uuid.uuid4())
    calls: list[dict[str, Any]] = []

    outcome = _execute(
        _client(config), {"kind": "echo", "faults": {"status_503_times": 2}}, task_id=task_id, calls=calls
    )

    assert outcome.kind == "result"
    assert outcome.http_calls == 3
    assert [c["status"] for c in calls] == [503, 503, 200]
    assert [c["try"] for c in calls] == [1, 2, 3]
    assert calls[0]["error"] == "HTTP 503: injected_fault Injected HTTP 503."
    arrivals = _arrivals(reference_worker, task_id)
    assert len(arrivals) == 3
    # Full jitter: the wait before try n is uniform in [0, initial * 2**(n-2)]; the slack covers
    # the first answer's round trip and the log's millisecond stamps.
    first, second = _gaps(arrivals)
    assert 0 <= first <= 0.1 + 0.1
    assert 0 <= second <= 0.2 + 0.1


def test_waits_grow_exponentially_up_to_the_maximum_backoff(
    reference_worker: RunningWorker, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Jitter pinned to the top of its window, so each wait is exactly the policy's bound.
    monkeypatch.setattr(random, "uniform", lambda low, high: high)
    config = _config(
        reference_worker,
        retry_max_attempts=6,
        retry_initial_backoff_ms=40,
        retry_max_backoff_ms=120,
        breaker_fail_max=10,  # five failed tries would open the default breaker
    )
    task_id = str(uuid.uuid4())

    outcome = _execute(_client(config), {"kind": "echo", "faults": {"status_503_times": 5}}, task_id=task_id)

    assert outcome.kind == "result"
    assert outcome.http_calls == 6
    for gap, wait in zip(_gaps(_arrivals(reference_worker, task_id)), [0.04, 0.08, 0.12, 0.12, 0.12], strict=True):
        assert wait - 0.005 <= gap <= wait + 0.1


def test_retry_after_is_honoured_but_capped_at_the_maximum_backoff(reference_worker: RunningWorker) -> None:
    config = _config(reference_worker, retry_initial_backoff_ms=10, retry_max_backoff_ms=300)
    task_id = str(uuid.uuid4())

    outcome = _execute(
        _client(config), {"kind": "echo", "faults": {"status_503_times": 1, "retry_after_s": 5}}, task_id=task_id
    )

    assert outcome.kind == "result"
    [gap] = _gaps(_arrivals(reference_worker, task_id))
    assert 0.3 - 0.005 <= gap <= 0.3 + 0.1  # Retry-After 5 s, capped at 300 ms


def test_retries_stop_after_max_attempts_and_report_a_retryable_failure(reference_worker: RunningWorker) -> None:
    config = _config(reference_worker, retry_max_attempts=3)

    outcome = _execute(_client(config), {"kind": "echo", "faults": {"status_500_times": 10}})

    assert outcome.kind == "failed"
    assert (outcome.http_calls, outcome.retryable, outcome.breaker_open) == (3, True, False)
    assert outcome.error == "HTTP 500: injected_fault Injected HTTP 500."


def test_429_is_retried_and_does_not_count_against_the_breaker(reference_worker: RunningWorker) -> None:
    config = _config(reference_worker)
    registry = BreakerRegistry()
    client = WorkerClient(config, breakers=registry)

    outcome = _execute(client, {"kind": "echo", "faults": {"status_429_times": 2}})

    assert outcome.kind == "result"
    assert outcome.http_calls == 3
    assert registry.get(config).fail_counter == 0


def test_a_bad_request_is_not_retried(reference_worker: RunningWorker) -> None:
    task_id = str(uuid.uuid4())

    outcome = _execute(_client(_config(reference_worker)), {"kind": "sleeep"}, task_id=task_id)

    assert outcome.kind == "failed"
    assert (outcome.http_calls, outcome.retryable) == (1, False)
    assert outcome.error.startswith("HTTP 400: invalid_request spec.input.kind: unknown kind 'sleeep'")
    assert len(reference_worker.log(task_id=task_id)) == 1


def test_a_wrong_token_is_not_retried_and_not_echoed(reference_worker: RunningWorker) -> None:
    calls: list[dict[str, Any]] = []
    config = _config(reference_worker, token="not-the-token-x9")

    outcome = _execute(_client(config), {"kind": "echo"}, calls=calls)

    assert outcome.kind == "failed"
    assert (outcome.http_calls, outcome.retryable) == (1, False)
    assert outcome.error == "HTTP 401: unauthorized Missing or wrong bearer token."
    assert "not-the-token-x9" not in json.dumps(calls)


def test_a_stream_dropped_midway_is_retried_with_the_same_idempotency_key(reference_worker: RunningWorker) -> None:
    # The retry meets the still-running first delivery (409, Retry-After 1 s), then gets the replay.
    config = _config(reference_worker, retry_max_attempts=4, retry_max_backoff_ms=1500)
    task_id = str(uuid.uuid4())
    events: list[dict[str, Any]] = []

    outcome = _execute(
        _client(config),
        {"kind": "sleep", "seconds": 0.3, "interval_s": 0.05, "faults": {"drop_mid_stream": 2}},
        task_id=task_id,
        on_event=events.append,
    )

    assert outcome.kind == "result"
    assert outcome.result is not None
    assert outcome.result["output"] == {"slept_s": 0.3}
    entries = sorted(reference_worker.log(task_id=task_id), key=lambda e: e["time"])
    assert {e["idempotency_key"] for e in entries} == {f"{task_id}:1"}
    assert [e["outcome"] for e in entries] == ["executed", "in_progress", "replayed"]
    assert outcome.http_calls == 3
    assert len([e for e in events if e["type"] == "progress"]) == 2  # what came before the drop


def test_a_json_answer_cut_before_it_arrives_is_retried_and_replayed(reference_worker: RunningWorker) -> None:
    task_id = str(uuid.uuid4())

    outcome = _execute(
        _client(_config(reference_worker)), {"kind": "echo", "faults": {"drop_mid_stream": 0}}, task_id=task_id
    )

    assert outcome.kind == "result"
    assert outcome.http_calls == 2
    assert [e["outcome"] for e in sorted(reference_worker.log(task_id=task_id), key=lambda e: e["seq"])] == [
        "executed",
        "replayed",
    ]


# --- reached or not ----------------------------------------------------------------------------------


class _FullListener:
    """A loopback listener whose accept queue is full: the kernel drops further SYNs, so a connect times out."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0), backlog=0)
        self.port = self.server.getsockname()[1]
        self._fillers: list[socket.socket] = []
        for _ in range(3):  # more than the queue holds (backlog 0 takes one on Linux)
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", self.port))
            self._fillers.append(filler)
        time.sleep(0.05)

    def close(self) -> None:
        for sock in [*self._fillers, self.server]:
            sock.close()


def _serve_once(answer: bytes | None) -> tuple[socket.socket, int]:
    """A listener that takes one connection and stops listening (a later one is refused), reads
    the request, sends ``answer`` (or nothing) and hangs up."""
    server = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            conn.recv(65536)
            server.close()  # before hanging up: the client's retry must find nobody listening
            if answer is not None:
                conn.sendall(answer)

    threading.Thread(target=serve, daemon=True).start()
    return server, server.getsockname()[1]


@pytest.mark.parametrize(
    "host",
    [
        pytest.param("refused", id="connection-refused"),
        pytest.param("dns", id="dns-failure"),
        pytest.param("full", id="connect-timeout"),
    ],
)
def test_tries_that_never_get_a_connection_leave_the_attempt_undispatched(
    reference_worker: RunningWorker, host: str
) -> None:
    listener = _FullListener() if host == "full" else None
    if listener is not None:
        url = f"http://127.0.0.1:{listener.port}"
    elif host == "dns":
        url = "http://worker.no-such-host.invalid"  # .invalid never resolves (RFC 6761)
    else:
        url = f"http://127.0.0.1:{closed_loopback_port()}"
    config = _config(reference_worker, base_url=url, retry_max_attempts=2, connect_timeout_s=0.2)
    registry = BreakerRegistry()
    calls: list[dict[str, Any]] = []
    try:
        outcome = _execute(WorkerClient(config, breakers=registry), {"kind": "echo"}, calls=calls)
    finally:
        if listener:
            listener.close()

    assert (outcome.kind, outcome.http_calls, outcome.retryable) == ("failed", 2, True)
    assert (outcome.unreached, outcome.breaker_open, outcome.not_dispatched) == (True, False, True)
    assert outcome.error.startswith(f"worker {config.name} could not be reached; nothing was sent (last try: ")
    assert [c["status"] for c in calls] == [None, None]
    assert registry.get(config).fail_counter == 2  # a dead host is still what the breaker is for


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(None, id="hung-up-without-answering"),
        pytest.param(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", id="503"),
    ],
)
def test_one_try_that_got_a_connection_makes_the_attempt_dispatched(
    reference_worker: RunningWorker, answer: bytes | None
) -> None:
    # The first try is taken (the worker may have started the work), the second is refused.
    server, port = _serve_once(answer)
    config = _config(reference_worker, base_url=f"http://127.0.0.1:{port}", retry_max_attempts=2)
    calls: list[dict[str, Any]] = []
    try:
        outcome = _execute(_client(config), {"kind": "echo"}, calls=calls)
    finally:
        server.close()

    assert (outcome.kind, outcome.http_calls) == ("failed", 2)
    assert (outcome.unreached, outcome.not_dispatched) == (False, False)
    assert "Connection refused" in outcome.error  # the last try's, reported as an ordinary failure
    assert [c["status"] for c in calls] == [None if answer is None else 503, None]


# --- abort ------------------------------------------------------------------------------------------


def test_abort_unblocks_a_thread_waiting_for_the_answer_of_a_hung_worker(reference_worker: RunningWorker) -> None:
    client = _client(_config(reference_worker))
    task_id = str(uuid.uuid4())
    abort = AbortHandle()
    before = _active_tasks(reference_worker)
    thread, box = _run_in_thread(
        lambda: _execute(client, {"kind": "echo", "faults": {"hang": True}}, task_id=task_id, abort=abort)
    )
    _wait_until(lambda: _active_tasks(reference_worker) > before)  # the request is in, no header will come
    time.sleep(0.05)

    aborted_at = time.monotonic()
    abort.abort()
    thread.join(5)

    assert box["returned_at"] - aborted_at < ABORT_WITHIN_S
    outcome = box["outcome"]
    assert (outcome.kind, outcome.http_calls, outcome.retryable) == ("canceled", 1, False)
    assert client.cancel(task_id=task_id, attempt=1) is True


def test_abort_unblocks_a_thread_waiting_for_the_next_line_of_a_stream(reference_worker: RunningWorker) -> None:
    client = _client(_config(reference_worker))
    task_id = str(uuid.uuid4())
    abort = AbortHandle()
    first_event = threading.Event()

    def on_event(event: dict[str, Any]) -> None:
        first_event.set()

    thread, box = _run_in_thread(
        lambda: _execute(
            client,
            {"kind": "sleep", "seconds": 60, "interval_s": 10},
            task_id=task_id,
            abort=abort,
            on_event=on_event,
        )
    )
    assert first_event.wait(5)  # the opening log line; the next line is 10 s away
    time.sleep(0.05)

    aborted_at = time.monotonic()
    abort.abort()
    thread.join(5)

    assert box["returned_at"] - aborted_at < ABORT_WITHIN_S
    assert box["outcome"].kind == "canceled"
    assert client.cancel(task_id=task_id, attempt=1) is True
    _wait_until(lambda: any(e["outcome"] == "canceling" for e in reference_worker.log(task_id=task_id)))


def test_abort_cuts_a_retry_backoff_short(reference_worker: RunningWorker) -> None:
    config = _config(reference_worker, retry_max_backoff_ms=5000)
    abort = AbortHandle()
    first_call = threading.Event()
    calls: list[dict[str, Any]] = []

    def on_call(record: dict[str, Any]) -> None:
        calls.append(record)
        first_call.set()

    client = _client(config)
    thread, box = _run_in_thread(
        lambda: client.execute(
            task_id=str(uuid.uuid4()),
            attempt=1,
            spec={"input": {"kind": "echo", "faults": {"status_503_times": 5, "retry_after_s": 5}}},
            deadline=datetime.now(UTC) + timedelta(seconds=30),
            abort=abort,
            on_event=lambda event: None,
            on_call=on_call,
        )
    )
    assert first_call.wait(5)
    time.sleep(0.05)  # now in the 5 s Retry-After wait

    aborted_at = time.monotonic()
    abort.abort()
    thread.join(5)

    assert box["returned_at"] - aborted_at < ABORT_WITHIN_S
    assert (box["outcome"].kind, box["outcome"].http_calls) == ("canceled", 1)
    assert len(calls) == 1


def test_abort_unblocks_a_tls_handshake_that_a_server_never_answers() -> None:
    # A listener that accepts and then says nothing: the client is stuck waiting for the ServerHello.
    server = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    threading.Thread(target=lambda: accepted.append(server.accept()[0]), daemon=True).start()
    port = server.getsockname()[1]
    client = _client(WorkerConfig(name="tls", base_url=f"https://127.0.0.1:{port}", token="tls-token"))
    abort = AbortHandle()
    try:
        thread, box = _run_in_thread(lambda: _execute(client, {"kind": "echo"}, abort=abort))
        _wait_until(lambda: bool(accepted))
        time.sleep(0.1)

        aborted_at = time.monotonic()
        abort.abort()
        thread.join(5)

        assert box["returned_at"] - aborted_at < ABORT_WITHIN_S
        assert (box["outcome"].kind, box["outcome"].http_calls) == ("canceled", 1)
    finally:
        for sock in [*accepted, server]:
            sock.close()


def test_an_attempt_aborted_before_it_starts_sends_nothing(reference_worker: RunningWorker) -> None:
    abort = AbortHandle()
    abort.abort()
    task_id = str(uuid.uuid4())

    outcome = _execute(_client(_config(reference_worker)), {"kind": "echo"}, task_id=task_id, abort=abort)

    assert (outcome.kind, outcome.http_calls) == ("canceled", 0)
    assert reference_worker.log(task_id=task_id) == []


# --- deadline -----------------------------------------------------------------------------------------


def test_a_hung_worker_answers_deadline_exceeded_at_the_deadline(reference_worker: RunningWorker) -> None:
    started = time.monotonic()

    outcome = _execute(_client(_config(reference_worker)), {"kind": "echo", "faults": {"hang": True}}, deadline_s=1)

    assert time.monotonic() - started < 1.5
    assert outcome.kind == "result"
    assert outcome.result is not None
    assert (outcome.result["status"], outcome.result["error_code"]) == ("failed", "deadline_exceeded")
    assert outcome.retryable is True


def test_the_client_gives_up_at_the_deadline_and_tells_the_worker(reference_worker: RunningWorker) -> None:
    # The worker sits 3 s on the request before even looking at the deadline: only the client can stop it.
    task_id = str(uuid.uuid4())
    started = time.monotonic()

    outcome = _execute(
        _client(_config(reference_worker)),
        {"kind": "echo", "faults": {"latency_ms": 3000}},
        task_id=task_id,
        deadline_s=0.5,
    )

    elapsed = time.monotonic() - started
    assert 0.5 <= elapsed < 0.5 + 1.0 + 0.3  # deadline plus the protocol's one-second grace
    assert outcome.kind == "failed"
    assert outcome.error.startswith("no answer by the attempt's deadline")
    assert (outcome.http_calls, outcome.retryable) == (1, True)
    _wait_until(lambda: any(e["path"] == "/cancel" for e in reference_worker.log(task_id=task_id)))


def test_no_retry_starts_when_its_wait_would_end_past_the_deadline(reference_worker: RunningWorker) -> None:
    config = _config(reference_worker, retry_max_attempts=10, retry_max_backoff_ms=1000)
    task_id = str(uuid.uuid4())
    started = time.monotonic()

    outcome = _execute(
        _client(config),
        {"kind": "echo", "faults": {"status_503_times": 10, "retry_after_s": 1}},
        task_id=task_id,
        deadline_s=1.5,
    )

    assert time.monotonic() - started < 1.3  # tries at 0 s and 1 s; a third would be at 2 s
    assert (outcome.kind, outcome.http_calls) == ("failed", 2)
    assert len(_arrivals(reference_worker, task_id)) == 2


def test_an_attempt_whose_deadline_has_passed_sends_nothing(reference_worker: RunningWorker) -> None:
    task_id = str(uuid.uuid4())

    outcome = _execute(_client(_config(reference_worker)), {"kind": "echo"}, task_id=task_id, deadline_s=-1)

    assert (outcome.kind, outcome.http_calls, outcome.retryable) == ("failed", 0, True)
    assert reference_worker.log(task_id=task_id) == []


# --- credentials ----------------------------------------------------------------------------------------


def test_credentials_appear_in_no_log_line_call_record_or_error(
    start_reference_worker: Callable[..., RunningWorker], caplog: pytest.LogCaptureFixture
) -> None:
    token = "tok-SUPERSECRET-4711"
    worker = start_reference_worker(token=token)
    port = worker.url.rsplit(":", 1)[1]
    caplog.set_level(logging.INFO)
    caplog.set_level(logging.DEBUG, logger="tasks")
    calls: list[dict[str, Any]] = []
    outcomes: list[AttemptOutcome] = []
    secrets = ["secret-pw", "qsecret", token]

    good = _config(worker, base_url=f"http://user:secret-pw@127.0.0.1:{port}/?code=qsecret", token=token)
    client = _client(good, log=logging.getLogger("tasks.dispatch.worker_client.test"))
    outcomes.append(_execute(client, {"kind": "echo"}, calls=calls))
    outcomes.append(_execute(client, {"kind": "echo", "faults": {"status_503_times": 1}}, calls=calls))
    outcomes.append(_execute(client, {"kind": "nope"}, calls=calls))
    assert client.cancel(task_id="t", attempt=1) is True
    assert client.health()["status"] == "ok"
    # Nothing listens on port 9 of loopback: the exception texts quote the URL.
    dead = _config(
        worker, base_url="http://user:secret-pw@127.0.0.1:9/?code=qsecret", token=token, retry_max_attempts=2
    )
    dead_client = _client(dead)
    outcomes.append(_execute(dead_client, {"kind": "echo"}, calls=calls))
    assert dead_client.cancel(task_id="t", attempt=1) is False
    health = dead_client.health()

    assert [o.kind for o in outcomes] == ["result", "result", "failed", "failed"]
    assert health["status"] == "unreachable"
    assert "ConnectionError" in outcomes[-1].error
    assert all(
        c["url"] in {f"http://127.0.0.1:{port}/execute?code=***", "http://127.0.0.1:9/execute?code=***"} for c in calls
    )
    written = caplog.text + json.dumps(calls) + json.dumps([o.error for o in outcomes]) + json.dumps(health)
    assert "worker call" in caplog.text
    for secret in secrets:
        assert secret not in written


# --- health and cancel ----------------------------------------------------------------------------------


def test_health_reports_the_workers_fields_and_latency(reference_worker: RunningWorker) -> None:
    health = _client(_config(reference_worker)).health()

    assert health["status"] == "ok"
    assert health["capacity"] == 16
    assert health["http_status"] == 200
    assert health["latency_ms"] >= 0


def test_health_and_cancel_of_an_unreachable_worker_do_not_raise(reference_worker: RunningWorker) -> None:
    client = _client(_config(reference_worker, base_url="http://127.0.0.1:9"))

    assert client.health()["status"] == "unreachable"
    assert client.cancel(task_id="x", attempt=1) is False
