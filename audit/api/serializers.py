"""Query and response shapes of GET /api/v1/audit."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from audit.models import AuditRecord
from audit.selectors import EXPORT_FIELDS
from config.strict import CommaListField, StrictSerializer

# Newest first; the primary key breaks ties so that the keyset cursor is exact.
ORDERING = ["-created_at", "-id"]


class AuditQuerySerializer(StrictSerializer):
    action = CommaListField(
        child=serializers.CharField(max_length=100), required=False, max_length=50, help_text="exact; several: a,b"
    )
    # Blank filters are "no filter", as a cleared form field sends them.
    actor = serializers.CharField(
        max_length=200, required=False, allow_blank=True, help_text="exact, e.g. user:3 or system"
    )
    resource_type = serializers.CharField(max_length=50, required=False, allow_blank=True)
    resource_id = serializers.CharField(
        max_length=100, required=False, allow_blank=True, help_text="needs resource_type"
    )
    since = serializers.DateTimeField(required=False, help_text="created at or after (inclusive)")
    until = serializers.DateTimeField(required=False, help_text="created before (exclusive)")
    cursor = serializers.CharField(max_length=500, required=False)
    page_size = serializers.IntegerField(min_value=1, max_value=500, required=False, default=50)
    format = serializers.CharField(required=False)  # DRF's ?format=json|api

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs.get("resource_id") and not attrs.get("resource_type"):
            raise serializers.ValidationError({"resource_type": ["Required with resource_id."]})
        since, until = attrs.get("since"), attrs.get("until")
        if since and until and until <= since:
            raise serializers.ValidationError({"until": ["Must be later than since."]})
        return attrs


class AuditRecordSerializer(serializers.ModelSerializer):
    class Meta:
        model = AuditRecord
        fields = list(EXPORT_FIELDS)  # the API shows what the export writes
        read_only_fields = fields


class AuditPageSerializer(serializers.Serializer):
    """One page of audit records, newest first, and the URL of the next (null on the last)."""

    results = AuditRecordSerializer(many=True)
    next = serializers.URLField(allow_null=True)
