from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_safe
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from metrics.health import UNHEALTHY, system_health


# csrf_exempt: CsrfViewMiddleware runs before the view, so without it a POST would be
# refused as a CSRF failure (403) instead of by the method check (405). Nothing here
# changes state or reads a session, so there is nothing for CSRF to protect.
@csrf_exempt
@require_safe
def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness: the process answers (GET, HEAD; 405 otherwise). Touches no dependency."""
    return JsonResponse({"status": "ok"})


class ComponentSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=["healthy", "degraded", "unhealthy", "not_configured"])
    latency_ms = serializers.FloatField(required=False)
    error = serializers.CharField(required=False)


class HealthSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=["healthy", "degraded", "unhealthy"])
    version = serializers.CharField()
    uptime_s = serializers.FloatField()
    components = serializers.DictField(child=ComponentSerializer())


class HealthView(APIView):
    @extend_schema(
        responses={200: HealthSerializer, 503: HealthSerializer},
        summary="System health with measured component checks (503 when unhealthy)",
    )
    def get(self, request: Request) -> Response:
        report = system_health()
        return Response(report, status=503 if report["status"] == UNHEALTHY else 200)
