from django.urls import path

from tasks.api import views

urlpatterns = [
    path("tasks", views.TaskListView.as_view(), name="task-list"),
    path("tasks/<uuid:task_id>", views.TaskDetailView.as_view(), name="task-detail"),
    path("tasks/<uuid:task_id>/events", views.TaskEventsView.as_view(), name="task-events"),
    path("tasks/<uuid:task_id>/actions", views.TaskActionView.as_view(), name="task-actions"),
    path("tasks/<uuid:task_id>/cancel", views.TaskCancelView.as_view(), name="task-cancel"),
]
