from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

import config.openapi  # noqa: F401  registers the schema extension before any schema is generated
from metrics.views import HealthView, healthz

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("api/health", HealthView.as_view(), name="health"),
    path("api/v1/", include("tasks.api.urls")),
    path("api/v1/", include("audit.api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("admin/", admin.site.urls),
]
