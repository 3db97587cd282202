from __future__ import annotations

from typing import Any

from drf_spectacular.utils import PolymorphicProxySerializer, extend_schema_field
from rest_framework import serializers

from config.strict import CommaListField, StrictCharField, StrictSerializer
from tasks.models import Priority, Task, TaskEvent, Verdict, VerdictDecision
from tasks.review.verdicts import MIN_REASON, OVERRIDE_DECISIONS
from tasks.states import TaskAction, TaskState

ORDERINGS = {
    "-created_at": ["-created_at", "-id"],
    "created_at": ["created_at", "id"],
    "-priority": ["-priority", "-created_at", "-id"],
    "priority": ["priority", "created_at", "id"],
}


class TaskListQuerySerializer(StrictSerializer):
    state = CommaListField(child=serializers.ChoiceField(choices=TaskState.values), required=False)
    priority = CommaListField(child=serializers.ChoiceField(choices=[p.label for p in Priority]), required=False)
    worker = serializers.SlugField(max_length=100, required=False)
    created_after = serializers.DateTimeField(required=False)
    created_before = serializers.DateTimeField(required=False)
    # Blank is no search (a cleared search box), not an error.
    q = serializers.CharField(max_length=200, required=False, trim_whitespace=True, allow_blank=True)
    ordering = serializers.ChoiceField(choices=list(ORDERINGS), required=False, default="-created_at")
    cursor = serializers.CharField(max_length=500, required=False)
    page_size = serializers.IntegerField(min_value=1, max_value=500, required=False, default=50)
    format = serializers.CharField(required=False)  # DRF's ?format=json|api


class EventsQuerySerializer(StrictSerializer):
    after = serializers.IntegerField(min_value=0, required=False, default=0)
    limit = serializers.IntegerField(min_value=1, max_value=1000, required=False, default=100)
    format = serializers.CharField(required=False)


class LifecycleActionSerializer(StrictSerializer):
    """Pause, resume, cancel or retry, with an optional reason."""

    action = serializers.ChoiceField(choices=TaskAction.values)
    reason = StrictCharField(max_length=2000, required=False, allow_blank=True, default="")

    def to_internal_value(self, data: Any) -> Any:
        # Clearer than "Unknown field." for the override's own keys, and refused even when
        # empty: the schema says a lifecycle action has no such keys, so the server agrees.
        if isinstance(data, dict) and {"decision", "guidance"} & set(data):
            raise serializers.ValidationError({"decision": ["Only an override takes a decision or guidance."]})
        return super().to_internal_value(data)


class OverrideActionSerializer(StrictSerializer):
    """A human verdict on a task awaiting review; ``guidance`` goes with ``request_changes``."""

    action = serializers.ChoiceField(choices=["override"])
    decision = serializers.ChoiceField(
        choices=list(OVERRIDE_DECISIONS), error_messages={"required": "Required for an override."}
    )
    reason = StrictCharField(
        min_length=MIN_REASON,
        max_length=2000,
        error_messages={
            "required": f"An override needs a reason of at least {MIN_REASON} characters.",
            "blank": f"An override needs a reason of at least {MIN_REASON} characters.",
            "min_length": f"An override needs a reason of at least {MIN_REASON} characters.",
        },
    )
    guidance = StrictCharField(max_length=10_000, required=False, allow_blank=True, default="")


def task_action_serializer(data: Any) -> type[StrictSerializer]:
    """The shape ``data`` is checked against: each action is one of two shapes, told apart by ``action``."""
    is_override = isinstance(data, dict) and data.get("action") == "override"
    return OverrideActionSerializer if is_override else LifecycleActionSerializer


# What the schema documents for the request body: exactly one of the two shapes.
TASK_ACTION_REQUEST = PolymorphicProxySerializer(
    component_name="TaskActionRequest",
    serializers=[LifecycleActionSerializer, OverrideActionSerializer],
    resource_type_field_name=None,
)


class CancelSerializer(StrictSerializer):
    reason = StrictCharField(max_length=2000, required=False, allow_blank=True, default="")


class TaskEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = TaskEvent
        fields = ["seq", "type", "data", "created_at"]
        read_only_fields = fields


class ProgressSerializer(serializers.Serializer):
    percent = serializers.IntegerField(min_value=0, max_value=100)
    phase = serializers.CharField(allow_blank=True)


class CancelRequestSerializer(serializers.Serializer):
    """Who asked for the cancel, and when; null until someone does."""

    requested_at = serializers.DateTimeField()
    requested_by = serializers.CharField(allow_null=True, help_text="Null once that user is deleted.")
    reason = serializers.CharField(allow_blank=True)


class TaskSerializer(serializers.ModelSerializer):
    priority = serializers.ChoiceField(
        source="get_priority_display", choices=[p.label for p in Priority], read_only=True
    )
    # The related names are null when there is none (no worker yet) or the row was deleted.
    worker = serializers.SlugRelatedField(slug_field="name", read_only=True, allow_null=True)
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)
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

    @extend_schema_field(ProgressSerializer)
    def get_progress(self, task: Task) -> dict[str, Any]:
        return {"percent": task.progress_percent, "phase": task.progress_phase}


class VerdictSerializer(serializers.ModelSerializer):
    id = serializers.CharField(source="provenance_id", read_only=True)
    # Null for an automatic verdict, and once the deciding user is deleted.
    decided_by = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)

    class Meta:
        model = Verdict
        fields = [
            "id",
            "decision",
            "automatic",
            "decided_by",
            "reason",
            "score",
            "threshold",
            "attempt",
            "violations",
            "waived",
            "created_at",
        ]
        read_only_fields = fields


class TaskDetailSerializer(TaskSerializer):
    cancel = serializers.SerializerMethodField()
    events = serializers.SerializerMethodField()
    verdict = serializers.SerializerMethodField()

    class Meta(TaskSerializer.Meta):
        fields = [*TaskSerializer.Meta.fields, "spec", "result", "violations", "verdict", "cancel", "events"]
        read_only_fields = fields

    @extend_schema_field(VerdictSerializer(allow_null=True))
    def get_verdict(self, task: Task) -> dict[str, Any] | None:
        verdict = self.context.get("verdict")
        return VerdictSerializer(verdict).data if verdict else None

    @extend_schema_field(CancelRequestSerializer(allow_null=True))
    def get_cancel(self, task: Task) -> dict[str, Any] | None:
        if task.cancel_requested_at is None:
            return None
        by = task.cancel_requested_by
        return {
            "requested_at": task.cancel_requested_at,
            "requested_by": by.username if by else None,
            "reason": task.cancel_reason,
        }

    @extend_schema_field(TaskEventSerializer(many=True))
    def get_events(self, task: Task) -> list[dict[str, Any]]:
        return TaskEventSerializer(self.context.get("latest_events", []), many=True).data


class ProvenanceSerializer(serializers.Serializer):
    task_id = serializers.UUIDField()
    task_state = serializers.ChoiceField(
        choices=TaskState.values, help_text="A commit may name the verdict once the task is completed."
    )
    verdict_id = serializers.CharField()
    decision = serializers.ChoiceField(choices=VerdictDecision.values)
    automatic = serializers.BooleanField()
    decided_by = serializers.CharField(allow_null=True)
    decided_at = serializers.DateTimeField()
    attempt = serializers.IntegerField()
    score = serializers.FloatField(allow_null=True)
    waived = serializers.ListField(child=serializers.DictField())
    trailers = serializers.ListField(child=serializers.CharField())


class TaskPageSerializer(serializers.Serializer):
    """The list response: one page and the URL of the next (null on the last)."""

    results = TaskSerializer(many=True)
    next = serializers.URLField(allow_null=True)


class TaskEventPageSerializer(serializers.Serializer):
    """The timeline response; pass ``last_seq`` as ``after`` to read on."""

    results = TaskEventSerializer(many=True)
    last_seq = serializers.IntegerField()


def bulk_create_bounds(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    """Postprocessing hook: the list form of ``POST /api/v1/tasks`` holds 1 to MAX_BULK_CREATE specs.

    drf-spectacular documents a ``many=True`` branch of a PolymorphicProxySerializer as a bare
    array; the service refuses an empty list and more than MAX_BULK_CREATE, so the schema says so.
    """
    from tasks.services import MAX_BULK_CREATE

    body = result.get("components", {}).get("schemas", {}).get("TaskCreate", {})
    for branch in body.get("oneOf", []):
        if branch.get("type") == "array":
            branch.update(minItems=1, maxItems=MAX_BULK_CREATE)
    return result
