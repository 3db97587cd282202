"""``GET /api/v1/metrics``: the KPI snapshot, the throughput of the last hour and its run times.

The same numbers as the SSE snapshots and the overview page (:mod:`metrics.kpis`); the
serializers exist to document the shape in the OpenAPI schema exactly (contract tests hold
every response to it), so a value that can be None is ``nullable`` there.
"""

from __future__ import annotations

from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from metrics.kpis import KPIS, kpi_snapshot, run_time_histogram, throughput_series
from security.permissions import IsViewer

_HELP = {k.name: k.help for k in KPIS}


class KpiValuesSerializer(serializers.Serializer):
    """Each KPI as a number; null where it is unknown (nothing finished in the window)."""

    completed_per_minute = serializers.FloatField(min_value=0, help_text=_HELP["completed_per_minute"])
    success_rate = serializers.FloatField(
        allow_null=True, min_value=0, max_value=1, help_text=_HELP["success_rate"] + " A ratio from 0 to 1."
    )
    p95_run_time_s = serializers.FloatField(allow_null=True, help_text=_HELP["p95_run_time_s"] + " In seconds.")
    queue_depth = serializers.IntegerField(min_value=0, help_text=_HELP["queue_depth"])
    running = serializers.IntegerField(min_value=0, help_text=_HELP["running"])
    failed_last_hour = serializers.IntegerField(min_value=0, help_text=_HELP["failed_last_hour"])
    workers_healthy = serializers.IntegerField(min_value=0, help_text=_HELP["workers_healthy"])
    workers_enabled = serializers.IntegerField(min_value=0, help_text=_HELP["workers_enabled"])
    breakers_open = serializers.IntegerField(min_value=0, help_text=_HELP["breakers_open"])
    chat_sessions_active = serializers.IntegerField(min_value=0, help_text=_HELP["chat_sessions_active"])


class KpiDisplaySerializer(serializers.Serializer):
    """Each KPI as the dashboard shows it ("0.4", "97.5 %", "1.2 s"; "—" when unknown)."""

    completed_per_minute = serializers.CharField()
    success_rate = serializers.CharField()
    p95_run_time_s = serializers.CharField()
    queue_depth = serializers.CharField()
    running = serializers.CharField()
    failed_last_hour = serializers.CharField()
    workers_healthy = serializers.CharField()
    workers_enabled = serializers.CharField()
    breakers_open = serializers.CharField()
    chat_sessions_active = serializers.CharField()


class ThroughputPointSerializer(serializers.Serializer):
    minute = serializers.DateTimeField(help_text="The start of the minute (UTC).")
    completed = serializers.IntegerField(min_value=0, help_text="Tasks that reached completed in that minute.")
    failed = serializers.IntegerField(min_value=0, help_text="Tasks that reached failed in that minute.")


class RunTimeBucketSerializer(serializers.Serializer):
    bucket = serializers.CharField(help_text='The bucket\'s label, e.g. "5-30 s".')
    min_s = serializers.FloatField(help_text="Lower bound in seconds (inclusive).")
    max_s = serializers.FloatField(allow_null=True, help_text="Upper bound in seconds (exclusive); null: none.")
    count = serializers.IntegerField(min_value=0, help_text="Tasks completed in the last hour with such a run time.")


class MetricsSerializer(serializers.Serializer):
    generated_at = serializers.DateTimeField(help_text="The moment the figures were counted for.")
    kpis = KpiValuesSerializer()
    display = KpiDisplaySerializer()
    throughput = ThroughputPointSerializer(
        many=True, help_text="Completed and failed per minute over the last 60 minutes, oldest first, the current last."
    )
    run_time_histogram = RunTimeBucketSerializer(
        many=True, help_text="Run times (first claim to completion) of the tasks completed in the last hour."
    )


class MetricsView(APIView):
    """The KPIs for scripts and dashboards elsewhere; the overview page and the SSE stream read the same selectors."""

    permission_classes = [IsViewer]

    @extend_schema(
        responses=MetricsSerializer,
        summary="KPI snapshot, with the last hour's throughput per minute and run-time distribution",
    )
    def get(self, request: Request) -> Response:
        now = timezone.now()  # one moment for the three, so their figures agree
        data = {
            **kpi_snapshot(now=now),
            "throughput": throughput_series(now=now),
            "run_time_histogram": run_time_histogram(now=now),
        }
        return Response(MetricsSerializer(data).data)
