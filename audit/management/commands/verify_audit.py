"""``python manage.py verify_audit``: is the audit chain intact, and are its triggers in force?"""

from __future__ import annotations

import argparse
import re
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DEFAULT_DB_ALIAS, connections

from audit.triggers import trigger_problems
from audit.verification import verify_chain

ANCHOR = re.compile(r"^(\d+):([0-9a-f]{64})$")


def parse_anchor(value: str) -> tuple[int, str]:
    match = ANCHOR.match(value)
    if not match:
        raise argparse.ArgumentTypeError(f"{value!r} is not SEQ:HASH (a number, a colon, 64 lowercase hex digits)")
    return int(match[1]), match[2]


class Command(BaseCommand):
    help = (
        "Walk the audit hash chain in sequence order and report the first edited, deleted or reordered "
        "record. Exit 0 when intact, 1 when the chain is broken, 3 when it is intact but the append-only "
        "triggers are missing or disabled."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--database", default=DEFAULT_DB_ALIAS, choices=tuple(connections))
        parser.add_argument("--chunk-size", type=int, default=5000, help="Rows fetched per round trip.")
        parser.add_argument(
            "--anchor",
            type=parse_anchor,
            metavar="SEQ:HASH",
            help="A head printed by an earlier run and kept elsewhere: fails if that record is gone or differs "
            "(catches records removed from the end, or a chain rewritten from some point on).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        started = time.perf_counter()
        report = verify_chain(using=options["database"], chunk_size=options["chunk_size"], anchor=options["anchor"])
        elapsed = time.perf_counter() - started
        if not report.intact:
            raise CommandError(
                f"audit chain broken: {report.first_break} "
                f"({report.verified:,} records intact before it; checked in {elapsed:.1f} s)",
                returncode=1,
            )
        problems = trigger_problems(connections[options["database"]])
        head = f"head {report.head_seq}:{report.head_hash}" if report.verified else "empty"
        summary = f"audit chain intact: {report.verified:,} records, {head} ({elapsed:.1f} s)"
        if problems:
            raise CommandError(f"{summary}, but not protected: {'; '.join(problems)}", returncode=3)
        self.stdout.write(summary)
