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
from psycopg_pool import ConnectionPool, PoolTimeout

from metrics.queries.errors import QueryTimedOut, QueryUnavailable, refused

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


class PostgresReader:
    """A pooled connection of the read-only role in a READ ONLY transaction, the query DECLAREd.

    Each FETCH is a statement of its own under ``statement_timeout``; the transaction is always
    rolled back on :meth:`close` (nothing a run did is ever kept) and the connection goes back to
    the pool. ``idle_in_transaction_session_timeout`` ends it server-side if a client stops reading.
    """

    def __init__(self, sql: str, params: dict[str, Any], *, timeout_s: float) -> None:
        self.columns: list[str] = []
        self._timeout_s = timeout_s
        self._sql = sql
        query, values = to_psycopg(sql, params)
        try:
            self._pool = pool()
            self._conn = self._pool.getconn()
        except ImproperlyConfigured as exc:
            raise QueryUnavailable(f"Saved queries cannot run here: {exc}") from None
        except (PoolTimeout, psycopg.OperationalError) as exc:
            raise QueryUnavailable(f"The read-only database connection could not be opened: {exc}") from None
        try:
            self._conn.read_only = True
            self._cursor = self._conn.cursor()
            self._call(pg_sql.SQL("SET LOCAL statement_timeout = {}").format(pg_sql.Literal(int(timeout_s * 1000))))
            self._call("SET LOCAL idle_in_transaction_session_timeout = 60000")
            # One plain query, or nothing: DECLARE takes a SELECT, VALUES or TABLE only. binary=True
            # makes psycopg use the extended protocol even with no parameter, where the server
            # refuses a second statement (the simple protocol would run "SELECT 1; SET ...").
            self._call(pg_sql.SQL("DECLARE agency_run NO SCROLL CURSOR FOR ") + pg_sql.SQL(query), values, binary=True)
        except BaseException:
            self.close()
            raise

    def _call(self, statement: Any, values: Any = None, **kwargs: Any) -> None:
        try:
            self._cursor.execute(statement, values, **kwargs)
        except (UnicodeEncodeError, OverflowError) as exc:  # text or a value the driver cannot send
            raise refused(f"The database cannot take this input: {exc}.") from None
        except pg_errors.QueryCanceled:
            raise QueryTimedOut(f"The query ran past {self._timeout_s:g} s and was stopped.") from None
        except psycopg.Error as exc:
            raise refused(_message(exc, self._sql)) from None

    def fetch(self, n: int) -> list[list[Any]]:
        self._call(pg_sql.SQL("FETCH FORWARD {} FROM agency_run").format(pg_sql.Literal(n)))
        self.columns = [c.name for c in self._cursor.description or []]
        return [list(row) for row in self._cursor.fetchall()]

    def skip(self, n: int) -> None:
        self._call(pg_sql.SQL("MOVE FORWARD {} FROM agency_run").format(pg_sql.Literal(n)))

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            conn.rollback()
            conn.read_only = False
        except psycopg.Error:
            conn.close()  # a broken connection: the pool replaces it
        self._pool.putconn(conn)


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
