"""A changelist paginator that does not count a million rows on every page view.

``SELECT COUNT(*)`` over a whole PostgreSQL table is a full scan (MVCC keeps no
row count), which alone would blow the admin changelist's latency budget on a
million tasks. For an unfiltered listing of a large table the planner's own
estimate (``pg_class.reltuples``, kept fresh by autovacuum/ANALYZE) is good
enough to draw the page links; filtered listings and small tables get an exact
count, and so does SQLite, where the embedded default never holds that many rows.

The price of the estimate: the total shown can be off by a few percent, and the
last page link may land on an empty page (the admin then shows page 1 again).
"""

from __future__ import annotations

from django.core.paginator import Paginator
from django.db import connections
from django.db.models import QuerySet
from django.utils.functional import cached_property


def planner_row_estimate(queryset: QuerySet) -> int | None:
    """PostgreSQL's estimate of the rows in the queryset's table, or None.

    None when the database is not PostgreSQL or the table was never analysed
    (PostgreSQL 14+ reports -1 then).
    """
    connection = connections[queryset.db]
    if connection.vendor != "postgresql":
        return None
    table = connection.ops.quote_name(queryset.model._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute("SELECT reltuples FROM pg_class WHERE oid = to_regclass(%s)", [table])
        row = cursor.fetchone()
    if row is None or row[0] is None or row[0] < 0:
        return None
    return int(row[0])


def is_unfiltered(queryset: object) -> bool:
    """True when the queryset reads every row of its table (ordering and joins aside)."""
    if not isinstance(queryset, QuerySet):
        return False
    query = queryset.query
    return not (query.where or query.is_sliced or query.distinct or query.combinator or query.group_by)


class EstimatedCountPaginator(Paginator):
    """Counts exactly, except an unfiltered PostgreSQL table above ``estimate_threshold`` rows."""

    estimate_threshold = 10_000

    @cached_property
    def count(self) -> int:
        if is_unfiltered(self.object_list):
            estimate = planner_row_estimate(self.object_list)
            if estimate is not None and estimate > self.estimate_threshold:
                return estimate
        return super().count
