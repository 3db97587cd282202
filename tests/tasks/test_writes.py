"""Bulk writes of the dispatcher's transactions: a claim or a batch of results costs the same
number of statements for one task as for forty, and writes exactly what per-row saves did."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from audit.models import AuditRecord
from security.principals import Principal
from tasks.dispatch import claims, reports
from tasks.dispatch.reports import AttemptReport
from tasks.models import Task, TaskEvent, Verdict, Worker
from tasks.transitions import TaskWrites, update_rows

D = "host:1:abc"


@pytest.fixture
def worker(db) -> Worker:
    return Worker.objects.create(name="w1", base_url="http://127.0.0.1:9", capabilities=[], max_concurrency=100)


def claim(worker: Worker, limit: int) -> list[claims.Claim]:
    return claims.task_claim(actor=Principal.dispatcher(D), limit=limit, pick_worker=lambda t: worker, lease_s=30)


def results(claims: list[claims.Claim]) -> list[AttemptReport]:
    reports = []
    for c in claims:
        call = {"worker": "w1", "attempt": c.attempt, "try": 1, "status": 200}
        reports.append(AttemptReport(c.task_id, c.attempt, "progress", calls=[call]))
        reports.append(AttemptReport(c.task_id, c.attempt, "result", result={"status": "completed", "output": 1}))
    return reports


def queries(fn) -> int:
    with CaptureQueriesContext(connection) as captured:
        fn()
    return len(captured.captured_queries)


def test_a_claim_costs_the_same_statements_for_one_task_as_for_forty(make_task, worker):
    for _ in range(41):
        make_task()
    one = queries(lambda: claim(worker, 1))
    forty = queries(lambda: claim(worker, 40))
    assert one == forty
    assert Task.objects.filter(state="running").count() == 41
    assert TaskEvent.objects.filter(type="attempt_started").count() == 41
    assert AuditRecord.objects.filter(action="task.start").count() == 41


def test_a_batch_of_results_costs_the_same_statements_for_one_task_as_for_forty(make_task, worker):
    for _ in range(41):
        make_task()
    first, rest = claim(worker, 1), claim(worker, 40)
    one = queries(lambda: reports.apply_reports(actor=Principal.dispatcher(D), reports=results(first)))
    forty = queries(lambda: reports.apply_reports(actor=Principal.dispatcher(D), reports=results(rest)))
    assert one == forty
    assert Task.objects.filter(state="completed", progress_percent=100, lease_owner="").count() == 41
    assert Verdict.objects.filter(decision="approved").count() == 41
    assert AuditRecord.objects.filter(action="task.verdict").count() == 41
    task = Task.objects.get(pk=rest[-1].task_id)
    events = list(TaskEvent.objects.filter(task=task).order_by("seq").values_list("seq", "type"))
    assert events == [(1, "created"), (2, "attempt_started"), (3, "worker_call"), (4, "completed")]
    assert task.event_seq == 4


def test_a_claim_reads_only_as_many_queued_tasks_as_it_takes(make_task, worker):
    for _ in range(30):
        make_task()
    with CaptureQueriesContext(connection) as captured:
        claim(worker, 3)
    [select] = [q["sql"] for q in captured.captured_queries if q["sql"].startswith("SELECT") and "LIMIT" in q["sql"]]
    assert "LIMIT 3" in select


def test_a_claim_reads_past_tasks_no_worker_takes_and_stops_at_its_read_budget(make_task, worker):
    blocked = [make_task(capabilities=["rust"], priority="critical") for _ in range(40)]
    ok = make_task()

    def pick(task: Task) -> Worker | None:
        return worker if not task.spec.get("capabilities") else None

    # limit 1: up to max(4 x 1, 32) = 32 candidates are read; the one takeable task is 41st.
    assert claims.task_claim(actor=Principal.dispatcher(D), limit=1, pick_worker=pick, lease_s=30) == []
    Task.objects.filter(pk__in=[t.pk for t in blocked[:20]]).update(state="paused")
    [taken] = claims.task_claim(actor=Principal.dispatcher(D), limit=1, pick_worker=pick, lease_s=30)
    assert taken.task_id == str(ok.pk)


def test_update_rows_writes_the_named_fields_and_nothing_else(make_task):
    a, b = make_task(title="a"), make_task(title="b")
    for task, percent in ((a, 10), (b, 20)):
        task.progress_percent = percent
        task.error = "not written"
    with transaction.atomic():
        update_rows([a, b], ["progress_percent"])
    assert list(Task.objects.order_by("title").values_list("title", "progress_percent", "error")) == [
        ("a", 10, ""),
        ("b", 20, ""),
    ]


def test_task_writes_groups_rows_by_the_fields_they_changed(make_task):
    a, b = make_task(title="a"), make_task(title="b")
    later = timezone.now() + timedelta(minutes=5)
    with transaction.atomic():
        writes = TaskWrites()
        writes.set(a, progress_phase="build")
        writes.set(b, run_after=later)
        writes.event(a, "note", {"n": 1})
        writes.event(a, "note", {"n": 2})
        writes.record(actor="system", action="task.note", resource_type="task", resource_id=a.pk)
        writes.flush()
    a.refresh_from_db()
    b.refresh_from_db()
    assert (a.progress_phase, a.run_after, a.event_seq) == ("build", None, 3)
    assert (b.progress_phase, b.run_after, b.event_seq) == ("", later, 1)
    assert list(TaskEvent.objects.filter(task=a).order_by("seq").values_list("seq", "type", "data__n")) == [
        (1, "created", None),
        (2, "note", 1),
        (3, "note", 2),
    ]
    assert AuditRecord.objects.filter(action="task.note", resource_id=str(a.pk)).count() == 1


def test_update_rows_writes_shared_and_per_row_values_alike(make_task):
    tasks = [make_task(title=f"t{i}") for i in range(3)]
    for i, task in enumerate(tasks):
        task.error = "same for all"
        task.progress_percent = i * 10  # differs per row
        task.result = {"n": i} if i else None  # JSON, and a NULL among them
        task.run_after = None
    update_rows(tasks, ["error", "progress_percent", "result", "run_after"])
    assert [(t.error, t.progress_percent, t.result, t.run_after) for t in Task.objects.order_by("title")] == [
        ("same for all", 0, None, None),
        ("same for all", 10, {"n": 1}, None),
        ("same for all", 20, {"n": 2}, None),
    ]
    update_rows(tasks[:2], ["error"])  # only shared values: a plain UPDATE … WHERE pk IN
    assert list(Task.objects.order_by("title").values_list("error", flat=True)) == ["same for all"] * 3
