from django.apps import AppConfig


class ChatConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "chat"

    def ready(self) -> None:
        from django.db.models.signals import post_delete, post_save

        from chat.assist import forget_chat_worker
        from chat.watch import on_task_writes
        from tasks.models import Worker
        from tasks.transitions import task_writes_committed

        # watch <task>: the changes of watched tasks become system messages (after commit).
        task_writes_committed.connect(on_task_writes, dispatch_uid="chat.watch")
        # The chat-worker lookup is remembered for a few seconds; a worker saved here is seen at once.
        post_save.connect(forget_chat_worker, sender=Worker, dispatch_uid="chat.worker_saved")
        post_delete.connect(forget_chat_worker, sender=Worker, dispatch_uid="chat.worker_deleted")
