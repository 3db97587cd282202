"""Dispatcher heartbeat rows: written by each dispatcher, pruned once they have been stopped or silent an hour."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from tasks.dispatch import fleet
from tasks.models import DispatcherProcess

pytestmark = pytest.mark.django_db


def _row(dispatcher_id: str, *, seen_min_ago: float, stopped_min_ago: float | None = None) -> None:
    fleet.dispatcher_heartbeat(dispatcher_id=dispatcher_id, concurrency=4, inflight=0)
    now = timezone.now()
    DispatcherProcess.objects.filter(pk=dispatcher_id).update(
        last_seen_at=now - timedelta(minutes=seen_min_ago),
        stopped_at=None if stopped_min_ago is None else now - timedelta(minutes=stopped_min_ago),
    )


def _ids() -> set[str]:
    return set(DispatcherProcess.objects.values_list("pk", flat=True))


def test_rows_stopped_or_silent_for_over_an_hour_are_deleted_and_counted() -> None:
    _row("live", seen_min_ago=0)
    _row("stopped-recently", seen_min_ago=10, stopped_min_ago=10)
    _row("silent-recently", seen_min_ago=59)  # crashed, but within the hour: still shown
    _row("stopped-long-ago", seen_min_ago=120, stopped_min_ago=119)
    _row("crashed-long-ago", seen_min_ago=61)  # never recorded a stop

    assert fleet.prune_dispatchers() == 2

    assert _ids() == {"live", "stopped-recently", "silent-recently"}


def test_the_age_is_the_callers_to_choose() -> None:
    _row("stopped-recently", seen_min_ago=10, stopped_min_ago=10)

    assert fleet.prune_dispatchers(older_than_s=3600) == 0
    assert fleet.prune_dispatchers(older_than_s=5 * 60) == 1
    assert _ids() == set()


def test_a_live_dispatcher_pruned_by_mistake_is_back_at_its_next_heartbeat() -> None:
    # Its clock runs over an hour behind the pruner's: its own "now" looks an hour old.
    _row("slow-clock", seen_min_ago=90)
    assert fleet.prune_dispatchers() == 1

    fleet.dispatcher_heartbeat(dispatcher_id="slow-clock", concurrency=4, inflight=1)

    assert _ids() == {"slow-clock"}
    assert fleet.dispatchers_summary()["live"] == 1


def test_nothing_to_prune_deletes_nothing() -> None:
    assert fleet.prune_dispatchers() == 0
