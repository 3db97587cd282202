from django.urls import path

from metrics.queries import api

urlpatterns = [
    path("queries", api.QueryListView.as_view(), name="query-list"),
    path("queries/<uuid:query_id>", api.QueryDetailView.as_view(), name="query-detail"),
    path("queries/<uuid:query_id>/run", api.QueryRunView.as_view(), name="query-run"),
    path("queries/<uuid:query_id>/runs", api.QueryRunsView.as_view(), name="query-runs"),
]
