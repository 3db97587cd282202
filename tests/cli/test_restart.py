"""The server stopped in the middle of a watch, and started again.

One stop and one restart of the package's server (same port, data and tokens), watched by
three CLI processes: one that gives up (exit 5, with a message saying how to resume), one
that rides through the restart (it reconnects with Last-Event-ID and follows the task to
its end), and a new ``watch`` started after the restart. The server is back up when the
test ends, whatever happens, for the tests that come after.
"""

from __future__ import annotations

import select
import time

import pytest

from tests.cli import support

pytestmark = pytest.mark.timeout(150)


def read_until(process, needle: str, timeout_s: float = 20) -> list[str]:
    """Lines of ``process``'s stdout up to the first containing ``needle``."""
    lines: list[str] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        ready, _, _ = select.select([process.stdout], [], [], 0.2)
        if ready:
            line = process.stdout.readline()
            if not line:
                break
            lines.append(line)
            if needle in line:
                return lines
    pytest.fail(f"{needle!r} not seen within {timeout_s} s; got {lines!r}")


def test_stopped_server_gives_exit_5_and_after_a_restart_watch_resumes(agency_server, config_file):
    env = support.cli_env(agency_server.url, agency_server.users["operator"]["token"], config_file)
    task = agency_server.create_task(
        title="Outlive a restart", input={"kind": "sleep", "seconds": 6, "interval_s": 0.25}
    )
    task_id = task["id"]
    quitter = support.spawn(["watch", task_id, "--reconnect-timeout", "2"], env)
    rider = support.spawn(["watch", task_id, "--json", "--reconnect-timeout", "90"], env)
    try:
        read_until(quitter, "% sleeping")
        read_until(rider, '"worker.progress"')

        agency_server.stop()
        try:
            quitter_out, quitter_err = quitter.communicate(timeout=30)
        finally:
            agency_server.launch()

        assert quitter.returncode == 5, quitter_out + quitter_err
        assert f"lost the server at {agency_server.url}" in quitter_err
        assert f"run `agency watch {task_id}` to resume" in quitter_err

        resumed = support.run(["watch", task_id], env, timeout=60)
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        assert resumed.stdout.splitlines()[-1].startswith(f"Task {task_id} completed")

        rider_out, rider_err = rider.communicate(timeout=30)
        assert rider.returncode == 0, rider_out + rider_err
        assert "reconnected; resuming after event" in rider_err
        entries = support.json_lines(rider_out)
        seqs = [e["seq"] for e in entries]
        assert seqs == sorted(set(seqs)), "an entry was missed or repeated across the reconnect"
        assert seqs == list(range(seqs[0], seqs[-1] + 1)), "a gap across the reconnect"
        assert entries[-1]["type"] == "completed"
    finally:
        for process in (quitter, rider):
            if process.poll() is None:
                process.kill()
                process.communicate()
        if agency_server.process is None or agency_server.process.poll() is not None:
            agency_server.launch()
