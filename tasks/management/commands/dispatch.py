"""Run a dispatcher process: ``python manage.py dispatch --concurrency N``.

Any number of these may run against one PostgreSQL database. SIGTERM or
Ctrl-C stops claiming, lets in-flight attempts finish for ``--grace`` seconds
and returns the rest to the queue.
"""

from __future__ import annotations

import signal
import threading
from typing import Any

from django.core.management.base import BaseCommand

from metrics.stream.keeper import StreamKeeper
from metrics.stream.publish import publisher
from tasks.dispatch.dispatcher import Dispatcher


class Command(BaseCommand):
    help = "Claim due tasks and run them on registered workers."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--concurrency", type=int, default=8, help="Attempts in flight at once.")
        parser.add_argument("--grace", type=float, default=10.0, help="Seconds to finish in-flight work on stop.")
        parser.add_argument("--lease", type=float, default=None, help="Lease seconds (default AGENCY_LEASE_S).")
        parser.add_argument("--id", default=None, help="Dispatcher id (default host:pid:random).")

    def handle(
        self, *args: Any, concurrency: int, grace: float, lease: float | None, id: str | None, **options: Any
    ) -> None:
        if concurrency < 1:
            self.stderr.write("--concurrency must be at least 1")
            raise SystemExit(2)
        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        dispatcher = Dispatcher(concurrency=concurrency, lease_s=lease, dispatcher_id=id)
        dispatcher.start()
        # KPI snapshots for the SSE metrics stream, and the trimming of stored stream events.
        keeper = StreamKeeper()
        keeper.start()
        self.stdout.write(f"dispatcher {dispatcher.id} running (concurrency {concurrency})", ending="\n")
        self.stdout.flush()
        stop.wait()
        self.stdout.write("stopping: finishing in-flight attempts")
        keeper.stop()
        dispatcher.stop(grace_s=grace)
        publisher.wait_idle(timeout=5.0)  # the last changes reach the stored streams
