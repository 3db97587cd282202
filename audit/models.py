from __future__ import annotations

from django.db import models
from django.utils import timezone


class AuditRecord(models.Model):
    """One decision: who did what to which resource, when and why.

    Records are only ever created through :func:`audit.services.audit_record`,
    inside the transaction of the change they record.
    """

    created_at = models.DateTimeField(default=timezone.now, editable=False)
    # "user:<id>", "system", "worker:<name>", "dispatcher:<id>"
    actor = models.CharField(max_length=200)
    action = models.CharField(max_length=100)
    resource_type = models.CharField(max_length=50)
    resource_id = models.CharField(max_length=100)
    data = models.JSONField(default=dict, blank=True)
    reason = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["resource_type", "resource_id", "-id"], name="audit_resource_idx"),
            models.Index(fields=["action", "-id"], name="audit_action_idx"),
            models.Index(fields=["actor", "-id"], name="audit_actor_idx"),
            models.Index(fields=["created_at"], name="audit_created_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.actor} {self.action} {self.resource_type}:{self.resource_id}"
