"""One HTTP answer of a worker turned into a result, or into the reason it is not one.

The rules are those of docs/worker-protocol.md: a result comes as one JSON document or
as the last line of an NDJSON stream (§4, §5); a stream cut before its result line, or
with a line that is not a JSON object, is a transport failure and retried with the same
key (the worker then answers 409 and replays the stored result, §6); statuses map to
"retry or not" and "the worker's fault or not" as in §10.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

from urllib3 import HTTPResponse
from urllib3.exceptions import HTTPError, ReadTimeoutError

from security.egress import EgressDenied
from tasks.dispatch.worker_client.transport import AbortHandle

JSON_TYPE = "application/json"
NDJSON_TYPE = "application/x-ndjson"
# Results SHOULD stay under 10 MiB and lines under 1 MiB (protocol §4, §5); above these
# limits a worker is misbehaving, and the client will not buffer without bound.
MAX_RESULT_BYTES = 32 * 1024 * 1024
MAX_ERROR_BODY_BYTES = 64 * 1024
READ_CHUNK_BYTES = 64 * 1024
# The events a caller puts on the task timeline; heartbeats and unknown types are ignored (§5).
FORWARDED_EVENTS = frozenset({"progress", "log", "artifact"})
RESULT_STATUSES = frozenset({"completed", "failed"})
# After the result line, how long to wait for the end of the chunked body, so the
# keep-alive connection can go back to the pool.
DRAIN_TIMEOUT_S = 0.5


class TryFailed(Exception):
    """One HTTP try that produced no result.

    ``retryable``: tenacity may send the same request again. ``worker_fault``: the try
    counts as a failure for the circuit breaker (5xx, transport, a malformed answer),
    not when the worker answered sensibly (4xx, 409, 429). ``deadline``: the client gave
    up because the attempt's deadline passed. ``unreached``: no connection to the worker
    was ever made (refused, DNS failure, connect timeout, or the egress policy), so not a
    byte of the request left: the worker cannot have started the work. ``egress``: the
    egress policy refused the connection; its record (host, address, reason, message).
    """

    def __init__(
        self,
        message: str,
        *,
        retryable: bool,
        worker_fault: bool,
        status: int | None = None,
        retry_after_s: float | None = None,
        deadline: bool = False,
        unreached: bool = False,
        egress: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable
        self.worker_fault = worker_fault
        self.status = status
        self.retry_after_s = retry_after_s
        self.deadline = deadline
        self.unreached = unreached
        self.egress = egress


def transport_failure(message: str, *, deadline: bool = False, unreached: bool = False) -> TryFailed:
    # A worker that cannot be reached is still the worker's fault for its breaker: the
    # breaker exists to stop calling a dead host, and a refused half-open trial must re-open it.
    return TryFailed(message, retryable=True, worker_fault=True, deadline=deadline, unreached=unreached)


def egress_refusal(denied: EgressDenied) -> TryFailed:
    """The egress policy refused the connection: nothing was sent, and sending again would be refused again.

    It counts against the worker's breaker, like a host that cannot be reached: the worker
    is what is misconfigured (its URL, or its DNS), and an open breaker routes work elsewhere.
    """
    return TryFailed(
        f"refused by the egress policy: {denied.message}",
        retryable=False,
        worker_fault=True,
        unreached=True,
        egress=denied.record(),
    )


def protocol_violation(message: str) -> TryFailed:
    """A well-delivered answer that breaks the protocol: sending the same request again would get it again."""
    return TryFailed(f"protocol violation: {message}", retryable=False, worker_fault=True)


def content_type(response_headers: Any) -> str:
    return str(response_headers.get("Content-Type", "")).split(";")[0].strip().lower()


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from ``Retry-After``; the protocol only allows the integer form (§2)."""
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


class BodyReader:
    """Reads a response body through the raw urllib3 response, bounded by the deadline and an idle timeout.

    ``read1`` returns whatever has arrived (one chunk of a chunked body), so a progress
    line is handed on when it comes rather than when a buffer fills. Before every read
    the socket timeout is set to what is left, so a stream that keeps talking cannot
    outlive the attempt's deadline.
    """

    def __init__(
        self, raw: HTTPResponse, abort: AbortHandle, *, give_up_at: float, idle_timeout_s: float | None
    ) -> None:
        self._raw = raw
        self._abort = abort
        self._give_up_at = give_up_at
        self._idle_timeout_s = idle_timeout_s

    def chunks(self) -> Iterator[bytes]:
        while True:
            left = self._give_up_at - time.monotonic()
            if left <= 0:
                raise transport_failure("no complete answer by the attempt's deadline", deadline=True)
            timeout = left if self._idle_timeout_s is None else min(left, self._idle_timeout_s)
            self._abort.set_read_timeout(timeout)
            try:
                data = self._raw.read1(READ_CHUNK_BYTES)
            except (ReadTimeoutError, TimeoutError) as exc:
                if time.monotonic() >= self._give_up_at:
                    raise transport_failure("no complete answer by the attempt's deadline", deadline=True) from exc
                raise transport_failure(f"stream idle for {timeout:g} s") from exc
            except (HTTPError, OSError) as exc:
                raise transport_failure(f"connection broken while reading the answer ({type(exc).__name__})") from exc
            if not data:
                return
            yield data

    def read_all(self, limit: int) -> bytes:
        body = bytearray()
        for chunk in self.chunks():
            body += chunk
            if len(body) > limit:
                raise protocol_violation(f"answer larger than {limit} bytes")
        return bytes(body)

    def drain(self) -> None:
        """Read the end of the body if it comes at once; otherwise the connection is simply closed."""
        self._give_up_at = min(self._give_up_at, time.monotonic() + DRAIN_TIMEOUT_S)
        try:
            for _ in self.chunks():
                return  # something after the result line: ignored (§5), and the connection is not reused
        except TryFailed:
            return


def _lines(chunks: Iterator[bytes]) -> Iterator[bytes]:
    buffer = bytearray()
    for chunk in chunks:
        buffer += chunk
        start = 0
        while (end := buffer.find(b"\n", start)) >= 0:
            yield bytes(buffer[start:end])
            start = end + 1
        del buffer[:start]
        if len(buffer) > MAX_RESULT_BYTES:
            raise protocol_violation(f"a stream line longer than {MAX_RESULT_BYTES} bytes")
    if buffer.strip():
        yield bytes(buffer)


def validate_result(obj: dict[str, Any]) -> dict[str, Any]:
    if obj.get("type", "result") != "result":
        raise protocol_violation(f"the answer's type is {obj.get('type')!r}, not 'result'")
    if obj.get("status") not in RESULT_STATUSES:
        raise protocol_violation(f"result status {obj.get('status')!r} is not 'completed' or 'failed'")
    return obj


def read_json_result(reader: BodyReader) -> dict[str, Any]:
    body = reader.read_all(MAX_RESULT_BYTES)
    try:
        obj = json.loads(body)
    except ValueError as exc:
        # Most likely damaged in transit; a retry gets the stored result again (§6).
        raise transport_failure("the JSON answer is not valid JSON") from exc
    if not isinstance(obj, dict):
        raise protocol_violation("the JSON answer is not an object")
    return validate_result(obj)


def read_stream_result(reader: BodyReader, on_event: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    for line in _lines(reader.chunks()):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError as exc:
            raise transport_failure("a stream line is not JSON") from exc
        if not isinstance(obj, dict):
            raise transport_failure("a stream line is not a JSON object")
        kind = obj.get("type")
        if kind == "result":
            result = validate_result(obj)
            reader.drain()
            return result
        if kind in FORWARDED_EVENTS:
            on_event(obj)
    raise transport_failure("the stream ended without a result line")


def http_failure(status: int, headers: Any, body: bytes, redact: Callable[[str], str]) -> TryFailed:
    """A non-2xx answer, classified as in protocol §10."""
    detail = ""
    try:
        error = json.loads(body)
        if isinstance(error, dict):
            detail = " ".join(str(error[key]) for key in ("code", "error") if error.get(key))
    except ValueError:
        pass
    if 300 <= status < 400:
        # Never followed (allow_redirects=False): a redirect could point anywhere, the egress
        # policy's checks included, and the protocol has none.
        location = redact(str(headers.get("Location", "")))[:300] or "none"
        return protocol_violation(f"HTTP {status}, a redirect (Location: {location}), which is never followed")
    message = redact(f"HTTP {status}" + (f": {detail[:300]}" if detail else ""))
    retry_after = parse_retry_after(headers.get("Retry-After"))
    if status in (409, 429):
        # 409: the first delivery is still running, its result will be replayed; 429: busy, not broken.
        return TryFailed(message, retryable=True, worker_fault=False, status=status, retry_after_s=retry_after)
    if status >= 500:
        return TryFailed(message, retryable=True, worker_fault=True, status=status, retry_after_s=retry_after)
    # Any other status (4xx): the request is wrong or not allowed here, and sending it again changes nothing.
    return TryFailed(message, retryable=False, worker_fault=False, status=status)
