"""Reads of the audit log: the API's search, the export, the admin's filter choices."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.models import F, QuerySet, Window
from django.db.models.functions import RowNumber

from audit.chain import canonical_timestamp
from audit.models import AuditRecord

EXPORT_FIELDS = (
    "id",
    "seq",
    "created_at",
    "actor",
    "action",
    "resource_type",
    "resource_id",
    "data",
    "reason",
    "prev_hash",
    "hash",
)


def audit_matching(params: Mapping[str, Any]) -> QuerySet[AuditRecord]:
    """:func:`audit_search` for the validated query of the audit API and page (``AuditQuerySerializer``)."""
    return audit_search(
        actions=params.get("action"),
        actor=params.get("actor"),
        resource_type=params.get("resource_type"),
        resource_id=params.get("resource_id"),
        since=params.get("since"),
        until=params.get("until"),
    )


def audit_search(
    *,
    actions: list[str] | None = None,
    actor: str | None = None,
    resource_type: str | None = None,
    resource_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> QuerySet[AuditRecord]:
    """Records matching every given filter; ``since`` is inclusive, ``until`` exclusive.

    Each filter has an index that continues in the keyset order (created_at, id),
    so any page of any filter is one index range scan.
    """
    qs = AuditRecord.objects.all()
    if actions:
        qs = qs.filter(action__in=actions) if len(actions) > 1 else qs.filter(action=actions[0])
    if actor:
        qs = qs.filter(actor=actor)
    if resource_type:
        qs = qs.filter(resource_type=resource_type)
    if resource_id:
        qs = qs.filter(resource_id=resource_id)
    if since:
        qs = qs.filter(created_at__gte=since)
    if until:
        qs = qs.filter(created_at__lt=until)
    return qs


def audit_export_rows(
    *, since: datetime, until: datetime | None = None, using: str = DEFAULT_DB_ALIAS, chunk_size: int = 2000
) -> Iterator[dict[str, Any]]:
    """Records created in [since, until) in chain order, streamed, as JSON-ready dicts.

    ``created_at`` is given in the chain's canonical form, so each line holds
    everything needed to recompute its hash (audit/chain.py).
    """
    qs = AuditRecord.objects.using(using).filter(created_at__gte=since)
    if until is not None:
        qs = qs.filter(created_at__lt=until)
    for row in qs.order_by("seq").values(*EXPORT_FIELDS).iterator(chunk_size=chunk_size):
        row["created_at"] = canonical_timestamp(row["created_at"])
        yield row


def distinct_values(field: str, *, using: str = DEFAULT_DB_ALIAS, limit: int = 200) -> list[str]:
    """The distinct values of an indexed column, by skipping through its index.

    ``SELECT DISTINCT`` reads every row (or index entry) of a million-row table;
    this recursive query jumps from one value to the next with one index probe
    each (a "loose index scan"), so a list of 20 actions costs 20 probes. On
    PostgreSQL and SQLite alike, given an index that starts with ``field``.
    """
    connection = connections[using]
    column = connection.ops.quote_name(AuditRecord._meta.get_field(field).column)
    table = connection.ops.quote_name(AuditRecord._meta.db_table)
    sql = f"""
        WITH RECURSIVE v(value, n) AS (
            SELECT (SELECT MIN({column}) FROM {table}), 1
            UNION ALL
            SELECT (SELECT MIN({column}) FROM {table} WHERE {column} > v.value), n + 1
            FROM v WHERE v.value IS NOT NULL AND n < %s
        )
        SELECT value FROM v WHERE value IS NOT NULL
    """  # noqa: S608 - column and table names come from the model, not from input
    with connection.cursor() as cursor:
        cursor.execute(sql, [limit])
        return [value for (value,) in cursor.fetchall()]


def latest_per_resource(
    *,
    resource_type: str,
    resource_ids: Sequence[str],
    actions: Sequence[str],
    per_resource: int,
    since: datetime | None = None,
) -> dict[str, list[AuditRecord]]:
    """The newest ``per_resource`` records of each resource with one of ``actions``, newest first.

    One query whatever the number of resources (a ``ROW_NUMBER()`` window per resource),
    so a page listing every worker with its recent breaker changes costs the same for two
    workers as for two hundred. ``since`` bounds how far back it looks, and with it the
    rows the window numbers: the resource index range-scans each id from ``since`` on.
    """
    if not resource_ids or not actions or per_resource < 1:
        return {}
    qs = AuditRecord.objects.filter(resource_type=resource_type, resource_id__in=list(resource_ids))
    qs = qs.filter(action__in=list(actions))
    if since is not None:
        qs = qs.filter(created_at__gte=since)
    ranked = qs.annotate(
        rank=Window(RowNumber(), partition_by=[F("resource_id")], order_by=[F("created_at").desc(), F("id").desc()])
    ).filter(rank__lte=per_resource)
    found: dict[str, list[AuditRecord]] = {}
    for record in ranked.order_by("resource_id", "-created_at", "-id"):
        found.setdefault(record.resource_id, []).append(record)
    return found
