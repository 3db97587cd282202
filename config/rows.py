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
def _converters(model: type[Model], vendor: str, using: str) -> tuple[tuple[int, Callable[..., Any], Any], ...]:
    """(column index, converter, its Col) for every column that has converters, in the ORM's order."""
    connection = connections[using]
    out = []
    for i, field in enumerate(model._meta.concrete_fields):
        col = field.get_col(model._meta.db_table)
        out += [
            (i, convert, col) for convert in connection.ops.get_db_converters(col) + field.get_db_converters(connection)
        ]
    return tuple(out)


@cache
def _attnames(model: type[Model]) -> list[str]:
    return [f.attname for f in model._meta.concrete_fields]


def instances(row: Sequence[Any], models: Sequence[type[Model]], using: str = "default") -> list[Model]:
    """One instance per model from ``row``: the columns of :func:`select_list` of each, in turn."""
    connection = connections[using]
    found, at = [], 0
    for model in models:
        names = _attnames(model)
        values = list(row[at : at + len(names)])
        at += len(names)
        for i, convert, col in _converters(model, connection.vendor, using):
            values[i] = convert(values[i], col, connection)
        found.append(model.from_db(using, names, values))
    return found


def fetch(sql: str, params: Sequence[Any], models: Sequence[type[Model]], using: str = "default") -> list[list[Model]]:
    """Run a hand-written SELECT of :func:`select_list` columns; each row's instances, as :func:`instances`."""
    with connections[using].cursor() as cursor:
        cursor.execute(sql, params)
        return [instances(row, models, using) for row in cursor.fetchall()]


# At most this many parameters in one INSERT (SQLite allows 32,766; PostgreSQL 65,535).
INSERT_PARAMS = 30_000


def insert_rows(objs: Sequence[Model], using: str = "default") -> None:
    """INSERT ``objs`` (one model) with one statement per chunk: what ``bulk_create`` writes, cheaper.

    Each value is its field's ``pre_save(obj, add=True)`` (``auto_now_add`` and the like)
    prepared by ``get_db_prep_save``, as ``bulk_create`` does; an automatic primary key comes
    back through ``RETURNING`` (both databases) and is set on each object, in order. No
    signals, as ``bulk_create``. Its compiler cost more than the statement on the hot path
    (every transition's event and audit record), and on PostgreSQL its ``UNNEST`` form spent
    more again adapting each column to an array.
    """
    if not objs:
        return
    model = type(objs[0])
    meta = model._meta
    connection = connections[using]
    quote = connection.ops.quote_name
    pk = meta.pk
    returning = pk.db_returning and all(obj.pk is None for obj in objs)
    fields = [f for f in meta.concrete_fields if not (returning and f is pk)]
    head = f"INSERT INTO {quote(meta.db_table)} ({', '.join(quote(f.column) for f in fields)}) VALUES "  # noqa: S608 - names
    row_marks = "(" + ", ".join(["%s"] * len(fields)) + ")"
    tail = f" RETURNING {quote(pk.column)}" if returning else ""
    chunk_rows = max(1, INSERT_PARAMS // len(fields))
    with connection.cursor() as cursor:
        for at in range(0, len(objs), chunk_rows):
            chunk = objs[at : at + chunk_rows]
            params = [f.get_db_prep_save(f.pre_save(obj, True), connection) for obj in chunk for f in fields]
            cursor.execute(head + ", ".join([row_marks] * len(chunk)) + tail, params)
            if returning:
                for obj, (value,) in zip(chunk, cursor.fetchall(), strict=True):
                    setattr(obj, pk.attname, value)
    for obj in objs:
        obj._state.adding = False
        obj._state.db = using
