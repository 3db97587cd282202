"""Run the embedded all-in-one process: the ASGI server (daphne) in this process.

daphne's ``Server`` runs in the main thread so that its signal handlers work
(Ctrl-C and SIGTERM stop it cleanly). In the scaled mode the same ASGI app is
served by plain ``daphne config.asgi:application`` processes instead.
"""

from __future__ import annotations

import logging
from typing import Any

from daphne.server import Server
from django.core.management.base import BaseCommand

logger = logging.getLogger("agency.serve")


class Command(BaseCommand):
    help = "Serve the control plane (HTTP, SSE, WebSocket) in one process."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)

    def handle(self, *args: Any, host: str, port: int, **options: Any) -> None:
        from config.asgi import application

        endpoint = f"tcp:port={port}:interface={host}"
        self.stdout.write(f"Serving on http://{host}:{port}/ (Ctrl-C to stop)")
        Server(
            application=application,
            endpoints=[endpoint],
            signal_handlers=True,
            action_logger=self._log_action,
            ready_callable=lambda: logger.info("listening on http://%s:%s/", host, port),
        ).run()

    @staticmethod
    def _log_action(protocol: str, action: str, details: dict[str, Any]) -> None:
        if protocol == "http" and action == "complete":
            logger.info(
                "%s %s %s %sms",
                details.get("method"),
                details.get("path"),
                details.get("status"),
                round(details.get("time_taken", 0) * 1000),
            )
