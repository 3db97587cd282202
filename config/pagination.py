"""Keyset ("cursor") pagination that stays fast however deep the page.

DRF's ``CursorPagination`` keys on the first ordering field only and falls
back to OFFSET among ties, which degrades on non-unique orderings such as
priority. Here the cursor holds the full sort key of the last row, ending with
the primary key, and the next page is ``WHERE (k1, k2, pk) < (v1, v2, pv)``:
one index range scan at any depth on PostgreSQL and SQLite alike.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import math
import uuid
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import models
from django.db.backends.base.operations import BaseDatabaseOperations
from django.db.models import F, QuerySet
from django.db.models.fields.tuple_lookups import Tuple, TupleGreaterThan, TupleLessThan

from config.errors import InvalidInput

INVALID_CURSOR = "Invalid cursor."
# A cursor we hand out is a few hundred characters; bound the work a forged one can ask for.
MAX_CURSOR_LENGTH = 1000


@dataclass(frozen=True)
class Page:
    items: list[Any]
    next_cursor: str | None


def _encode(values: list[Any]) -> str:
    raw = json.dumps([v if isinstance(v, (int, float)) or v is None else str(v) for v in values])
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


class _BadCursor(ValueError):
    """A cursor value that cannot be a sort key we encoded."""


def _decode(cursor: str, fields: list[models.Field]) -> list[Any]:
    """The sort key in ``cursor``, each value checked against its field's type and range.

    A cursor comes back from the client, so it is input like any other: every value must be
    one that :func:`_encode` could have written for that field. Parsing alone is not enough;
    a date at the calendar's edge with an offset parses but overflows when the database
    adapter converts it to UTC, and an integer past the column's range overflows the driver,
    both at query time (a 500) instead of here (a 400).
    """
    if len(cursor) > MAX_CURSOR_LENGTH:
        raise InvalidInput(fields={"cursor": [INVALID_CURSOR]})
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        values = json.loads(base64.urlsafe_b64decode(padded.encode()))
        if not isinstance(values, list) or len(values) != len(fields):
            raise _BadCursor("length")
        return [_checked(field, value) for field, value in zip(fields, values, strict=True)]
    # _BadCursor, binascii.Error, JSONDecodeError and UnicodeDecodeError are all ValueErrors.
    except (DjangoValidationError, ValueError, TypeError, OverflowError, RecursionError) as exc:
        raise InvalidInput(fields={"cursor": [INVALID_CURSOR]}) from exc


def _checked(field: models.Field, value: Any) -> Any:
    """``value`` as ``field``'s Python type, or :class:`_BadCursor` if it cannot be one of its keys."""
    if value is None:
        if not field.null:
            raise _BadCursor(f"{field.name}: null")
        return None
    internal_type = field.get_internal_type()
    if internal_type in BaseDatabaseOperations.integer_field_ranges:
        # bool is an int in Python, not in a cursor.
        if not isinstance(value, int) or isinstance(value, bool):
            raise _BadCursor(f"{field.name}: not an integer")
        # The portable column range (the same on every backend), so that a cursor valid on
        # SQLite is valid on PostgreSQL and the driver never sees an out-of-range integer.
        low, high = BaseDatabaseOperations.integer_field_ranges[internal_type]
        if not low <= value <= high:
            raise _BadCursor(f"{field.name}: out of range")
        return value
    if isinstance(field, models.FloatField):
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            raise _BadCursor(f"{field.name}: not a finite number")
        return float(value)
    if not isinstance(value, str):
        raise _BadCursor(f"{field.name}: not a string")
    if isinstance(field, models.DateTimeField):
        parsed = field.to_python(value)
        # _encode writes aware datetimes; a naive one would be read in the server's zone.
        if not isinstance(parsed, dt.datetime) or parsed.utcoffset() is None:
            raise _BadCursor(f"{field.name}: not an aware datetime")
        # Raises OverflowError at the calendar's edges (9999-12-31T23:59-05:00 is in year 10000).
        return parsed.astimezone(dt.UTC)
    if isinstance(field, models.UUIDField):
        return uuid.UUID(value)
    if isinstance(field, (models.CharField, models.TextField)):
        # PostgreSQL text cannot hold NUL; psycopg refuses it with a ValueError at query time.
        if "\x00" in value:
            raise _BadCursor(f"{field.name}: NUL")
        return field.to_python(value)
    # A programming error, not the client's: it must not pass for an invalid cursor.
    raise TypeError(f"keyset pagination does not support {internal_type} ({field.name})")


def keyset_page(queryset: QuerySet, *, ordering: list[str], cursor: str | None, page_size: int) -> Page:
    """One page of ``queryset`` ordered by ``ordering`` (all one direction, pk last)."""
    descending = ordering[0].startswith("-")
    if any(o.startswith("-") != descending for o in ordering):
        raise ValueError("keyset ordering must use one direction for every field")
    names = [o.lstrip("-") for o in ordering]
    model = queryset.model
    fields = [model._meta.pk if n in ("pk", model._meta.pk.name) else model._meta.get_field(n) for n in names]
    qs = queryset.order_by(*ordering)
    if cursor:
        values = _decode(cursor, fields)
        lookup = TupleLessThan if descending else TupleGreaterThan
        qs = qs.filter(lookup(Tuple(*(F(n) for n in names)), values))
    items = list(qs[: page_size + 1])
    next_cursor = None
    if len(items) > page_size:
        items = items[:page_size]
        last = items[-1]
        next_cursor = _encode([getattr(last, f.attname) for f in fields])
    return Page(items=items, next_cursor=next_cursor)
