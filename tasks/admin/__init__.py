"""The Django admin as the operator console.

The admin is one more thin interface over :mod:`tasks.services`: nothing here
writes ``Task.state`` or any other field of an existing task. Creating a task,
the bulk actions and the per-task buttons all call the same services as the
API, so every change gets its TaskEvent and its audit record whichever door was
used. Who may do what comes from :mod:`security.roles`, not from Django's
per-model permissions, so the admin agrees with the API.
"""

from tasks.admin import saved_views, tasks, waivers, workers  # noqa: F401 - each registers its ModelAdmin
