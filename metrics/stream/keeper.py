"""The stream keeper: publishes a KPI snapshot every ``AGENCY_KPI_INTERVAL_S`` and trims old events.

It runs as a thread beside a dispatcher (``manage.py serve`` and ``manage.py dispatch``).
With several dispatcher processes each one has a keeper; a keeper publishes only when the
latest stored snapshot is older than most of an interval, so the stream carries about
one snapshot per interval however many keepers run (two may now and then publish
within a moment of each other, which a client only sees as one more snapshot).
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta

from django.conf import settings
from django.db import close_old_connections
from django.utils import timezone

from metrics.stream.channels import METRICS
from metrics.stream.publish import publish_snapshot
from metrics.stream.storage import latest_created, trim

logger = logging.getLogger("agency.stream")

# How often stored events are trimmed.
TRIM_EVERY_S = 60.0
# A snapshot is due once the latest one is older than this share of the interval.
DUE_SHARE = 0.8


def publish_snapshot_if_due(*, interval_s: float) -> bool:
    """Publish a KPI snapshot unless another keeper published one within the interval."""
    from metrics.kpis import kpi_snapshot

    latest = latest_created(METRICS)
    if latest is not None and timezone.now() - latest < timedelta(seconds=interval_s * DUE_SHARE):
        return False
    publish_snapshot(kpi_snapshot())
    return True


class StreamKeeper:
    def __init__(self, *, interval_s: float | None = None) -> None:
        self.interval_s = interval_s or settings.AGENCY_KPI_INTERVAL_S
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="agency-stream-keeper", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        self._thread.join(timeout=timeout_s)

    def _run(self) -> None:
        next_trim = time.monotonic()
        while not self._stop.is_set():
            try:
                publish_snapshot_if_due(interval_s=self.interval_s)
                if time.monotonic() >= next_trim:
                    trimmed = trim()
                    if trimmed:
                        logger.info("trimmed %d stored stream events", trimmed)
                    next_trim = time.monotonic() + TRIM_EVERY_S
            except Exception:
                # A failed snapshot (the database is away) is retried at the next interval.
                logger.exception("KPI snapshot or stream trim failed")
            finally:
                close_old_connections()
            self._stop.wait(self.interval_s)
