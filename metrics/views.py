from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from metrics.health import UNHEALTHY, system_health


def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness: the process answers. Touches no dependency."""
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
