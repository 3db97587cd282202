"""The CAWS working spec: the validated input of a task.

Every serializer here is strict (:mod:`config.strict`): a key it does not know is an
error naming that key, so a typo (``risk_teir``) is never silently dropped.
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any

from rest_framework import serializers

from config.strict import StrictCharField, StrictIntegerField, StrictRegexField, StrictSerializer, validated
from tasks.models import Priority


class ScopePath(StrictCharField):
    """A repository-relative path: no absolute paths, no ``..``."""

    def to_internal_value(self, data: Any) -> str:
        value = super().to_internal_value(data)
        path = PurePosixPath(value)
        if path.is_absolute() or ".." in path.parts or "\\" in value:
            raise serializers.ValidationError("Must be a relative path inside the repository, without '..'.")
        return value.rstrip("/") or "."


class ScopeSerializer(StrictSerializer):
    # "in" is a Python keyword, so the fields are declared through a dict.
    def get_fields(self) -> dict[str, serializers.Field]:
        return {
            "in": serializers.ListField(child=ScopePath(max_length=500), max_length=500, default=list),
            "out": serializers.ListField(child=ScopePath(max_length=500), max_length=500, default=list),
        }


class ChangeBudgetSerializer(StrictSerializer):
    max_files = StrictIntegerField(min_value=1, max_value=100_000)
    max_lines = StrictIntegerField(min_value=1, max_value=10_000_000)


class AcceptanceCriterionSerializer(StrictSerializer):
    id = StrictRegexField(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,49}$")
    given = StrictCharField(max_length=2000)
    when = StrictCharField(max_length=2000)
    then = StrictCharField(max_length=2000)


class WorkingSpecSerializer(StrictSerializer):
    title = StrictCharField(max_length=200)
    description = StrictCharField(max_length=20_000, required=False, allow_blank=True, default="")
    risk_tier = StrictIntegerField(min_value=1, max_value=3, default=3)
    mode = serializers.ChoiceField(choices=["feature", "fix", "refactor", "chore"], default="feature")
    scope = ScopeSerializer(required=False)
    change_budget = ChangeBudgetSerializer(required=False)
    acceptance = AcceptanceCriterionSerializer(many=True, required=False, default=list, max_length=200)
    priority = serializers.ChoiceField(choices=[p.label for p in Priority], default=Priority.MEDIUM.label)
    capabilities = serializers.ListField(
        child=StrictRegexField(r"^[a-z0-9][a-z0-9_.:-]{0,99}$"), default=list, max_length=50
    )
    input = serializers.JSONField(required=False, default=dict)
    timeout_s = StrictIntegerField(min_value=1, max_value=86_400, default=600)
    max_attempts = StrictIntegerField(min_value=1, max_value=20, default=3)

    def validate_acceptance(self, value: list[dict[str, str]]) -> list[dict[str, str]]:
        ids = [c["id"] for c in value]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise serializers.ValidationError(f"Duplicate criterion ids: {', '.join(duplicates)}.")
        return value

    def validate_input(self, value: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise serializers.ValidationError("Must be a JSON object.")
        return value

    def validate_capabilities(self, value: list[str]) -> list[str]:
        return sorted(set(value))

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        scope = attrs.get("scope") or {}
        overlap = sorted(set(scope.get("in", [])) & set(scope.get("out", [])))
        if overlap:
            raise serializers.ValidationError({"scope": [f"Paths both in and out of scope: {', '.join(overlap)}."]})
        return attrs


def validate_spec(data: Any) -> dict[str, Any]:
    """Validate a working spec, returning it normalised; raises :class:`config.errors.InvalidInput`."""
    return validated(WorkingSpecSerializer, data)
