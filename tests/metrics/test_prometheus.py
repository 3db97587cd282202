"""GET /metrics: who may scrape it, what it shows, and that it merges every process's samples.

Counters are shared by every process writing to the multi-process directory (xdist workers
too), so the tests assert deltas, and exact deltas on this process's own files
(:func:`own`); a test that needs an exact merged value uses a directory of its own.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError
from django.utils import timezone
from prometheus_client import CONTENT_TYPE_LATEST, Counter, values
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families
from rest_framework.test import APIClient

from metrics import instruments, prometheus
from security.principals import Principal
from tasks import services
from tasks.dispatch import claims
from tasks.dispatch.dispatcher import Dispatcher
from tasks.exceptions import IllegalTransition
from tasks.models import Task, Worker
from tests.conftest import api_key_for
from tests.tasks.conftest import WORKER_TOKEN, reference_worker_process

URL = "/metrics"
REPO_ROOT = Path(__file__).resolve().parents[2]
FAMILIES = {
    "agency_task_transitions",
    "agency_dispatch_latency_seconds",
    "agency_attempt_duration_seconds",
    "agency_attempts",
    "agency_tasks",
    "agency_queue_depth",
    "agency_workers",
    "agency_worker_breaker_state",
    "agency_collector_database_up",
}


@pytest.fixture(autouse=True)
def _installed() -> None:
    # metrics.apps.MetricsConfig.ready() will do this; install() is idempotent either way.
    prometheus.install()


def samples(text: str) -> list[Any]:
    return [s for family in text_string_to_metric_families(text) for s in family.samples]


def value(found: list[Any], name: str, **labels: str) -> float | None:
    """The value of the sample ``name`` with exactly ``labels``, None when absent."""
    for s in found:
        if s.name == name and s.labels == labels:
            return s.value
    return None


def scrape(client: APIClient) -> list[Any]:
    response = client.get(URL)
    assert response.status_code == 200, response.content
    return samples(response.content.decode())


def own(name: str, **labels: str) -> float:
    """``name`` summed over this process's own sample files: exact whatever other processes do."""
    directory = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    files = [str(p) for p in Path(directory).glob(f"*_{os.getpid()}.db")]
    found = [s for metric in MultiProcessCollector.merge(files, accumulate=True) for s in metric.samples]
    return value(found, name, **labels) or 0.0


def transitions(to_state: str, cause: str) -> float:
    return own("agency_task_transitions_total", to_state=to_state, cause=cause)


# --- access -----------------------------------------------------------------------------


def test_anonymous_gets_401_with_a_token_challenge(anon_client):
    response = anon_client.get(URL)
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Token"
    assert response.json()["code"] == "not_authenticated"


def test_a_wrong_token_gets_401(db, anon_client):
    anon_client.credentials(HTTP_AUTHORIZATION="Bearer not-a-token")
    assert anon_client.get(URL).status_code == 401


def test_an_account_without_a_role_gets_403(nobody_client):
    response = nobody_client.get(URL)
    assert response.status_code == 403
    assert response.json()["code"] == "permission_denied"


def test_a_viewer_token_gets_every_metric_family(viewer_client):
    response = viewer_client.get(URL, HTTP_ACCEPT="application/openmetrics-text;version=1.0.0,text/plain;q=0.5")
    assert response.status_code == 200
    assert response["Content-Type"] == CONTENT_TYPE_LATEST
    text = response.content.decode()
    names = {family.name for family in text_string_to_metric_families(text)}
    assert names >= FAMILIES
    for name in FAMILIES:
        assert f"# HELP {name}" in text
    found = samples(text)
    assert value(found, "agency_collector_database_up") == 1
    # Every legal (state, cause) exists from the first scrape, at zero if nothing happened yet.
    assert value(found, "agency_task_transitions_total", to_state="canceling", cause="cancel") is not None
    assert value(found, "agency_attempts_total", outcome="not_dispatched") is not None


def test_a_viewer_token_sent_as_bearer_works_as_scrapers_send_it(viewer):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key_for(viewer)}")
    assert client.get(URL).status_code == 200


def test_a_viewer_session_works(client, viewer):
    client.force_login(viewer)
    response = client.get(URL)
    assert response.status_code == 200
    assert b"agency_tasks" in response.content


def test_head_is_allowed_and_other_methods_are_not(viewer_client):
    assert viewer_client.head(URL).status_code == 200
    for method in ("post", "put", "patch", "delete", "options"):
        response = getattr(viewer_client, method)(URL)
        assert response.status_code == 405, method
        assert response.json()["code"] == "method_not_allowed"


# --- the transition counter -------------------------------------------------------------


def test_each_committed_transition_is_counted_once(operator, viewer_client, django_capture_on_commit_callbacks):
    created, canceled = transitions("queued", "create"), transitions("canceled", "cancel")
    scraped = scrape(viewer_client)
    with django_capture_on_commit_callbacks(execute=True):
        task = services.task_create(spec={"title": "count me"}, actor=operator)
    assert transitions("queued", "create") == created + 1
    with django_capture_on_commit_callbacks(execute=True):
        services.task_cancel(task_id=task.pk, actor=operator, reason="done with it")
    assert transitions("canceled", "cancel") == canceled + 1

    # An illegal transition writes nothing and counts nothing.
    with django_capture_on_commit_callbacks(execute=True), pytest.raises(IllegalTransition):
        services.task_cancel(task_id=task.pk, actor=operator)
    assert transitions("canceled", "cancel") == canceled + 1

    # The exposition shows at least this process's increments (other processes may add theirs).
    after = scrape(viewer_client)
    for to_state, cause in (("queued", "create"), ("canceled", "cancel")):
        labels = {"to_state": to_state, "cause": cause}
        before = value(scraped, "agency_task_transitions_total", **labels) or 0
        assert value(after, "agency_task_transitions_total", **labels) >= before + 1


def test_a_transition_is_counted_only_when_it_commits(operator, django_capture_on_commit_callbacks):
    created = transitions("queued", "create")
    with django_capture_on_commit_callbacks(execute=False):  # as if the transaction rolled back
        services.task_create(spec={"title": "never committed"}, actor=operator)
    assert transitions("queued", "create") == created


def test_install_is_idempotent(operator, django_capture_on_commit_callbacks):
    prometheus.install()
    prometheus.install()
    created = transitions("queued", "create")
    with django_capture_on_commit_callbacks(execute=True):
        services.task_create(spec={"title": "once"}, actor=operator)
    assert transitions("queued", "create") == created + 1


def test_install_refuses_a_client_imported_before_the_directory_was_set(monkeypatch):
    monkeypatch.setattr(values, "ValueClass", values.MutexValue)
    with pytest.raises(ImproperlyConfigured, match="PROMETHEUS_MULTIPROC_DIR"):
        prometheus.install()


# --- the database gauges ------------------------------------------------------------------


def _worker(name: str, *, token: str = "worker-token", **fields: Any) -> Worker:  # noqa: S107 - a test value
    fields.setdefault("base_url", f"http://127.0.0.1:9/{name}")
    worker = Worker(name=name, **fields)
    worker.token = token
    worker.save()
    return worker


def test_the_gauges_show_the_database(make_task, operator, viewer_client):
    _queued, later, paused, canceled = (make_task(title=f"t{i}") for i in range(4))
    Task.objects.filter(pk=later.pk).update(run_after=timezone.now() + timedelta(hours=1))
    services.task_pause(task_id=paused.pk, actor=operator)
    services.task_cancel(task_id=canceled.pk, actor=operator)
    now = timezone.now()
    _worker("fresh", health_status="healthy", health_checked_at=now, breaker_state="closed")
    _worker("sick", health_status="unhealthy", health_checked_at=now, breaker_state="open")
    _worker("silent", health_status="healthy", health_checked_at=now - timedelta(minutes=5), breaker_state="half_open")
    _worker("new")
    _worker("off", enabled=False, breaker_state="open")

    found = scrape(viewer_client)
    tasks = {state: value(found, "agency_tasks", state=state) for state in ("queued", "paused", "canceled", "running")}
    assert tasks == {"queued": 2, "paused": 1, "canceled": 1, "running": 0}
    assert value(found, "agency_queue_depth") == 1  # the other queued task waits for its run_after
    health = {h: value(found, "agency_workers", health=h) for h in prometheus.WORKER_HEALTH}
    assert health == {"healthy": 1, "unhealthy": 1, "unknown": 2, "disabled": 1}
    breakers = {s.labels["worker"]: s.value for s in found if s.name == "agency_worker_breaker_state"}
    assert breakers == {"fresh": 0, "sick": 2, "silent": 1, "new": 0}  # disabled workers route nothing


def test_a_running_task_counts_as_running_and_leaves_the_queue(make_task, viewer_client):
    task = make_task()
    worker = _worker("w")
    taken = claims.task_claim(actor=Principal.dispatcher("test"), limit=1, pick_worker=lambda _task: worker, lease_s=60)
    assert [c.task_id for c in taken] == [str(task.pk)]
    found = scrape(viewer_client)
    assert value(found, "agency_tasks", state="running") == 1
    assert value(found, "agency_queue_depth") == 0


@pytest.mark.parametrize("rows", [0, 5])
def test_the_gauges_take_two_queries_whatever_the_rows(rows, make_task, django_assert_num_queries):
    for i in range(rows):
        make_task(title=f"t{i}")
        _worker(f"w{i}")
    with django_assert_num_queries(2):
        families = list(prometheus.DatabaseCollector().collect())
    assert {f.name for f in families} >= {"agency_tasks", "agency_queue_depth", "agency_workers"}


def test_a_database_failure_still_serves_the_counters(viewer_client, monkeypatch):
    def broken(self):
        raise DatabaseError("the database is gone")

    monkeypatch.setattr(prometheus.DatabaseCollector, "_families", broken)
    found = scrape(viewer_client)
    assert value(found, "agency_collector_database_up") == 0
    assert not [s for s in found if s.name == "agency_tasks"]
    assert [s for s in found if s.name == "agency_task_transitions_total"]


# --- what the dispatcher observes ---------------------------------------------------------


@pytest.fixture
def running_dispatcher() -> Iterator[Callable[[], Dispatcher]]:
    started: list[Dispatcher] = []

    def start() -> Dispatcher:
        d = Dispatcher(concurrency=2, poll_s=0.1, reap_s=0.5)
        d.start()
        started.append(d)
        return d

    yield start
    for d in started:
        d.stop(grace_s=0)


@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(120)
def test_a_dispatched_task_is_observed_from_claim_to_result(operator, viewer_client, running_dispatcher):
    latency = ("agency_dispatch_latency_seconds_count", {"priority": "high"})
    run_time = ("agency_attempt_duration_seconds_count", {"outcome": "completed"})
    run_sum = ("agency_attempt_duration_seconds_sum", {"outcome": "completed"})
    attempts = ("agency_attempts_total", {"outcome": "completed"})
    watched = [latency, run_time, run_sum, attempts]
    before = {name + str(labels): own(name, **labels) for name, labels in watched}
    claimed, completed = transitions("running", "claim"), transitions("completed", "verdict")

    with reference_worker_process(token=WORKER_TOKEN) as running:
        _worker("ref", token=WORKER_TOKEN, base_url=running.url, capabilities=["reference"])
        running_dispatcher()
        spec = {
            "title": "sleep a little",
            "priority": "high",
            "capabilities": ["reference"],
            "input": {"kind": "sleep", "seconds": 0.2},
        }
        task = services.task_create(spec=spec, actor=operator)
        deadline = time.monotonic() + 30
        while Task.objects.values_list("state", flat=True).get(pk=task.pk) != "completed":
            assert time.monotonic() < deadline, "the task did not complete"
            time.sleep(0.05)

    after = {name + str(labels): own(name, **labels) for name, labels in watched}
    delta = {key: after[key] - before[key] for key in after}
    assert delta[latency[0] + str(latency[1])] == 1
    assert delta[run_time[0] + str(run_time[1])] == 1
    assert delta[attempts[0] + str(attempts[1])] == 1
    assert delta[run_sum[0] + str(run_sum[1])] >= 0.2  # the worker slept that long
    assert transitions("running", "claim") == claimed + 1
    assert transitions("completed", "verdict") == completed + 1
    found = scrape(viewer_client)
    assert value(found, "agency_attempts_total", outcome="completed") >= 1


def test_attempt_outcomes_name_what_the_worker_said():
    from tasks.dispatch.reports import AttemptReport

    def outcome(kind: str, result: Any = None) -> str:
        return instruments.attempt_outcome(AttemptReport("t", 1, kind, result=result))

    assert outcome("result", {"status": "completed"}) == "completed"
    assert outcome("result", {"status": "failed"}) == "failed"
    assert outcome("failed") == "error"
    assert outcome("stopped") == "stopped"
    assert outcome("not_dispatched") == "not_dispatched"


def test_dispatch_latency_starts_when_the_task_became_claimable():
    now = timezone.now()

    class Row:
        updated_at = now - timedelta(seconds=30)
        run_after = None

    assert instruments.claimable_since(Row) == Row.updated_at
    Row.run_after = now - timedelta(seconds=10)  # a retry's backoff ended after it was queued
    assert instruments.claimable_since(Row) == Row.run_after
    Row.run_after = now - timedelta(minutes=5)  # an old run_after of an earlier attempt
    assert instruments.claimable_since(Row) == Row.updated_at


# --- several processes --------------------------------------------------------------------


def test_samples_of_another_process_are_merged_into_the_exposition(tmp_path, monkeypatch, viewer_client):
    prometheus._prime()  # before the switch below, so that the app's own series stay where they are
    # This process writes into an empty directory of its own from here on, like a fresh host.
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    monkeypatch.setattr(values, "ValueClass", values.MultiProcessValue())
    here = Counter("agency_attempts", "Attempts ended at a dispatcher, by outcome.", ["outcome"], registry=None)
    here.labels(outcome="completed").inc(2)

    # A second Python process, the way a dispatcher process is one: the variable is set before
    # it imports prometheus-client.
    code = (
        "import os; from metrics import instruments; "
        "instruments.ATTEMPTS.labels('completed').inc(5); print(os.getpid())"
    )
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    other = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60, check=True
    )
    pid = int(other.stdout)
    assert (tmp_path / f"counter_{pid}.db").exists()

    found = scrape(viewer_client)
    assert value(found, "agency_attempts_total", outcome="completed") == 7  # 2 here + 5 there
    assert value(found, "agency_tasks", state="queued") == 0  # the database gauges beside them

    # The other process has exited: its count stays (a total does not drop when a process
    # goes) until the host starts again and clears the files of exited processes.
    assert prometheus.reset_multiproc_dir(tmp_path) == [tmp_path / f"counter_{pid}.db"]
    found = scrape(viewer_client)
    assert value(found, "agency_attempts_total", outcome="completed") == 2


def test_reset_keeps_the_files_of_running_processes(tmp_path):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        dead_pid = _a_dead_pid()
        names = [
            f"counter_{os.getpid()}.db",
            f"histogram_{sleeper.pid}.db",
            f"counter_{dead_pid}.db",
            f"gauge_livesum_{dead_pid}.db",
            "notes.txt",
        ]
        for name in names:
            (tmp_path / name).write_bytes(b"")
        removed = prometheus.reset_multiproc_dir(tmp_path)
        assert sorted(p.name for p in removed) == sorted([f"counter_{dead_pid}.db", f"gauge_livesum_{dead_pid}.db"])
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*names[:2], "notes.txt"])
    finally:
        sleeper.kill()
        sleeper.wait()


def test_mark_process_dead_drops_only_its_live_gauges(tmp_path):
    pid = _a_dead_pid()
    for name in (f"gauge_livesum_{pid}.db", f"counter_{pid}.db", f"histogram_{pid}.db", f"gauge_livesum_{pid + 1}.db"):
        (tmp_path / name).write_bytes(b"")
    prometheus.mark_process_dead(pid, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [f"counter_{pid}.db", f"histogram_{pid}.db", f"gauge_livesum_{pid + 1}.db"]
    )


def _a_dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid
