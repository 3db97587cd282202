"""Circuit breakers: against a real reference worker process, and their bookkeeping on its own.

What reached the worker is counted in the worker's own request log, so "no call while
open" and "exactly one trial" are facts about the wire, not about the client's books.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis

from tasks.dispatch import breakers
from tasks.dispatch.breakers import BreakerRegistry
from tasks.dispatch.worker_client import AbortHandle, AttemptOutcome, WorkerClient, WorkerConfig
from tests.tasks.conftest import RunningWorker, closed_loopback_port

pytestmark = pytest.mark.timeout(30)

REDIS_URL = os.environ.get("REDIS_URL", "")
needs_redis = pytest.mark.skipif(not REDIS_URL, reason="needs REDIS_URL (a real redis-server)")


class Transitions:
    """A registry listener that remembers what it heard."""

    def __init__(self) -> None:
        self.heard: list[tuple[str, str, str]] = []
        self._lock = threading.Lock()

    def __call__(self, worker: str, old: str, new: str) -> None:
        with self._lock:
            self.heard.append((worker, old, new))

    def of(self, worker: str) -> list[tuple[str, str]]:
        return [(old, new) for name, old, new in self.heard if name == worker]


def _config(url: str, name: str, **overrides: Any) -> WorkerConfig:
    settings: dict[str, Any] = {
        "name": name,
        "base_url": url,
        "token": "test-worker-token",
        "retry_max_attempts": 3,
        "retry_initial_backoff_ms": 10,
        "retry_max_backoff_ms": 20,
        "breaker_fail_max": 5,
        "breaker_reset_timeout_s": 1,
    }
    return WorkerConfig(**{**settings, **overrides})


def _execute(client: WorkerClient, input: dict[str, Any] | None = None, task_id: str | None = None) -> AttemptOutcome:
    return client.execute(
        task_id=task_id or str(uuid.uuid4()),
        attempt=1,
        spec={"title": "t", "input": input or {"kind": "echo"}},
        deadline=datetime.now(UTC) + timedelta(seconds=30),
        abort=AbortHandle(),
        on_event=lambda event: None,
    )


def _executes(worker: RunningWorker) -> list[dict[str, Any]]:
    return [e for e in worker.log() if e["path"] == "/execute"]


def _sleep_past_reset(registry: BreakerRegistry, config: WorkerConfig) -> None:
    deadline = time.monotonic() + config.breaker_reset_timeout_s + 2
    while registry.is_open(config.name):
        assert time.monotonic() < deadline
        time.sleep(0.02)


@pytest.fixture
def worker_name() -> Iterator[str]:
    """A worker name no other test uses; its breaker keys are removed from Redis afterwards."""
    name = f"gpu-{uuid.uuid4().hex[:8]}"
    yield name
    if REDIS_URL:
        client = redis.Redis.from_url(REDIS_URL)
        keys = list(client.scan_iter(f"{breakers.REDIS_NAMESPACE}:{name}:*"))
        if keys:
            client.delete(*keys)
        client.close()


# --- against the worker ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "shared", [pytest.param(False, id="memory"), pytest.param(True, id="redis", marks=needs_redis)]
)
def test_a_worker_failing_every_call_opens_after_five_tries_gets_one_trial_and_closes_when_healthy(
    start_reference_worker: Callable[..., RunningWorker], worker_name: str, shared: bool
) -> None:
    failing = start_reference_worker("--always-fail")
    healthy = start_reference_worker()
    transitions = Transitions()
    registry = BreakerRegistry(REDIS_URL if shared else None, listener=transitions)
    name = worker_name
    client = WorkerClient(_config(failing.url, name), breakers=registry)

    first = _execute(client)  # tries 1-3 fail
    second = _execute(client)  # tries 4-5 fail; the fifth opens the breaker, so no third try
    refused = [_execute(client) for _ in range(3)]

    assert (first.kind, first.http_calls, first.breaker_open, first.retryable) == ("failed", 3, False, True)
    assert (second.kind, second.http_calls, second.breaker_open) == ("failed", 2, False)
    assert all((o.kind, o.http_calls, o.breaker_open, o.retryable) == ("failed", 0, True, True) for o in refused)
    assert refused[0].error.startswith(f"circuit breaker of worker {name} is open")
    assert len(_executes(failing)) == 5
    assert registry.state(name) == "open"
    assert registry.is_open(name)
    assert transitions.of(name) == [("closed", "open")]

    _sleep_past_reset(registry, client.config)
    trial = _execute(client)  # the one trial fails: open again, no retry after it

    assert (trial.kind, trial.http_calls) == ("failed", 1)
    assert len(_executes(failing)) == 6
    assert registry.state(name) == "open"
    assert _execute(client).breaker_open
    assert len(_executes(failing)) == 6

    _sleep_past_reset(registry, client.config)
    mended = WorkerClient(_config(healthy.url, name), breakers=registry)  # the admin pointed it at a healthy host
    healed = _execute(mended)

    assert (healed.kind, healed.http_calls) == ("result", 1)
    assert registry.state(name) == "closed"
    assert not registry.is_open(name)
    assert transitions.of(name) == [
        ("closed", "open"),
        ("open", "half_open"),
        ("half_open", "open"),
        ("open", "half_open"),
        ("half_open", "closed"),
    ]
    assert len(_executes(failing)) == 6
    assert len(_executes(healthy)) == 1


@pytest.mark.parametrize(
    "shared", [pytest.param(False, id="memory"), pytest.param(True, id="redis", marks=needs_redis)]
)
def test_a_half_open_trial_that_cannot_connect_reopens_the_breaker_and_dispatched_nothing(
    worker_name: str, shared: bool
) -> None:
    # Nothing listens on the port: the worker died, and its breaker opened while it was going.
    transitions = Transitions()
    registry = BreakerRegistry(REDIS_URL if shared else None, listener=transitions)
    config = _config(f"http://127.0.0.1:{closed_loopback_port()}", worker_name)
    client = WorkerClient(config, breakers=registry)
    _fail(registry.get(config), config.breaker_fail_max)
    _sleep_past_reset(registry, config)

    trial = _execute(client)

    assert (trial.kind, trial.http_calls, trial.breaker_open) == ("failed", 1, False)  # the trial, and no retry
    assert (trial.unreached, trial.not_dispatched) == (True, True)  # so the task's attempt is not used up
    assert "Connection refused" in trial.error
    assert registry.state(worker_name) == "open"
    assert registry.is_open(worker_name)
    assert transitions.of(worker_name) == [("closed", "open"), ("open", "half_open"), ("half_open", "open")]
    assert _execute(client).breaker_open  # re-opened for a full reset timeout: no call goes out now


def test_refused_connections_open_a_closed_breaker_yet_no_attempt_was_dispatched(worker_name: str) -> None:
    registry = BreakerRegistry()
    client = WorkerClient(_config(f"http://127.0.0.1:{closed_loopback_port()}", worker_name), breakers=registry)

    first = _execute(client)  # tries 1-3 refused
    second = _execute(client)  # tries 4-5 refused; the fifth opens the breaker
    third = _execute(client)

    assert (first.http_calls, first.unreached, first.not_dispatched) == (3, True, True)
    assert (second.http_calls, second.unreached, second.not_dispatched) == (2, True, True)
    assert (third.http_calls, third.breaker_open, third.unreached, third.not_dispatched) == (0, True, False, True)
    assert registry.state(worker_name) == "open"


def test_while_the_trial_is_in_flight_other_callers_are_refused(reference_worker: RunningWorker) -> None:
    registry = BreakerRegistry()
    config = _config(reference_worker.url, f"gpu-{uuid.uuid4().hex[:6]}")
    breaker = registry.get(config)
    for _ in range(config.breaker_fail_max):
        permit = breaker.acquire()
        assert permit is not None
        permit.failure()
    assert registry.is_open(config.name)
    _sleep_past_reset(registry, config)
    client = WorkerClient(config, breakers=registry)
    slow_task = str(uuid.uuid4())

    with ThreadPoolExecutor(max_workers=1) as pool:
        trial = pool.submit(_execute, client, {"kind": "echo", "faults": {"latency_ms": 400}}, slow_task)
        time.sleep(0.15)  # the trial's request is at the worker, waiting 400 ms for its answer
        refused = _execute(client)
        trial_outcome = trial.result(5)

    assert (refused.kind, refused.http_calls, refused.breaker_open) == ("failed", 0, True)
    assert (trial_outcome.kind, trial_outcome.http_calls) == ("result", 1)
    assert registry.state(config.name) == "closed"
    assert [e["task_id"] for e in reference_worker.log(task_id=slow_task)] == [slow_task]


@pytest.mark.parametrize(
    "shared", [pytest.param(False, id="memory"), pytest.param(True, id="redis", marks=needs_redis)]
)
def test_concurrent_attempts_to_one_worker_overlap(
    start_reference_worker: Callable[..., RunningWorker], worker_name: str, shared: bool
) -> None:
    """pybreaker's call() would hold one lock across the request and serialise these eight."""
    worker = start_reference_worker()
    registry = BreakerRegistry(REDIS_URL) if shared else BreakerRegistry()
    client = WorkerClient(_config(worker.url, worker_name), breakers=registry)
    sleep_s, threads = 0.5, 8

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        outcomes = list(pool.map(lambda _: _execute(client, {"kind": "sleep", "seconds": sleep_s}), range(threads)))
    wall = time.monotonic() - started

    assert all(o.kind == "result" and o.http_calls == 1 for o in outcomes)
    assert wall < threads * sleep_s / 2  # serialised, it would take 4 s
    spans = [
        (datetime.fromisoformat(e["time"]).timestamp(), e["duration_ms"] / 1000)
        for e in _executes(worker)
        if e["outcome"] == "executed"
    ]
    assert len(spans) == threads
    marks = sorted([(start, 1) for start, _ in spans] + [(start + length, -1) for start, length in spans])
    running = most = 0
    for _, step in marks:
        running += step
        most = max(most, running)
    assert most >= 4


# --- bookkeeping ------------------------------------------------------------------------------------


def _fail(breaker: breakers.WorkerBreaker, times: int) -> None:
    for _ in range(times):
        permit = breaker.acquire()
        assert permit is not None
        permit.failure()


def test_a_success_resets_the_count_of_consecutive_failures() -> None:
    registry = BreakerRegistry()
    breaker = registry.get(_config("http://127.0.0.1:9", "w"))

    _fail(breaker, 4)
    permit = breaker.acquire()
    assert permit is not None
    permit.success()
    _fail(breaker, 4)

    assert registry.state("w") == "closed"
    _fail(breaker, 1)
    assert registry.state("w") == "open"
    assert breaker.acquire() is None


def test_answers_that_are_not_the_workers_fault_do_not_count() -> None:
    registry = BreakerRegistry()
    breaker = registry.get(_config("http://127.0.0.1:9", "w"))
    _fail(breaker, 4)

    for _ in range(3):
        permit = breaker.acquire()
        assert permit is not None
        permit.release()  # aborted by the caller: no verdict

    assert breaker.fail_counter == 4
    assert registry.state("w") == "closed"


def test_a_trial_released_without_a_verdict_passes_the_trial_to_the_next_caller() -> None:
    transitions = Transitions()
    registry = BreakerRegistry(listener=transitions)
    config = _config("http://127.0.0.1:9", "w")
    breaker = registry.get(config)
    _fail(breaker, 5)
    _sleep_past_reset(registry, config)

    trial = breaker.acquire()
    assert trial is not None
    assert trial.trial
    assert breaker.acquire() is None
    trial.release()
    second = breaker.acquire()

    assert second is not None
    assert second.trial
    assert registry.state("w") == "half_open"
    second.success()
    assert registry.state("w") == "closed"
    assert transitions.of("w") == [("closed", "open"), ("open", "half_open"), ("half_open", "closed")]


def test_a_trial_whose_caller_vanished_is_given_to_another_after_its_lease(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(breakers, "TRIAL_LEASE_MARGIN_S", 0.0)
    registry = BreakerRegistry()
    config = _config("http://127.0.0.1:9", "w", connect_timeout_s=0.1, request_timeout_s=0.1)
    breaker = registry.get(config)
    _fail(breaker, 5)
    _sleep_past_reset(registry, config)

    assert breaker.acquire() is not None  # and never recorded, as if its process died
    assert breaker.acquire() is None
    time.sleep(0.25)

    assert breaker.acquire() is not None


def test_a_failing_listener_does_not_fail_the_call() -> None:
    def listener(worker: str, old: str, new: str) -> None:
        raise RuntimeError("database down")

    registry = BreakerRegistry(listener=listener)
    breaker = registry.get(_config("http://127.0.0.1:9", "w"))

    _fail(breaker, 5)

    assert registry.state("w") == "open"


def test_a_worker_never_called_reads_as_closed() -> None:
    registry = BreakerRegistry()

    assert registry.state("unknown") == "closed"
    assert registry.is_open("unknown") is False


def test_new_thresholds_apply_to_an_existing_breaker() -> None:
    registry = BreakerRegistry()
    breaker = registry.get(_config("http://127.0.0.1:9", "w"))
    _fail(breaker, 2)

    assert registry.get(_config("http://127.0.0.1:9", "w", breaker_fail_max=3)) is breaker
    _fail(breaker, 1)
    assert registry.state("w") == "open"


def test_an_unreachable_breaker_store_lets_calls_through() -> None:
    """Losing Redis must not stop the fleet: the breaker fails open (pybreaker's fallback state is closed)."""
    registry = BreakerRegistry("redis://127.0.0.1:9/0")
    breaker = registry.get(_config("http://127.0.0.1:9", "w"))

    _fail(breaker, 6)

    assert breaker.acquire() is not None
    assert registry.is_open("w") is False


# --- shared through Redis -------------------------------------------------------------------------------


@needs_redis
def test_registries_of_two_processes_share_the_state_through_redis(worker_name: str) -> None:
    heard_here, heard_there = Transitions(), Transitions()
    here, there = BreakerRegistry(REDIS_URL, heard_here), BreakerRegistry(REDIS_URL, heard_there)
    config = _config("http://127.0.0.1:9", worker_name)
    name = config.name
    mine, theirs = here.get(config), there.get(config)

    _fail(mine, 3)
    _fail(theirs, 2)  # the count is shared: this is the fifth consecutive failure

    assert here.state(name) == there.state(name) == "open"
    assert there.is_open(name)
    assert mine.acquire() is None
    assert theirs.acquire() is None

    _sleep_past_reset(there, config)
    trial = theirs.acquire()
    assert trial is not None
    assert mine.acquire() is None  # one trial across processes
    assert here.state(name) == "half_open"
    trial.success()

    assert here.state(name) == there.state(name) == "closed"
    assert mine.acquire() is not None
    # Each process reports the transitions it made, so the audit gets each change once.
    assert heard_here.of(name) == []
    assert heard_there.of(name) == [("closed", "open"), ("open", "half_open"), ("half_open", "closed")]


def test_routing_sees_a_half_open_breaker_with_a_trial_in_flight_as_refusing():
    from tasks.dispatch.breakers import BreakerRegistry
    from tasks.dispatch.worker_client import WorkerConfig

    registry = BreakerRegistry()
    config = WorkerConfig(
        name="w", base_url="http://127.0.0.1:9", token="", breaker_fail_max=1, breaker_reset_timeout_s=0
    )
    breaker = registry.get(config)
    assert not registry.refuses_now("w")
    permit = breaker.acquire()
    permit.failure()  # one failure opens it (fail_max 1); the reset timeout of 0 s has passed at once
    assert registry.state("w") == "open"
    assert not registry.refuses_now("w")  # a trial would be let through now
    trial = breaker.acquire()
    assert trial is not None
    assert registry.state("w") == "half_open"
    assert registry.refuses_now("w")  # the trial is in flight: nobody else gets through
    assert breaker.acquire() is None
    trial.success()
    assert registry.state("w") == "closed"
    assert not registry.refuses_now("w")
