from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone


class ParameterType(models.TextChoices):
    TEXT = "text"
    INTEGER = "integer"
    NUMBER = "number"
    BOOLEAN = "boolean"
    DATE = "date"


class SavedQuery(models.Model):
    """A named SQL query with typed ``:name`` parameters, run read-only (metrics.queries.readonly)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True, default="")
    sql = models.TextField()
    # [{"name": "state", "type": "text", "default": "failed"}, ...]
    parameters = models.JSONField(default=list, blank=True)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="saved_queries")
    shared = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name", "id"]
        constraints = [models.UniqueConstraint(fields=["owner", "name"], name="savedquery_owner_name_unique")]

    def __str__(self) -> str:
        return self.name


class RunOutcome(models.TextChoices):
    OK = "ok"
    REFUSED = "refused"
    TIMEOUT = "timeout"
    # A CSV export whose client went away before its last row.
    ABORTED = "aborted"


class RunKind(models.TextChoices):
    PAGE = "page"  # one page of results (the page, the API)
    EXPORT = "export"  # every row, streamed as CSV


class QueryRun(models.Model):
    """One run of a saved query: who, with which parameters, how long, how many rows, and how it ended."""

    query = models.ForeignKey(SavedQuery, on_delete=models.CASCADE, related_name="runs")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="query_runs")
    parameters = models.JSONField(default=dict, blank=True)
    started_at = models.DateTimeField(default=timezone.now, editable=False)
    duration_ms = models.FloatField(default=0)
    rows = models.PositiveIntegerField(default=0)
    outcome = models.CharField(max_length=20, choices=RunOutcome.choices)
    kind = models.CharField(max_length=10, choices=RunKind.choices, default=RunKind.PAGE)
    error = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["-started_at", "-id"]
        indexes = [models.Index(fields=["query", "-started_at"], name="queryrun_query_time_idx")]

    def __str__(self) -> str:
        return f"{self.query_id} at {self.started_at:%Y-%m-%d %H:%M:%S} ({self.outcome})"
