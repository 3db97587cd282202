from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from security import crypto
from tasks.states import TERMINAL_STATES, TaskState


class Priority(models.IntegerChoices):
    """Stored as integers so that ordering by priority is meaningful."""

    LOW = 10, "low"
    MEDIUM = 20, "medium"
    HIGH = 30, "high"
    CRITICAL = 40, "critical"

    @classmethod
    def from_name(cls, name: str) -> Priority:
        return {p.label: p for p in cls}[name]


class Worker(models.Model):
    """An HTTP worker service the dispatcher can send tasks to."""

    name = models.SlugField(max_length=100, unique=True)
    base_url = models.URLField(max_length=500)
    capabilities = models.JSONField(default=list, blank=True)
    # The bearer token, encrypted at rest (security.crypto); use .token.
    token_ciphertext = models.TextField(blank=True, default="", editable=False)
    max_concurrency = models.PositiveSmallIntegerField(default=4)
    enabled = models.BooleanField(default=True)
    request_timeout_s = models.FloatField(default=30.0)
    retry_max_attempts = models.PositiveSmallIntegerField(default=3)
    retry_initial_backoff_ms = models.PositiveIntegerField(default=500)
    retry_max_backoff_ms = models.PositiveIntegerField(default=5000)
    breaker_fail_max = models.PositiveSmallIntegerField(default=5)
    breaker_reset_timeout_s = models.PositiveIntegerField(default=60)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)
    # Written by the dispatchers' health polls and breaker listeners; read by /api/health.
    health_status = models.CharField(max_length=20, blank=True, default="")
    health_checked_at = models.DateTimeField(null=True, blank=True, editable=False)
    health_latency_ms = models.FloatField(null=True, blank=True, editable=False)
    health_detail = models.JSONField(default=dict, blank=True, editable=False)
    breaker_state = models.CharField(max_length=20, default="closed", editable=False)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(condition=Q(max_concurrency__gte=1), name="worker_concurrency_positive"),
            models.CheckConstraint(condition=Q(retry_max_attempts__gte=1), name="worker_retry_attempts_positive"),
            models.CheckConstraint(condition=Q(breaker_fail_max__gte=1), name="worker_breaker_fail_max_positive"),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def token(self) -> str:
        return crypto.decrypt(self.token_ciphertext)

    @token.setter
    def token(self, value: str) -> None:
        self.token_ciphertext = crypto.encrypt(value)

    def covers(self, required: list[str]) -> bool:
        """Whether this worker has every capability in ``required``."""
        return set(required) <= set(self.capabilities or [])


class Task(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    title = models.CharField(max_length=200)
    spec = models.JSONField()
    state = models.CharField(max_length=20, choices=TaskState.choices, default=TaskState.QUEUED)
    priority = models.PositiveSmallIntegerField(choices=Priority.choices, default=Priority.MEDIUM)
    risk_tier = models.PositiveSmallIntegerField(default=2)
    attempt = models.PositiveIntegerField(default=0)
    max_attempts = models.PositiveIntegerField(default=3)
    run_after = models.DateTimeField(null=True, blank=True)
    lease_owner = models.CharField(max_length=200, blank=True, default="")
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    worker = models.ForeignKey(Worker, null=True, blank=True, on_delete=models.SET_NULL, related_name="tasks")
    progress_percent = models.PositiveSmallIntegerField(default=0)
    progress_phase = models.CharField(max_length=100, blank=True, default="")
    result = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True, default="")
    # The sequence number of the newest TaskEvent; bumped under the row lock.
    event_seq = models.PositiveIntegerField(default=0, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    cancel_requested_at = models.DateTimeField(null=True, blank=True)
    cancel_requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    cancel_reason = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            # Each API filter is paired with the keyset order (created_at, id).
            models.Index(fields=["created_at", "id"], name="task_created_idx"),
            models.Index(fields=["state", "created_at", "id"], name="task_state_created_idx"),
            models.Index(fields=["priority", "created_at", "id"], name="task_priority_created_idx"),
            models.Index(fields=["worker", "created_at", "id"], name="task_worker_created_idx"),
            # The dispatcher's claim order among queued tasks.
            models.Index(
                fields=["-priority", "created_at"], name="task_claim_idx", condition=Q(state=TaskState.QUEUED)
            ),
            # The reaper's scan for expired leases.
            models.Index(
                fields=["lease_expires_at"],
                name="task_lease_idx",
                condition=Q(state__in=[TaskState.RUNNING, TaskState.CANCELING]),
            ),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(state__in=TaskState.values), name="task_state_valid"),
            models.CheckConstraint(condition=Q(priority__in=Priority.values), name="task_priority_valid"),
            models.CheckConstraint(condition=Q(risk_tier__gte=1, risk_tier__lte=3), name="task_risk_tier_1_3"),
            models.CheckConstraint(condition=Q(progress_percent__lte=100), name="task_progress_le_100"),
            models.CheckConstraint(condition=Q(max_attempts__gte=1), name="task_max_attempts_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.title} ({self.state})"

    @property
    def is_terminal(self) -> bool:
        return self.state in TERMINAL_STATES


class TaskEvent(models.Model):
    """One entry of a task's timeline, numbered per task from 1."""

    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="events")
    seq = models.PositiveIntegerField()
    type = models.CharField(max_length=50)
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["task", "seq"]
        constraints = [
            models.UniqueConstraint(fields=["task", "seq"], name="task_event_seq_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.task_id}#{self.seq} {self.type}"


class DispatcherProcess(models.Model):
    """A dispatcher's heartbeat: which ones run, where, and how busy they are."""

    id = models.CharField(max_length=200, primary_key=True)
    hostname = models.CharField(max_length=200)
    pid = models.PositiveIntegerField()
    concurrency = models.PositiveIntegerField()
    inflight = models.PositiveIntegerField(default=0)
    started_at = models.DateTimeField(default=timezone.now)
    last_seen_at = models.DateTimeField(default=timezone.now)
    stopped_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-last_seen_at"]
        indexes = [models.Index(fields=["last_seen_at"], name="dispatcher_seen_idx")]

    def __str__(self) -> str:
        return self.id
