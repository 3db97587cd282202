"""The Workers page and its admin controls (tasks.pages.workers)."""

from django.urls import path

from tasks.pages import workers

urlpatterns = [
    path("workers/", workers.worker_list_page, name="worker-list"),
    path("workers/register/", workers.worker_register_page, name="worker-page-register"),
    path("workers/<slug:name>/enable/", workers.worker_enable_page, name="worker-page-enable"),
    path("workers/<slug:name>/disable/", workers.worker_disable_page, name="worker-page-disable"),
]
