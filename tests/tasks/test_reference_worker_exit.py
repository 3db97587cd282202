"""``python -m tasks.reference_worker --exit-with-stdin``: how ``manage.py serve`` runs its worker."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.timeout(60)


def start() -> subprocess.Popen[bytes]:
    worker = subprocess.Popen(
        [sys.executable, "-m", "tasks.reference_worker", "--port", "0", "--drain-timeout", "0", "--exit-with-stdin"],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert worker.stdout is not None
    assert worker.stdout.readline().startswith(b"listening on http://127.0.0.1:")
    return worker


def test_it_stops_when_its_standard_input_closes() -> None:
    worker = start()
    assert worker.stdin is not None
    worker.stdin.close()
    assert worker.wait(20) == 0
    assert b"Fatal Python error" not in worker.stderr.read()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_it_cleanly_while_it_waits_on_its_input(sig) -> None:
    """Ctrl-C reaches serve and its worker together: the worker must exit 0, not abort at shutdown."""
    worker = start()
    worker.send_signal(sig)
    assert worker.wait(20) == 0
    assert b"Fatal Python error" not in worker.stderr.read()
    worker.stdin.close()
