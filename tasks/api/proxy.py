"""``GET /api/proxy/workers/{name}/{path}``: a read-only pass-through to a worker's own endpoints.

An operator looking at the Workers page wants to see what a worker says of itself
(``/health``, its request log) without holding the worker's token or reaching its
network. This view makes that one GET on their behalf, and nothing more:

- **Admins only.** The proxy acts with the worker's bearer token, a credential only the
  registry's managers (the admin role) may set, and a worker's endpoints can show more
  than the registry does (the reference worker's ``/_log`` lists every task it ran, with
  its request). Viewers see the probes' results on the Workers page instead.
- **Read-only.** GET and HEAD; anything else is a 405 with ``Allow``. HEAD is answered
  as GET without the body, so that it works with workers that only implement GET (the
  reference worker among them) and its headers are those of the GET.
- **The proxy's hosts.** The worker's host must be one of ``WORKER_PROXY_ALLOWED_HOSTS``
  (by default ``localhost``, ``127.0.0.1`` and ``agent-agency-v3.local``), by name.
- **The egress policy.** The worker's URL is held to :mod:`security.egress`, as every call
  to a worker is: its host by name (``EGRESS_ALLOWED_HOSTS``, metadata names, numeric
  forms) before anything else, and the addresses the name resolves to at the moment of
  connecting, through the dispatcher's own checked transport. A refusal is a 403
  ``{"error": "Host not allowed"}``, and nothing is sent. Redirects are never followed (a
  3xx could point anywhere), and the environment's proxies and ``.netrc`` are ignored.
- **One path, normalised.** ``path`` is made of segments of URL-unreserved characters,
  none of them ``.`` or ``..`` or empty, so it cannot climb out of the worker's base
  path nor carry a scheme, an authority, a percent-escape or a backslash; the target is
  ``base_url`` + ``/`` + ``path`` with the query string passed on, on the worker's own
  scheme, host and port.
- **Headers both ways from short lists.** To the worker go ``Accept``, ``Accept-Language``
  and the conditional headers, never the browser's ``Cookie`` or ``Authorization``; the
  worker's bearer token is added here, decrypted only once the host passed. Back come
  the content and caching headers only, with a sandboxing ``Content-Security-Policy`` so
  that whatever a worker serves renders inert in the dashboard's origin; the token is
  masked should a worker echo it in the body.
- **Bounded.** ``settings.WORKER_PROXY_TIMEOUT_S`` for the connection and for the whole
  answer, which is read in chunks up to :data:`MAX_BODY_BYTES`.

What comes back: a 2xx or 304 of the worker as it is (status, body, the headers above).
Every error, the worker's included, is this API's ``{"detail", "code"}``: a worker's 4xx
or 5xx keeps its status but is wrapped (``code: worker_error``, with ``worker_status`` and
``worker_body``), so that its 404 cannot pass for "no such worker" and a client can tell
the two apart. A redirect, and a refusal of the proxy's own credentials (401, 403, 407: the
caller's session is not at fault), are a 502 saying so, like a worker that is down, times
out or answers too much; the proxy's refusals of a worker add ``error`` (``Host not
allowed``, ``Bad gateway``). A read changes nothing, so it writes no audit record.
"""

from __future__ import annotations

import json
import logging
import re
import time
from typing import Any
from urllib.parse import urlsplit

import requests
import urllib3
from django.conf import settings
from django.http import HttpResponse, JsonResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.views import APIView

from config.errors import DomainError, InvalidInput, PermissionDenied
from config.openapi import error
from security import egress
from security.permissions import IsAdminRole
from security.redaction import MIN_SECRET_LENGTH
from tasks import workers
from tasks.dispatch.worker_client import WorkerConfig
from tasks.dispatch.worker_client.client import PROTOCOL_HEADERS
from tasks.dispatch.worker_client.transport import new_session
from tasks.models import Worker

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 1024 * 1024
CHUNK_BYTES = 64 * 1024
PATH_MAX_LENGTH = 1000
# A segment: unreserved characters (RFC 3986), at least one of them not a dot. Written so that
# each character has one way to match (leading dots, then the first other character), which keeps
# the match linear in the path's length; the schema documents the same pattern.
_SEGMENT = r"\.*[A-Za-z0-9_~-][A-Za-z0-9._~-]*"
PATH_PATTERN = rf"^{_SEGMENT}(/{_SEGMENT})*/?$"
_PATH = re.compile(PATH_PATTERN)

FORWARDED_REQUEST_HEADERS = ("Accept", "Accept-Language", "If-None-Match", "If-Modified-Since")
RETURNED_RESPONSE_HEADERS = (
    "Content-Type",
    "Content-Encoding",
    "Content-Language",
    "ETag",
    "Last-Modified",
    "Cache-Control",
    "Expires",
    "Retry-After",
)
# On every proxied answer: a worker's HTML or script must not run with the dashboard's origin.
ISOLATION_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; sandbox",
    "X-Content-Type-Options": "nosniff",
    "Cross-Origin-Resource-Policy": "same-origin",
}
# Statuses by which the worker refuses the proxy's credentials: a gateway's problem, not the caller's.
CREDENTIAL_REFUSALS = frozenset({401, 403, 407})
# How much of a worker's error body is kept inside the proxy's error.
WORKER_ERROR_BODY_BYTES = 64 * 1024
TOKEN_MASK = b"[redacted]"
USER_AGENT = "agent-agency-proxy/1"


# --- errors -------------------------------------------------------------------------------


class HostNotAllowed(PermissionDenied):
    code = "host_not_allowed"

    def __init__(self, host: str, why: str) -> None:
        super().__init__(f"The proxy may not reach the worker's host {host!r}: {why}", error="Host not allowed")


class BadGateway(DomainError):
    """The worker is down, slow, or answered something the proxy will not relay (502)."""

    code = "bad_gateway"
    http_status = 502

    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message, code=code, error="Bad gateway")


# --- the target ----------------------------------------------------------------------------


def checked_path(path: str) -> str:
    """``path`` if it names something under the worker's base path, else :class:`InvalidInput`."""
    if len(path) > PATH_MAX_LENGTH or not _PATH.fullmatch(path):
        raise InvalidInput(
            fields={
                "path": [
                    "Must be segments of letters, digits and -._~ separated by single slashes, "
                    f"none of them '.' or '..', at most {PATH_MAX_LENGTH} characters."
                ]
            }
        )
    return path


def check_host(worker: Worker) -> None:
    """Refuse a worker whose URL is not http(s) on a host the egress policy allows by name, before anything else."""
    parts = urlsplit(worker.base_url)
    host = parts.hostname or ""
    try:
        parts.port  # noqa: B018 - a malformed port raises here, not at connect time
    except ValueError as exc:
        raise HostNotAllowed(host, "the URL's port is malformed.") from exc
    if parts.scheme not in egress.ALLOWED_SCHEMES or not host:
        raise HostNotAllowed(host, "the URL is not http(s) with a host.")
    allowed = {h.strip().strip("[]").lower().rstrip(".") for h in settings.WORKER_PROXY_ALLOWED_HOSTS}
    if "*" not in allowed and host.lower().rstrip(".") not in allowed:
        raise HostNotAllowed(host, "it is not one of the proxy's hosts (WORKER_PROXY_ALLOWED_HOSTS).")
    try:
        egress.check_host(host)
    except egress.EgressDenied as exc:
        raise HostNotAllowed(host, exc.message) from exc


def _target(config: WorkerConfig, path: str, query: str) -> str:
    url = config.endpoint("/" + path)
    return f"{url}{'&' if '?' in url else '?'}{query}" if query else url


def _request_headers(request: Request, token: str) -> dict[str, str]:
    headers = {name: request.headers[name] for name in FORWARDED_REQUEST_HEADERS if name in request.headers}
    # Identity: the size bound is on what the browser receives, and nothing is decompressed here.
    headers |= {**PROTOCOL_HEADERS, "Accept-Encoding": "identity", "User-Agent": USER_AGENT}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return headers


# --- the exchange --------------------------------------------------------------------------


def _fetch(config: WorkerConfig, url: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    """GET ``url``: its status, headers and body (at most MAX_BODY_BYTES), or :class:`BadGateway`."""
    timeout_s = settings.WORKER_PROXY_TIMEOUT_S
    deadline = time.monotonic() + timeout_s
    redact = config.redactor()
    # The worker client's session: every connection checked by the egress policy at connect
    # time, and no HTTP(S)_PROXY, .netrc or CA bundle from the environment.
    session = new_session()
    try:
        response = session.get(url, headers=headers, timeout=(timeout_s, timeout_s), stream=True, allow_redirects=False)
        try:
            declared = response.headers.get("Content-Length", "")
            if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
                raise _too_large(config)
            body = bytearray()
            while chunk := response.raw.read(CHUNK_BYTES, decode_content=False):
                body += chunk
                if len(body) > MAX_BODY_BYTES:
                    raise _too_large(config)
                if time.monotonic() > deadline:
                    raise _timed_out(config, timeout_s)
            return response.status_code, dict(response.headers), bytes(body)
        finally:
            response.close()
    except egress.EgressDenied as exc:
        # The name passed, but what it resolves to now does not: nothing was sent.
        raise HostNotAllowed(exc.host, exc.message) from exc
    except (requests.Timeout, urllib3.exceptions.TimeoutError) as exc:
        raise _timed_out(config, timeout_s) from exc
    except (requests.RequestException, urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
        # ValueError: what http.client refuses to send (a stored token past latin-1, from before
        # tokens were held to printable ASCII), among others.
        reason = redact(f"{type(exc).__name__}: {exc}")[:300]
        raise BadGateway(f"Worker {config.name!r} is unreachable ({reason}).", code="worker_unreachable") from exc
    finally:
        session.close()


def _too_large(config: WorkerConfig) -> BadGateway:
    return BadGateway(
        f"Worker {config.name!r} answered with more than {MAX_BODY_BYTES} bytes, more than the proxy relays.",
        code="worker_response_too_large",
    )


def _timed_out(config: WorkerConfig, timeout_s: float) -> BadGateway:
    return BadGateway(f"Worker {config.name!r} did not answer within {timeout_s:g} s.", code="worker_timeout")


def _relay(config: WorkerConfig, status: int, headers: dict[str, str], body: bytes, *, head: bool) -> HttpResponse:
    if status in CREDENTIAL_REFUSALS:
        raise BadGateway(
            f"Worker {config.name!r} refused the proxy's credentials (HTTP {status}); "
            "check the token it is registered with.",
            code="worker_refused_credentials",
        )
    if 300 <= status < 400 and status != 304:
        raise BadGateway(
            f"Worker {config.name!r} answered with a redirect (HTTP {status}), which the proxy does not follow.",
            code="worker_redirect",
        )
    lowered = {k.lower(): v for k, v in headers.items()}
    encoded = lowered.get("content-encoding", "identity").strip().lower() not in ("", "identity")
    if config.token and len(config.token) >= MIN_SECRET_LENGTH and not encoded:
        body = body.replace(config.token.encode(), TOKEN_MASK)
    if status >= 400:
        response = _worker_error(config, status, lowered, body, encoded=encoded)
    else:
        response = HttpResponse(body, status=status, content_type=None)
        if "content-type" not in lowered:
            del response["Content-Type"]
        for name in RETURNED_RESPONSE_HEADERS:
            if name.lower() in lowered:
                response[name] = lowered[name.lower()]
    for name, value in ISOLATION_HEADERS.items():
        response[name] = value
    if head:
        response["Content-Length"] = str(len(response.content))
        response.content = b""
    return response


def _worker_error(
    config: WorkerConfig, status: int, headers: dict[str, str], body: bytes, *, encoded: bool
) -> HttpResponse:
    """A worker's error, with its status, in this API's error shape: the worker's body is inside it.

    Relayed as it came, a worker's 404 would read as "no such worker", and its body would be
    whatever the worker writes; wrapped, every error of this endpoint is ``{"detail", "code"}``
    and ``code`` tells the proxy's refusals from the worker's (``worker_error``).
    """
    text = "" if encoded else body[:WORKER_ERROR_BODY_BYTES].decode("utf-8", errors="replace")
    worker_body: Any = text
    if headers.get("content-type", "").split(";")[0].strip().lower() == "application/json":
        try:
            worker_body = json.loads(body) if len(body) <= WORKER_ERROR_BODY_BYTES else text
        except ValueError:
            worker_body = text
    response = JsonResponse(
        {
            "detail": f"Worker {config.name!r} answered HTTP {status}.",
            "code": "worker_error",
            "worker_status": status,
            "worker_body": worker_body,
        },
        status=status,
    )
    if "retry-after" in headers:
        response["Retry-After"] = headers["retry-after"]
    return response


# --- the view --------------------------------------------------------------------------------


class FirstRendererNegotiation(BaseContentNegotiation):
    """The client's Accept is the worker's business, not DRF's: errors are always JSON, never a 406."""

    def select_parser(self, request: Request, parsers: list[Any]) -> Any:
        return parsers[0] if parsers else None

    def select_renderer(self, request: Request, renderers: list[Any], format_suffix: str | None = None) -> Any:
        return renderers[0], renderers[0].media_type


DESCRIPTION = (
    "A GET to `{base_url}/{path}` of the worker (the query string passed on), made by the control plane "
    "with the worker's bearer token, which never reaches the client. Admin role only. The worker's URL must "
    "pass the egress policy, its host by name and the addresses it resolves to when the proxy connects "
    '(else 403 `{"error": "Host not allowed"}`, and nothing is sent); '
    "`path` cannot contain `.`, `..` or empty segments, nor characters outside `A-Za-z0-9-._~`. "
    "Only Accept, Accept-Language, If-None-Match and If-Modified-Since are forwarded, and only content and "
    "caching headers come back. A 2xx or 304 of the worker is passed through; its errors keep their status, "
    "wrapped as `worker_error`; a redirect or a refusal of the proxy's credentials is a 502, like a worker "
    "that is down, slow or answers more than 1 MiB. HEAD is answered as this GET without its body; other "
    "methods get 405."
)
WORKER_ERROR = (
    "or the worker's own error with this status, wrapped: "
    '`{"detail", "code": "worker_error", "worker_status", "worker_body"}` (its JSON, or its text).'
)
RESPONSES = {
    ("2XX", "*/*"): OpenApiResponse(
        OpenApiTypes.ANY, description="The worker's answer, passed through with its status, body and content headers."
    ),
    304: OpenApiResponse(description="Not modified: the worker's answer to If-None-Match or If-Modified-Since."),
    400: OpenApiResponse(
        OpenApiTypes.OBJECT, description=f'A path the proxy refuses: `{{"path": [...]}}`; {WORKER_ERROR}'
    ),
    401: error("Not logged in."),
    403: error(
        "Not the admin role, or the egress policy refuses the worker's host or what it resolves to: "
        '`{"error": "Host not allowed", "code": "host_not_allowed", "detail"}`, and nothing is sent.'
    ),
    404: error(f"No worker is registered under this name (`not_found`), {WORKER_ERROR}"),
    405: error(f"The proxy answers methods other than GET and HEAD with 405 and `Allow`; to a GET, {WORKER_ERROR}"),
    502: error(
        "The worker is unreachable, did not answer in time, answered more than 1 MiB, redirected, or refused the "
        'proxy\'s credentials; `code` says which, and `"error": "Bad gateway"`.'
    ),
    "default": error(f"Any other error status: {WORKER_ERROR}"),
}


class WorkerProxyView(APIView):
    permission_classes = [IsAdminRole]
    http_method_names = ["get", "head"]
    renderer_classes = [JSONRenderer]
    content_negotiation_class = FirstRendererNegotiation

    @extend_schema(
        operation_id="workers_proxy",
        summary="Read a worker's own endpoint through the control plane (admin; GET/HEAD only)",
        description=DESCRIPTION,
        parameters=[
            OpenApiParameter(
                "name",
                {"type": "string", "pattern": workers.NAME_PATTERN, "maxLength": 100},
                OpenApiParameter.PATH,
                description="The worker's registered name.",
            ),
            OpenApiParameter(
                "path",
                {"type": "string", "pattern": PATH_PATTERN, "maxLength": PATH_MAX_LENGTH},
                OpenApiParameter.PATH,
                description="The worker's endpoint under its base URL, e.g. `health`; the query string is passed on.",
            ),
        ],
        responses=RESPONSES,
    )
    def get(self, request: Request, name: str, path: str) -> HttpResponse:
        return self._proxy(request, name, path, head=False)

    def head(self, request: Request, name: str, path: str) -> HttpResponse:
        return self._proxy(request, name, path, head=True)

    def _proxy(self, request: Request, name: str, path: str, *, head: bool) -> HttpResponse:
        path = checked_path(path)
        worker = workers.worker_get(actor=request.user, name=name)
        check_host(worker)
        # Decrypted only now, for a host the policy allows by name.
        config = WorkerConfig(name=worker.name, base_url=worker.base_url, token=worker.token)
        url = _target(config, path, request.META.get("QUERY_STRING", ""))
        started = time.monotonic()
        status, headers, body = _fetch(config, url, _request_headers(request, config.token))
        logger.info(
            "proxied GET %s for %s: HTTP %s, %d bytes in %.0f ms",
            config.redactor()(config.public_endpoint("/" + path)),
            request.user,
            status,
            len(body),
            (time.monotonic() - started) * 1000,
        )
        return _relay(config, status, headers, body, head=head)
