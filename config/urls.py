from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

import config.openapi  # noqa: F401  registers the schema extension before any schema is generated
from metrics.views import HealthView, healthz
from security.pages import LoginView, LogoutView

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("api/health", HealthView.as_view(), name="health"),
    # Before the task API: /api/v1/tasks/stream is not a task id.
    path("", include("metrics.urls")),
    path("api/v1/", include("tasks.api.urls")),
    path("api/v1/", include("audit.api.urls")),
    path("api/v1/", include("chat.urls")),
    path("api/v1/", include("metrics.queries.urls")),
    path("api/proxy/", include("tasks.api.proxy_urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("admin/", admin.site.urls),
    path("login/", LoginView.as_view(), name="login"),
    path("logout/", LogoutView.as_view(), name="logout"),
    path("", include("tasks.pages.urls")),
    path("", include("tasks.pages.worker_urls")),
    path("", include("audit.pages.urls")),
    path("", include("chat.page_urls")),
    path("", include("metrics.queries.page_urls")),
]
