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
    # The bearer token, encrypted under the master keys (security.crypto); use .token.
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


crypto.register_secret_field("tasks.Worker", "token_ciphertext")


class Task(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    title = models.CharField(max_length=200)
    spec = models.JSONField()
    state = models.CharField(max_length=20, choices=TaskState.choices, default=TaskState.QUEUED)
    priority = models.PositiveSmallIntegerField(choices=Priority.choices, default=Priority.MEDIUM)
    risk_tier = models.PositiveSmallIntegerField(default=3)
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
    # The violations of the latest gate run, each {gate, rule, severity, file, line, message, waived_by}.
    violations = models.JSONField(default=list, blank=True)

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
            # The KPIs: tasks finished in the last minutes and hours, by state.
            models.Index(
                fields=["state", "finished_at"],
                name="task_state_finished_idx",
                condition=Q(finished_at__isnull=False),
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


class EventType(models.TextChoices):
    """What a timeline entry records. Entries a worker supplied (progress, logs, artifacts)
    are not in this list: their type is ``worker.<the worker's type>`` (:data:`WORKER_EVENT_PREFIX`)
    and their fields sit under ``payload``, so a worker can neither forge a system entry
    (``completed``) nor overwrite a system field (``attempt``)."""

    CREATED = "created"
    CANCEL_REQUESTED = "cancel_requested"
    CANCELED = "canceled"
    PAUSED = "paused"
    RESUMED = "resumed"
    RETRIED = "retried"
    ATTEMPT_STARTED = "attempt_started"
    WORKER_CALL = "worker_call"  # the dispatcher's record of one HTTP call to the worker
    COMPLETED = "completed"
    CHANGES_REQUESTED = "changes_requested"  # the automatic verdict failed the result
    AWAITING_REVIEW = "awaiting_review"
    FAILED = "failed"
    RETRY_SCHEDULED = "retry_scheduled"
    LEASE_EXPIRED = "lease_expired"
    LATE_RESULT = "late_result"  # a result of the current attempt after a cancel or pause
    STALE_RESULT = "stale_result"  # a result of an earlier attempt (fenced)
    ATTEMPT_STOPPED = "attempt_stopped"
    BREAKER = "breaker"
    OVERRIDE = "override"
    EGRESS_DENIED = "egress_denied"  # the egress policy refused a call to the worker (security/egress.py)


WORKER_EVENT_PREFIX = "worker."


class TaskEvent(models.Model):
    """One entry of a task's timeline, numbered per task from 1 (types: :class:`EventType`)."""

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


class Gate(models.TextChoices):
    """The quality gates run on a worker's result; waivers name them."""

    PLACEHOLDERS = "placeholders"
    SCOPE = "scope"
    BUDGET = "budget"
    ACCEPTANCE = "acceptance"


class WaiverReason(models.TextChoices):
    EMERGENCY_HOTFIX = "emergency_hotfix"
    LEGACY_INTEGRATION = "legacy_integration"
    EXPERIMENTAL_FEATURE = "experimental_feature"
    THIRD_PARTY_CONSTRAINT = "third_party_constraint"
    PERFORMANCE_CRITICAL = "performance_critical"
    SECURITY_PATCH = "security_patch"
    INFRASTRUCTURE_LIMITATION = "infrastructure_limitation"
    OTHER = "other"


class WaiverStatus(models.TextChoices):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    REVOKED = "revoked"
    EXPIRED = "expired"


class Waiver(models.Model):
    """A time-boxed exemption from named gates, for one task or for all, approved by an admin."""

    Reason = WaiverReason

    Status = WaiverStatus

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    title = models.CharField(max_length=200)
    reason = models.CharField(max_length=40, choices=WaiverReason.choices)
    gates = models.JSONField(default=list)
    justification = models.TextField()
    expires_at = models.DateTimeField()
    # The one task this waiver covers; null means every task (a global waiver).
    task = models.ForeignKey(Task, null=True, blank=True, on_delete=models.CASCADE, related_name="waivers")
    status = models.CharField(max_length=20, choices=WaiverStatus.choices, default=WaiverStatus.PENDING)
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    decision_note = models.TextField(blank=True, default="")
    revoked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoke_reason = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["status", "expires_at"], name="waiver_status_idx"),
            models.Index(fields=["task", "status"], name="waiver_task_idx"),
            models.Index(fields=["created_at", "id"], name="waiver_created_idx"),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(status__in=WaiverStatus.values), name="waiver_status_valid"),
            models.CheckConstraint(condition=Q(reason__in=WaiverReason.values), name="waiver_reason_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.title} ({self.status})"

    def is_active(self, now=None) -> bool:
        return self.status == WaiverStatus.APPROVED and self.expires_at > (now or timezone.now())


class VerdictDecision(models.TextChoices):
    APPROVED = "approved"
    CHANGES_REQUESTED = "changes_requested"
    REJECTED = "rejected"


class Verdict(models.Model):
    """A decision on one attempt's result: automatic after the gates, or a human override.

    The newest verdict of a task is its current one. ``provenance_id``
    (``CAWS-VERDICT-<uuid>``) is what commit trailers name.
    """

    Decision = VerdictDecision

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="verdicts")
    attempt = models.PositiveIntegerField()
    decision = models.CharField(max_length=20, choices=VerdictDecision.choices)
    automatic = models.BooleanField()
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    reason = models.TextField(blank=True, default="")
    score = models.FloatField(null=True, blank=True)
    threshold = models.FloatField(null=True, blank=True)
    # Unwaived violations, and those dropped with the waiver that dropped each.
    violations = models.JSONField(default=list, blank=True)
    waived = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["task", "-created_at"], name="verdict_task_idx")]
        constraints = [
            models.CheckConstraint(condition=Q(decision__in=VerdictDecision.values), name="verdict_decision_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.provenance_id} {self.decision}"

    @property
    def provenance_id(self) -> str:
        return f"CAWS-VERDICT-{self.id}"


class SavedView(models.Model):
    """A named filter of the tasks page, saved by one user and opened by anyone from its link.

    ``query`` is the filter as a normalised query string (validated by the task API's own query
    serializer, keys in one order, no cursor), so two views of the same filter read the same and
    an old view still means what it meant when the filter rules change shape.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="saved_task_views")
    name = models.CharField(max_length=100)
    query = models.CharField(max_length=2000, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["name"]
        constraints = [
            # Also the index of the owner's list, in name order.
            models.UniqueConstraint(fields=["owner", "name"], name="saved_view_owner_name_unique"),
        ]

    def __str__(self) -> str:
        return self.name
