"""How a refused or failed query run is told: one domain error, naming the field at fault."""

from __future__ import annotations

from config.errors import DomainError


class QueryRefused(DomainError):
    """The database refused the query (a write, a forbidden table, several statements, a bad parameter...)."""

    code = "query_refused"
    http_status = 400


class QueryUnavailable(QueryRefused):
    """The read-only connection cannot be had (PostgreSQL without DATABASE_READONLY_URL, or unreachable)."""

    code = "queries_unavailable"
    http_status = 503


class QueryTimedOut(DomainError):
    code = "query_timeout"
    http_status = 400


def refused(message: str, *, field: str = "sql") -> QueryRefused:
    return QueryRefused(message, fields={field: [message]})
