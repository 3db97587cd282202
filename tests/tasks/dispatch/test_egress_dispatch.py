"""A dispatcher whose worker's name comes to resolve to a refused address (DNS rebinding after registration).

The worker is the real reference worker process on 127.0.0.1, registered under a name the
policy's resolver hook answers for: 127.0.0.1 at registration, then the metadata address.
The refused call must land on the task's timeline and in the audit trail, must not be
retried, must reach nothing, and must route the task to another capable worker.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

from audit.models import AuditRecord
from security import egress
from security.principals import SYSTEM
from tasks import services, workers
from tasks.dispatch import fleet
from tasks.dispatch.dispatcher import Dispatcher
from tasks.models import Task, TaskEvent, Worker
from tests.tasks.conftest import WORKER_TOKEN

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(60)]

NAME = "ref.moving.test"


def wait_for(predicate: Callable[[], Any], timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.02)
    raise AssertionError(f"condition not met within {timeout} s")


def denials(call: str) -> list[AuditRecord]:
    """The egress.denied records of one kind of call (the health polls of the same worker are refused too)."""
    return [r for r in AuditRecord.objects.filter(action="egress.denied").order_by("seq") if r.data["call"] == call]


def events(task: Task, type: str) -> list[dict[str, Any]]:
    return [e.data for e in TaskEvent.objects.filter(task=task, type=type).order_by("seq")]


@pytest.fixture
def dns(monkeypatch) -> dict[str, str]:
    """What NAME resolves to; the test changes it. Every other name fails to resolve."""
    answer = {"address": "127.0.0.1"}

    def resolve(host: str, port: int) -> list[tuple[socket.AddressFamily, tuple[Any, ...]]]:
        if host != NAME:
            raise socket.gaierror(socket.EAI_NONAME, f"{host} is unknown here")
        return [(socket.AF_INET, (answer["address"], port))]

    monkeypatch.setattr(egress, "resolver", resolve)
    return answer


@pytest.fixture
def connections(monkeypatch) -> list[Any]:
    """Every outbound connect() of this process, dispatcher threads included."""
    attempts: list[Any] = []
    real = socket.socket.connect

    def connect(self: socket.socket, address: Any) -> Any:
        attempts.append(address)
        return real(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    return attempts


@pytest.fixture
def dispatcher() -> Iterator[Callable[..., Dispatcher]]:
    started: list[Dispatcher] = []

    def start() -> Dispatcher:
        d = Dispatcher(concurrency=2, poll_s=0.2, reap_s=0.5)
        d.start()
        started.append(d)
        return d

    yield start
    for d in started:
        d.stop(grace_s=0)


def register_moving(reference_worker, **settings: Any) -> Worker:
    """Registered through the service, while NAME still resolves to the reference worker's address."""
    port = urlsplit(reference_worker.url).port
    return workers.worker_register(
        actor=SYSTEM,
        name="moving",
        base_url=f"http://{NAME}:{port}",
        capabilities=["reference"],
        token=WORKER_TOKEN,
        retry_initial_backoff_ms=20,
        retry_max_backoff_ms=50,
        **settings,
    )


def test_a_refused_call_is_on_the_timeline_and_audited_not_retried_and_the_task_goes_elsewhere(
    reference_worker, dispatcher, dns, connections, operator
):
    register_moving(reference_worker, breaker_fail_max=1)
    dns["address"] = "169.254.169.254"
    dispatcher()
    task = services.task_create(
        spec={"title": "echo", "input": {"kind": "echo", "message": "hi"}, "capabilities": ["reference"]},
        actor=operator,
    )

    [denied] = wait_for(lambda: events(task, "egress_denied"))
    assert denied["attempt"] == 1
    assert (denied["worker"], denied["call"], denied["reason"]) == ("moving", "execute", "metadata")
    assert (denied["host"], denied["address"]) == (NAME, "169.254.169.254")
    assert denied["url"] == f"http://{NAME}:{urlsplit(reference_worker.url).port}/execute"
    # One try, not three (retry_max_attempts): a refusal is not a transient transport error.
    wait_for(lambda: events(task, "retry_scheduled"))
    calls = [c for c in events(task, "worker_call") if c["attempt"] == 1]
    assert len(calls) == 1
    assert calls[0]["status"] is None
    assert calls[0]["error"].startswith("refused by the egress policy: ")
    [requeued] = events(task, "retry_scheduled")
    assert requeued["counts_as_attempt"] is False  # nothing was sent: the attempt is not used up
    [record] = denials("execute")
    assert (record.resource_type, record.resource_id) == ("worker", "moving")
    assert record.actor.startswith("dispatcher:")
    assert (record.data["task_id"], record.data["reason"], record.data["address"]) == (
        str(task.pk),
        "metadata",
        "169.254.169.254",
    )
    # The refusal is the worker's failure for its breaker, which opens and routes the work away.
    wait_for(lambda: Worker.objects.get(name="moving").breaker_state == "open")
    assert reference_worker.log(task_id=str(task.pk)) == []
    assert not [a for a in connections if a[0] == "169.254.169.254"]

    workers.worker_register(
        actor=SYSTEM, name="direct", base_url=reference_worker.url, capabilities=["reference"], token=WORKER_TOKEN
    )
    wait_for(lambda: Task.objects.get(pk=task.pk).state == "completed")
    task.refresh_from_db()
    assert task.worker.name == "direct"
    assert [e["path"] for e in reference_worker.log(task_id=str(task.pk))] == ["/execute"]
    assert len(denials("execute")) == 1


def test_a_refused_health_poll_is_audited_once_per_refusal_not_at_every_poll(
    reference_worker, dispatcher, dns, connections, monkeypatch
):
    monkeypatch.setattr(fleet, "WORKER_POLL_S", 0.1)
    worker = register_moving(reference_worker)
    dns["address"] = "169.254.169.254"
    dispatcher()

    def polled_after(when: Any) -> bool:
        row = Worker.objects.get(pk=worker.pk)
        return row.health_checked_at is not None and (when is None or row.health_checked_at > when)

    wait_for(lambda: polled_after(None))
    for _ in range(3):  # several refused polls
        checked = Worker.objects.get(pk=worker.pk).health_checked_at
        wait_for(lambda checked=checked: polled_after(checked))
    row = Worker.objects.get(pk=worker.pk)
    assert row.health_status == "unreachable"
    assert row.health_detail["error"].startswith("refused by the egress policy: ")
    records = denials("health")
    assert len(records) == 1
    assert (records[0].resource_id, records[0].data["call"], records[0].data["reason"]) == (
        "moving",
        "health",
        "metadata",
    )
    port = urlsplit(reference_worker.url).port
    assert [a for a in connections if a[1] == port or a[0] == "169.254.169.254"] == []  # no poll left

    # Back on an allowed address the polls succeed; refused again, it is a new refusal, audited again.
    dns["address"] = "127.0.0.1"
    wait_for(lambda: Worker.objects.get(pk=worker.pk).health_status == "healthy")
    dns["address"] = "169.254.169.254"
    wait_for(lambda: len(denials("health")) == 2)
