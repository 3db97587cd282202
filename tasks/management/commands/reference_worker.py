"""``manage.py reference_worker``: run the protocol v1 reference worker in the foreground.

A thin wrapper over :mod:`tasks.reference_worker.cli` with the same flags; it adds
nothing but Django's command conventions. Tests and benchmarks spawn
``python -m tasks.reference_worker`` instead, which skips Django's start-up.
"""

from __future__ import annotations

import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from security.sandbox_audit import workspace_root
from tasks.reference_worker.cli import add_arguments, config_from_options, serve


class Command(BaseCommand):
    help = "Run the reference worker (worker protocol v1) until SIGTERM or Ctrl-C."

    def add_arguments(self, parser: CommandParser) -> None:
        add_arguments(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        # With Django at hand the workspace defaults to the control plane's (settings.SANDBOX_ROOTS).
        options["workspace"] = options.get("workspace") or workspace_root()
        try:
            config = config_from_options(options)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        try:
            exit_with = sys.stdin.buffer if options["exit_with_stdin"] else None
            serve(config, out=self.stdout, err=self.stderr, exit_with=exit_with)
        except OSError as exc:
            raise CommandError(f"Cannot listen on {config.host}:{config.port}: {exc}") from exc
