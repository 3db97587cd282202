"""Running the reference worker as a process: its options and its foreground life cycle.

Shared by ``python -m tasks.reference_worker`` and ``manage.py reference_worker``.

One argparse definition for both entry points, so the flags a benchmark passes to
the fast ``python -m tasks.reference_worker`` are exactly the ones the management
command documents.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Mapping, Sequence
from typing import IO, Any

from security.sandbox import Root
from tasks.reference_worker.server import ReferenceWorkerServer, UnsafeBind, WorkerConfig, check_bind

TOKEN_ENV = "REFERENCE_WORKER_TOKEN"  # noqa: S105 - the name of a variable, not a secret


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="Interface to bind (default 127.0.0.1); any other than loopback needs a token.",
    )
    parser.add_argument("--port", type=int, default=8081, help="Port; 0 picks a free one (default 8081).")
    parser.add_argument(
        "--token",
        default=None,
        help=f"Bearer token clients must send (default: ${TOKEN_ENV}; none means no auth, for local dev only).",
    )
    parser.add_argument("--capacity", type=int, default=16, help="Concurrent executions before 429 (default 16).")
    parser.add_argument("--request-log", default=None, metavar="PATH", help="Append every request as a JSON line.")
    parser.add_argument("--log-memory", type=int, default=10_000, help="Request-log entries kept for GET /_log.")
    parser.add_argument(
        "--remember", type=int, default=100_000, help="Finished idempotency keys kept for replay (default 100000)."
    )
    parser.add_argument("--fail-rate", type=float, default=0.0, help="Probability (0..1) of a 503 on /execute.")
    parser.add_argument("--seed", type=int, default=None, help="Seed for --fail-rate, for reproducible chaos.")
    parser.add_argument("--latency-ms", type=int, default=0, help="Delay added to every /execute.")
    parser.add_argument("--always-fail", action="store_true", help="Answer every /execute with 503.")
    parser.add_argument(
        "--retry-after", type=int, default=0, metavar="SECONDS", help="Retry-After on injected faults (default 0)."
    )
    parser.add_argument(
        "--workspace",
        default=None,
        metavar="DIR",
        help="Apply each result's files_modified under DIR/<task_id>/ through the file sandbox"
        " (default: report them without applying).",
    )
    parser.add_argument(
        "--drain-timeout", type=float, default=5.0, metavar="SECONDS", help="Grace for running work on shutdown."
    )
    parser.add_argument(
        "--exit-with-stdin",
        action="store_true",
        help="Stop when standard input closes: a parent that spawned the worker with a pipe (manage.py serve)"
        " takes it along when it ends, even if it is killed.",
    )


def config_from_options(options: Mapping[str, Any]) -> WorkerConfig:
    """Validate parsed options; raises ValueError naming the flag at fault."""
    checks = [
        ("--port", 0 <= options["port"] <= 65535),
        ("--capacity", options["capacity"] >= 1),
        ("--log-memory", options["log_memory"] >= 1),
        ("--remember", options["remember"] >= 1),
        ("--fail-rate", 0.0 <= options["fail_rate"] <= 1.0),
        ("--latency-ms", options["latency_ms"] >= 0),
        ("--retry-after", options["retry_after"] >= 0),
        ("--drain-timeout", options["drain_timeout"] >= 0),
    ]
    for flag, ok in checks:
        if not ok:
            raise ValueError(f"{flag}: out of range ({options[flag[2:].replace('-', '_')]!r}).")
    token = options["token"] or os.environ.get(TOKEN_ENV) or None
    try:
        check_bind(options["host"], token)
    except UnsafeBind as exc:
        raise ValueError(f"--host: {exc} (--token or ${TOKEN_ENV}).") from None
    workspace = options.get("workspace")
    if workspace:
        try:
            root = Root.parse(os.path.abspath(workspace))
        except ValueError as exc:
            raise ValueError(f"--workspace: {exc}.") from None
        if root.pattern is not None:
            raise ValueError(f"--workspace: {workspace!r} is a pattern, not one directory.")
        workspace = root.path
    return WorkerConfig(
        host=options["host"],
        port=options["port"],
        token=token,
        capacity=options["capacity"],
        request_log=options["request_log"],
        log_memory=options["log_memory"],
        remember=options["remember"],
        fail_rate=options["fail_rate"],
        seed=options["seed"],
        latency_ms=options["latency_ms"],
        always_fail=options["always_fail"],
        retry_after_s=options["retry_after"],
        drain_timeout_s=options["drain_timeout"],
        workspace=workspace,
    )


def serve(
    config: WorkerConfig,
    *,
    out: IO[str] | None = None,
    err: IO[str] | None = None,
    exit_with: IO[bytes] | None = None,
) -> int:
    """Run in the foreground until SIGTERM or SIGINT (or ``exit_with`` reaches its end), then
    drain; prints the URL when ready.

    The one stdout line is the contract with whoever spawned the process: with
    ``--port 0`` it is the only way to learn the port.
    """
    out = out or sys.stdout
    err = err or sys.stderr
    server = ReferenceWorkerServer(config)
    stop = threading.Event()
    previous: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
    if not config.token:
        err.write("reference worker: no token configured, accepting unauthenticated requests (local dev only)\n")
        err.flush()
    server.start()
    if exit_with is not None:
        threading.Thread(target=_wait_for_eof, args=(exit_with, stop), name="exit-with-stdin", daemon=True).start()
    out.write(f"listening on {server.url}\n")
    out.flush()
    try:
        while not stop.wait(0.5):
            pass
    finally:
        server.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


def _wait_for_eof(stream: IO[bytes], stop: threading.Event) -> None:
    """Set ``stop`` once ``stream`` ends. Reads the file descriptor itself: a thread blocked in a
    buffered reader holds its lock, and the interpreter then aborts at exit ("could not acquire
    lock for <stdin> at interpreter shutdown")."""
    fd = stream.fileno()
    try:
        while os.read(fd, 4096):
            pass
    except OSError:
        pass
    stop.set()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tasks.reference_worker", description="Reference worker for worker protocol v1."
    )
    add_arguments(parser)
    options = vars(parser.parse_args(argv))
    try:
        config = config_from_options(options)
    except ValueError as exc:
        parser.error(str(exc))
    try:
        return serve(config, exit_with=sys.stdin.buffer if options["exit_with_stdin"] else None)
    except OSError as exc:  # the port is taken, the workspace cannot be made: say so, without a traceback
        parser.exit(1, f"{parser.prog}: error: cannot start: {exc}\n")
