"""The KPI selectors, counted for real over tasks in given states at given times."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from metrics import kpis
from tasks.models import Task, Worker
from tasks.states import TaskState

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 3, 1, 12, 30, 30, tzinfo=UTC)
S = TaskState


def task(state: str, *, finished_ago_s: float | None = None, run_s: float | None = None) -> Task:
    """A task in ``state`` that finished ``finished_ago_s`` before NOW after running ``run_s``."""
    finished = NOW - timedelta(seconds=finished_ago_s) if finished_ago_s is not None else None
    started = finished - timedelta(seconds=run_s) if finished is not None and run_s is not None else None
    return Task.objects.create(title="t", spec={}, state=state, started_at=started, finished_at=finished)


def worker(name: str, *, health: str = "healthy", checked_ago_s: float = 5, breaker: str = "closed", enabled=True):
    return Worker.objects.create(
        name=name,
        base_url=f"http://{name}.local",
        enabled=enabled,
        health_status=health,
        health_checked_at=NOW - timedelta(seconds=checked_ago_s),
        breaker_state=breaker,
    )


def test_an_empty_system_has_zeros_and_unknowns():
    snap = kpis.kpi_snapshot(now=NOW)
    assert snap["generated_at"] == NOW.isoformat()
    assert snap["kpis"] == {
        "completed_per_minute": 0,
        "success_rate": None,
        "p95_run_time_s": None,
        "queue_depth": 0,
        "running": 0,
        "failed_last_hour": 0,
        "workers_healthy": 0,
        "workers_enabled": 0,
        "breakers_open": 0,
        "chat_sessions_active": 0,
    }
    assert snap["display"] == {
        "completed_per_minute": "0.0",
        "success_rate": "—",
        "p95_run_time_s": "—",
        "queue_depth": "0",
        "running": "0",
        "failed_last_hour": "0",
        "workers_healthy": "0",
        "workers_enabled": "0",
        "breakers_open": "0",
        "chat_sessions_active": "0",
    }
    assert set(snap["kpis"]) == set(snap["display"]) == set(kpis.KPI_NAMES)


def test_one_completed_task_changes_the_completed_per_minute_tile():
    before = kpis.kpi_snapshot(now=NOW)["display"]["completed_per_minute"]
    task(S.COMPLETED, finished_ago_s=60, run_s=2)
    snap = kpis.kpi_snapshot(now=NOW)
    assert snap["kpis"]["completed_per_minute"] == pytest.approx(0.2)
    assert (before, snap["display"]["completed_per_minute"]) == ("0.0", "0.2")


def test_completed_per_minute_counts_only_completions_of_the_last_five_minutes():
    for ago in (10, 120, 299):
        task(S.COMPLETED, finished_ago_s=ago, run_s=1)
    task(S.COMPLETED, finished_ago_s=301, run_s=1)  # too old
    task(S.COMPLETED, finished_ago_s=-30, run_s=1)  # after the moment counted for
    task(S.FAILED, finished_ago_s=30, run_s=1)
    task(S.CANCELED, finished_ago_s=30)
    assert kpis.kpi_snapshot(now=NOW)["kpis"]["completed_per_minute"] == pytest.approx(3 / 5)


def test_success_rate_is_completed_over_completed_and_failed_in_the_last_hour():
    for _ in range(3):
        task(S.COMPLETED, finished_ago_s=1800, run_s=1)
    task(S.FAILED, finished_ago_s=600, run_s=1)
    task(S.FAILED, finished_ago_s=3700, run_s=1)  # over an hour ago
    task(S.CANCELED, finished_ago_s=60)  # a cancel is neither a success nor a failure
    snap = kpis.kpi_snapshot(now=NOW)
    assert snap["kpis"]["success_rate"] == pytest.approx(0.75)
    assert snap["display"]["success_rate"] == "75.0 %"
    assert snap["kpis"]["failed_last_hour"] == 1
    assert snap["display"]["failed_last_hour"] == "1"


def test_success_rate_of_only_failures_is_zero_not_unknown():
    task(S.FAILED, finished_ago_s=60, run_s=1)
    assert kpis.kpi_snapshot(now=NOW)["kpis"]["success_rate"] == 0


def test_p95_is_the_nearest_rank_run_time_of_the_hours_completions():
    for run in range(1, 21):  # 1 s .. 20 s; the 19th of 20 is the 95th percentile
        task(S.COMPLETED, finished_ago_s=100 + run, run_s=run)
    task(S.COMPLETED, finished_ago_s=4000, run_s=500)  # over an hour ago
    task(S.FAILED, finished_ago_s=60, run_s=900)  # failures are not run times of completed work
    task(S.COMPLETED, finished_ago_s=60)  # never started: no run time
    snap = kpis.kpi_snapshot(now=NOW)
    assert snap["kpis"]["p95_run_time_s"] == pytest.approx(19.0)
    assert snap["display"]["p95_run_time_s"] == "19.0 s"


def test_p95_of_a_single_completion_is_its_run_time():
    task(S.COMPLETED, finished_ago_s=60, run_s=0.25)
    snap = kpis.kpi_snapshot(now=NOW)
    assert snap["kpis"]["p95_run_time_s"] == pytest.approx(0.25)
    assert snap["display"]["p95_run_time_s"] == "250 ms"


def test_p95_reads_only_the_latest_sample_of_completions(monkeypatch):
    monkeypatch.setattr(kpis, "P95_SAMPLE", 3)
    for ago in (10, 20, 30):
        task(S.COMPLETED, finished_ago_s=ago, run_s=2)
    for ago in (40, 50, 60):  # older than the sample: their long run times are not read
        task(S.COMPLETED, finished_ago_s=ago, run_s=1000)
    assert kpis.kpi_snapshot(now=NOW)["kpis"]["p95_run_time_s"] == pytest.approx(2.0)


def test_queue_depth_and_running_count_the_states_of_now():
    for state in (S.QUEUED, S.QUEUED, S.RUNNING, S.CANCELING, S.PAUSED, S.AWAITING_REVIEW):
        task(state)
    snap = kpis.kpi_snapshot(now=NOW)
    assert (snap["kpis"]["queue_depth"], snap["kpis"]["running"]) == (2, 2)
    assert (snap["display"]["queue_depth"], snap["display"]["running"]) == ("2", "2")


def test_workers_healthy_counts_fresh_healthy_polls_among_enabled_workers():
    worker("fresh")
    worker("stale", checked_ago_s=31)  # no poll for three poll intervals: not known healthy
    worker("down", health="unhealthy", breaker="open")
    worker("trial", health="unhealthy", breaker="half_open")
    worker("off", enabled=False, breaker="open")  # disabled workers are not part of the fleet
    snap = kpis.kpi_snapshot(now=NOW)
    assert (snap["kpis"]["workers_healthy"], snap["kpis"]["workers_enabled"]) == (1, 4)
    assert snap["kpis"]["breakers_open"] == 2
    assert snap["display"]["workers_healthy"] == "1"
    assert snap["display"]["breakers_open"] == "2"


def test_active_chat_sessions_leave_out_closed_and_expired_ones(operator):
    from chat import services
    from chat.models import ChatSession

    services.session_create(actor=operator)
    closed = services.session_create(actor=operator)
    services.session_close(actor=operator, session_id=closed.pk)
    stale = services.session_create(actor=operator)
    ChatSession.objects.filter(pk=stale.pk).update(expires_at=NOW - timedelta(seconds=1))
    snap = kpis.kpi_snapshot(now=NOW)
    assert snap["kpis"]["chat_sessions_active"] == 1
    assert snap["display"]["chat_sessions_active"] == "1"


def test_the_snapshot_takes_five_queries_whatever_the_rows(django_assert_num_queries):
    for i in range(30):
        task(S.COMPLETED, finished_ago_s=10 + i, run_s=i)
        task(S.QUEUED)
    worker("w1")
    with django_assert_num_queries(5):
        kpis.kpi_snapshot(now=NOW)


def test_throughput_has_sixty_minutes_oldest_first_with_empty_ones():
    task(S.COMPLETED, finished_ago_s=0, run_s=1)  # 12:30:30, the current minute
    task(S.COMPLETED, finished_ago_s=29, run_s=1)  # 12:30:01
    task(S.FAILED, finished_ago_s=31, run_s=1)  # 12:29:59
    task(S.COMPLETED, finished_ago_s=59 * 60 + 30, run_s=1)  # 11:31:00, the first minute
    task(S.COMPLETED, finished_ago_s=59 * 60 + 31, run_s=1)  # 11:30:59, before it
    task(S.CANCELED, finished_ago_s=10)
    series = kpis.throughput_series(now=NOW)
    assert len(series) == 60
    assert series[0]["minute"] == datetime(2026, 3, 1, 11, 31, tzinfo=UTC)
    assert series[-1]["minute"] == datetime(2026, 3, 1, 12, 30, tzinfo=UTC)
    assert (series[-1]["completed"], series[-1]["failed"]) == (2, 0)
    assert (series[-2]["completed"], series[-2]["failed"]) == (0, 1)
    assert (series[0]["completed"], series[0]["failed"]) == (1, 0)
    assert sum(p["completed"] for p in series) == 3
    assert sum(p["failed"] for p in series) == 1


def test_throughput_is_one_grouped_query(django_assert_num_queries):
    for i in range(20):
        task(S.COMPLETED if i % 3 else S.FAILED, finished_ago_s=i * 90, run_s=1)
    with django_assert_num_queries(1):
        series = kpis.throughput_series(now=NOW, minutes=30)
    assert len(series) == 30
    assert sum(p["completed"] + p["failed"] for p in series) == 20


def test_the_histogram_puts_each_completion_of_the_hour_in_its_run_time_bucket(django_assert_num_queries):
    for run in (0.2, 0.999, 1, 4.9, 5, 29, 30, 119, 120, 599, 600, 5000):
        task(S.COMPLETED, finished_ago_s=60, run_s=run)
    task(S.COMPLETED, finished_ago_s=3700, run_s=0.1)  # over an hour ago
    task(S.FAILED, finished_ago_s=60, run_s=0.1)
    with django_assert_num_queries(1):
        histogram = kpis.run_time_histogram(now=NOW)
    assert [(b["bucket"], b["count"]) for b in histogram] == [
        ("< 1 s", 2),
        ("1-5 s", 2),
        ("5-30 s", 2),
        ("30 s-2 min", 2),
        ("2-10 min", 2),
        ("≥ 10 min", 2),
    ]
    assert (histogram[0]["min_s"], histogram[0]["max_s"], histogram[-1]["max_s"]) == (0, 1, None)


def test_an_empty_histogram_still_lists_every_bucket():
    assert [b["count"] for b in kpis.run_time_histogram(now=NOW)] == [0] * len(kpis.RUN_TIME_BUCKETS)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(None, "—"), (0.0004, "0 ms"), (0.85, "850 ms"), (1.234, "1.2 s"), (59.94, "59.9 s"), (245, "4 min 05 s")],
)
def test_run_times_read_in_their_unit(seconds, text):
    assert kpis.format_duration(seconds) == text


def test_long_run_times_read_in_hours():
    assert kpis.format_duration(2 * 3600 + 3 * 60 + 10) == "2 h 03 min"


@pytest.mark.parametrize(
    ("ratio", "text"), [(None, "—"), (0, "0.0 %"), (0.975, "97.5 %"), (0.9996, "99.9 %"), (1, "100.0 %")]
)
def test_a_rate_short_of_perfect_is_never_shown_as_perfect(ratio, text):
    assert kpis.format_percent(ratio) == text
