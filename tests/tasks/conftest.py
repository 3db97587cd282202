"""A real reference worker process on loopback, for every test that talks to a worker.

The worker is spawned as ``python -m tasks.reference_worker --port 0`` (no Django
start-up), its port read from the one line it prints when ready, and it is always
stopped again, whatever the test did.
"""

from __future__ import annotations

import os
import select
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

REPO_ROOT = Path(__file__).resolve().parents[2]
WORKER_TOKEN = "test-worker-token"
START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0


@dataclass
class RunningWorker:
    url: str
    token: str | None
    process: subprocess.Popen[str]

    def headers(self, **extra: str) -> dict[str, str]:
        headers = {"Agency-Protocol": "1", **extra}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return headers

    def log(self, **params: Any) -> list[dict[str, Any]]:
        """The worker's own request log (``GET /_log``)."""
        response = requests.get(f"{self.url}/_log", params=params, headers=self.headers(), timeout=5)
        response.raise_for_status()
        return response.json()["entries"]


def _read_ready_line(process: subprocess.Popen[str], stderr: Any) -> str:
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], START_TIMEOUT_S)
    line = process.stdout.readline() if ready else ""
    if not line.startswith("listening on "):
        stderr.seek(0)
        raise RuntimeError(f"reference worker did not start: {line!r} {stderr.read()!r}")
    return line.removeprefix("listening on ").strip()


def stop_process(process: subprocess.Popen[str]) -> int:
    """SIGTERM, then SIGKILL if it does not go; a test never leaves a worker behind."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(STOP_TIMEOUT_S)
    if process.stdout is not None:
        process.stdout.close()
    return process.returncode


def closed_loopback_port() -> int:
    """A port of 127.0.0.1 that nothing listens on: connecting to it is refused at once.

    Bound for a moment so the kernel picks a free number, then released: something else
    could take that number within the test's few seconds, but only by a rare accident.
    """
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def reference_worker_process(
    *flags: str, token: str | None = WORKER_TOKEN, command: list[str] | None = None
) -> Iterator[RunningWorker]:
    cmd = command or [sys.executable, "-m", "tasks.reference_worker"]
    cmd = [*cmd, "--port", "0", "--drain-timeout", "0", *flags]
    if token:
        cmd += ["--token", token]
    env = {key: value for key, value in os.environ.items() if key != "REFERENCE_WORKER_TOKEN"}
    with tempfile.TemporaryFile("w+") as stderr:
        process = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=stderr, text=True, env=env)
        try:
            yield RunningWorker(url=_read_ready_line(process, stderr), token=token, process=process)
        finally:
            stop_process(process)


@pytest.fixture(scope="module")
def reference_worker() -> Iterator[RunningWorker]:
    """One worker shared by a test module; tests keep apart by using their own task ids."""
    with reference_worker_process() as worker:
        yield worker


@pytest.fixture
def start_reference_worker() -> Iterator[Callable[..., RunningWorker]]:
    """Start workers with the flags a test needs (``--capacity 1``, ``--always-fail`` ...)."""
    with ExitStack() as stack:
        yield lambda *flags, **kwargs: stack.enter_context(reference_worker_process(*flags, **kwargs))
