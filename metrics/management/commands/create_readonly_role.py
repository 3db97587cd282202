"""Create (or bring up to date) the PostgreSQL role that runs saved queries: SELECT on the allowlist only.

    DSN=postgres://owner@host/agency python manage.py create_readonly_role --admin-dsn-env DSN

Run it as a role that may create roles and grant on the tables (the owner of the schema, or
a superuser), again after migrations that add allowlisted tables. It prints the
``DATABASE_READONLY_URL`` to set (the password once, unless ``--password-env`` gave it).
"""

from __future__ import annotations

import os
import secrets
from typing import Any
from urllib.parse import quote

import psycopg
from django.core.management.base import BaseCommand, CommandError
from django.db import connection
from psycopg import sql

from metrics.queries import allowlist

# Functions every role may call by default that a query has no business with: it could stop
# other query sessions of the same role.
REVOKED_FUNCTIONS = ("pg_terminate_backend(integer, bigint)", "pg_cancel_backend(integer)")


class Command(BaseCommand):
    help = "Create or update the read-only PostgreSQL role of the SQL explorer (SELECT on allowlisted tables only)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--role", default="agency_readonly")
        parser.add_argument(
            "--admin-dsn-env",
            default="",
            help="Environment variable with the DSN of a role that may create roles (default: the app's connection).",
        )
        parser.add_argument("--password-env", default="", help="Environment variable holding the role's password.")

    def handle(self, *args: Any, role: str, admin_dsn_env: str, password_env: str, **options: Any) -> None:
        if connection.vendor != "postgresql":
            raise CommandError("Only for PostgreSQL: on SQLite queries run on a read-only connection of their own.")
        password = os.environ.get(password_env, "") if password_env else secrets.token_urlsafe(24)
        if not password:
            raise CommandError(f"environment variable {password_env} is empty or unset")
        settings = connection.settings_dict
        dsn = os.environ.get(admin_dsn_env, "") if admin_dsn_env else ""
        if admin_dsn_env and not dsn:
            raise CommandError(f"environment variable {admin_dsn_env} is empty or unset")
        kwargs = {} if dsn else {k: v for k, v in connection.get_connection_params().items() if k != "cursor_factory"}
        try:
            with psycopg.connect(dsn or "", autocommit=False, **kwargs) as conn:
                database = conn.execute("SELECT current_database()").fetchone()[0]
                grant_readonly(conn, role=role, password=password, database=database)
        except psycopg.Error as exc:
            raise CommandError(f"could not set up the role {role}: {exc}") from exc
        host = settings.get("HOST") or "127.0.0.1"
        port = settings.get("PORT") or 5432
        shown = "<from " + password_env + ">" if password_env else quote(password, safe="")
        self.stdout.write(f"DATABASE_READONLY_URL=postgres://{role}:{shown}@{host}:{port}/{database}")


def grant_readonly(conn: psycopg.Connection, *, role: str, password: str, database: str) -> None:
    """In one transaction: the role (login, nothing else), and SELECT on the allowlist, nothing more."""
    ident = sql.Identifier(role)
    exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [role]).fetchone()
    verb = "ALTER" if exists else "CREATE"
    conn.execute(
        sql.SQL(
            verb + " ROLE {} WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT NOREPLICATION "
            "NOBYPASSRLS PASSWORD {}"
        ).format(ident, sql.Literal(password))
    )
    conn.execute(sql.SQL("ALTER ROLE {} SET default_transaction_read_only = on").format(ident))
    conn.execute(sql.SQL("ALTER ROLE {} SET statement_timeout = '60s'").format(ident))
    conn.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(sql.Identifier(database), ident))
    conn.execute(sql.SQL("GRANT USAGE ON SCHEMA public TO {}").format(ident))
    conn.execute(sql.SQL("REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {}").format(ident))
    conn.execute(sql.SQL("REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {}").format(ident))
    for table in allowlist.READABLE_TABLES:
        columns = [
            name
            for (name,) in conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = 'public' AND table_name = %s"
                " ORDER BY ordinal_position",
                [table],
            )
        ]
        if not columns:
            continue  # not migrated yet; run the command again after migrate
        hidden = allowlist.HIDDEN.get(table, frozenset())
        if hidden:
            visible = sql.SQL(", ").join(sql.Identifier(c) for c in columns if c not in hidden)
            conn.execute(sql.SQL("GRANT SELECT ({}) ON {} TO {}").format(visible, sql.Identifier(table), ident))
        else:
            conn.execute(sql.SQL("GRANT SELECT ON {} TO {}").format(sql.Identifier(table), ident))
    for function in REVOKED_FUNCTIONS:
        # Only the functions' owner (a superuser) may; without it the role can still stop only
        # sessions of its own role, never the application's.
        try:
            with conn.transaction():
                conn.execute(sql.SQL("REVOKE EXECUTE ON FUNCTION " + function + " FROM PUBLIC"))
        except psycopg.errors.InsufficientPrivilege:
            pass
    conn.commit()
