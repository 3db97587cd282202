"""Model instances from one hand-written SELECT, for the few lookups made on every request.

The ORM spends ~0.9 ms building and compiling ``select_related`` for a one-row lookup by a
unique key, where running it takes ~0.07 ms (the API token on every API request and stream
open). :func:`select_list` writes a model's columns, :func:`instances` turns a row back into
instances with each value converted as the ORM would (the backend's converters and the
field's ``from_db_value``), so the instances are the ORM's own, only cheaper to get.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cache
from typing import Any

from django.db import connections
from django.db.models import Model


def select_list(model: type[Model], alias: str, using: str = "default") -> str:
    """``alias."col", …`` for every concrete field of ``model``, in field order."""
    quote = connections[using].ops.quote_name
    return ", ".join(f"{alias}.{quote(f.column)}" for f in model._meta.concrete_fields)


@cache
def _converters(model: type[Model], vendor: str, using: str) -> tuple[tuple[Callable[..., Any], ...], ...]:
    connection = connections[using]
    out = []
    for field in model._meta.concrete_fields:
        col = field.get_col(model._meta.db_table)
        out.append(tuple(connection.ops.get_db_converters(col) + field.get_db_converters(connection)))
    return tuple(out)


def instances(row: Sequence[Any], models: Sequence[type[Model]], using: str = "default") -> list[Model]:
    """One instance per model from ``row``: the columns of :func:`select_list` of each, in turn."""
    connection = connections[using]
    found, at = [], 0
    for model in models:
        fields = model._meta.concrete_fields
        values = list(row[at : at + len(fields)])
        at += len(fields)
        for i, (converters, field) in enumerate(zip(_converters(model, connection.vendor, using), fields, strict=True)):
            for convert in converters:
                values[i] = convert(values[i], field.get_col(model._meta.db_table), connection)
        found.append(model.from_db(using, [f.attname for f in fields], values))
    return found
