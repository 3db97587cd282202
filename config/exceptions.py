"""One place that maps domain errors to HTTP responses for the API."""

from __future__ import annotations

from typing import Any

from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import exception_handler

from tasks.exceptions import IllegalTransition, InvalidOverride, TaskNotFound
from tasks.review.waivers import IllegalWaiverTransition, WaiverForbidden, WaiverNotFound


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, IllegalTransition):
        return Response(
            {"detail": str(exc), "code": "illegal_transition", "action": exc.action, "state": exc.state},
            status=status.HTTP_409_CONFLICT,
        )
    if isinstance(exc, InvalidOverride):
        return Response(exc.detail, status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, TaskNotFound):
        return Response({"detail": str(exc), "code": "not_found"}, status=status.HTTP_404_NOT_FOUND)
    if isinstance(exc, IllegalWaiverTransition):
        return Response(
            {"detail": str(exc), "code": exc.code, "action": exc.action, "status": exc.status},
            status=status.HTTP_409_CONFLICT,
        )
    if isinstance(exc, WaiverForbidden):
        return Response({"detail": str(exc), "code": exc.code}, status=status.HTTP_403_FORBIDDEN)
    if isinstance(exc, WaiverNotFound):
        return Response({"detail": str(exc), "code": "not_found"}, status=status.HTTP_404_NOT_FOUND)
    return exception_handler(exc, context)
