"""The dispatcher end to end against real reference worker processes on loopback.

These tests use committed data (``transactional_db``) because the dispatcher's
threads, and in some tests whole dispatcher processes, use their own
database connections.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from audit.models import AuditRecord
from tasks import services
from tasks.dispatch import fleet
from tasks.dispatch.dispatcher import Dispatcher, worker_config
from tasks.models import Task, TaskEvent, Worker
from tests.tasks.conftest import WORKER_TOKEN, closed_loopback_port

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]


def wait_for(predicate: Callable[[], Any], timeout: float = 15.0, every: float = 0.02) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"condition not met within {timeout} s")


def state_of(task: Task) -> str:
    return Task.objects.values_list("state", flat=True).get(pk=task.pk)


def event_types(task: Task) -> list[str]:
    return list(TaskEvent.objects.filter(task=task).order_by("seq").values_list("type", flat=True))


def audit_actions(task: Task) -> list[str]:
    return list(
        AuditRecord.objects.filter(resource_type="task", resource_id=str(task.pk))
        .order_by("id")
        .values_list("action", flat=True)
    )


def register(running, name: str = "ref", **fields: Any) -> Worker:
    worker = Worker(
        name=name,
        base_url=running.url,
        capabilities=fields.pop("capabilities", ["reference"]),
        max_concurrency=fields.pop("max_concurrency", 16),
        retry_initial_backoff_ms=fields.pop("retry_initial_backoff_ms", 20),
        retry_max_backoff_ms=fields.pop("retry_max_backoff_ms", 100),
        **fields,
    )
    worker.token = running.token or ""
    worker.save()
    return worker


@pytest.fixture
def dispatcher() -> Iterator[Callable[..., Dispatcher]]:
    started: list[Dispatcher] = []

    def start(**kwargs: Any) -> Dispatcher:
        kwargs.setdefault("concurrency", 4)
        kwargs.setdefault("poll_s", 0.2)
        kwargs.setdefault("reap_s", 0.5)
        d = Dispatcher(**kwargs)
        d.start()
        started.append(d)
        return d

    yield start
    for d in started:
        d.stop(grace_s=0)


@pytest.fixture
def task_of(operator) -> Callable[..., Task]:
    def make(kind: str = "echo", **input: Any) -> Task:
        extra = input.pop("spec", {})
        spec = {"title": f"{kind} task", "input": {"kind": kind, **input}, "capabilities": ["reference"]} | extra
        return services.task_create(spec=spec, actor=operator)

    return make


def test_an_echo_task_runs_on_the_worker_and_completes(reference_worker, dispatcher, task_of):
    register(reference_worker)
    dispatcher()
    task = task_of("echo", message="hello")
    wait_for(lambda: state_of(task) == "completed")
    task.refresh_from_db()
    assert task.result["status"] == "completed"
    assert task.attempt == 1
    assert event_types(task) == ["created", "attempt_started", "worker_call", "completed"]
    assert audit_actions(task) == ["task.create", "task.start", "task.verdict"]
    call = TaskEvent.objects.get(task=task, type="worker_call").data
    assert call["url"].startswith(reference_worker.url)
    assert call["latency_ms"] >= 0
    assert call["attempt"] == 1


def test_503s_then_success_retries_within_the_policy(reference_worker, dispatcher, task_of):
    register(reference_worker)
    dispatcher()
    task = task_of("echo", faults={"status_503_times": 2})
    wait_for(lambda: state_of(task) == "completed")
    calls = [e.data for e in TaskEvent.objects.filter(task=task, type="worker_call").order_by("seq")]
    assert [c["status"] for c in calls] == [503, 503, 200]
    assert [c["try"] for c in calls] == [1, 2, 3]
    log = [e for e in reference_worker.log(task_id=str(task.pk)) if e["path"] == "/execute"]
    assert len(log) == 3
    assert {e["idempotency_key"] for e in log} == {f"{task.pk}:1"}


def test_progress_events_stream_onto_the_timeline(reference_worker, dispatcher, task_of):
    register(reference_worker)
    dispatcher()
    task = task_of("sleep", seconds=0.4, interval_s=0.1)
    wait_for(lambda: state_of(task) == "completed")
    types = event_types(task)
    assert types.count("worker.progress") >= 3
    task.refresh_from_db()
    assert task.progress_percent == 100


def test_cancel_of_a_running_task_stops_the_worker_and_a_late_result_is_not_applied(
    reference_worker, dispatcher, task_of, operator
):
    register(reference_worker)
    dispatcher()
    task = task_of("sleep", seconds=30, interval_s=0.1)
    wait_for(lambda: "worker.progress" in event_types(task))
    start = time.monotonic()
    services.task_cancel(task_id=task.pk, actor=operator, reason="not needed")
    wait_for(lambda: state_of(task) == "canceled", timeout=5)
    assert time.monotonic() - start < 2
    cancels = wait_for(lambda: [e for e in reference_worker.log(task_id=str(task.pk)) if e["path"] == "/cancel"])
    assert cancels[0]["attempt"] == 1
    task.refresh_from_db()
    assert task.result is None
    assert audit_actions(task).count("task.cancel") == 1
    assert "canceled" in event_types(task)


def test_pausing_a_running_task_stops_its_attempt_and_resume_runs_it_again(
    reference_worker, dispatcher, task_of, operator
):
    register(reference_worker)
    dispatcher()
    task = task_of("sleep", seconds=0.6, interval_s=0.1)
    wait_for(lambda: "worker.progress" in event_types(task))
    services.task_pause(task_id=task.pk, actor=operator)
    wait_for(lambda: [e for e in reference_worker.log(task_id=str(task.pk)) if e["path"] == "/cancel"])
    assert state_of(task) == "paused"
    services.task_resume(task_id=task.pk, actor=operator)
    wait_for(lambda: state_of(task) == "completed")
    task.refresh_from_db()
    assert task.attempt == 2
    assert task.max_attempts == task.spec["max_attempts"] + 1  # the paused attempt did not count


def test_a_worker_reported_failure_is_retried_then_fails(reference_worker, dispatcher, task_of, settings):
    settings.AGENCY_RETRY_BASE_S = 0.01
    register(reference_worker)
    dispatcher()
    task = task_of("fail", error="boom", spec={"max_attempts": 2})
    wait_for(lambda: state_of(task) == "failed")
    task.refresh_from_db()
    assert task.attempt == 2
    assert "boom" in task.error
    assert audit_actions(task) == ["task.create", "task.start", "task.requeue", "task.start", "task.fail"]


def test_a_non_retryable_failure_is_not_retried(reference_worker, dispatcher, task_of):
    register(reference_worker)
    dispatcher()
    task = task_of("fail", error="bad input", retryable=False)
    wait_for(lambda: state_of(task) == "failed")
    assert Task.objects.get(pk=task.pk).attempt == 1


def test_an_open_breaker_routes_work_to_another_capable_worker(start_reference_worker, dispatcher, task_of, settings):
    settings.AGENCY_RETRY_BASE_S = 0.01
    broken = start_reference_worker("--always-fail")
    healthy = start_reference_worker()
    # A fresh name: with REDIS_URL the breaker's state outlives the test in Redis.
    name = f"broken-{uuid.uuid4().hex[:8]}"
    register(broken, name=name, retry_max_attempts=1, breaker_fail_max=5, breaker_reset_timeout_s=60)
    d = dispatcher(concurrency=1)
    # Only the broken worker exists at first: five failed calls open its breaker.
    tasks = [task_of("echo", spec={"max_attempts": 10}) for _ in range(6)]
    wait_for(lambda: d.breakers.is_open(name))
    assert len([e for e in broken.log() if e["path"] == "/execute"]) == 5
    register(healthy, name="healthy")
    for task in tasks:
        wait_for(lambda task=task: state_of(task) == "completed")
    assert len([e for e in broken.log() if e["path"] == "/execute"]) == 5  # nothing reached it while open
    assert AuditRecord.objects.filter(action="worker.breaker_open", resource_id=name).count() == 1
    assert TaskEvent.objects.filter(type="breaker", data__to="open").count() == 1


def test_a_worker_busy_with_429_puts_the_task_back_without_using_up_its_attempts(
    start_reference_worker, dispatcher, task_of
):
    # The worker runs one execution at a time, but is registered for four (shared with another
    # control plane, or misconfigured): the second task is refused with 429 until the first ends.
    small = start_reference_worker("--capacity", "1")
    register(small, max_concurrency=4, retry_max_attempts=1)
    dispatcher(concurrency=4)
    first = task_of("sleep", seconds=3.5, interval_s=0.1)
    wait_for(lambda: "worker.progress" in event_types(first))
    second = task_of("echo", spec={"max_attempts": 2})
    wait_for(lambda: state_of(second) == "completed", timeout=30)
    second.refresh_from_db()
    refused = [e for e in small.log(task_id=str(second.pk)) if e["path"] == "/execute" and e["status"] == 429]
    assert len(refused) >= 2  # more refusals than the task's two attempts: none of them counted
    assert second.attempt == len(refused) + 1
    assert second.max_attempts == 2 + len(refused)
    requeues = TaskEvent.objects.filter(task=second, type="retry_scheduled").order_by("seq")
    assert [e.data["counts_as_attempt"] for e in requeues] == [False] * len(refused)
    assert "429" in requeues.first().data["error"]


def dead_worker() -> SimpleNamespace:
    """What ``register`` needs of a worker whose process is gone: nothing listens on its port."""
    return SimpleNamespace(url=f"http://127.0.0.1:{closed_loopback_port()}", token=WORKER_TOKEN)


def revive(start_reference_worker, dead: Worker):
    """Start a reference worker at the dead one's address, as its process manager would restart it."""
    return start_reference_worker("--port", dead.base_url.rsplit(":", 1)[1])


def test_a_dead_workers_refused_half_open_trial_puts_the_task_back_with_its_attempt_budget_intact(
    start_reference_worker, dispatcher, task_of
):
    # The worker died and its breaker opened. Past the 1 s reset timeout, a task that may use one
    # attempt only carries the half-open trial, and the connection is refused.
    name = f"dead-{uuid.uuid4().hex[:8]}"
    dead = register(dead_worker(), name=name, retry_max_attempts=1, breaker_reset_timeout_s=1)
    d = dispatcher(concurrency=1)
    breaker = d.breakers.get(worker_config(dead))
    for _ in range(dead.breaker_fail_max):
        breaker.acquire().failure()
    task = task_of("echo", spec={"max_attempts": 1})

    # A claim before the reset timeout is refused by the open breaker itself (also uncounted);
    # the requeue that matters is the one after the trial call.
    unreached = f"worker {name} could not be reached; nothing was sent"
    requeue = wait_for(
        lambda: (
            TaskEvent.objects.filter(task=task, type="retry_scheduled", data__error__startswith=unreached)
            .order_by("seq")
            .first()
        )
    )
    queued = wait_for(lambda: (t := Task.objects.get(pk=task.pk)).state == "queued" and t)
    assert requeue.data["counts_as_attempt"] is False
    assert queued.max_attempts - queued.attempt == 1  # the one attempt it was created with is still to come
    [trial] = TaskEvent.objects.filter(task=task, type="worker_call", seq__lt=requeue.seq)
    assert trial.data["status"] is None
    assert "Connection refused" in trial.data["error"]
    # The trial still counted as a failed call: the breaker re-opened, on this task's timeline.
    wait_for(lambda: TaskEvent.objects.filter(task=task, type="breaker", data__to="open").exists())
    assert TaskEvent.objects.filter(task=task, type="breaker", data__to="half_open").exists()

    live = revive(start_reference_worker, dead)
    wait_for(lambda: state_of(task) == "completed")
    task.refresh_from_db()
    requeues = TaskEvent.objects.filter(task=task, type="retry_scheduled")
    assert [e.data["counts_as_attempt"] for e in requeues] == [False] * requeues.count()
    assert task.attempt == task.max_attempts == requeues.count() + 1
    executes = [e for e in live.log(task_id=str(task.pk)) if e["path"] == "/execute"]
    assert [e["idempotency_key"] for e in executes] == [f"{task.pk}:{task.attempt}"]
    assert d.breakers.state(name) == "closed"  # the trial that reached the worker closed it


def test_a_worker_refusing_connections_with_its_breaker_closed_uses_up_no_attempt(
    start_reference_worker, dispatcher, task_of
):
    # Five failures open the breaker; the first attempt's two refused tries leave it closed.
    name = f"dead-{uuid.uuid4().hex[:8]}"
    dead = register(dead_worker(), name=name, retry_max_attempts=2, breaker_fail_max=5, breaker_reset_timeout_s=1)
    dispatcher(concurrency=1)
    task = task_of("echo", spec={"max_attempts": 1})

    requeue = wait_for(lambda: TaskEvent.objects.filter(task=task, type="retry_scheduled").order_by("seq").first())
    assert requeue.data["counts_as_attempt"] is False
    calls = TaskEvent.objects.filter(task=task, type="worker_call", seq__lt=requeue.seq).order_by("seq")
    assert [(c.data["try"], c.data["status"]) for c in calls] == [(1, None), (2, None)]
    assert all("Connection refused" in c.data["error"] for c in calls)
    assert not TaskEvent.objects.filter(task=task, type="breaker", seq__lt=requeue.seq).exists()

    revive(start_reference_worker, dead)
    wait_for(lambda: state_of(task) == "completed")
    task.refresh_from_db()
    assert task.attempt == task.max_attempts  # only the attempt that reached a worker counted
    assert not TaskEvent.objects.filter(task=task, type="failed").exists()


def test_two_dispatchers_together_never_start_more_than_a_workers_max_concurrency(
    start_reference_worker, dispatcher, task_of
):
    # The worker's own capacity equals max_concurrency: any overshoot would be answered 429.
    # Neither dispatcher can fill the worker alone (2 slots each), together they could (4 > 3).
    running = start_reference_worker("--capacity", "3")
    register(running, max_concurrency=3, retry_max_attempts=1)
    dispatcher(concurrency=2, dispatcher_id="capacity-a")
    dispatcher(concurrency=2, dispatcher_id="capacity-b")
    tasks = [task_of("sleep", seconds=0.4, interval_s=0.1) for _ in range(12)]
    peak = 0
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        active = Task.objects.filter(state__in=["running", "canceling"]).count()
        peak = max(peak, active)
        if Task.objects.filter(pk__in=[t.pk for t in tasks], state="completed").count() == len(tasks):
            break
        time.sleep(0.01)
    assert Task.objects.filter(pk__in=[t.pk for t in tasks], state="completed").count() == len(tasks)
    assert peak == 3
    assert not [e for e in running.log() if e["path"] == "/execute" and e["status"] == 429]
    owners = set(TaskEvent.objects.filter(type="attempt_started").values_list("data__dispatcher", flat=True))
    assert owners == {"capacity-a", "capacity-b"}  # both took work, one after the other


def test_a_worker_full_of_finishing_attempts_is_claimed_for_again_as_soon_as_they_are_written(
    reference_worker, dispatcher, task_of
):
    # max_concurrency equal to the dispatcher's slots (as `serve` registers its own worker): a
    # finished attempt counts against the worker until its result is written, and the write,
    # not the 5 s poll, must wake the loop to claim the next task.
    register(reference_worker, max_concurrency=1)
    dispatcher(concurrency=1, poll_s=5.0)
    time.sleep(0.2)  # past the loop's first poll
    tasks = [task_of("echo") for _ in range(4)]
    wait_for(lambda: Task.objects.filter(pk__in=[t.pk for t in tasks], state="completed").count() == 4, timeout=4.5)


def test_a_task_nobody_can_take_stays_queued(reference_worker, dispatcher, operator):
    register(reference_worker)
    dispatcher()
    task = services.task_create(spec={"title": "needs a gpu", "capabilities": ["gpu"]}, actor=operator)
    time.sleep(0.6)
    assert state_of(task) == "queued"


def test_graceful_stop_returns_unfinished_attempts_to_the_queue_without_using_them_up(reference_worker, task_of):
    register(reference_worker)
    d = Dispatcher(concurrency=2, poll_s=0.2)
    d.start()
    task = task_of("sleep", seconds=30, interval_s=0.1)
    wait_for(lambda: "worker.progress" in event_types(task))
    d.stop(grace_s=0.2)
    task.refresh_from_db()
    assert task.state == "queued"
    assert task.max_attempts == task.spec["max_attempts"] + 1
    assert [e for e in reference_worker.log(task_id=str(task.pk)) if e["path"] == "/cancel"]


def test_a_running_dispatcher_reports_itself_and_its_workers_health(reference_worker, dispatcher):
    register(reference_worker)
    d = dispatcher()
    summary = wait_for(lambda: (s := fleet.dispatchers_summary())["status"] == "healthy" and s)
    assert summary["live"] == 1
    assert summary["capacity"] == 4
    workers = wait_for(lambda: (s := fleet.workers_summary())["status"] == "healthy" and s)
    assert workers["workers"]["ref"]["capacity"] >= 1
    d.stop(grace_s=0)
    assert fleet.dispatchers_summary()["status"] == "degraded"


def test_resume_while_the_paused_attempt_winds_down_keeps_the_new_attempt_tracked(
    reference_worker, task_of, operator, monkeypatch
):
    from tasks.dispatch.worker_client import WorkerClient

    real_cancel = WorkerClient.cancel

    def slow_cancel(self, **kwargs):  # a worker whose /cancel answers slowly
        time.sleep(0.5)
        return real_cancel(self, **kwargs)

    monkeypatch.setattr(WorkerClient, "cancel", slow_cancel)
    register(reference_worker)
    d = Dispatcher(concurrency=4, poll_s=0.2, reap_s=0.3, lease_s=1.5)
    d.start()
    try:
        task = task_of("sleep", seconds=3, interval_s=0.1)
        wait_for(lambda: "worker.progress" in event_types(task))
        services.task_pause(task_id=task.pk, actor=operator)
        services.task_resume(task_id=task.pk, actor=operator)
        wait_for(lambda: state_of(task) == "completed", timeout=20)
        assert not TaskEvent.objects.filter(task=task, type="lease_expired").exists()
        assert Task.objects.get(pk=task.pk).attempt == 2
    finally:
        d.stop(grace_s=0)
