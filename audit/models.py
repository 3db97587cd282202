from __future__ import annotations

from django.db import models
from django.utils import timezone


class AuditRecord(models.Model):
    """One decision: who did what to which resource, when and why.

    Records are only ever created through :func:`audit.services.audit_record`,
    inside the transaction of the change they record. They form one hash chain
    in ``seq`` order (see :mod:`audit.chain`), and database triggers refuse any
    UPDATE, DELETE or TRUNCATE of the table (migration 0003).
    """

    created_at = models.DateTimeField(default=timezone.now, editable=False)
    # "user:<id>", "system", "worker:<name>", "dispatcher:<id>"
    actor = models.CharField(max_length=200)
    action = models.CharField(max_length=100)
    resource_type = models.CharField(max_length=50)
    resource_id = models.CharField(max_length=100)
    data = models.JSONField(default=dict, blank=True)
    reason = models.TextField(blank=True, default="")
    # Position in the chain: 1, 2, 3... without gaps, assigned under the chain lock. Ids cannot
    # serve: PostgreSQL's id sequence skips the values of rolled-back inserts.
    seq = models.PositiveBigIntegerField(unique=True, editable=False)
    prev_hash = models.CharField(max_length=64, editable=False)
    hash = models.CharField(max_length=64, editable=False)

    class Meta:
        ordering = ["-id"]
        # Every search filter of GET /api/v1/audit, followed by its keyset order (newest first).
        indexes = [
            models.Index(fields=["resource_type", "resource_id", "-created_at", "-id"], name="audit_resource_time_idx"),
            models.Index(fields=["action", "-created_at", "-id"], name="audit_action_time_idx"),
            models.Index(fields=["actor", "-created_at", "-id"], name="audit_actor_time_idx"),
            models.Index(fields=["-created_at", "-id"], name="audit_time_idx"),
        ]
        constraints = [models.CheckConstraint(condition=models.Q(seq__gte=1), name="audit_seq_from_one")]

    def __str__(self) -> str:
        return f"{self.actor} {self.action} {self.resource_type}:{self.resource_id}"
