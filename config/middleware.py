"""Every ``/api/`` response is JSON, errors included, DEBUG or not.

DRF renders its own errors as JSON, but a good share of an API's errors never reach a
DRF view: the URL resolver's 404 (``/api/v1/tasks/`` with a slash, ``/api/v1/tasks/not-a-uuid``),
Django's 405 from ``require_http_methods``, the 400/413 of an oversized body and any
uncaught exception's 500. Django answers those with HTML, and with DEBUG on with its
technical pages, which list settings, URL patterns and tracebacks.

``handler404``/``handler500`` would not be enough: Django consults them only with DEBUG
off, and never for the technical pages. So this middleware, outermost but for
``SecurityMiddleware``, replaces any non-JSON error response on an ``/api/`` path with
``{"detail", "code"}`` (Django has already logged it), and refuses two requests up front:

- a body whose ``Content-Length`` exceeds ``DATA_UPLOAD_MAX_MEMORY_SIZE``: 413, before
  anything reads it;
- an unsafe method on a path without its trailing slash that does not resolve:
  ``CommonMiddleware`` would raise (DEBUG) or redirect a POST to a GET, neither of which an
  API client can use, so it is the 404 it really is.

The browsable API is the one exception: a DRF response the client asked to see as HTML
(``BrowsableAPIRenderer``) is DRF's own page, not Django's, and is left alone.

This module imports no app.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from http import HTTPStatus

from asgiref.sync import iscoroutinefunction
from django.conf import settings
from django.http import HttpRequest, HttpResponseBase, JsonResponse
from django.urls import Resolver404, resolve
from django.utils.decorators import sync_and_async_middleware
from rest_framework.renderers import BrowsableAPIRenderer

from config.parsers import too_large_detail

API_PREFIX = "/api/"

# The codes and messages DRF gives the same statuses, so that a client sees one vocabulary.
ERRORS = {
    400: ("bad_request", "Bad request."),
    401: ("not_authenticated", "Authentication credentials were not provided."),
    403: ("permission_denied", "You do not have permission to perform this action."),
    404: ("not_found", "Not found."),
    405: ("method_not_allowed", "Method not allowed."),
    406: ("not_acceptable", "Could not satisfy the request Accept header."),
    413: ("request_too_large", "Request body too large."),
    415: ("unsupported_media_type", "Unsupported media type."),
    429: ("throttled", "Request was throttled."),
    500: ("server_error", "Server error."),
}
# Headers of the replaced response that still hold for the JSON one.
KEPT_HEADERS = ("Allow", "WWW-Authenticate", "Retry-After", "Vary")
# The methods for which CommonMiddleware refuses to redirect to the slashed URL in DEBUG.
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


def json_error(status: int, detail: str | None = None) -> JsonResponse:
    if status in ERRORS:
        code, default = ERRORS[status]
    else:
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = "Error"
        code, default = phrase.lower().replace(" ", "_").replace("-", "_"), f"{phrase}."
    return JsonResponse({"detail": detail or default, "code": code}, status=status)


def _is_api(request: HttpRequest) -> bool:
    return request.path.startswith(API_PREFIX)


def _refuse_early(request: HttpRequest) -> JsonResponse | None:
    if not _is_api(request):
        return None
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return json_error(400, "Invalid Content-Length header.")
    if limit is not None and length > limit:
        return json_error(413, too_large_detail(limit))
    if settings.APPEND_SLASH and request.method in BODY_METHODS and not request.path_info.endswith("/"):
        try:
            resolve(request.path_info, getattr(request, "urlconf", None))
        except Resolver404:
            return json_error(404)
    return None


def _as_json(request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
    if response.status_code < 400 or not _is_api(request):
        return response
    content_type = response.get("Content-Type", "")
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type == "application/json" or media_type.endswith("+json"):
        return response
    if isinstance(getattr(response, "accepted_renderer", None), BrowsableAPIRenderer):
        return response
    # A DRF response rendered otherwise (the docs page's template renderer) keeps its message.
    data = getattr(response, "data", None)
    detail = data.get("detail") if isinstance(data, dict) else None
    replacement = json_error(response.status_code, str(detail) if detail else None)
    for header in KEPT_HEADERS:
        if header in response:
            replacement[header] = response[header]
    replacement.cookies = response.cookies
    return replacement


@sync_and_async_middleware
def api_json_errors(
    get_response: Callable[[HttpRequest], HttpResponseBase | Awaitable[HttpResponseBase]],
) -> Callable[[HttpRequest], HttpResponseBase | Awaitable[HttpResponseBase]]:
    # Both flavours, so that under ASGI no request pays a thread hop for this middleware.
    if iscoroutinefunction(get_response):

        async def async_middleware(request: HttpRequest) -> HttpResponseBase:
            early = _refuse_early(request)
            if early is not None:
                return early
            return _as_json(request, await get_response(request))  # type: ignore[misc]

        return async_middleware

    def middleware(request: HttpRequest) -> HttpResponseBase:
        early = _refuse_early(request)
        if early is not None:
            return early
        return _as_json(request, get_response(request))  # type: ignore[arg-type]

    return middleware
