"""``python manage.py export_audit --since ...``: audit records as JSON lines, in chain order."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from typing import Any, TextIO

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DEFAULT_DB_ALIAS, connections
from django.utils import timezone

from audit.selectors import audit_export_rows


def parse_moment(value: str) -> datetime:
    """An ISO 8601 date (midnight UTC) or datetime (UTC when it names no offset)."""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not an ISO 8601 date or datetime (e.g. 2025-03-01 or 2025-03-01T12:00:00+00:00)"
        ) from None
    return moment if timezone.is_aware(moment) else moment.replace(tzinfo=UTC)


class Command(BaseCommand):
    help = (
        "Write the audit records created at or after --since (and before --until) as JSON lines, one record "
        "a line with its seq, prev_hash and hash, in chain order; to stdout unless --output names a file."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--since", type=parse_moment, required=True, help="ISO date or datetime, inclusive.")
        parser.add_argument("--until", type=parse_moment, help="ISO date or datetime, exclusive.")
        parser.add_argument("--output", "-o", default="-", help="File to write ('-': stdout, the default).")
        parser.add_argument("--database", default=DEFAULT_DB_ALIAS, choices=tuple(connections))
        parser.add_argument("--chunk-size", type=int, default=2000, help="Rows fetched per round trip.")

    def handle(self, *args: Any, **options: Any) -> None:
        since, until = options["since"], options["until"]
        if until is not None and until <= since:
            raise CommandError("--until must be later than --since")
        rows = audit_export_rows(since=since, until=until, using=options["database"], chunk_size=options["chunk_size"])
        if options["output"] == "-":
            count = self._write(rows, self.stdout)
        else:
            try:
                with open(options["output"], "w", encoding="utf-8") as out:
                    count = self._write(rows, out)
            except OSError as exc:
                raise CommandError(f"cannot write {options['output']}: {exc.strerror}") from exc
            self.stderr.write(f"exported {count:,} audit records to {options['output']}")

    def _write(self, rows: Any, out: TextIO | Any) -> int:
        count = 0
        for row in rows:
            out.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
            count += 1
        return count
