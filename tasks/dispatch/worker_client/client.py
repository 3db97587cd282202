"""The dispatcher's side of worker protocol v1: execute with retries inside a circuit breaker, cancel, health.

One :meth:`WorkerClient.execute` is one attempt of one task. Inside it, tenacity sends
the same request (same ``Idempotency-Key``) again after transport failures, 5xx, 409 and
429, with exponential backoff and full jitter, never more than ``retry_max_attempts``
times and never starting a try after the deadline. Every try first asks the worker's
breaker for a permit and tells it the outcome afterwards, so five consecutive failed
tries open it, whichever attempts they belonged to. Nothing here touches the ORM: the
caller passes a :class:`WorkerConfig` snapshot and receives callbacks.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import requests
from tenacity import RetryCallState

from security.egress import EgressDenied
from tasks.dispatch.breakers import BreakerRegistry, Permit, WorkerBreaker
from tasks.dispatch.worker_client.config import WorkerConfig
from tasks.dispatch.worker_client.redaction import Redactor
from tasks.dispatch.worker_client.responses import (
    JSON_TYPE,
    MAX_ERROR_BODY_BYTES,
    NDJSON_TYPE,
    BodyReader,
    TryFailed,
    content_type,
    egress_refusal,
    http_failure,
    protocol_violation,
    read_json_result,
    read_stream_result,
    transport_failure,
)
from tasks.dispatch.worker_client.retry import retrying
from tasks.dispatch.worker_client.transport import AbortHandle, abortable, never_connected, thread_session

PROTOCOL_HEADERS = {"Agency-Protocol": "1"}
# The worker must answer within 1 s of the deadline (protocol §7); the client waits that long past it.
DEADLINE_GRACE_S = 1.0
CANCEL_TIMEOUT_S = 3.0
HEALTH_TIMEOUT_S = 2.0
HEALTH_MAX_BODY_BYTES = 64 * 1024

EventCallback = Callable[[dict[str, Any]], None]


@dataclass
class AttemptOutcome:
    """How one attempt ended, for the dispatcher to apply through the state machine.

    ``kind``: ``result`` (the worker's final result, completed or failed), ``canceled``
    (the abort handle fired before a result arrived), or ``failed`` (no result: transport
    or HTTP failure after the retries, or the breaker refused). ``retryable`` says whether
    a new attempt makes sense; for a ``failed`` result it is the result's own
    ``retryable`` (absent means true, protocol §4). ``breaker_open`` is true when no request
    was sent because the worker's breaker refused (open, or its half-open trial is taken):
    the caller routes elsewhere without counting the attempt. If the breaker opened after
    some tries, the outcome is an ordinary ``failed`` one whose error says so (and
    ``unreached`` if none of those tries got a connection).
    ``at_capacity`` is true when the last try was refused with 429: the worker is busy, it
    did not start the work (protocol §10), so the attempt need not count either.
    ``unreached`` is true when tries were made but none of them got a connection to the
    worker (refused, DNS failure, connect timeout): the request provably never reached it,
    whatever the breaker's state, a half-open trial included (the breaker still counts
    those tries as failures). :attr:`not_dispatched` sums these up for the caller.
    ``egress_denied`` is set when the egress policy refused the connection (nothing was
    sent, and the try was not repeated): the refusal's record with the worker's name and
    public URL, for the task's timeline and the audit trail. Such an attempt is also
    ``unreached``: the task goes back to the queue, and the refusals, counted by the
    worker's breaker, open it and route the work to other capable workers.
    """

    kind: str
    result: dict[str, Any] | None
    error: str
    retryable: bool
    breaker_open: bool
    http_calls: int
    at_capacity: bool = False
    unreached: bool = False
    egress_denied: dict[str, Any] | None = None

    @property
    def not_dispatched(self) -> bool:
        """The worker did not take the attempt: put the task back without using up an attempt."""
        return self.breaker_open or self.at_capacity or self.unreached


class _BreakerRefused(Exception):
    pass


class _Aborted(Exception):
    pass


class _DeadlinePassed(Exception):
    pass


@dataclass
class _Attempt:
    """What the tries of one attempt share."""

    task_id: str
    attempt: int
    # Prepared once, sent as a copy by every try (Session.post would rebuild it and merge the
    # session's settings into it each time; bench/worker_client.py measures the difference).
    request: requests.PreparedRequest
    give_up_at: float  # monotonic: the deadline plus grace
    deadline_at: float  # monotonic: no try starts after this
    abort: AbortHandle
    breaker: WorkerBreaker
    on_event: EventCallback
    on_call: EventCallback | None
    http_calls: int = 0
    # Whether any try may have reached the worker: set by every try except one that never
    # got a connection. Until it is set, the worker cannot have started this attempt.
    reached: bool = False
    last_failure: TryFailed | None = field(default=None, repr=False)


class WorkerClient:
    """Talks to one worker. Thread-safe: each thread gets its own requests session (see ``transport``)."""

    def __init__(self, config: WorkerConfig, *, breakers: BreakerRegistry, log: logging.Logger | None = None) -> None:
        self.config = config
        self._breakers = breakers
        self._log = log or logging.getLogger("tasks.dispatch.worker_client")
        self._redact: Redactor = config.redactor()

    # --- execute -----------------------------------------------------------------------------

    def execute(
        self,
        *,
        task_id: str,
        attempt: int,
        spec: dict[str, Any],
        deadline: datetime,
        abort: AbortHandle,
        on_event: EventCallback,
        on_call: EventCallback | None = None,
    ) -> AttemptOutcome:
        """Run one attempt to its outcome; never raises for worker or network trouble.

        ``on_event`` gets each progress, log and artifact event of a stream as it arrives
        (a retried try may repeat events: delivery is at least once). ``on_call`` gets one
        record per HTTP try (worker, public URL, try number, status, latency, redacted
        error), the same as logged at INFO. Exceptions raised by ``on_event`` propagate.
        On abort the attempt ends ``canceled`` without a retry; telling the worker is the
        caller's :meth:`cancel`. When the client gives up at the deadline it calls
        ``/cancel`` itself (protocol §7).
        """
        if deadline.tzinfo is None:
            raise ValueError("deadline must be timezone-aware")
        deadline_at = time.monotonic() + (deadline - datetime.now(UTC)).total_seconds()
        wire_deadline = deadline.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        ctx = _Attempt(
            task_id=task_id,
            attempt=attempt,
            request=requests.Request(
                "POST",
                self.config.endpoint("/execute"),
                data=json.dumps(
                    {"task_id": task_id, "attempt": attempt, "spec": spec, "deadline": wire_deadline},
                    separators=(",", ":"),
                ).encode(),
                headers=self._headers(
                    {
                        "Idempotency-Key": f"{task_id}:{attempt}",
                        "Accept": f"{NDJSON_TYPE}, {JSON_TYPE}",
                        "Content-Type": JSON_TYPE,
                    }
                ),
            ).prepare(),
            give_up_at=deadline_at + DEADLINE_GRACE_S,
            deadline_at=deadline_at,
            abort=abort,
            breaker=self._breakers.get(self.config),
            on_event=on_event,
            on_call=on_call,
        )
        controller = retrying(self.config, stop_early=lambda rs: self._stop_early(ctx, rs), sleep=abort.wait)

        def outcome(
            kind: str,
            result: dict[str, Any] | None,
            error: str,
            retryable: bool,
            refused: bool = False,
            at_capacity: bool = False,
        ) -> AttemptOutcome:
            return AttemptOutcome(
                kind=kind,
                result=result,
                error=error,
                retryable=retryable,
                breaker_open=refused,
                http_calls=ctx.http_calls,
                at_capacity=at_capacity,
                unreached=kind == "failed" and ctx.http_calls > 0 and not ctx.reached,
            )

        try:
            result = controller(self._try, ctx)
        except _Aborted:
            return outcome("canceled", None, "aborted", retryable=False)
        except _DeadlinePassed:
            return outcome("failed", None, self._with_last_try("the attempt's deadline passed", ctx), True)
        except _BreakerRefused:
            error = self._with_last_try(f"circuit breaker of worker {self.config.name} is open", ctx)
            # Only "no try at all" is a breaker_open outcome; earlier tries that never connected make
            # it an unreached one. Once a try reached the worker the attempt was dispatched, even if
            # the breaker opened before a retry.
            return outcome("failed", None, error, True, refused=ctx.http_calls == 0)
        except TryFailed as failure:
            if abort.aborted:
                return outcome("canceled", None, "aborted", retryable=False)
            if failure.egress is not None:
                # Not repeated within the attempt, but another attempt may go to another worker.
                denied = outcome("failed", None, f"worker {self.config.name}: {failure.message}", True)
                denied.egress_denied = {
                    "worker": self.config.name,
                    "call": "execute",
                    "url": self.config.public_endpoint("/execute"),
                    **failure.egress,
                }
                return denied
            if not ctx.reached:
                # No try got a connection: there is nothing at the worker to cancel.
                error = self._with_last_try(f"worker {self.config.name} could not be reached; nothing was sent", ctx)
                return outcome("failed", None, error, failure.retryable)
            if failure.deadline:
                self.cancel(task_id=task_id, attempt=attempt)
            return outcome("failed", None, failure.message, failure.retryable, at_capacity=failure.status == 429)
        if result["status"] == "failed":
            return outcome("result", result, str(result.get("error", "")), result.get("retryable", True) is not False)
        return outcome("result", result, "", retryable=False)

    @staticmethod
    def _with_last_try(error: str, ctx: _Attempt) -> str:
        return f"{error} (last try: {ctx.last_failure.message})" if ctx.last_failure else error

    def _stop_early(self, ctx: _Attempt, retry_state: RetryCallState) -> bool:
        """Besides the attempt count: aborted, breaker now open, or the wait would end past the deadline."""
        if ctx.abort.aborted or ctx.breaker.is_open():
            return True
        return time.monotonic() + retry_state.upcoming_sleep >= ctx.deadline_at

    def _try(self, ctx: _Attempt) -> dict[str, Any]:
        if ctx.abort.aborted:
            raise _Aborted
        if time.monotonic() >= ctx.deadline_at:
            raise _DeadlinePassed  # before the first try, or a backoff sleep that overran a little
        permit = ctx.breaker.acquire()
        if permit is None:
            raise _BreakerRefused
        ctx.http_calls += 1
        number = ctx.http_calls
        started = time.monotonic()
        status: int | None = None
        error: str | None = None
        verdict: bool | None = None  # None: the worker is not judged (aborted, or the caller's callback failed)
        try:
            status, result = self._send(ctx, permit)
            ctx.reached = True
            verdict = True
            return result
        except TryFailed as failure:
            status, error = failure.status, failure.message
            ctx.reached = ctx.reached or not failure.unreached
            verdict = None if ctx.abort.aborted else not failure.worker_fault
            ctx.last_failure = failure
            raise
        except BaseException as exc:
            ctx.reached = True  # not known to have stayed here
            error = f"interrupted by {type(exc).__name__} (from on_event, or a bug)"
            raise
        finally:
            if verdict is True:
                permit.success()
            elif verdict is False:
                permit.failure()
            else:
                permit.release()
            self._report_call(ctx, number, status, started, error)

    def _send(self, ctx: _Attempt, permit: Permit) -> tuple[int, dict[str, Any]]:
        left = max(0.001, ctx.give_up_at - time.monotonic())
        try:
            with abortable(ctx.abort):
                response = thread_session().send(
                    ctx.request.copy(),
                    # Waiting for the answer is bounded by the deadline, not the idle timeout:
                    # a worker may answer in JSON only when long work is done (protocol §7).
                    timeout=(min(self.config.connect_timeout_s, left), left),
                    stream=True,
                    allow_redirects=False,
                )
                try:
                    return response.status_code, self._read(ctx, response, permit)
                except TryFailed as failure:
                    failure.status = response.status_code
                    raise
                finally:
                    response.close()
        except EgressDenied as exc:
            raise egress_refusal(exc) from exc
        except requests.Timeout as exc:
            deadline = time.monotonic() >= ctx.give_up_at - 0.05
            reason = "no answer by the attempt's deadline" if deadline else "timed out"
            raise transport_failure(
                f"{reason} ({type(exc).__name__})", deadline=deadline, unreached=never_connected(exc)
            ) from exc
        except requests.RequestException as exc:
            raise transport_failure(
                self._redact(f"request failed: {type(exc).__name__}: {exc}")[:500], unreached=never_connected(exc)
            ) from exc

    def _read(self, ctx: _Attempt, response: requests.Response, permit: Permit) -> dict[str, Any]:
        status = response.status_code
        if not 200 <= status < 300:
            reader = BodyReader(response.raw, ctx.abort, give_up_at=ctx.give_up_at, idle_timeout_s=None)
            try:
                body = reader.read_all(MAX_ERROR_BODY_BYTES)
            except TryFailed:
                body = b""
            raise http_failure(status, response.headers, body, self._redact)
        permit.answered()  # a half-open trial closes the breaker now, not after a long stream
        kind = content_type(response.headers)
        if kind == NDJSON_TYPE:
            idle = self.config.request_timeout_s
            reader = BodyReader(response.raw, ctx.abort, give_up_at=ctx.give_up_at, idle_timeout_s=idle)
            return read_stream_result(reader, ctx.on_event)
        if kind == JSON_TYPE:
            reader = BodyReader(response.raw, ctx.abort, give_up_at=ctx.give_up_at, idle_timeout_s=None)
            return read_json_result(reader)
        raise protocol_violation(f"HTTP {status} with Content-Type {kind or 'none'!r}")

    def _report_call(self, ctx: _Attempt, number: int, status: int | None, started: float, error: str | None) -> None:
        record = {
            "worker": self.config.name,
            "url": self.config.public_endpoint("/execute"),
            "attempt": ctx.attempt,
            "try": number,
            "status": status,
            "latency_ms": round((time.monotonic() - started) * 1000, 1),
            "error": self._redact(error) if error else None,
        }
        self._log.info(
            "worker call: worker=%s url=%s task=%s attempt=%s try=%s status=%s latency_ms=%s error=%s",
            record["worker"],
            record["url"],
            ctx.task_id,
            ctx.attempt,
            number,
            status,
            record["latency_ms"],
            record["error"],
        )
        if ctx.on_call is not None:
            try:
                ctx.on_call(record)
            except Exception:
                # The record is informational; the attempt's own outcome matters more.
                self._log.exception("on_call callback failed for worker %s", self.config.name)

    # --- cancel and health --------------------------------------------------------------------

    def cancel(self, *, task_id: str, attempt: int) -> bool:
        """Ask the worker to stop an attempt: one try, short timeout, never raises.

        True when the worker acknowledged (``200``, whatever it knew of the key). Not gated
        by the breaker and not counted by it: a cancel must get through whenever the worker
        might be alive, and its outcome says little about the worker's health.
        """
        started = time.monotonic()
        url = self.config.public_endpoint("/cancel")
        try:
            response = thread_session().post(
                self.config.endpoint("/cancel"),
                data=json.dumps({"task_id": task_id, "attempt": attempt}).encode(),
                headers=self._headers({"Content-Type": JSON_TYPE}),
                timeout=(min(self.config.connect_timeout_s, CANCEL_TIMEOUT_S), CANCEL_TIMEOUT_S),
                allow_redirects=False,
            )
            ok = 200 <= response.status_code < 300
            error = None if ok else f"HTTP {response.status_code}"
            status: int | None = response.status_code
        except Exception as exc:
            ok, status, error = False, None, self._redact(f"{type(exc).__name__}: {exc}")[:500]
        latency_ms = round((time.monotonic() - started) * 1000, 1)
        self._log.info(
            "worker cancel: worker=%s url=%s task=%s attempt=%s status=%s latency_ms=%s error=%s",
            self.config.name,
            url,
            task_id,
            attempt,
            status,
            latency_ms,
            error,
        )
        return ok

    def health(self) -> dict[str, Any]:
        """``GET /health``; never raises.

        Returns the worker's own fields plus ``http_status`` and ``latency_ms``; ``status``
        is the worker's (``ok``, ``degraded``, ``draining``, ``unhealthy``), or
        ``unreachable`` with a redacted ``error`` when no usable answer came (a redirect is
        none: it is never followed), and then ``egress_denied`` (the refusal's record) if
        the egress policy refused the connection. Not gated by the breaker, so health
        polling can tell when a worker is back.
        """
        started = time.monotonic()
        try:
            response = thread_session().get(
                self.config.endpoint("/health"),
                headers=self._headers({"Accept": JSON_TYPE}),
                timeout=(min(self.config.connect_timeout_s, HEALTH_TIMEOUT_S), HEALTH_TIMEOUT_S),
                stream=True,
                allow_redirects=False,
            )
            try:
                if 300 <= response.status_code < 400:
                    raise ValueError(f"HTTP {response.status_code}, a redirect, which is never followed")
                body = response.raw.read(HEALTH_MAX_BODY_BYTES + 1, decode_content=True)
            finally:
                response.close()
            data = json.loads(body) if len(body) <= HEALTH_MAX_BODY_BYTES else None
            if not isinstance(data, dict) or not isinstance(data.get("status"), str):
                raise ValueError(f"HTTP {response.status_code} without a health document")
        except EgressDenied as exc:
            return {
                "status": "unreachable",
                "error": f"refused by the egress policy: {exc.message}"[:500],
                "egress_denied": {
                    "worker": self.config.name,
                    "call": "health",
                    "url": self.config.public_endpoint("/health"),
                    **exc.record(),
                },
                "latency_ms": round((time.monotonic() - started) * 1000, 1),
            }
        except Exception as exc:
            return {
                "status": "unreachable",
                "error": self._redact(f"{type(exc).__name__}: {exc}")[:500],
                "latency_ms": round((time.monotonic() - started) * 1000, 1),
            }
        return {
            **data,
            "http_status": response.status_code,
            "latency_ms": round((time.monotonic() - started) * 1000, 1),
        }

    def _headers(self, extra: dict[str, str]) -> dict[str, str]:
        headers = {**PROTOCOL_HEADERS, **extra}
        if self.config.token:
            headers["Authorization"] = f"Bearer {self.config.token}"
        return headers
