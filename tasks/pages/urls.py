"""The task pages: the list (filters, saved views, bulk actions), the new-task form, the detail."""

from django.urls import path

from tasks.pages import detail, saved_views, tasks

urlpatterns = [
    path("tasks/", tasks.task_list, name="task-list"),
    path("tasks/new/", tasks.task_new, name="task-new"),
    path("tasks/bulk/", tasks.task_bulk, name="task-bulk"),
    path("tasks/views/", saved_views.view_create, name="task-view-save"),
    path("tasks/views/<uuid:view_id>/", saved_views.view_open, name="task-view"),
    path("tasks/views/<uuid:view_id>/delete/", saved_views.view_delete, name="task-view-delete"),
    path("tasks/<uuid:task_id>/", detail.task_detail, name="task-detail"),
    path("tasks/<uuid:task_id>/actions/", detail.task_act, name="task-act"),
]
