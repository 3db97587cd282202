"""The snapshot of a worker's settings that the client works from, and the URLs derived from it."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

from tasks.dispatch.worker_client.redaction import Redactor, public_url


@dataclass(frozen=True)
class WorkerConfig:
    """A snapshot of one ``tasks.models.Worker`` row, so the client never touches the ORM from its threads.

    ``request_timeout_s`` is the idle read timeout on a progress stream (the protocol
    promises a line at least every 15 s, so 30 s tells a dead connection from a slow
    task); waiting for an answer is bounded by the attempt's deadline instead, because a
    worker may legitimately answer in JSON only when long work is done.
    """

    name: str
    base_url: str
    token: str = field(repr=False)  # may be "": a worker without authentication (local development)
    request_timeout_s: float = 30.0
    connect_timeout_s: float = 5.0
    retry_max_attempts: int = 3
    retry_initial_backoff_ms: int = 500
    retry_max_backoff_ms: int = 5000
    breaker_fail_max: int = 5
    breaker_reset_timeout_s: int = 60

    def __post_init__(self) -> None:
        parts = urlsplit(self.base_url)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise ValueError(f"Worker {self.name!r}: base_url must be an http(s) URL with a host.")
        if self.retry_max_attempts < 1:
            raise ValueError(f"Worker {self.name!r}: retry_max_attempts must be at least 1.")

    def endpoint(self, path: str) -> str:
        """The URL requests go to: the base path plus ``path``, query kept, userinfo dropped.

        Userinfo is never sent: the protocol authenticates with the bearer token, and
        requests would otherwise turn it into a Basic ``Authorization`` header that
        replaces the bearer one.
        """
        parts = urlsplit(self.base_url)
        host = f"[{parts.hostname}]" if ":" in (parts.hostname or "") else parts.hostname or ""
        netloc = f"{host}:{parts.port}" if parts.port else host
        return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/") + path, parts.query, ""))

    def public_endpoint(self, path: str) -> str:
        """The URL of ``path`` as logs and the task timeline may show it."""
        return public_url(self.endpoint(path))

    def redactor(self) -> Redactor:
        return Redactor(base_url=self.base_url, token=self.token)
