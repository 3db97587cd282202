"""The HTTP client of the API (requests), mapping every failure to a :class:`CliError`.

Requests and answers are JSON (the API answers JSON to everything, errors included). The
task stream is opened with :meth:`Client.open_stream` and read by :mod:`agency.sse`.
"""

from __future__ import annotations

from typing import Any

import requests

from agency import __version__
from agency.errors import CliError, Unreachable, api_error

# How long to wait for a connection to open, whatever the request's own timeout.
CONNECT_TIMEOUT_S = 5.0
# An idle stream carries a keep-alive comment every 15 s (metrics/stream/views.py): three
# missed in a row means the connection is dead even if no socket error says so.
STREAM_STALL_S = 45.0


def describe(exc: requests.RequestException) -> str:
    """A short reason for a transport failure, without the exception chain's noise."""
    if isinstance(exc, requests.exceptions.ChunkedEncodingError):
        return "the connection broke mid-answer"
    text = str(exc)
    if "Read timed out" in text:
        return "no data within the read timeout"
    for needle, reason in (
        ("Connection refused", "connection refused (is the server running?)"),
        ("NameResolutionError", "unknown host"),
        ("Name or service not known", "unknown host"),
        ("nodename nor servname", "unknown host"),
        ("No route to host", "no route to host"),
        ("Network is unreachable", "network unreachable"),
        ("RemoteDisconnected", "the server closed the connection"),
        ("Connection reset", "the connection was reset"),
        ("Connection broken", "the connection broke"),
        ("SSLError", "TLS error"),
        ("CERTIFICATE_VERIFY_FAILED", "TLS certificate not trusted"),
    ):
        if needle in text:
            return reason
    if isinstance(exc, requests.Timeout):
        return "timed out"
    return type(exc).__name__


class Client:
    def __init__(self, base_url: str, token: str | None, *, timeout: float = 30.0) -> None:
        self.base_url = base_url
        self.has_token = bool(token)
        self.timeout = timeout
        self.session = requests.Session()
        self.session.headers.update({"Accept": "application/json", "User-Agent": f"agency-cli/{__version__}"})
        if token:
            self.session.headers["Authorization"] = f"Token {token}"

    def url(self, path: str) -> str:
        return self.base_url + path

    def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        body: Any = None,
        accept: tuple[int, ...] = (),
    ) -> Any:
        """The decoded JSON answer of a 2xx (or a status in ``accept``); raises :class:`CliError` otherwise."""
        kwargs: dict[str, Any] = {"params": _clean(params), "timeout": (CONNECT_TIMEOUT_S, self.timeout)}
        if body is not None or method in ("POST", "PATCH", "PUT"):
            kwargs["json"] = {} if body is None else body
        try:
            response = self.session.request(method, self.url(path), **kwargs)
        except requests.Timeout as exc:
            raise Unreachable(
                f"{self.base_url} did not answer within {self.timeout:g} s", reason="no answer in time"
            ) from exc
        except requests.RequestException as exc:
            raise Unreachable(f"cannot reach {self.base_url}: {describe(exc)}", reason=describe(exc)) from exc
        return self.decode(response, accept=accept)

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params)

    def post(self, path: str, body: Any = None) -> Any:
        return self.request("POST", path, body=body)

    def decode(self, response: requests.Response, *, accept: tuple[int, ...] = ()) -> Any:
        status = response.status_code
        try:
            data = response.json() if response.content else None
        except ValueError:
            data = _NOT_JSON
        if 200 <= status < 300 or status in accept:
            if data is _NOT_JSON:
                raise Unreachable(
                    f"{self.base_url} answered {status} with something other than JSON "
                    f"({response.headers.get('Content-Type', 'no content type')}): is it an Agent Agency server?",
                    status=status,
                )
            return data
        raise api_error(
            status, None if data is _NOT_JSON else data, reason=response.reason or "", has_token=self.has_token
        )

    def open_stream(self, path: str, *, params: dict[str, Any], last_event_id: str | None) -> requests.Response:
        """An open ``text/event-stream`` answer (read it with :func:`agency.sse.events`)."""
        headers = {"Accept": "text/event-stream"}
        if last_event_id:
            headers["Last-Event-ID"] = last_event_id
        try:
            response = self.session.get(
                self.url(path), params=params, headers=headers, stream=True, timeout=(CONNECT_TIMEOUT_S, STREAM_STALL_S)
            )
        except requests.RequestException as exc:
            raise Unreachable(f"cannot reach {self.base_url}: {describe(exc)}", reason=describe(exc)) from exc
        if response.status_code != 200:
            try:
                self.decode(response)
            finally:
                response.close()
            raise CliError(f"the stream answered {response.status_code}", status=response.status_code)
        return response


_NOT_JSON = object()


def _clean(params: dict[str, Any] | None) -> dict[str, Any] | None:
    """Query parameters without the unset ones; lists are sent comma-separated (the API's form)."""
    if not params:
        return None
    cleaned: dict[str, Any] = {}
    for key, value in params.items():
        if value is None or value == () or value == []:
            continue
        if isinstance(value, list | tuple):
            value = ",".join(str(v) for v in value)
        elif isinstance(value, bool):
            value = "true" if value else "false"
        cleaned[key] = value
    return cleaned
