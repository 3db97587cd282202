"""Chat sessions and their messages, numbered per session.

A session belongs to one user (its owner; admins may join it too). Its messages carry a
sequence number given under the session's row lock (:func:`chat.services.message_append`),
so a session's history is one gap-free order whatever process wrote it, and a client that
reconnects with ``after=<seq>`` is sent exactly what it missed.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models


class SessionStatus(models.TextChoices):
    ACTIVE = "active"
    CLOSED = "closed"
    EXPIRED = "expired"


class MessageRole(models.TextChoices):
    USER = "user"
    ASSISTANT = "assistant"
    SYSTEM = "system"


class ChatSession(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="chat_sessions")
    title = models.CharField(max_length=200, blank=True)
    status = models.CharField(max_length=16, choices=SessionStatus.choices, default=SessionStatus.ACTIVE)
    created_at = models.DateTimeField(auto_now_add=True)
    last_message_at = models.DateTimeField(null=True, blank=True)
    # An active session without a message for this long is expired (chat.services).
    expires_at = models.DateTimeField()
    # The sequence number of the session's newest message (0: none yet).
    message_seq = models.PositiveBigIntegerField(default=0)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["owner", "-created_at"], name="chat_session_owner_idx")]

    def __str__(self) -> str:
        return self.title or str(self.pk)


class ChatMessage(models.Model):
    id = models.BigAutoField(primary_key=True)
    session = models.ForeignKey(ChatSession, on_delete=models.CASCADE, related_name="messages")
    seq = models.PositiveBigIntegerField()
    role = models.CharField(max_length=16, choices=MessageRole.choices)
    content = models.TextField()
    # What the message was about: the command, the task, the client's message id, ...
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["session", "seq"]
        constraints = [models.UniqueConstraint(fields=["session", "seq"], name="chat_message_seq_unique")]

    def __str__(self) -> str:
        return f"{self.session_id}#{self.seq} {self.role}"


class ChatWatch(models.Model):
    """A session following a task: its changes arrive as system messages until it ends."""

    session = models.ForeignKey(ChatSession, on_delete=models.CASCADE, related_name="watches")
    task = models.ForeignKey("tasks.Task", on_delete=models.CASCADE, related_name="chat_watches")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["session", "task"], name="chat_watch_unique")]
        indexes = [models.Index(fields=["task"], name="chat_watch_task_idx")]

    def __str__(self) -> str:
        return f"{self.session_id} watches {self.task_id}"
