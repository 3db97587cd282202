from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from metrics.health import UNHEALTHY, system_health


def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness: the process answers. Touches no dependency."""
    return JsonResponse({"status": "ok"})


class HealthView(APIView):
    @extend_schema(summary="System health with measured component checks (503 when unhealthy)")
    def get(self, request: Request) -> Response:
        report = system_health()
        return Response(report, status=503 if report["status"] == UNHEALTHY else 200)
