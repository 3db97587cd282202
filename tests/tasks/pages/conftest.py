"""Helpers of the task page tests: tasks in a given state through the real services and dispatch path."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.test import Client

from security.principals import Principal
from tasks import services
from tasks.dispatch import claims, reports
from tasks.dispatch.reports import AttemptReport
from tasks.models import Task, Worker

DISPATCHER = Principal.dispatcher("page-tests")
PASSING = {"status": "completed", "output": "done", "files_modified": []}


@pytest.fixture
def worker(db) -> Worker:
    return Worker.objects.create(name="w1", base_url="http://127.0.0.1:9")


@pytest.fixture
def run(worker) -> Callable[[Task], Task]:
    """Claim ``task`` (queued) for the worker: it is then running, attempt + 1."""

    def claim(task: Task) -> Task:
        claims.task_claim(actor=DISPATCHER, limit=100, pick_worker=lambda t: worker, lease_s=60)
        task.refresh_from_db()
        assert task.state == "running"
        return task

    return claim


@pytest.fixture
def report() -> Callable[..., Task]:
    """Hand back what the running attempt of ``task`` came to."""

    def send(task: Task, **kwargs) -> Task:
        reports.apply_reports(actor=DISPATCHER, reports=[AttemptReport(str(task.pk), task.attempt, **kwargs)])
        task.refresh_from_db()
        return task

    return send


@pytest.fixture
def failed_task(make_task, run, report) -> Task:
    task = run(make_task(title="doomed", max_attempts=1))
    return report(task, kind="failed", error="boom", retryable=False)


@pytest.fixture
def canceled_task(make_task, operator) -> Task:
    task = make_task(title="dropped")
    return services.task_cancel(task_id=task.pk, actor=operator, reason="not needed")


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def viewer_page(viewer) -> Client:
    return logged_in(viewer)


@pytest.fixture
def operator_page(operator) -> Client:
    return logged_in(operator)


@pytest.fixture
def nobody_page(nobody) -> Client:
    return logged_in(nobody)
