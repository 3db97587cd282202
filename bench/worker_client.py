"""CPU cost of one worker call from the dispatcher's side (issue 3).

    .venv/bin/python bench/worker_client.py              # 3,000 calls of each kind
    .venv/bin/python bench/worker_client.py --calls 500

One reference worker process on 127.0.0.1 answers ``echo`` executions; this process
makes the calls one after another on one thread, in blocks of 100 of each kind in
turn, and reports the CPU time this process spent per call (``time.process_time``:
the worker's own CPU is not counted, nor the time spent waiting for it). Three ways
of making the same ``POST /execute``:

- ``WorkerClient.execute``: what a dispatcher attempt thread runs (tenacity, the
  circuit breaker, the abortable transport, the INFO log line of every call, the
  ``on_call`` record, reading and checking the JSON result);
- ``Session.send`` of a request prepared once: the transport the client uses, alone;
- ``Session.post``: requests' everyday API, which merges the session's settings into
  every request (what the client did before 2026-12-01).

Every call has its own task id, so the worker's idempotency store never replays. Figures
are printed, never asserted: this VM's speed drifts (DESIGN.md), so compare the rows of
one run with each other.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as c  # bench/ is on sys.path (above), so this works when run as a script


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=3000, help="Calls of each kind a round (after 200 warm-up calls).")
    parser.add_argument("--rounds", type=int, default=2, help="Rounds, each kind once a round (interleaved).")
    args = parser.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="bench-worker-client-"))
    c.setup_django(c.base_env(SQLITE_PATH=str(tmp / "unused.sqlite3"), DATA_DIR=str(tmp)))
    c.log_to_file(tmp / "client.log")  # the client's INFO line per call goes to a file, as in a dispatcher

    import requests

    from tasks.dispatch.breakers import BreakerRegistry
    from tasks.dispatch.worker_client import AbortHandle, WorkerClient, WorkerConfig
    from tasks.dispatch.worker_client.transport import thread_session

    try:
        worker = c.start_worker(capacity=64, tmp=tmp)
        url = worker.info["url"]
        config = WorkerConfig(name="bench", base_url=url, token=c.WORKER_TOKEN)
        client = WorkerClient(config, breakers=BreakerRegistry(), log=logging.getLogger("agency.dispatcher"))
        spec = c.echo_spec()
        headers = {
            "Agency-Protocol": "1",
            "Authorization": f"Bearer {c.WORKER_TOKEN}",
            "Accept": "application/x-ndjson, application/json",
            "Content-Type": "application/json",
        }

        def body(task_id: str) -> bytes:
            deadline = (datetime.now(UTC) + timedelta(seconds=60)).isoformat()
            return json.dumps({"task_id": task_id, "attempt": 1, "spec": spec, "deadline": deadline}).encode()

        def execute() -> None:
            client.execute(
                task_id=str(uuid.uuid4()),
                attempt=1,
                spec=spec,
                deadline=datetime.now(UTC) + timedelta(seconds=60),
                abort=AbortHandle(),
                on_event=lambda event: None,
                on_call=lambda record: None,
            )

        def send() -> None:
            task_id = str(uuid.uuid4())
            request = requests.Request(
                "POST", f"{url}/execute", data=body(task_id), headers={**headers, "Idempotency-Key": f"{task_id}:1"}
            ).prepare()
            response = thread_session().send(request, timeout=(5, 30), stream=True, allow_redirects=False)
            response.raw.read()
            response.close()

        def post() -> None:
            task_id = str(uuid.uuid4())
            response = thread_session().post(
                f"{url}/execute",
                data=body(task_id),
                headers={**headers, "Idempotency-Key": f"{task_id}:1"},
                timeout=(5, 30),
                stream=True,
                allow_redirects=False,
            )
            response.raw.read()
            response.close()

        kinds: dict[str, Callable[[], None]] = {
            "WorkerClient.execute": execute,
            "Session.send (prepared once)": send,
            "Session.post": post,
        }
        results: dict[str, list[float]] = {name: [] for name in kinds}
        for call in kinds.values():
            for _ in range(200):
                call()
        for _ in range(args.rounds):
            # Blocks of 100 calls of each kind in turn: this VM's speed drifts within minutes,
            # and interleaving spreads the drift evenly over the kinds.
            spent = dict.fromkeys(kinds, 0.0)
            for _ in range(max(1, args.calls // 100)):
                for name, call in kinds.items():
                    cpu = time.process_time()
                    for _ in range(100):
                        call()
                    spent[name] += time.process_time() - cpu
            for name, total in spent.items():
                results[name].append(total / (max(1, args.calls // 100) * 100) * 1000)
        rows = [[name, *(f"{v:.3f}" for v in values)] for name, values in results.items()]
        c.print_table(
            f"CPU of this process per POST /execute (echo, one thread, {args.calls:,} calls a round; ms)",
            ["call", *(f"round {i + 1}" for i in range(args.rounds))],
            rows,
        )
    finally:
        c.stop_all()


if __name__ == "__main__":
    main(sys.argv[1:])
