from django.urls import path

from tasks.api import views, waivers, workers

urlpatterns = [
    path("tasks", views.TaskListView.as_view(), name="task-list"),
    path("tasks/<uuid:task_id>", views.TaskDetailView.as_view(), name="task-detail"),
    path("tasks/<uuid:task_id>/events", views.TaskEventsView.as_view(), name="task-events"),
    path("tasks/<uuid:task_id>/actions", views.TaskActionView.as_view(), name="task-actions"),
    path("tasks/<uuid:task_id>/cancel", views.TaskCancelView.as_view(), name="task-cancel"),
    path("waivers", waivers.WaiverListView.as_view(), name="waiver-list"),
    path("waivers/<uuid:waiver_id>", waivers.WaiverDetailView.as_view(), name="waiver-detail"),
    path("waivers/<uuid:waiver_id>/approve", waivers.WaiverApproveView.as_view(), name="waiver-approve"),
    path("waivers/<uuid:waiver_id>/reject", waivers.WaiverRejectView.as_view(), name="waiver-reject"),
    path("waivers/<uuid:waiver_id>/revoke", waivers.WaiverRevokeView.as_view(), name="waiver-revoke"),
    path("tasks/<uuid:task_id>/provenance", views.TaskProvenanceView.as_view(), name="task-provenance"),
    path("workers", workers.WorkerListView.as_view(), name="worker-list"),
    path("workers/<slug:name>", workers.WorkerDetailView.as_view(), name="worker-detail"),
    path("workers/<slug:name>/enable", workers.WorkerEnableView.as_view(), name="worker-enable"),
    path("workers/<slug:name>/disable", workers.WorkerDisableView.as_view(), name="worker-disable"),
]
