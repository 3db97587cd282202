"""Running a query so that the database itself keeps it read-only, on SQLite and on PostgreSQL.

Nothing here looks at the text of a query for keywords: the text goes to the database
unchanged (parameters bound by the driver), and the database refuses what it must.

- **SQLite**: a connection of its own opened ``mode=ro`` (the file cannot be written through
  it), ``PRAGMA query_only`` on, and an authorizer callback that allows only SELECT and reads
  of the allowlisted tables and columns (allowlist.py): every write, PRAGMA, ATTACH,
  transaction control, ``load_extension`` and read of another table is refused by SQLite
  while it compiles the statement. sqlite3 itself runs one statement per ``execute``.
- **PostgreSQL**: a connection as a role that holds SELECT on the allowlisted tables and
  columns only (``manage.py create_readonly_role``), each run in a ``READ ONLY`` transaction
  with ``statement_timeout``, the query declared as a cursor (``DECLARE … CURSOR FOR``, which
  accepts one plain query and nothing else: no DML, DDL, ``SET``, ``DO``, ``COPY`` or a second
  statement) and only as many rows fetched as the page needs.

Either way a page reads at most ``offset + limit + 1`` rows, and an export reads its rows in pieces
(:class:`Reader`), never all of them at once.
"""

from __future__ import annotations

import re
import sqlite3
import time
from dataclasses import dataclass
from typing import Any, Protocol

from django.conf import settings
from django.db import connection

from metrics.queries import allowlist
from metrics.queries.errors import QueryRefused, QueryTimedOut, refused

MAX_SQL_LENGTH = 20_000
PARAMETER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


@dataclass
class Page:
    columns: list[str]
    rows: list[list[Any]]
    more: bool  # rows exist beyond this page
    duration_ms: float


def check(sql: str, params: dict[str, Any]) -> None:
    """What is refused before the database sees the text: nothing, NUL, too long, a bad parameter name."""
    if not sql.strip():
        raise refused("Enter a query.")
    if len(sql) > MAX_SQL_LENGTH:
        raise refused(f"At most {MAX_SQL_LENGTH} characters.")
    if "\x00" in sql:
        raise refused("A query cannot contain NUL.")
    for name in params:
        if not PARAMETER.match(name):
            raise refused(f"{name!r} is not a parameter name.", field="params")


class Reader(Protocol):
    """One query open on the read-only connection, read forward in pieces; ``close`` ends it.

    ``columns`` is known after the first :meth:`fetch`. Each :meth:`fetch` or :meth:`skip` is
    bound by the timeout on its own (PostgreSQL's ``statement_timeout`` applies to each FETCH; the
    SQLite progress handler's deadline is set again for each), so a long export of a fast query
    is not cut off by the time its client takes to read it.
    """

    columns: list[str]

    def fetch(self, n: int) -> list[list[Any]]: ...

    def skip(self, n: int) -> None: ...

    def close(self) -> None: ...


def open_reader(sql: str, params: dict[str, Any], *, timeout_s: float | None = None) -> Reader:
    """``sql`` open on this database's read-only connection; refusals raised here or by the first fetch."""
    check(sql, params)
    timeout = timeout_s if timeout_s is not None else settings.QUERY_TIMEOUT_S
    if connection.vendor == "postgresql":
        from metrics.queries import postgres

        return postgres.PostgresReader(sql, params, timeout_s=timeout)
    return SqliteReader(sql, params, timeout_s=timeout)


def run(sql: str, params: dict[str, Any], *, limit: int, offset: int = 0, timeout_s: float | None = None) -> Page:
    """One page of ``sql``'s rows, read through the read-only connection of this database."""
    start = time.perf_counter()
    reader = open_reader(sql, params, timeout_s=timeout_s)
    try:
        if offset:
            reader.skip(offset)
        rows = reader.fetch(limit + 1)
        columns = reader.columns
    finally:
        reader.close()
    return Page(
        columns=columns,
        rows=rows[:limit],
        more=len(rows) > limit,
        duration_ms=round((time.perf_counter() - start) * 1000, 2),
    )


# --- SQLite ---------------------------------------------------------------------------------

_ALLOWED_ACTIONS = {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_RECURSIVE}


def _authorizer_for(tables: frozenset[str]):
    """The authorizer of one connection; ``tables`` are the database's own tables (and views)."""

    def authorize(action: int, arg1: str | None, arg2: str | None, db_name: str | None, source: str | None) -> int:
        if action in _ALLOWED_ACTIONS:
            return sqlite3.SQLITE_OK
        if action == sqlite3.SQLITE_READ:
            # arg1 the table, arg2 the column ('' for count(*)). A name that is no table of the
            # database is a CTE of the query itself, whose reads of real tables are checked too.
            if arg1 is None:
                return sqlite3.SQLITE_DENY
            if arg1 in tables or db_name not in (None, "main"):
                return (
                    sqlite3.SQLITE_OK
                    if db_name in (None, "main") and allowlist.readable(arg1, arg2 or None)
                    else (sqlite3.SQLITE_DENY)
                )
            return sqlite3.SQLITE_OK
        if action == sqlite3.SQLITE_FUNCTION:
            name = (arg2 or "").lower()
            return sqlite3.SQLITE_DENY if name in allowlist.REFUSED_SQLITE_FUNCTIONS else sqlite3.SQLITE_OK
        return sqlite3.SQLITE_DENY

    return authorize


def _sqlite_connection() -> sqlite3.Connection:
    path = connection.settings_dict["NAME"]  # the test database's, under pytest
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5, check_same_thread=False)
    conn.execute("PRAGMA query_only = ON")
    tables = frozenset(
        name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'view')")
    )
    conn.set_authorizer(_authorizer_for(tables | {"sqlite_master", "sqlite_schema", "sqlite_temp_master"}))
    return conn


SKIP_CHUNK = 1000


class SqliteReader:
    """A cursor on a connection of its own (``mode=ro``, ``query_only``, the authorizer)."""

    def __init__(self, sql: str, params: dict[str, Any], *, timeout_s: float) -> None:
        self.columns: list[str] = []
        self._timeout_s = timeout_s
        self._deadline = 0.0
        self._conn = _sqlite_connection()
        self._conn.set_progress_handler(lambda: 1 if time.monotonic() > self._deadline else 0, 10_000)
        try:
            self._cursor = self._call(self._conn.execute, sql, params, params=params)
            self.columns = [d[0] for d in self._cursor.description or []]
            if not self.columns:
                raise refused("Only a query that returns rows can run here.")
        except BaseException:
            self._conn.close()
            raise

    def _call(self, method: Any, *args: Any, params: dict[str, Any] | None = None) -> Any:
        self._deadline = time.monotonic() + self._timeout_s
        try:
            return method(*args)
        except sqlite3.ProgrammingError as exc:  # several statements, a missing parameter
            if "binding parameter" in str(exc):
                raise refused(str(exc).rstrip(".") + ".", field="params") from None
            raise refused(_sqlite_message(exc)) from None
        except (OverflowError, UnicodeEncodeError) as exc:  # a value or text SQLite cannot take
            raise refused(f"The database cannot take this input: {exc}.", field="params" if params else "sql") from None
        except (sqlite3.DatabaseError, sqlite3.Warning) as exc:
            if "interrupted" in str(exc):
                raise QueryTimedOut(f"The query ran past {self._timeout_s:g} s and was stopped.") from None
            raise refused(_sqlite_message(exc)) from None

    def fetch(self, n: int) -> list[list[Any]]:
        return [list(row) for row in self._call(self._cursor.fetchmany, n)]

    def skip(self, n: int) -> None:
        while n > 0:
            got = len(self._call(self._cursor.fetchmany, min(n, SKIP_CHUNK)))
            if not got:
                return
            n -= got

    def close(self) -> None:
        self._conn.close()


def _sqlite_message(exc: Exception) -> str:
    text = str(exc)
    if "not authorized" in text or "prohibited" in text:
        return f"Refused by the database: {text} (queries may only read the allowed tables)."
    if "one statement at a time" in text:
        return "One statement per run."
    return f"The database refused the query: {text}"


def close_idle() -> None:
    """Nothing is pooled on SQLite; PostgreSQL closes its read-only pool (tests, shutdown)."""
    if connection.vendor == "postgresql":
        from metrics.queries import postgres

        postgres.close_pool()


__all__ = ["Page", "QueryRefused", "QueryTimedOut", "Reader", "open_reader", "run"]
