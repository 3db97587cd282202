"""The SQL explorer's pages (metrics.queries.pages)."""

from django.urls import path

from metrics.queries import pages

urlpatterns = [
    path("queries/", pages.query_list, name="query-list-page"),
    path("queries/<uuid:query_id>/", pages.query_page, name="query-page"),
    path("queries/<uuid:query_id>/run/", pages.query_run_page, name="query-run-page"),
    path("queries/<uuid:query_id>/export.csv", pages.query_export_page, name="query-export-page"),
    path("queries/<uuid:query_id>/delete/", pages.query_delete, name="query-delete-page"),
]
