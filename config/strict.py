"""Strict input shapes shared by every app: unknown keys are errors, JSON types are kept, comma lists.

A key a serializer does not know is an error naming that key, so a typo (``risk_teir``,
``?stat=failed``) is never silently dropped or silently widens a search. :func:`validated`
runs a serializer and raises the domain's :class:`~config.errors.InvalidInput`, so that
services and the spec validation never leak DRF's exception types to their callers.

This module imports no app.
"""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from config.errors import InvalidInput


class StrictSerializer(serializers.Serializer):
    """Rejects unknown keys, naming each one."""

    def to_internal_value(self, data: Any) -> Any:
        unknown = sorted(set(data) - set(self.fields)) if isinstance(data, dict) else []
        errors = {key: ["Unknown field."] for key in unknown}
        try:
            value = super().to_internal_value(data)
        except serializers.ValidationError as exc:
            if not errors or not isinstance(exc.detail, dict):
                raise
            errors.update(exc.detail)
        if errors:
            raise serializers.ValidationError(errors)
        return value


class StrictStringMixin:
    """DRF turns ``123`` into ``"123"``; a field of the wrong JSON type is an error instead.

    ``max_length`` holds for the string as sent: DRF trims first and measures what is left, so a
    reason padded far past its limit with spaces would pass, against the documented maxLength.
    """

    def run_validation(self, data: Any = serializers.empty) -> Any:
        limit = getattr(self, "max_length", None)
        if isinstance(data, str) and limit is not None and len(data) > limit:
            raise serializers.ValidationError(f"Ensure this field has no more than {limit} characters.")
        return super().run_validation(data)

    def to_internal_value(self, data: Any) -> Any:
        if not isinstance(data, str):
            raise serializers.ValidationError(f"Must be a string, not {type(data).__name__}.")
        return super().to_internal_value(data)


class StrictIntegerField(serializers.IntegerField):
    """DRF accepts ``"2"`` and ``2.0`` for integers; these fields take JSON integers only."""

    def to_internal_value(self, data: Any) -> int:
        if not isinstance(data, int) or isinstance(data, bool):
            raise serializers.ValidationError(f"Must be an integer, not {type(data).__name__}.")
        return super().to_internal_value(data)


class StrictBooleanField(serializers.BooleanField):
    """DRF takes ``0``, ``1``, ``"yes"`` and ``"on"`` for booleans; these fields take JSON true and false only."""

    def to_internal_value(self, data: Any) -> bool:
        if not isinstance(data, bool):
            raise serializers.ValidationError(f"Must be true or false, not {type(data).__name__}.")
        return data


class StrictCharField(StrictStringMixin, serializers.CharField):
    pass


class StrictRegexField(StrictStringMixin, serializers.RegexField):
    pass


class CommaListField(serializers.ListField):
    """Accepts ``?state=a,b`` as well as ``?state=a&state=b``."""

    def to_internal_value(self, data: Any) -> list[Any]:
        if isinstance(data, str):
            data = [data]
        items = [part.strip() for value in data for part in str(value).split(",") if part.strip()]
        return super().to_internal_value(items)


def validated(serializer_class: type[serializers.Serializer], data: Any, **kwargs: Any) -> dict[str, Any]:
    """The serializer's validated data, or :class:`InvalidInput` with the field errors as DRF shapes them."""
    serializer = serializer_class(data=data, **kwargs)
    if not serializer.is_valid():
        raise InvalidInput(fields=serializer.errors)
    return dict(serializer.validated_data)


def nesting_depth_exceeds(value: Any, limit: int) -> bool:
    """Whether ``value`` (parsed JSON) has containers nested more than ``limit`` deep.

    ``{}`` and ``[]`` are one level, ``{"a": [1]}`` two; scalars are none. Iterative on
    purpose: a recursive walk would itself die of RecursionError on the very input it is
    meant to refuse. It stops at the first path that goes too deep.
    """
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children = node.values()
        elif isinstance(node, (list, tuple)):
            children = node
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list, tuple)))
    return False
