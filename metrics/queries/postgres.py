"""The PostgreSQL side of the read-only runs: a role of its own, a READ ONLY transaction, a cursor.

``DATABASE_READONLY_URL`` names the connection (a role made by ``manage.py
create_readonly_role``); the application's own connection is never used for a query, so
even a bug here could not lend a query the application's privileges.
"""

from __future__ import annotations

import re
import threading
from typing import Any

import psycopg
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from psycopg import errors as pg_errors
from psycopg import sql as pg_sql
from psycopg_pool import ConnectionPool

from metrics.queries.errors import QueryTimedOut, refused

_lock = threading.Lock()
_pool: ConnectionPool | None = None


def _dsn() -> str:
    url = settings.DATABASE_READONLY_URL
    if not url:
        raise ImproperlyConfigured(
            "DATABASE_READONLY_URL is not set: create the role with `manage.py create_readonly_role` "
            "and point DATABASE_READONLY_URL at it."
        )
    return url


def pool() -> ConnectionPool:
    global _pool
    with _lock:
        if _pool is None:
            _pool = ConnectionPool(_dsn(), min_size=0, max_size=4, timeout=10, open=True)
        return _pool


def close_pool() -> None:
    global _pool
    with _lock:
        if _pool is not None:
            _pool.close()
            _pool = None


def fetch(
    sql: str, params: dict[str, Any], *, limit: int, offset: int, timeout_s: float
) -> tuple[list[str], list[list[Any]], bool]:
    query, values = to_psycopg(sql, params)
    with pool().connection() as conn:
        conn.read_only = True
        try:
            with conn.transaction(), conn.cursor() as cursor:
                cursor.execute(
                    pg_sql.SQL("SET LOCAL statement_timeout = {}").format(pg_sql.Literal(int(timeout_s * 1000)))
                )
                cursor.execute("SET LOCAL idle_in_transaction_session_timeout = 60000")
                # One plain query, or nothing: DECLARE takes a SELECT, VALUES or TABLE only. binary=True
                # makes psycopg use the extended protocol even with no parameter, where the server
                # refuses a second statement (the simple protocol would run "SELECT 1; SET ...").
                cursor.execute(
                    pg_sql.SQL("DECLARE agency_run NO SCROLL CURSOR FOR ") + pg_sql.SQL(query), values, binary=True
                )
                if offset:
                    cursor.execute(pg_sql.SQL("MOVE FORWARD {} FROM agency_run").format(pg_sql.Literal(offset)))
                cursor.execute(pg_sql.SQL("FETCH FORWARD {} FROM agency_run").format(pg_sql.Literal(limit + 1)))
                columns = [c.name for c in cursor.description or []]
                rows = cursor.fetchall()
                raise _Done  # leave the transaction by rolling back: nothing a run did is ever kept
        except _Done:
            pass
        except (UnicodeEncodeError, OverflowError) as exc:  # text or a value the driver cannot send
            raise refused(f"The database cannot take this input: {exc}.") from None
        except pg_errors.QueryCanceled:
            raise QueryTimedOut(f"The query ran past {timeout_s:g} s and was stopped.") from None
        except psycopg.Error as exc:
            raise refused(_message(exc, sql)) from None
        finally:
            conn.read_only = False
    return columns, [list(r) for r in rows[:limit]], len(rows) > limit


class _Done(Exception):
    pass


def _message(exc: psycopg.Error, sql: str = "") -> str:
    diag = getattr(exc, "diag", None)
    primary = (diag.message_primary if diag else None) or str(exc).splitlines()[0]
    if "cannot insert multiple commands" in primary:
        return "One statement per run."
    first = sql.split(None, 1)[0].upper() if sql.split() else ""
    if isinstance(exc, pg_errors.SyntaxError) and primary == f'syntax error at or near "{first}"':
        return (
            f"Refused by the database: only one query that reads (SELECT, WITH … SELECT, VALUES, TABLE) can run, "
            f"not {first}."
        )
    if isinstance(exc, pg_errors.InsufficientPrivilege):
        return f"Refused by the database: {primary} (queries may only read the allowed tables and columns)."
    if isinstance(exc, pg_errors.ReadOnlySqlTransaction):
        return f"Refused by the database: {primary}."
    return f"The database refused the query: {primary}"


# --- :name parameters -----------------------------------------------------------------------

# Skipped while looking for :name: quoted strings ('...' with '' escapes, E'...' with
# backslashes), quoted identifiers, dollar-quoted bodies, comments, and :: casts.
_TOKENS = re.compile(
    r"""
    (?P<skip>
        [Ee]'(?:[^'\\]|\\.|'')*'
      | '(?:[^']|'')*'
      | "(?:[^"]|"")*"
      | \$(?P<tag>[A-Za-z_]?[A-Za-z0-9_]*)\$.*?\$(?P=tag)\$
      | --[^\n]*
      | /\*.*?\*/
      | ::
    )
  | :(?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<percent>%)
    """,
    re.VERBOSE | re.DOTALL,
)


def to_psycopg(sql: str, params: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """``sql`` with each ``:name`` outside strings and comments as ``%(name)s``, ``%`` doubled.

    The values travel separately and are bound by the server; the text only names them.
    A ``:name`` without a value is refused before anything is sent.
    """
    missing: list[str] = []

    def replace(match: re.Match[str]) -> str:
        if match["skip"] is not None:
            return match["skip"].replace("%", "%%")
        if match["percent"] is not None:
            return "%%"
        name = match["name"]
        if name not in params:
            missing.append(name)
        return f"%({name})s"

    converted = _TOKENS.sub(replace, sql)
    if missing:
        raise refused(f"No value for the parameter :{missing[0]}.", field="params")
    return converted, dict(params)
