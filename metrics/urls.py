"""The metrics app's routes: the overview and health pages, the KPI API, the SSE streams, Prometheus."""

from django.urls import path

from metrics import api, pages, prometheus
from metrics.stream import views as stream

urlpatterns = [
    path("", pages.overview, name="overview"),
    path("health/", pages.health_page, name="health-page"),
    path("api/v1/metrics", api.MetricsView.as_view(), name="metrics-api"),
    path("api/v1/metrics/stream", stream.metrics_stream, name="metrics-stream"),
    path("api/v1/tasks/stream", stream.tasks_stream, name="tasks-stream"),
    path("metrics", prometheus.metrics_view, name="prometheus"),
]
