from django.apps import AppConfig


class MetricsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "metrics"

    def ready(self) -> None:
        from metrics import prometheus
        from metrics.stream.publish import on_task_writes
        from tasks.transitions import task_writes_committed

        # The SSE streams follow the committed task writes (after commit, in bulk).
        task_writes_committed.connect(on_task_writes, dispatch_uid="metrics.stream")
        # The task counters and the database collector of GET /metrics.
        prometheus.install()
