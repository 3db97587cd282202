from django.contrib import admin
from django.urls import include, path
from django.views.decorators.http import require_safe
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from metrics.views import HealthView, healthz

urlpatterns = [
    path("healthz", require_safe(healthz), name="healthz"),
    path("api/health", HealthView.as_view(), name="health"),
    path("api/v1/", include("tasks.api.urls")),
    path("api/v1/", include("audit.api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("admin/", admin.site.urls),
]
