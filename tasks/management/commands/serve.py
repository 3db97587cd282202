"""Run the embedded system: ASGI server and dispatcher in one process, and a local reference worker.

daphne's ``Server`` runs in the main thread so that its signal handlers work
(Ctrl-C and SIGTERM stop it cleanly); the dispatcher starts in threads once daphne is
listening, and stops after it returns. The reference worker is a child process
(``python -m tasks.reference_worker --exit-with-stdin``): in this process its HTTP server's
threads shared one interpreter lock with the dispatcher's, and the process spent more time
handing that lock over than working (docs/decisions.md). It goes when this process goes, even
killed, as its standard input is a pipe from here. In the scaled mode the same pieces run as
separate processes (see the Procfile).
"""

from __future__ import annotations

import logging
import os
import secrets
import select
import subprocess
import sys
import threading
from typing import Any

from daphne.server import Server
from django.conf import settings
from django.core.management.base import BaseCommand

from config.errors import InvalidInput
from metrics.stream.keeper import StreamKeeper
from metrics.stream.publish import publisher
from security.principals import SYSTEM
from security.sandbox_audit import workspace_root
from tasks import workers
from tasks.dispatch.dispatcher import Dispatcher
from tasks.reference_worker.cli import TOKEN_ENV

logger = logging.getLogger("agency.serve")

LOCAL_WORKER = "local-reference"


LOCAL_WORKER_REASON = "the embedded reference worker of manage.py serve"


def register_local_worker(url: str, token: str, capacity: int) -> None:
    """Point the ``local-reference`` worker row at this process's reference worker (a new port and token each start).

    Capabilities an admin gave the row are kept; one left without any gets ``reference`` back,
    or the local worker could take no task.
    """
    if not workers.worker_name_taken(LOCAL_WORKER):
        workers.worker_register(
            actor=SYSTEM,
            name=LOCAL_WORKER,
            base_url=url,
            token=token,
            capabilities=["reference"],
            max_concurrency=capacity,
            reason=LOCAL_WORKER_REASON,
        )
        return
    current = workers.worker_get(actor=SYSTEM, name=LOCAL_WORKER)
    workers.worker_update(
        actor=SYSTEM,
        name=LOCAL_WORKER,
        base_url=url,
        token=token,
        capabilities=None if current.capabilities else ["reference"],
        max_concurrency=capacity,
        enabled=True,
        reason=LOCAL_WORKER_REASON,
    )


class LocalWorker:
    """The reference worker as a child process on 127.0.0.1, with a new token each start."""

    START_TIMEOUT_S = 30.0

    def __init__(self, *, capacity: int, workspace: str) -> None:
        self.token = secrets.token_urlsafe(24)
        # remember: finished results kept for idempotent replays; bounded for a long-lived process.
        # workspace: the control plane's own, so the gates read back the files it applies.
        command = [sys.executable, "-m", "tasks.reference_worker", "--host", "127.0.0.1", "--port", "0"]
        command += ["--capacity", str(capacity), "--remember", "10000", "--workspace", workspace]
        command += ["--drain-timeout", "1", "--exit-with-stdin"]
        self.process = subprocess.Popen(  # noqa: S603 - our own interpreter and module, no shell
            command,
            cwd=settings.BASE_DIR,
            env={**os.environ, TOKEN_ENV: self.token},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        self.url = self._read_url()

    def _read_url(self) -> str:
        stdout = self.process.stdout
        assert stdout is not None
        ready, _, _ = select.select([stdout], [], [], self.START_TIMEOUT_S)
        line = stdout.readline().decode(errors="replace").strip() if ready else ""
        if not line.startswith("listening on "):
            self.stop()
            raise RuntimeError(f"the local reference worker did not start (it said {line!r}; its log is above)")
        return line.removeprefix("listening on ")

    def stop(self, timeout_s: float = 5.0) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe is not None:
                pipe.close()


class Command(BaseCommand):
    help = "Serve the control plane with its dispatcher, and a local reference worker beside it."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--concurrency", type=int, default=16, help="Dispatcher attempts in flight.")
        parser.add_argument("--no-dispatcher", action="store_true", help="Serve HTTP only.")
        parser.add_argument("--no-worker", action="store_true", help="Do not start the local reference worker.")

    def handle(
        self, *args: Any, host: str, port: int, concurrency: int, no_dispatcher: bool, no_worker: bool, **options: Any
    ) -> None:
        from config.asgi import application
        from metrics import prometheus

        prometheus.reset_multiproc_dir()  # a fresh start: no counters of dead processes

        worker: LocalWorker | None = None
        dispatcher: Dispatcher | None = None
        keeper: StreamKeeper | None = None

        def start_background() -> None:
            nonlocal worker, dispatcher
            try:
                start_pieces()
            except Exception:
                # Without a dispatcher nothing runs: say so loudly rather than serve a dead system.
                logger.exception("the dispatcher or the local worker failed to start; tasks will stay queued")

        def start_pieces() -> None:
            nonlocal worker, dispatcher, keeper
            if not no_worker:
                try:
                    worker = LocalWorker(capacity=concurrency, workspace=workspace_root())
                except (OSError, RuntimeError):
                    logger.exception("the local reference worker failed to start; tasks will wait for a worker")
            if worker is not None:
                try:
                    register_local_worker(worker.url, worker.token, concurrency)
                    logger.info("local reference worker at %s", worker.url)
                except InvalidInput as exc:
                    # With DEBUG off the egress policy refuses loopback unless EGRESS_ALLOWED_NETWORKS
                    # lists it: serve the rest rather than nothing, and say why the worker is missing.
                    why = " ".join(str(m) for ms in (exc.fields or {}).values() for m in ms) or str(exc)
                    logger.error(
                        "the local reference worker is not used (EGRESS_ALLOWED_NETWORKS=127.0.0.1/32 allows it): %s",
                        why,
                    )
                    worker.stop()
                    worker = None
            if not no_dispatcher:
                dispatcher = Dispatcher(concurrency=concurrency)
                dispatcher.start()
                # KPI snapshots for the SSE metrics stream, and the trimming of stored events.
                keeper = StreamKeeper()
                keeper.start()
            logger.info("listening on http://%s:%s/", host, port)

        starter = threading.Thread(target=start_background, name="agency-serve-start", daemon=True)

        def ready() -> None:
            # Called on daphne's event loop, where Django refuses blocking ORM calls.
            starter.start()

        self.stdout.write(f"Serving on http://{host}:{port}/ (Ctrl-C to stop)")
        Server(
            application=application,
            # A listen queue of 1,024, not twisted's 50: when hundreds of pages reconnect at once
            # (a restart, a network blip) the kernel dropped the connects past 50, and each
            # dropped client waited a second for its SYN to be sent again.
            endpoints=[f"tcp:port={port}:interface={host}:backlog=1024"],
            signal_handlers=True,
            action_logger=self._log_action,
            ready_callable=ready,
            # daphne's default 5 s: a burst of hundreds of WebSocket connects (pages reconnecting
            # after a restart) is handled one after the other and the last ones were dropped.
            websocket_handshake_timeout=30,
        ).run()
        if starter.is_alive():
            starter.join(timeout=30)  # stopped while starting: let it finish, then stop what it started
        if keeper is not None:
            keeper.stop()
        if dispatcher is not None:
            dispatcher.stop(grace_s=5.0)
        publisher.wait_idle(timeout=5.0)  # the last changes reach the stored streams
        if worker is not None:
            worker.stop()

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
