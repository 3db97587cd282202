"""Every service checks its acting principal itself: each service x each principal, called directly.

No door is involved: a chat command, an htmx view or a script that forgot its own early check
gets the same answer as the API. A refusal is a domain error (401 for nobody, 403 for the
wrong role) and writes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import AnonymousUser
from django.utils import timezone

from audit.models import AuditRecord
from config.errors import DomainError, NotAuthenticated
from security.principals import SYSTEM, Principal
from tasks import services
from tasks.dispatch import claims, leases, reports
from tasks.dispatch.reports import AttemptReport
from tasks.models import Task, TaskEvent, Waiver, Worker
from tasks.review import verdicts, waivers

pytestmark = pytest.mark.django_db

PRINCIPALS = ["anonymous", "viewer", "operator", "admin", "system", "dispatcher"]
USERS_WHO_OPERATE = {"operator", "admin", "system"}
ADMINS = {"admin", "system"}
DISPATCHERS = {"dispatcher", "system"}
D = Principal.dispatcher("perm")


@pytest.fixture
def principals(viewer, operator, admin_user) -> dict[str, Any]:
    return {
        "anonymous": AnonymousUser(),
        "viewer": viewer,
        "operator": operator,
        "admin": admin_user,
        "system": SYSTEM,
        "dispatcher": D,
    }


@pytest.fixture
def worker() -> Worker:
    return Worker.objects.create(name="perm", base_url="http://127.0.0.1:9")


def running_task(operator: Any, worker: Worker, **spec: Any) -> Task:
    task = services.task_create(spec={"title": "perm", **spec}, actor=operator)
    claims.task_claim(actor=D, limit=10, pick_worker=lambda t: worker if t.pk == task.pk else None, lease_s=30)
    task.refresh_from_db()
    return task


def waiting_for_review(operator: Any, worker: Worker) -> Task:
    task = running_task(operator, worker, risk_tier=1)
    result = {"status": "completed", "output": "ok"}
    reports.apply_reports(actor=D, reports=[AttemptReport(str(task.pk), task.attempt, "result", result=result)])
    task.refresh_from_db()
    assert task.state == "awaiting_review"
    return task


def pending_waiver(operator: Any) -> Waiver:
    return waivers.waiver_request(
        actor=operator,
        title="Generated code",
        reason="third_party_constraint",
        gates=["placeholders"],
        justification="The vendored parser has TODO markers we do not own.",
        expires_at=timezone.now() + timedelta(days=7),
    )


# service name -> (who may call it, builder of the call given (operator, worker) -> call(actor))
Setup = Callable[[Any, Worker], Callable[[Any], Any]]


def _create(operator: Any, worker: Worker) -> Callable[[Any], Any]:
    return lambda actor: services.task_create(spec={"title": "perm"}, actor=actor)


def _action(name: str, state: str) -> Setup:
    def setup(operator: Any, worker: Worker) -> Callable[[Any], Any]:
        if state == "queued":
            task = services.task_create(spec={"title": "perm"}, actor=operator)
        elif state == "paused":
            task = services.task_create(spec={"title": "perm"}, actor=operator)
            services.task_pause(task_id=task.pk, actor=operator)
        else:
            task = services.task_create(spec={"title": "perm"}, actor=operator)
            services.task_cancel(task_id=task.pk, actor=operator)
        return lambda actor: services.ACTION_SERVICES[name](task_id=task.pk, actor=actor, reason="why not")

    return setup


def _override(operator: Any, worker: Worker) -> Callable[[Any], Any]:
    task = waiting_for_review(operator, worker)
    return lambda actor: verdicts.task_override(
        task_id=task.pk, actor=actor, decision="approve", reason="looks right to me"
    )


def _waiver_request(operator: Any, worker: Worker) -> Callable[[Any], Any]:
    return lambda actor: waivers.waiver_request(
        actor=actor,
        title="Generated code",
        reason="third_party_constraint",
        gates=["placeholders"],
        justification="The vendored parser has TODO markers we do not own.",
        expires_at=timezone.now() + timedelta(days=7),
    )


def _waiver_decision(name: str) -> Setup:
    def setup(operator: Any, worker: Worker) -> Callable[[Any], Any]:
        waiver = pending_waiver(operator)
        if name == "waiver_revoke":
            return lambda actor: waivers.waiver_revoke(waiver_id=waiver.pk, actor=actor, reason="no longer needed")
        return lambda actor: getattr(waivers, name)(waiver_id=waiver.pk, actor=actor, note="ok")

    return setup


def _claim(operator: Any, worker: Worker) -> Callable[[Any], Any]:
    services.task_create(spec={"title": "perm"}, actor=operator)
    return lambda actor: claims.task_claim(actor=actor, limit=10, pick_worker=lambda t: worker, lease_s=30)


def _report(operator: Any, worker: Worker) -> Callable[[Any], Any]:
    task = running_task(operator, worker)
    report = AttemptReport(str(task.pk), task.attempt, "failed", error="503", retryable=False)
    return lambda actor: reports.apply_reports(actor=actor, reports=[report])


def _renew(operator: Any, worker: Worker) -> Callable[[Any], Any]:
    task = running_task(operator, worker)
    return lambda actor: leases.renew_leases(actor=actor, task_ids=[str(task.pk)], lease_s=60)


def _reap(operator: Any, worker: Worker) -> Callable[[Any], Any]:
    task = running_task(operator, worker)
    Task.objects.filter(pk=task.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    return lambda actor: leases.reap_expired_leases(actor=actor)


def _breaker(operator: Any, worker: Worker) -> Callable[[Any], Any]:
    task = running_task(operator, worker)
    return lambda actor: reports.record_breaker_change(
        actor=actor, worker=worker.name, old="closed", new="open", task_id=str(task.pk)
    )


SERVICES: dict[str, tuple[set[str], Setup]] = {
    "task_create": (USERS_WHO_OPERATE, _create),
    "task_cancel": (USERS_WHO_OPERATE, _action("cancel", "queued")),
    "task_pause": (USERS_WHO_OPERATE, _action("pause", "queued")),
    "task_resume": (USERS_WHO_OPERATE, _action("resume", "paused")),
    "task_retry": (USERS_WHO_OPERATE, _action("retry", "canceled")),
    "task_override": (USERS_WHO_OPERATE, _override),
    "waiver_request": (USERS_WHO_OPERATE, _waiver_request),
    "waiver_approve": (ADMINS, _waiver_decision("waiver_approve")),
    "waiver_reject": (ADMINS, _waiver_decision("waiver_reject")),
    "waiver_revoke": (ADMINS, _waiver_decision("waiver_revoke")),
    "task_claim": (DISPATCHERS, _claim),
    "apply_reports": (DISPATCHERS, _report),
    "renew_leases": (DISPATCHERS, _renew),
    "reap_expired_leases": (DISPATCHERS, _reap),
    "record_breaker_change": (DISPATCHERS, _breaker),
}


def footprint() -> tuple[int, int, list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    return (
        AuditRecord.objects.count(),
        TaskEvent.objects.count(),
        sorted(Task.objects.values_list("pk", "state", "event_seq", "lease_expires_at")),
        sorted(Waiver.objects.values_list("pk", "status")),
    )


@pytest.mark.parametrize("who", PRINCIPALS)
@pytest.mark.parametrize("service", sorted(SERVICES))
def test_each_service_checks_the_principal_itself(service, who, principals, operator, worker) -> None:
    allowed, setup = SERVICES[service]
    call = setup(operator, worker)
    before = footprint()
    if who in allowed:
        call(principals[who])
        if (service, who) != ("renew_leases", "system"):  # the system holds no lease to renew
            assert footprint() != before  # it did its work
        return
    with pytest.raises(DomainError) as caught:
        call(principals[who])
    expected = 401 if who == "anonymous" and not service.startswith("waiver_") else 403
    assert caught.value.http_status == expected
    if expected == 401:
        assert isinstance(caught.value, NotAuthenticated)
    assert footprint() == before  # nothing written
