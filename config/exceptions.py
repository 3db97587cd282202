"""The one place that maps domain errors to DRF responses (it imports no app)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from rest_framework import status
from rest_framework.exceptions import ErrorDetail
from rest_framework.response import Response
from rest_framework.views import exception_handler

from config.errors import DomainError
from config.parsers import too_large_detail


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, DomainError):
        return Response(exc.as_dict(), status=exc.http_status)
    if isinstance(exc, RequestDataTooBig):
        # Raised by Django when something reads request.POST or request.body past the limit
        # (SessionAuthentication's CSRF check reads request.POST); unmapped, it is Django's HTML 400.
        return Response(
            {"detail": too_large_detail(settings.DATA_UPLOAD_MAX_MEMORY_SIZE), "code": "request_too_large"},
            status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
        )
    response = exception_handler(exc, context)
    if response is not None and isinstance(response.data, dict) and set(response.data) == {"detail"}:
        # DRF's own errors carry their code in the ErrorDetail; put it in the body, so that every
        # error a client sees is either field errors or {"detail", "code"}.
        detail = response.data["detail"]
        response.data["code"] = detail.code if isinstance(detail, ErrorDetail) else "error"
    return response
