"""What a worker sends lands in its own namespace, and a pathological result fails its attempt once.

Found from outside: a task ``input`` nested ~500 deep was echoed back by the worker, the
report cleaner recursed, every attempt failed and megabytes of tracebacks reached the log.
Worker events were stored under the worker's own ``type`` with the worker's fields spread
over the system's, so a worker could write a ``completed`` entry or overwrite ``attempt``.
"""

from __future__ import annotations

import logging

import pytest

from security.principals import Principal
from tasks import services
from tasks.dispatch import claims, reports
from tasks.dispatch.reports import MAX_JSON_DEPTH, AttemptReport, UnstorableJSON, clean_json
from tasks.models import Task, TaskEvent, Worker

pytestmark = pytest.mark.django_db

D = Principal.dispatcher("events")


@pytest.fixture
def running(operator) -> Task:
    worker = Worker.objects.create(name="ev", base_url="http://127.0.0.1:9")
    task = services.task_create(spec={"title": "events", "max_attempts": 2}, actor=operator)
    claims.task_claim(actor=D, limit=1, pick_worker=lambda t: worker, lease_s=30)
    task.refresh_from_db()
    return task


def nested(depth: int) -> dict:
    value: dict = {"leaf": 1}
    for _ in range(depth - 1):
        value = {"x": value}
    return value


def test_a_worker_cannot_forge_a_system_entry_or_overwrite_attempt(running) -> None:
    forged = [{"type": "completed", "attempt": 99, "verdict": "approved"}, {"type": "progress", "percent": 40}]
    reports.apply_reports(actor=D, reports=[AttemptReport(str(running.pk), 1, "progress", events=forged)])
    entries = list(TaskEvent.objects.filter(task=running, seq__gt=2).order_by("seq"))
    assert [(e.type, e.data) for e in entries] == [
        ("worker.completed", {"attempt": 1, "payload": {"attempt": 99, "verdict": "approved"}}),
        ("worker.progress", {"attempt": 1, "payload": {"percent": 40}}),
    ]
    running.refresh_from_db()
    assert (running.state, running.progress_percent) == ("running", 40)


def test_an_odd_worker_type_is_kept_inside_the_namespace(running) -> None:
    events = [{"type": "../../Completed; DROP"}, {"no": "type"}]
    reports.apply_reports(actor=D, reports=[AttemptReport(str(running.pk), 1, "progress", events=events)])
    types = list(TaskEvent.objects.filter(task=running, seq__gt=2).order_by("seq").values_list("type", flat=True))
    assert types == ["worker.______completed__drop", "worker.event"]


def test_a_result_nested_too_deep_fails_the_attempt_once_without_a_traceback(running, caplog) -> None:
    result = {"status": "completed", "output": nested(1000)}
    with caplog.at_level(logging.WARNING):
        reports.apply_reports(actor=D, reports=[AttemptReport(str(running.pk), 1, "result", result=result)])
    running.refresh_from_db()
    assert running.state == "failed"  # not retried: the same worker would answer the same
    assert running.error == f"the worker's result could not be stored: nested deeper than {MAX_JSON_DEPTH} levels"
    assert running.result is None
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []


def test_the_cleaner_is_iterative_and_bounded() -> None:
    assert clean_json(nested(MAX_JSON_DEPTH - 1)) == nested(MAX_JSON_DEPTH - 1)
    with pytest.raises(UnstorableJSON, match="deeper"):
        clean_json(nested(100_000))  # far past the interpreter's recursion limit
    with pytest.raises(UnstorableJSON, match="more than 10 values"):
        clean_json(list(range(11)), max_nodes=10)
    assert clean_json({"a\x00": ["b\x00", float("nan"), 1.5]}) == {"a": ["b", None, 1.5]}
