"""The dispatcher: claims due tasks, runs their attempts on workers, reports back.

Threads, and what each owns:

- the **loop** claims due tasks (as many as it has free slots), woken by the
  bus on new work or by a finished attempt, polling every ``poll_s`` anyway;
- a pool of ``concurrency`` **attempt** threads, each running one attempt
  against a worker over HTTP (they never touch the database: they hand
  events and outcomes to the writer through a queue);
- the **writer** (:mod:`tasks.dispatch.writer`) applies those reports in
  batches, one transaction a batch, which keeps SQLite's single writer and
  PostgreSQL's commits off the critical path of every attempt;
- the **keeper** renews leases, polls the database for attempts that must
  stop (covers lost bus signals), reaps expired leases of dead dispatchers
  and refreshes the worker registry.

Bus control messages (cancel, pause) abort the attempt at once: the socket is
shut, the worker is told to cancel, and the writer confirms the state change.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import close_old_connections, connection

from metrics import instruments
from security.principals import Principal
from tasks.dispatch import bus, claims, fleet, leases
from tasks.dispatch.breakers import BreakerRegistry
from tasks.dispatch.claims import Claim
from tasks.dispatch.reports import AttemptReport
from tasks.dispatch.worker_client import AbortHandle, WorkerClient, WorkerConfig
from tasks.dispatch.writer import BreakerChange, ReportWriter
from tasks.models import Task, Worker
from tasks.review import waivers

logger = logging.getLogger("agency.dispatcher")

_current_task = threading.local()

# How often a dispatcher marks waivers past their expiry as expired. Matching never relies on
# it (an expired waiver is inactive whatever its status); it keeps the list and audit honest.
WAIVER_EXPIRY_S = 30.0


@dataclass
class InFlight:
    claim: Claim
    worker: WorkerConfig
    abort: AbortHandle
    stop_reason: str = ""
    dispatched_at: float = field(default_factory=time.monotonic)


@dataclass
class DispatcherStats:
    claimed: int = 0
    finished: int = 0
    reaped: int = 0
    started_at: float = field(default_factory=time.monotonic)


def new_dispatcher_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


def worker_config(worker: Worker) -> WorkerConfig:
    return WorkerConfig(
        name=worker.name,
        base_url=worker.base_url,
        token=worker.token,
        request_timeout_s=worker.request_timeout_s,
        retry_max_attempts=worker.retry_max_attempts,
        retry_initial_backoff_ms=worker.retry_initial_backoff_ms,
        retry_max_backoff_ms=worker.retry_max_backoff_ms,
        breaker_fail_max=worker.breaker_fail_max,
        breaker_reset_timeout_s=worker.breaker_reset_timeout_s,
    )


class Dispatcher:
    def __init__(
        self,
        *,
        concurrency: int = 8,
        dispatcher_id: str | None = None,
        lease_s: float | None = None,
        poll_s: float | None = None,
        reap_s: float | None = None,
        breakers: BreakerRegistry | None = None,
        claim_batch: int = 64,
    ) -> None:
        self.id = dispatcher_id or new_dispatcher_id()
        self.principal = Principal.dispatcher(self.id)
        self.concurrency = concurrency
        self.lease_s = lease_s if lease_s is not None else settings.AGENCY_LEASE_S
        self.poll_s = poll_s if poll_s is not None else settings.AGENCY_POLL_S
        self.reap_s = reap_s if reap_s is not None else settings.AGENCY_REAP_S
        self.claim_batch = claim_batch
        self.breakers = breakers or BreakerRegistry(
            redis_url=settings.REDIS_URL or None, listener=self._on_breaker_change
        )
        self.stats = DispatcherStats()
        self._inflight: dict[str, InFlight] = {}
        # Attempts whose final report is queued but not yet committed: their leases are
        # still renewed so the reaper cannot take a finished attempt while the writer lags.
        self._finishing: dict[str, int] = {}
        self._inflight_lock = threading.Lock()
        self._last_renewed = time.monotonic()
        self._writer = ReportWriter(self.principal, on_written=self._finished_writing)
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._loop_done = threading.Event()
        self._claiming = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="agency-attempt")
        self._threads: list[threading.Thread] = []
        self._workers: dict[int, tuple[Worker, WorkerConfig]] = {}
        self._clients: dict[str, WorkerClient] = {}
        # Unusable worker rows already reported, with the updated_at they were reported at. The
        # refresh runs every 2 s: a traceback each time buried the one line that mattered, so a
        # row is reported once (a WARNING) and again only after someone changes it.
        self._unusable_workers: dict[int, Any] = {}
        self._unsubscribe = None
        self.last_loop_at = 0.0

    # -- lifecycle -------------------------------------------------------------
    def start(self) -> None:
        self._claiming.set()
        self._refresh_workers()
        self._unsubscribe = bus.subscribe(self._on_bus)
        threads = (
            ("loop", self._loop),
            ("writer", self._writer.run),
            ("keeper", self._keeper),
            ("health", self._health),
        )
        for name, target in threads:
            thread = threading.Thread(target=target, name=f"agency-dispatch-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        logger.info("dispatcher %s started (concurrency %d)", self.id, self.concurrency)

    def stop(self, grace_s: float = 10.0) -> None:
        """Stop claiming, let in-flight attempts finish for ``grace_s``, then stop
        the rest (they go back to the queue without using up an attempt)."""
        self._claiming.clear()
        self._loop_done.set()
        self._wake.set()
        for thread in self._threads:
            if thread.name.endswith("-loop"):
                thread.join(timeout=30)  # a claim in progress commits and submits before we look
        deadline = time.monotonic() + grace_s
        while self.inflight_count() and time.monotonic() < deadline:
            time.sleep(0.05)
        with self._inflight_lock:
            leftover = list(self._inflight.values())
        for item in leftover:
            self._abort(item, "dispatcher shutting down")
        self._pool.shutdown(wait=True)
        self._stopping.set()
        if self._unsubscribe:
            self._unsubscribe()
        self._writer.close()
        for thread in self._threads:
            thread.join(timeout=10)
        logger.info("dispatcher %s stopped (%d claimed, %d finished)", self.id, self.stats.claimed, self.stats.finished)

    def inflight_count(self) -> int:
        with self._inflight_lock:
            return len(self._inflight)

    # -- bus -------------------------------------------------------------------
    def _on_bus(self, message: dict[str, Any]) -> None:
        if message.get("kind") == "work":
            self._wake.set()
        elif message.get("kind") == "control":
            with self._inflight_lock:
                item = self._inflight.get(str(message.get("task_id")))
            # A late signal about an earlier attempt must not stop the current one.
            if item is not None and message.get("attempt") in (None, item.claim.attempt):
                self._abort(item, str(message.get("action") or "control"))

    def _abort(self, item: InFlight, reason: str) -> None:
        if not item.stop_reason:
            item.stop_reason = reason
        item.abort.abort()

    # -- loop ------------------------------------------------------------------
    def _loop(self) -> None:
        try:
            while not self._loop_done.is_set():
                self.last_loop_at = time.monotonic()
                claimed = 0
                free = self.concurrency - self.inflight_count()
                if self._claiming.is_set() and free > 0:
                    try:
                        claimed = self._claim(min(free, self.claim_batch))
                    except Exception:
                        logger.exception("claim failed")
                        close_old_connections()
                if claimed and claimed == min(free, self.claim_batch):
                    continue  # there may be more due work: claim again at once
                self._wake.wait(self.poll_s)
                self._wake.clear()
        finally:
            connection.close()

    def _claim(self, limit: int) -> int:
        workers = self._workers  # one snapshot: the keeper swaps the dict
        refusing = {w.name for w, _config in workers.values() if self.breakers.refuses_now(w.name)}
        with self._inflight_lock:
            busy = set(self._inflight) | set(self._finishing)
        eligible = [w for w, _config in workers.values() if w.name not in refusing]
        load: dict[int, int] | None = None

        def pick(task: Task) -> Worker | None:
            nonlocal load
            if str(task.pk) in busy:
                return None  # its previous attempt is still winding down here
            if load is None:
                # Inside the claim's transaction, and only once there is a candidate: the
                # count must include every claim committed before ours (see worker_load).
                load = claims.worker_load(lock=[w.pk for w in eligible])
            required = task.spec.get("capabilities") or []
            best: Worker | None = None
            for worker in eligible:
                if not worker.covers(required):
                    continue
                if load.get(worker.pk, 0) >= worker.max_concurrency:
                    continue
                if best is None or load.get(worker.pk, 0) < load.get(best.pk, 0):
                    best = worker
            if best is not None:
                load[best.pk] = load.get(best.pk, 0) + 1
            return best

        def room() -> bool:
            # Once every worker is full, reading more candidates (and decoding their specs) is
            # waste: a loop woken by a finished attempt whose report is not yet written would
            # otherwise read 32 rows to claim none.
            return load is None or any(load.get(w.pk, 0) < w.max_concurrency for w in eligible)

        if not eligible:
            return 0
        taken = claims.task_claim(actor=self.principal, limit=limit, pick_worker=pick, lease_s=self.lease_s, room=room)
        for claim in taken:
            item = InFlight(claim=claim, worker=workers[claim.worker_id][1], abort=AbortHandle())
            with self._inflight_lock:
                self._inflight[claim.task_id] = item
            self._pool.submit(self._run_attempt, item)
        self.stats.claimed += len(taken)
        return len(taken)

    # -- attempts --------------------------------------------------------------
    def _client(self, config: WorkerConfig) -> WorkerClient:
        client = self._clients.get(config.name)
        if client is None or client.config != config:
            client = WorkerClient(config, breakers=self.breakers, log=logger)
            self._clients[config.name] = client
        return client

    def _run_attempt(self, item: InFlight) -> None:
        claim = item.claim
        _current_task.task_id = claim.task_id
        client = self._client(item.worker)
        put = self._writer.put

        def on_event(event: dict[str, Any]) -> None:
            if event.get("type") != "result":
                put(AttemptReport(claim.task_id, claim.attempt, "progress", events=[event]))

        held: list[dict[str, Any]] = []

        def on_call(call: dict[str, Any]) -> None:
            event = dict(call)
            if call.get("error") is None and 200 <= (call.get("status") or 0) < 300:
                held.append(event)  # the outcome follows at once: the record travels with it
            else:
                put(AttemptReport(claim.task_id, claim.attempt, "progress", calls=[event]))

        try:
            outcome = client.execute(
                task_id=claim.task_id,
                attempt=claim.attempt,
                spec=claim.spec,
                deadline=claim.deadline,
                abort=item.abort,
                on_event=on_event,
                on_call=on_call,
            )
            if outcome.kind == "result":
                # Even if an abort landed meanwhile: the writer's fencing decides what a result may do.
                report = AttemptReport(claim.task_id, claim.attempt, "result", result=outcome.result)
            elif outcome.kind == "canceled" or item.abort.aborted:
                client.cancel(task_id=claim.task_id, attempt=claim.attempt)
                report = AttemptReport(claim.task_id, claim.attempt, "stopped", error=item.stop_reason or "aborted")
            elif outcome.not_dispatched:
                # The worker never took the attempt (breaker open, busy, never reached, or refused by the
                # egress policy): back to the queue uncounted.
                report = AttemptReport(claim.task_id, claim.attempt, "not_dispatched", error=outcome.error)
            else:
                report = AttemptReport(
                    claim.task_id, claim.attempt, "failed", error=outcome.error, retryable=outcome.retryable
                )
            report.egress_denied = outcome.egress_denied
        except Exception as exc:  # a bug here must not lose the task: report it failed
            logger.exception("attempt %s:%s crashed", claim.task_id, claim.attempt)
            report = AttemptReport(claim.task_id, claim.attempt, "failed", error=f"dispatcher error: {exc}")
        finally:
            _current_task.task_id = None
        report.calls = held + report.calls
        instruments.observe_attempt(report, started=item.dispatched_at)
        with self._inflight_lock:
            self._finishing[claim.task_id] = claim.attempt
            if self._inflight.get(claim.task_id) is item:
                del self._inflight[claim.task_id]
        put(report)
        self.stats.finished += 1
        self._wake.set()

    def _on_breaker_change(self, worker: str, old: str, new: str) -> None:
        logger.warning("breaker of worker %s: %s -> %s", worker, old, new)
        self._writer.put(BreakerChange(worker, old, new, getattr(_current_task, "task_id", None)))

    def _finished_writing(self, reports: list[AttemptReport]) -> None:
        finished = False
        with self._inflight_lock:
            for report in reports:
                if report.kind != "progress" and self._finishing.get(report.task_id) == report.attempt:
                    del self._finishing[report.task_id]
                    finished = True
        if finished:
            # The attempts no longer count against their workers' capacity (which the claim
            # reads from the database): a loop that found a worker full can claim again now.
            self._wake.set()

    # -- keeper ----------------------------------------------------------------
    def _keeper(self) -> None:
        renew_every = self.lease_s / 3
        next_renew = next_poll = next_reap = next_refresh = next_expire = 0.0
        try:
            while not self._stopping.wait(min(self.poll_s, renew_every, 0.5)):
                now = time.monotonic()
                try:
                    with self._inflight_lock:
                        attempts = {tid: item.claim.attempt for tid, item in self._inflight.items()}
                        held = list(attempts) + list(self._finishing)
                    if now >= next_renew:
                        self._renew(held, len(attempts))
                        next_renew = now + renew_every
                    if now >= next_poll:
                        self._stop_what_the_database_says(attempts)
                        next_poll = now + self.poll_s
                    if now >= next_reap:
                        reaped = leases.reap_expired_leases(actor=self.principal)
                        self.stats.reaped += len(reaped)
                        next_reap = now + self.reap_s
                    if now >= next_refresh:
                        self._refresh_workers()
                        next_refresh = now + 2.0
                    if now >= next_expire:
                        waivers.waivers_expire()
                        fleet.prune_dispatchers()
                        next_expire = now + WAIVER_EXPIRY_S
                except Exception:
                    logger.exception("dispatcher housekeeping failed")
                    close_old_connections()
        finally:
            try:
                fleet.dispatcher_stopped(dispatcher_id=self.id)
            except Exception:
                logger.exception("could not record the dispatcher's stop")
            connection.close()

    def _renew(self, task_ids: list[str], inflight: int) -> None:
        try:
            leases.renew_leases(actor=self.principal, task_ids=task_ids, lease_s=self.lease_s)
            fleet.dispatcher_heartbeat(dispatcher_id=self.id, concurrency=self.concurrency, inflight=inflight)
            self._last_renewed = time.monotonic()
        except Exception:
            logger.exception("lease renewal failed")
            close_old_connections()
            if time.monotonic() - self._last_renewed > self.lease_s * 2 / 3:
                # Our leases are about to lapse and another dispatcher may take the tasks:
                # stop our attempts rather than run them twice.
                with self._inflight_lock:
                    items = list(self._inflight.values())
                for item in items:
                    self._abort(item, "lease lost")

    def _health(self) -> None:
        """Poll each enabled worker's /health (off the keeper, so a slow worker cannot delay lease renewal)."""
        try:
            while True:
                self._poll_worker_health()
                if self._stopping.wait(fleet.WORKER_POLL_S):
                    break
        finally:
            connection.close()

    def _poll_worker_health(self) -> None:
        for worker_id, (_worker, config) in list(self._workers.items()):
            if self._stopping.is_set():
                return
            started = time.perf_counter()
            report = self._client(config).health()
            try:
                fleet.record_worker_health(
                    worker_id=worker_id,
                    report=report,
                    latency_ms=(time.perf_counter() - started) * 1000,
                    actor=self.principal.actor,
                )
            except Exception:
                logger.exception("recording the health of worker %s failed", config.name)
                close_old_connections()

    def _stop_what_the_database_says(self, attempts: dict[str, int]) -> None:
        for task_id, state in leases.attempts_to_stop(dispatcher_id=self.id, attempts=attempts).items():
            with self._inflight_lock:
                item = self._inflight.get(task_id)
            if item is not None and item.claim.attempt == attempts[task_id]:
                self._abort(item, state)

    def _refresh_workers(self) -> None:
        reported = self._unusable_workers
        workers = {}
        for worker in Worker.objects.filter(enabled=True):
            try:
                workers[worker.pk] = (worker, worker_config(worker))
            except Exception as exc:
                # One unusable row (a token the key cannot decrypt, a bad URL) must not stop the rest.
                if reported.get(worker.pk) != worker.updated_at:
                    reported[worker.pk] = worker.updated_at
                    logger.warning(
                        "worker %s is left out of routing until it is fixed: %s: %s",
                        worker.name,
                        type(exc).__name__,
                        exc,
                    )
            else:
                reported.pop(worker.pk, None)
        # Keep configs of in-flight attempts' workers even if just disabled.
        self._workers = workers | {k: v for k, v in self._workers.items() if k not in workers and self._uses(k)}

    def _uses(self, worker_id: int) -> bool:
        with self._inflight_lock:
            return any(item.claim.worker_id == worker_id for item in self._inflight.values())
