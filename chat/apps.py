from django.apps import AppConfig


class ChatConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "chat"

    def ready(self) -> None:
        from chat.watch import on_task_writes
        from tasks.transitions import task_writes_committed

        # watch <task>: the changes of watched tasks become system messages (after commit).
        task_writes_committed.connect(on_task_writes, dispatch_uid="chat.watch")
