"""The stream storage: numbering in batches, replay after an id, resets, trimming, task timelines."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from django_eventstream.models import Event as StoredEvent
from django_eventstream.storage import EventDoesNotExist

from metrics.stream.channels import TASKS, task_channel
from metrics.stream.storage import AgencyStorage, trim
from tasks import services

pytestmark = pytest.mark.django_db


def test_a_batch_is_numbered_consecutively_after_what_is_stored() -> None:
    storage = AgencyStorage()
    first = storage.append_events(TASKS, [("task", '{"n":1}'), ("task", '{"n":2}')])
    second = storage.append_events(TASKS, [("task", '{"n":3}')])
    assert [e.id for e in first + second] == [1, 2, 3]
    assert storage.get_current_id(TASKS) == 3


@pytest.mark.parametrize("size", [1, 100, 500])
def test_a_batch_costs_the_same_statements_whatever_its_size(django_assert_num_queries, size) -> None:
    storage = AgencyStorage()
    storage.append_events(TASKS, [("task", "{}")])
    # savepoint, the counter moved (UPDATE ... RETURNING, its row locked), one INSERT, release
    with django_assert_num_queries(4):
        storage.append_events(TASKS, [("task", "{}")] * size)
    assert storage.get_current_id(TASKS) == 1 + size


def test_a_counter_row_that_went_is_made_again_and_numbering_restarts_from_it() -> None:
    from django_eventstream.models import Event, EventCounter

    storage = AgencyStorage()
    storage.append_events(TASKS, [("task", "{}")] * 3)
    # What a flushed test database does to the counter id the process remembers.
    Event.objects.filter(channel=TASKS).delete()
    EventCounter.objects.filter(name=TASKS).delete()
    (event,) = storage.append_events(TASKS, [("task", "{}")])
    assert event.id == 1
    assert storage.get_current_id(TASKS) == 1


def test_events_after_an_id_come_in_order_and_paged() -> None:
    storage = AgencyStorage()
    storage.append_events(TASKS, [("task", f'{{"n":{i}}}') for i in range(1, 11)])
    assert [e.id for e in storage.get_events(TASKS, 0, limit=4)] == [1, 2, 3, 4]
    assert [e.id for e in storage.get_events(TASKS, 7)] == [8, 9, 10]
    assert storage.get_events(TASKS, 10) == []
    assert storage.get_events(TASKS, 7)[0].data == '{"n":8}'


def test_an_id_beyond_the_counter_is_unknown() -> None:
    storage = AgencyStorage()
    storage.append_events(TASKS, [("task", "{}")])
    with pytest.raises(EventDoesNotExist) as gone:
        storage.get_events(TASKS, 5)
    assert gone.value.current_id == 1


def test_trimming_removes_old_events_and_a_trimmed_id_is_reset(settings) -> None:
    settings.AGENCY_STREAM_RETENTION_S = 60
    storage = AgencyStorage()
    storage.append_events(TASKS, [("task", "{}")] * 3)
    StoredEvent.objects.filter(channel=TASKS, eid__lte=2).update(created=timezone.now() - timedelta(minutes=5))
    assert trim() == 2
    assert list(StoredEvent.objects.values_list("eid", flat=True)) == [3]
    with pytest.raises(EventDoesNotExist) as gone:
        storage.get_events(TASKS, 1)
    assert gone.value.current_id == 3
    with pytest.raises(EventDoesNotExist):
        storage.get_events(TASKS, 0)  # the start is gone too
    assert storage.get_events(TASKS, 3) == []


def test_a_task_channel_reads_the_task_timeline(operator) -> None:
    task = services.task_create(
        spec={
            "title": "t",
            "risk_tier": 3,
            "scope": {"in": ["src/"]},
            "acceptance": [{"id": "A1", "given": "g", "when": "w", "then": "t"}],
        },
        actor=operator,
    )
    services.task_pause(task_id=task.pk, actor=operator, reason="r")
    storage = AgencyStorage()
    channel = task_channel(task.pk)
    assert storage.get_current_id(channel) == 2
    events = storage.get_events(channel, 0)
    assert [e.id for e in events] == [1, 2]
    assert '"to":"paused"' in events[1].data
    assert storage.get_events(channel, 2) == []
    with pytest.raises(EventDoesNotExist):
        storage.get_events(channel, 3)
    with pytest.raises(ValueError, match="not stored twice"):
        storage.append_events(channel, [("event", "{}")])


def test_a_replay_of_remembered_events_reads_only_the_current_number(django_assert_num_queries) -> None:
    storage = AgencyStorage()
    storage.append_events(TASKS, [("task", f'{{"n":{i}}}') for i in range(1, 61)])
    first = storage.get_events(TASKS, 10, limit=100)  # read once: remembered
    with django_assert_num_queries(1):
        again = storage.get_events(TASKS, 10, limit=100)
    assert [e.id for e in again] == list(range(11, 61))
    assert all(a is b for a, b in zip(first, again, strict=True))  # the same objects: encoded once


def test_a_replay_reaching_past_what_is_remembered_reads_the_rows(django_assert_num_queries) -> None:
    storage = AgencyStorage()
    storage.append_events(TASKS, [("task", "{}")] * 5)
    storage.get_events(TASKS, 3)
    with django_assert_num_queries(2):
        assert [e.id for e in storage.get_events(TASKS, 1)] == [2, 3, 4, 5]
