"""Keyset ("cursor") pagination that stays fast however deep the page.

DRF's ``CursorPagination`` keys on the first ordering field only and falls
back to OFFSET among ties, which degrades on non-unique orderings such as
priority. Here the cursor holds the full sort key of the last row, ending with
the primary key, and the next page is ``WHERE (k1, k2, pk) < (v1, v2, pv)``:
one index range scan at any depth on PostgreSQL and SQLite alike.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

from django.db.models import F, QuerySet
from django.db.models.fields.tuple_lookups import Tuple, TupleGreaterThan, TupleLessThan
from rest_framework.exceptions import ValidationError


@dataclass(frozen=True)
class Page:
    items: list[Any]
    next_cursor: str | None


def _encode(values: list[Any]) -> str:
    raw = json.dumps([v if isinstance(v, (int, float)) or v is None else str(v) for v in values])
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode(cursor: str, fields: list[Any]) -> list[Any]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        values = json.loads(base64.urlsafe_b64decode(padded.encode()))
        if not isinstance(values, list) or len(values) != len(fields):
            raise ValueError("length")
        return [field.to_python(v) for field, v in zip(fields, values, strict=True)]
    except Exception as exc:  # any malformed cursor is the client's error
        raise ValidationError({"cursor": ["Invalid cursor."]}) from exc


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
