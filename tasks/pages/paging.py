"""Keyset pages with a way back: next links from ``config.pagination.keyset_page``, previous
links by reading the same ordering backwards from the first row shown.

A forward page is ``?cursor=<key of the row before it>`` (the API's own cursor); a page
reached backwards is ``?before=<key of the row after it>``: the same query with every sort
direction flipped, its rows turned round. Either way each page is one index range scan.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db import models
from django.db.models import QuerySet

from config.errors import InvalidInput
from config.pagination import _encode, keyset_page


@dataclass(frozen=True)
class Window:
    items: list[Any]
    next_cursor: str | None
    previous_cursor: str | None


def cursor_of(obj: models.Model, ordering: list[str]) -> str:
    """The cursor ``keyset_page`` would hand out for ``obj`` as the last row of a page."""
    # keyset_page keeps its encoder private; this is the one place outside it that encodes,
    # with the same fields it reads (the ordering's names, ``id`` being the primary key).
    meta = obj._meta
    fields = [meta.pk if name in ("pk", meta.pk.name) else meta.get_field(name) for name in _names(ordering)]
    return _encode([getattr(obj, f.attname) for f in fields])


def keyset_window(
    queryset: QuerySet, *, ordering: list[str], cursor: str | None, before: str | None, page_size: int
) -> Window:
    if cursor and before:
        raise InvalidInput(fields={"before": ["Give either cursor or before, not both."]})
    if before:
        backwards = [name[1:] if name.startswith("-") else f"-{name}" for name in ordering]
        try:
            page = keyset_page(queryset, ordering=backwards, cursor=before, page_size=page_size)
        except InvalidInput as exc:
            raise InvalidInput(fields={"before": exc.fields.get("cursor", ["Invalid cursor."])}) from exc
        items = list(reversed(page.items))
        # Rows further back exist exactly when the backwards page has a next page.
        return Window(
            items=items,
            next_cursor=cursor_of(items[-1], ordering) if items else None,
            previous_cursor=page.next_cursor,
        )
    page = keyset_page(queryset, ordering=ordering, cursor=cursor, page_size=page_size)
    previous = cursor_of(page.items[0], ordering) if cursor and page.items else None
    return Window(items=page.items, next_cursor=page.next_cursor, previous_cursor=previous)


def _names(ordering: list[str]) -> list[str]:
    return [name.lstrip("-") for name in ordering]
