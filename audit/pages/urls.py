"""The Audit page (audit.pages.views)."""

from django.urls import path

from audit.pages import views

urlpatterns = [path("audit/", views.audit_page, name="audit-page")]
