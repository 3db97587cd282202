"""The dispatcher's writer: attempt reports and breaker changes, written in batches.

Attempt threads never touch the database; they queue what happened here, and one writer
thread applies it, one transaction a batch (up to 500 reports), which keeps SQLite's single
writer and PostgreSQL's commits off the critical path of every attempt. A batch the database
refuses is written again one report at a time, so one bad report cannot sink the others; an
outcome that still cannot be stored is recorded as a failed attempt, so the task moves on
instead of waiting for its lease to run out.
"""

from __future__ import annotations

import logging
import queue
import time
from collections.abc import Callable
from dataclasses import dataclass

from django.db import close_old_connections, connection

from security.principals import Principal
from tasks.dispatch import reports
from tasks.dispatch.reports import AttemptReport

logger = logging.getLogger("agency.dispatcher")


@dataclass
class BreakerChange:
    worker: str
    old: str
    new: str
    task_id: str | None


class ReportWriter:
    def __init__(self, principal: Principal, *, on_written: Callable[[list[AttemptReport]], None]) -> None:
        self.principal = principal
        self._on_written = on_written
        self._queue: queue.Queue[AttemptReport | BreakerChange | None] = queue.Queue()

    def put(self, item: AttemptReport | BreakerChange) -> None:
        self._queue.put(item)

    def close(self) -> None:
        """Stop :meth:`run` once everything queued so far is written."""
        self._queue.put(None)

    def run(self) -> None:
        """The writer thread: batches until :meth:`close` (what was queued before it is written)."""
        try:
            done = False
            while not done:
                item = self._queue.get()
                batch: list[AttemptReport | BreakerChange | None] = [item]
                while len(batch) < 500:
                    try:
                        batch.append(self._queue.get_nowait())
                    except queue.Empty:
                        break
                done = None in batch
                self._write([b for b in batch if b is not None])
        finally:
            connection.close()

    def _write(self, batch: list[AttemptReport | BreakerChange]) -> None:
        written = [b for b in batch if isinstance(b, AttemptReport)]
        try:
            reports.apply_reports(actor=self.principal, reports=written)
        except Exception:
            # One report the database refuses must not sink the others: write them one by one.
            logger.exception("writing a batch of %d reports failed; writing them one by one", len(written))
            close_old_connections()
            for report in written:
                self._write_one(report)
        self._on_written(written)
        for change in (b for b in batch if isinstance(b, BreakerChange)):
            try:
                reports.record_breaker_change(
                    actor=self.principal, worker=change.worker, old=change.old, new=change.new, task_id=change.task_id
                )
            except Exception:
                logger.exception("recording a breaker change failed")
                close_old_connections()

    def _write_one(self, report: AttemptReport) -> None:
        for attempt in range(3):
            try:
                reports.apply_reports(actor=self.principal, reports=[report])
                return
            except Exception:
                logger.exception(
                    "writing the report of %s:%s failed (try %d)", report.task_id, report.attempt, attempt + 1
                )
                close_old_connections()
                time.sleep(0.2 * (attempt + 1))
        if report.kind == "progress":
            return  # an interim event is lost; the outcome still comes
        # The outcome itself cannot be stored as reported: record that, so the task moves on
        # (retried if attempts remain) instead of waiting for its lease to run out.
        fallback = AttemptReport(
            report.task_id, report.attempt, "failed", error="the dispatcher could not record the worker's report"
        )
        try:
            reports.apply_reports(actor=self.principal, reports=[fallback])
        except Exception:
            logger.exception(
                "recording the failure of %s:%s failed; its lease will expire", report.task_id, report.attempt
            )
            close_old_connections()
