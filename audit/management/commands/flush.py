"""``flush`` that knows the audit table is append-only.

Django's test framework empties the database after every transactional test by
calling ``flush`` (TRUNCATE on PostgreSQL, DELETE on SQLite), which the audit
table's triggers refuse. This command overrides Django's (an app's command wins
over the core one of the same name) and:

- on a database that Django's test run created, lifts the triggers as the
  table owner for the duration of the flush, in the same transaction, so they
  are back in force (exactly as they were) when it commits;
- anywhere else, refuses before touching anything: emptying the audit log is
  not an operation this application offers. Start afresh by deleting the
  SQLite file or dropping the PostgreSQL database instead.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError
from django.core.management.commands import flush
from django.db import connections

from audit.triggers import append_only_lifted, is_test_database


class Command(flush.Command):
    help = flush.Command.help + " The audit log is append-only: outside a test run this command refuses."

    def handle(self, **options: Any) -> None:
        connection = connections[options["database"]]
        if not is_test_database(connection):
            raise CommandError(
                "The audit log is append-only, so flush cannot empty this database. "
                "Delete the SQLite file or drop the PostgreSQL database to start afresh (docs/audit.md)."
            )
        with append_only_lifted(connection):
            super().handle(**options)
