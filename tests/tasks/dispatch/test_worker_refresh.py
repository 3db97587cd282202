"""The dispatcher's worker refresh with an unusable row: left out of routing, reported once, not every cycle."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from security.principals import SYSTEM
from tasks import workers
from tasks.dispatch.dispatcher import Dispatcher
from tasks.models import Worker

pytestmark = pytest.mark.django_db


@pytest.fixture
def dispatcher() -> Iterator[Dispatcher]:
    d = Dispatcher(concurrency=1)
    yield d
    d._pool.shutdown(wait=True)


def test_an_ftp_row_is_skipped_with_one_warning_until_it_changes(dispatcher, caplog):
    good = workers.worker_register(actor=SYSTEM, name="good", base_url="http://127.0.0.1:9100")
    # Written past the services, as rows registered before the URL policy were.
    bad = Worker.objects.create(name="files", base_url="ftp://files.example.com/worker")
    caplog.set_level(logging.INFO, logger="agency")

    for _ in range(3):  # the keeper refreshes every 2 s; three cycles stand for many
        dispatcher._refresh_workers()

    assert set(dispatcher._workers) == {good.pk}
    reports = [r for r in caplog.records if "files" in r.getMessage()]
    assert [(r.levelno, r.exc_info) for r in reports] == [(logging.WARNING, None)]
    assert "left out of routing" in reports[0].getMessage()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]

    # Someone edits the row (still wrong): that is news, so it is reported once more.
    caplog.clear()
    Worker.objects.filter(pk=bad.pk).update(
        base_url="gopher://files.example.com", updated_at=bad.updated_at.replace(year=2099)
    )
    dispatcher._refresh_workers()
    dispatcher._refresh_workers()
    assert len([r for r in caplog.records if "files" in r.getMessage()]) == 1

    # Fixed, it is routed again without a word.
    caplog.clear()
    Worker.objects.filter(pk=bad.pk).update(base_url="http://127.0.0.1:9200")
    dispatcher._refresh_workers()
    assert set(dispatcher._workers) == {good.pk, bad.pk}
    assert not caplog.records
