"""Dispatcher-side services: claim, fencing, late results, requeue, reaping."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from audit.models import AuditRecord
from security.principals import SYSTEM, Principal
from tasks import services
from tasks.dispatch import claims, leases, reports
from tasks.dispatch.reports import AttemptReport
from tasks.models import Task, TaskEvent, Worker

D = "host:1:abc"


@pytest.fixture
def worker(db) -> Worker:
    return Worker.objects.create(name="w1", base_url="http://127.0.0.1:9", capabilities=["python"], max_concurrency=10)


def claim(worker: Worker, limit: int = 10, dispatcher: str = D) -> list[claims.Claim]:
    return claims.task_claim(
        actor=Principal.dispatcher(dispatcher),
        limit=limit,
        pick_worker=lambda t: worker if worker.covers(t.spec.get("capabilities", [])) else None,
        lease_s=30,
    )


def audit_actions(task: Task) -> list[str]:
    return list(
        AuditRecord.objects.filter(resource_type="task", resource_id=str(task.pk))
        .order_by("id")
        .values_list("action", flat=True)
    )


def event_types(task: Task) -> list[str]:
    return list(TaskEvent.objects.filter(task=task).order_by("seq").values_list("type", flat=True))


def test_it_claims_by_priority_then_age_and_starts_an_attempt(make_task, worker):
    low = make_task(title="low", priority="low")
    high = make_task(title="high", priority="critical")
    claims = claim(worker, limit=1)
    assert [c.task_id for c in claims] == [str(high.pk)]
    high.refresh_from_db()
    assert (high.state, high.attempt, high.lease_owner, high.worker_id) == ("running", 1, D, worker.pk)
    assert event_types(high) == ["created", "attempt_started"]
    assert audit_actions(high) == ["task.create", "task.start"]
    low.refresh_from_db()
    assert low.state == "queued"


def test_it_leaves_tasks_no_worker_can_take_and_claims_those_behind_them(make_task, worker):
    blocked = make_task(title="needs rust", capabilities=["rust"], priority="critical")
    ok = make_task(title="python")
    assert [c.task_id for c in claim(worker)] == [str(ok.pk)]
    blocked.refresh_from_db()
    assert blocked.state == "queued"


def test_it_stops_reading_candidates_once_the_caller_says_no_worker_has_room(make_task, worker):
    tasks = [make_task(title=f"t{i}", capabilities=["rust"] if i < 3 else []) for i in range(6)]
    offered: list[str] = []
    left = {"room": 2}

    def pick(task: Task) -> Worker | None:
        offered.append(task.title)
        if task.spec.get("capabilities"):
            return None  # skipped: without the room check the claim reads on past these
        left["room"] -= 1
        return worker

    taken = claims.task_claim(
        actor=Principal.dispatcher(D), limit=10, pick_worker=pick, lease_s=30, room=lambda: left["room"] > 0
    )

    assert len(taken) == 2
    assert offered == ["t0", "t1", "t2", "t3", "t4"]  # t5 was never offered: no room after t4
    assert Task.objects.get(pk=tasks[5].pk).state == "queued"


def test_it_does_not_claim_before_run_after(make_task, worker):
    task = make_task()
    Task.objects.filter(pk=task.pk).update(run_after=timezone.now() + timedelta(seconds=60))
    assert claim(worker) == []


def test_a_completed_result_completes_the_task(make_task, worker):
    task = make_task()
    [c] = claim(worker)
    result = {"status": "completed", "output": "done"}
    reports.apply_reports(
        actor=Principal.dispatcher(D),
        reports=[
            AttemptReport(c.task_id, c.attempt, "progress", events=[{"type": "progress", "percent": 40, "phase": "x"}]),
            AttemptReport(c.task_id, c.attempt, "result", result=result),
        ],
    )
    task.refresh_from_db()
    assert (task.state, task.result, task.progress_percent, task.lease_owner) == ("completed", result, 100, "")
    assert event_types(task) == ["created", "attempt_started", "worker.progress", "completed"]
    assert audit_actions(task) == ["task.create", "task.start", "task.verdict"]


def test_a_retryable_failure_requeues_with_backoff_until_attempts_run_out(make_task, worker, settings):
    settings.AGENCY_RETRY_BASE_S = 0
    task = make_task(max_attempts=2)
    for expected in ("queued", "failed"):
        [c] = claim(worker)
        reports.apply_reports(
            actor=Principal.dispatcher(D), reports=[AttemptReport(c.task_id, c.attempt, "failed", error="503")]
        )
        task.refresh_from_db()
        assert task.state == expected
    assert task.attempt == 2
    assert audit_actions(task) == ["task.create", "task.start", "task.requeue", "task.start", "task.fail"]


def test_a_non_retryable_failure_fails_at_once(make_task, worker):
    task = make_task(max_attempts=5)
    [c] = claim(worker)
    reports.apply_reports(
        actor=Principal.dispatcher(D),
        reports=[AttemptReport(c.task_id, c.attempt, "failed", error="400 bad spec", retryable=False)],
    )
    task.refresh_from_db()
    assert (task.state, task.error) == ("failed", "400 bad spec")


def test_a_stale_attempts_result_is_recorded_and_never_applied(make_task, worker):
    task = make_task()
    [first] = claim(worker)
    Task.objects.filter(pk=task.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    assert leases.reap_expired_leases(actor=Principal.dispatcher("reaper")) == [(str(task.pk), 1, "queued")]
    [second] = claim(worker, dispatcher="other:2:def")
    assert second.attempt == 2
    reports.apply_reports(
        actor=Principal.dispatcher(D),
        reports=[AttemptReport(first.task_id, first.attempt, "result", result={"status": "completed"})],
    )
    task.refresh_from_db()
    assert (task.state, task.attempt, task.lease_owner) == ("running", 2, "other:2:def")
    assert event_types(task)[-1] == "stale_result"


def test_a_result_after_cancel_is_recorded_not_applied_and_the_cancel_confirmed(make_task, worker, operator):
    task = make_task()
    [c] = claim(worker)
    services.task_cancel(task_id=task.pk, actor=operator, reason="stop")
    task.refresh_from_db()
    assert task.state == "canceling"
    reports.apply_reports(
        actor=Principal.dispatcher(D),
        reports=[AttemptReport(c.task_id, c.attempt, "result", result={"status": "completed", "output": "late"})],
    )
    task.refresh_from_db()
    assert task.state == "canceled"
    assert task.result is None
    assert event_types(task)[-3:] == ["cancel_requested", "late_result", "canceled"]
    assert audit_actions(task).count("task.cancel") == 1
    # A result arriving later still is recorded too, and changes nothing.
    reports.apply_reports(
        actor=Principal.dispatcher(D),
        reports=[AttemptReport(c.task_id, c.attempt, "result", result={"status": "completed"})],
    )
    task.refresh_from_db()
    assert task.state == "canceled"
    assert event_types(task)[-1] == "late_result"


def test_pausing_a_running_task_does_not_use_up_an_attempt(make_task, worker, operator):
    task = make_task(max_attempts=1)
    [c] = claim(worker)
    services.task_pause(task_id=task.pk, actor=operator)
    reports.apply_reports(
        actor=Principal.dispatcher(D), reports=[AttemptReport(c.task_id, c.attempt, "stopped", error="pause")]
    )
    task.refresh_from_db()
    assert (task.state, task.lease_owner, task.max_attempts) == ("paused", "", 2)
    assert event_types(task)[-1] == "attempt_stopped"
    services.task_resume(task_id=task.pk, actor=operator)
    [again] = claim(worker)
    assert again.attempt == 2


def test_the_reaper_cancels_an_orphaned_canceling_task_and_fails_one_out_of_attempts(make_task, worker, operator):
    canceling = make_task(title="c")
    last = make_task(title="l", max_attempts=1)
    claim(worker)
    services.task_cancel(task_id=canceling.pk, actor=operator)
    Task.objects.update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    reaped = {tid: state for tid, _, state in leases.reap_expired_leases(actor=Principal.dispatcher("r"))}
    assert reaped == {str(canceling.pk): "canceled", str(last.pk): "failed"}
    assert audit_actions(last)[-1] == "task.reclaim"


def test_attempts_to_stop_names_canceled_paused_and_reclaimed_attempts(make_task, worker, operator):
    a, b, c = make_task(title="a"), make_task(title="b"), make_task(title="c")
    claims = {cl.task_id: cl.attempt for cl in claim(worker)}
    services.task_cancel(task_id=a.pk, actor=operator)
    services.task_pause(task_id=b.pk, actor=operator)
    stop = leases.attempts_to_stop(dispatcher_id=D, attempts=claims)
    assert stop == {str(a.pk): "canceling", str(b.pk): "paused"}
    assert str(c.pk) not in stop


def test_malformed_worker_json_is_stored_safely_and_the_task_still_completes(make_task, worker):
    task = make_task()
    [c] = claim(worker)
    reports.apply_reports(
        actor=Principal.dispatcher(D),
        reports=[
            AttemptReport(c.task_id, c.attempt, "progress", events=[{"type": "progress", "percent": "40%"}]),
            AttemptReport(c.task_id, c.attempt, "progress", events=[{"type": "progress", "percent": float("nan")}]),
            AttemptReport(
                c.task_id,
                c.attempt,
                "result",
                result={"status": "completed", "output": "a\x00b", "score": float("inf")},
            ),
        ],
    )
    task.refresh_from_db()
    assert task.state == "completed"
    assert task.result == {"status": "completed", "output": "ab", "score": None}
    assert task.progress_percent == 100


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_claim_counting_a_workers_load_waits_for_the_claim_that_holds_its_capacity_lock(worker):
    import threading

    from django.db import connection, transaction

    for _ in range(4):
        services.task_create(spec={"title": "t", "capabilities": ["python"]}, actor=SYSTEM)
    holding, release = threading.Event(), threading.Event()
    seen: dict[str, dict[int, int]] = {}

    def first() -> None:
        try:
            with transaction.atomic():
                seen["first"] = claims.worker_load(lock=[worker.pk])
                claim(worker, limit=3)
                holding.set()
                release.wait(10)
        finally:
            connection.close()

    def second() -> None:
        try:
            with transaction.atomic():
                seen["second"] = claims.worker_load(lock=[worker.pk])
        finally:
            connection.close()

    a = threading.Thread(target=first)
    a.start()
    assert holding.wait(10)
    b = threading.Thread(target=second)
    b.start()
    b.join(0.5)
    assert b.is_alive()  # waiting for the first claim's commit
    release.set()
    a.join(10)
    b.join(10)
    assert seen == {"first": {}, "second": {worker.pk: 3}}


@pytest.mark.django_db(transaction=True)
def test_worker_load_with_locks_refuses_to_run_outside_a_transaction(worker):
    from django.db import connection

    if connection.vendor != "postgresql":
        assert claims.worker_load(lock=[worker.pk]) == {}  # SQLite: nothing to lock
        return
    with pytest.raises(RuntimeError, match="inside the claim's transaction"):
        claims.worker_load(lock=[worker.pk])
