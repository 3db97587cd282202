"""The CAWS working spec: the validated input of a task.

Every serializer here is strict (:mod:`config.strict`): a key it does not know is an
error naming that key, so a typo (``risk_teir``) is never silently dropped.
"""

from __future__ import annotations

import json
import threading
from pathlib import PurePosixPath
from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.settings import api_settings

from config.errors import InvalidInput
from config.strict import (
    StrictCharField,
    StrictIntegerField,
    StrictRegexField,
    StrictSerializer,
    nesting_depth_exceeds,
)
from tasks.models import Priority

# ``input`` is free-form JSON handed to the worker and stored with the task; bound it so
# that no task row, event or worker request is unboundedly deep or large. 32 levels is far
# more than any worker input needs and far from the interpreter's recursion limit.
MAX_INPUT_DEPTH = 32
# The whole spec, serialized as stored (UTF-8 JSON): every field has its own bound, but
# their sum (acceptance, scope, description and input at their maxima) would be megabytes.
MAX_SPEC_BYTES = 256 * 1024


# A path segment that is not ``..`` (``.`` is allowed), then more of them: the same rule as
# ScopePath's check, for the API schema (no lookahead, so any JSON Schema tool can use it).
_SEGMENT = r"([^/\\.]|\.[^/\\.]|\.\.[^/\\])[^/\\]*|\."
SCOPE_PATH_PATTERN = rf"^({_SEGMENT})(/+({_SEGMENT}))*/*$"


@extend_schema_field({"type": "string", "maxLength": 500, "pattern": SCOPE_PATH_PATTERN})
class ScopePath(StrictCharField):
    """A repository-relative path: no absolute paths, no ``..``, no backslash.

    Not trimmed: `` /etc`` is the relative path it says (a leading space), and trimming it
    would turn an accepted path into a refused one behind the client's back.
    """

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("trim_whitespace", False)
        super().__init__(**kwargs)

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


# validate_input takes an object only; say so (an untyped JSONField documents "anything").
@extend_schema_field({"type": "object", "additionalProperties": {}, "description": "Free-form input for the worker."})
class BoundedJSONField(serializers.JSONField):
    """Free-form JSON, refused when nested past :data:`MAX_INPUT_DEPTH`.

    Checked before DRF's own ``to_internal_value``, whose ``json.dumps`` recurses: a spec
    that reaches us from a door other than the API's parser (the admin, chat, a command)
    must get a field error here, not a RecursionError.
    """

    def to_internal_value(self, data: Any) -> Any:
        if nesting_depth_exceeds(data, MAX_INPUT_DEPTH):
            raise serializers.ValidationError(f"Nested more than {MAX_INPUT_DEPTH} levels deep.")
        return super().to_internal_value(data)


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
    input = BoundedJSONField(required=False, default=dict)
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
        if _size(value) > MAX_SPEC_BYTES:
            raise serializers.ValidationError(f"Larger than {MAX_SPEC_BYTES} bytes as JSON.")
        return value

    def validate_capabilities(self, value: list[str]) -> list[str]:
        return sorted(set(value))

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        scope = attrs.get("scope") or {}
        overlap = sorted(set(scope.get("in", [])) & set(scope.get("out", [])))
        if overlap:
            raise serializers.ValidationError({"scope": [f"Paths both in and out of scope: {', '.join(overlap)}."]})
        sizes = {name: _size(value) for name, value in attrs.items()}
        if sum(sizes.values()) > MAX_SPEC_BYTES:
            # Name the field that weighs most: it is the one to shrink.
            largest = max(sizes, key=sizes.__getitem__)
            raise serializers.ValidationError(
                {largest: [f"The spec is larger than {MAX_SPEC_BYTES} bytes as JSON; this is its largest part."]}
            )
        return attrs


def _size(value: Any) -> int:
    """Bytes of ``value`` as stored: compact UTF-8 JSON (what the JSONField writes, give or take)."""
    return len(json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str).encode())


_per_thread = threading.local()


def validate_spec(data: Any) -> dict[str, Any]:
    """Validate a working spec, returning it normalised; raises :class:`config.errors.InvalidInput`.

    One serializer per thread, reused for every spec, as a ``ListSerializer`` reuses its child
    for every item: a new serializer deep-copies every declared field (and its nested
    serializers' fields), which was most of a spec's validation and a sixth of ``task_create``.
    The errors are what ``is_valid()`` would give (a non-dict detail under ``non_field_errors``).
    """
    serializer = getattr(_per_thread, "spec", None)
    if serializer is None:
        serializer = _per_thread.spec = WorkingSpecSerializer()
    try:
        return dict(serializer.run_validation(data))
    except serializers.ValidationError as exc:
        detail = exc.detail if isinstance(exc.detail, dict) else {api_settings.NON_FIELD_ERRORS_KEY: exc.detail}
        raise InvalidInput(fields=detail) from None
