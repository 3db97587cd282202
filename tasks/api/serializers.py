from __future__ import annotations

from typing import Any

from rest_framework import serializers

from tasks.models import Priority, Task, TaskEvent
from tasks.spec import StrictSerializer
from tasks.states import TaskAction, TaskState

ORDERINGS = {
    "-created_at": ["-created_at", "-id"],
    "created_at": ["created_at", "id"],
    "-priority": ["-priority", "-created_at", "-id"],
    "priority": ["priority", "created_at", "id"],
}


class CommaListField(serializers.ListField):
    """Accepts ``?state=a,b`` as well as ``?state=a&state=b``."""

    def to_internal_value(self, data: Any) -> list[Any]:
        if isinstance(data, str):
            data = [data]
        items = [part.strip() for value in data for part in str(value).split(",") if part.strip()]
        return super().to_internal_value(items)


class TaskListQuerySerializer(StrictSerializer):
    state = CommaListField(child=serializers.ChoiceField(choices=TaskState.values), required=False)
    priority = CommaListField(child=serializers.ChoiceField(choices=[p.label for p in Priority]), required=False)
    worker = serializers.SlugField(max_length=100, required=False)
    created_after = serializers.DateTimeField(required=False)
    created_before = serializers.DateTimeField(required=False)
    q = serializers.CharField(max_length=200, required=False, trim_whitespace=True)
    ordering = serializers.ChoiceField(choices=list(ORDERINGS), required=False, default="-created_at")
    cursor = serializers.CharField(max_length=500, required=False)
    page_size = serializers.IntegerField(min_value=1, max_value=500, required=False, default=50)
    format = serializers.CharField(required=False)  # DRF's ?format=json|api


class EventsQuerySerializer(StrictSerializer):
    after = serializers.IntegerField(min_value=0, required=False, default=0)
    limit = serializers.IntegerField(min_value=1, max_value=1000, required=False, default=100)
    format = serializers.CharField(required=False)


class TaskActionSerializer(StrictSerializer):
    action = serializers.ChoiceField(choices=TaskAction.values)
    reason = serializers.CharField(max_length=2000, required=False, allow_blank=True, default="")


class CancelSerializer(StrictSerializer):
    reason = serializers.CharField(max_length=2000, required=False, allow_blank=True, default="")


class TaskEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = TaskEvent
        fields = ["seq", "type", "data", "created_at"]


class TaskSerializer(serializers.ModelSerializer):
    priority = serializers.CharField(source="get_priority_display")
    worker = serializers.SlugRelatedField(slug_field="name", read_only=True)
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    progress = serializers.SerializerMethodField()

    class Meta:
        model = Task
        fields = [
            "id",
            "title",
            "state",
            "priority",
            "risk_tier",
            "attempt",
            "max_attempts",
            "run_after",
            "worker",
            "progress",
            "error",
            "created_by",
            "created_at",
            "updated_at",
            "started_at",
            "finished_at",
        ]
        read_only_fields = fields

    def get_progress(self, task: Task) -> dict[str, Any]:
        return {"percent": task.progress_percent, "phase": task.progress_phase}


class TaskDetailSerializer(TaskSerializer):
    cancel = serializers.SerializerMethodField()
    events = serializers.SerializerMethodField()

    class Meta(TaskSerializer.Meta):
        fields = [*TaskSerializer.Meta.fields, "spec", "result", "cancel", "events"]
        read_only_fields = fields

    def get_cancel(self, task: Task) -> dict[str, Any] | None:
        if task.cancel_requested_at is None:
            return None
        by = task.cancel_requested_by
        return {
            "requested_at": task.cancel_requested_at,
            "requested_by": by.username if by else None,
            "reason": task.cancel_reason,
        }

    def get_events(self, task: Task) -> list[dict[str, Any]]:
        return TaskEventSerializer(self.context.get("latest_events", []), many=True).data


class TaskPageSerializer(serializers.Serializer):
    """The list response: one page and the URL of the next (null on the last)."""

    results = TaskSerializer(many=True)
    next = serializers.URLField(allow_null=True)


class TaskEventPageSerializer(serializers.Serializer):
    """The timeline response; pass ``last_seq`` as ``after`` to read on."""

    results = TaskEventSerializer(many=True)
    last_seq = serializers.IntegerField()
