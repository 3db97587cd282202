"""The worker proxy (tasks.api.proxy), mounted at ``api/proxy/`` by config/urls.py."""

from django.urls import path

from tasks.api import proxy

urlpatterns = [
    path("workers/<slug:name>/<path:path>", proxy.WorkerProxyView.as_view(), name="worker-proxy"),
]
