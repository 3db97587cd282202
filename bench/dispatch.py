"""Dispatcher benchmarks (issues 3 and 14): throughput, enqueue-to-dispatch latency, cancel latency, RSS.

    .venv/bin/python bench/dispatch.py                 # throughput, latency, cancel (about 15 min)
    .venv/bin/python bench/dispatch.py --quick         # smoke run: 500 tasks, short phases
    .venv/bin/python bench/dispatch.py --rss           # dispatcher RSS over 50,000 tasks (about 6 min)
    .venv/bin/python bench/dispatch.py --only latency,cancel
    .venv/bin/python bench/dispatch.py --only throughput --mode fair --producer api-bulk --batch 100
    bash bench/versus_celery.sh --rounds 2 --tasks 3000   # side by side with the Celery baseline

Everything runs on 127.0.0.1: the reference worker as its own process
(``python -m tasks.reference_worker --port 0``), dispatchers as ``manage.py
dispatch`` processes (or in a thread of the benchmark process, or inside
``manage.py serve``), PostgreSQL from ``scripts/pg-cluster`` (database
``agency_bench_dispatch``, a fresh copy of a migrated template before each run: the
audit table is append-only) and SQLite as a fresh file per run. Each run is a child
process of this script (``--child``), so each has its own Django settings; every
process a run starts is stopped when it ends.

1. **Throughput** (``echo`` tasks, created → completed with events and audit, through
   the real dispatcher and state machine), in two modes (``--mode prequeued|fair|both``,
   both by default, side by side):

   *prequeued*: the tasks are queued *before* timing starts, with bulk INSERTs that
   write what ``tasks.services.task_create`` writes (task, ``created`` event,
   ``task.create`` audit record) plus one ``work`` signal on commit, while the
   dispatchers are already up and idle. Reported:

   - *drain rate* (its tasks/s) = tasks / (last ``finished_at`` - first ``started_at``):
     the dispatch pipeline alone, from its first claim to its last completion;
   - *commit→done rate* = tasks / (last ``finished_at`` - commit of the queued tasks):
     the same, plus the wake-up (NOTIFY on PostgreSQL, the 1 s poll for a separate
     process on SQLite);
   - *middle 80 %*: the rate between the 10th and the 90th percentile of ``finished_at``
     (the steady state, without ramp-up and tail).

   *fair*: a **producer** process (a child Django process, ``--producer-child``)
   creates the tasks through the ordinary path while the dispatchers run:
   ``--producer task_create`` (default) calls ``tasks.services.task_create`` once a
   task; ``api`` POSTs each spec to ``POST /api/v1/tasks`` of a server process (daphne
   on 127.0.0.1, an ``operator`` user's token; with ``serve``, serve's own ASGI server);
   ``api-bulk`` POSTs lists of ``--batch`` specs (1-1000) there. The producer first
   sends ``--warmup`` tasks through the whole path (not measured), builds its specs,
   says READY and waits; timing starts when it is told to go (SIGUSR1) and ends at the
   last ``finished_at``: its tasks/s = tasks / (last ``finished_at`` - the producer's
   start). Also reported: the producer's own enqueue rate and middle 80 %.

   Both modes print, per run, the CPU seconds of every process during the timed window
   and CPU ms a task: of the dispatcher process(es) (for ``serve``, its process, which
   also hosts the ASGI server, and its reference worker child together) and of all processes
   together (dispatchers, worker, PostgreSQL, producer, API server, Redis when used,
   and this driver's polling), with the targets: dispatcher ≤ 2.5 ms, all ≤ 5 ms. In
   the prequeued mode the bulk INSERTs are outside the window (no producer cost); in the
   fair mode the producer's cost is inside it. ``--idle-s`` measures, before each run,
   what the same processes burn a second with nothing to do. ``--json-out FILE``
   appends one JSON line a run (``bench/versus_celery.sh`` reads them).

   Setups: PostgreSQL with 1 and 2 ``manage.py dispatch`` processes (and 1 with
   ``REDIS_URL``, where breakers live in Redis), SQLite with one ``manage.py
   dispatch`` process, and SQLite embedded: ``manage.py serve`` (ASGI server,
   dispatcher and its own reference worker in one process, as a fresh clone runs).
   Swept over ``--concurrency`` (per dispatcher process), interleaved so that setups
   are compared side by side.

   **Against the Celery baseline** (``../shared/bench/celery``, run side by side by
   ``bench/versus_celery.sh`` with ``--mode fair --payload celery --pg durable``). What
   its driver (``bench.py``) times, and how the fair mode matches it:

   - *Window*: Celery's tasks/s = N / (last ``finished_at`` - first ``created_at``),
     enqueueing included, the producer running while the worker consumes. Ours: N /
     (last ``finished_at`` - the producer's go, just before its first create), the same
     window but for the first create's own duration; the JSON line also carries Celery's
     exact definition (``celery_def_per_s``).
   - *Producer*: Celery's is its driver process, one INSERT (autocommit) and one
     ``.delay()`` a task, specs built before the window. Ours is one process, one
     ``task_create`` a task (one transaction: task, event, audit record, NOTIFY), specs
     built before the window. Its CPU is reported on its own and in the total. Celery's
     producer CPU includes its polling for the end (every 0.2 s); ours polls from this
     driver (every 0.25 s), counted in the total as "driver".
   - *Warm-up*: both send 50 tasks through the whole path first, not measured (Celery
     truncates them away; ours counts only tasks created after the go).
   - *Fresh processes*: Celery starts a fresh worker per run; ours fresh dispatchers,
     worker and a fresh database per run.
   - *Concurrency*: the same number. Celery threads = one process of C threads, prefork
     = C processes; ours = C attempt slots (threads) per dispatch process, so ``pg2``
     has 2 x C.
   - *Payload* (``--payload celery``): the baseline's spec (title, prompt, scope,
     budget, three acceptance criteria, ~1 KB) and a ~1 KB result (output, three files,
     rationale, self-assessment) echoed by the reference worker. The files are created
     with their content, not changed by diffs (a diff needs the file in serve's worker
     workspace), and the baseline's ``...`` stub is a real line.
   - *Durability* (``--pg durable``): Celery's PostgreSQL 15 cluster runs stock settings,
     so every commit waits for its WAL flush; scripts/pg-cluster's test cluster turns
     fsync, synchronous_commit and full_page_writes off. ``--pg durable`` runs a second
     scripts/pg-cluster (/tmp/agency-pg-durable, port 55442, same disk) with those three
     on (ALTER SYSTEM), started and stopped by the run. Left different: its
     ``wal_level = minimal``, ``jit = off``, ``max_connections = 200``.
   - *CPU*: the same components, from /proc: Celery worker tree ~ our dispatcher(s),
     aiohttp worker service ~ reference worker, PostgreSQL, Redis (ours: only with
     ``REDIS_URL``), producer (ours: plus the API server with ``api``/``api-bulk``).
   - *Loopback only*, a fresh worker process, no result backend on either side.

   Where they differ, by design: per task Celery does 2 transactions (2 UPDATEs, 2 event
   rows) and nothing else; ours claims with ``FOR UPDATE SKIP LOCKED`` and a lease,
   checks every transition, writes 4 events, 3 hash-chained audit records, runs the
   gates and records a verdict. Delivery: Celery pushes through Redis (prefetch 4, acks
   late); ours uses PostgreSQL as the queue, woken by NOTIFY (SQLite: no wake across
   processes; a dispatch process finds new tasks when an attempt finishes or on its 1 s
   poll). The worker: aiohttp on uvloop against the stdlib ThreadingHTTPServer
   reference worker (serve: in the serve process). Celery runs a speed probe (~0.5 % of
   a core) in its window and does not wait for a quiet machine; ours waits
   (``--quiet-wait``) before each run, and so does versus_celery.sh before Celery's.
   The SQLite setups have no Celery counterpart: their ratio is to Celery on PostgreSQL.
2. **Enqueue-to-dispatch latency**: tasks created through ``task_create`` at a steady
   ``--rate`` for ``--seconds`` while a dispatcher runs; latency = the
   ``attempt_started`` event's ``created_at`` - the task's ``created_at`` (the claim
   commits a moment after the event row is built, so this is a slight underestimate
   of "visible as running"). PostgreSQL: a dispatcher process woken by NOTIFY.
   SQLite: the dispatcher in a thread of this process (the in-process bus only
   reaches a dispatcher in the creating process, as in ``manage.py serve``).
3. **Cancel latency**: ``sleep`` tasks running on the worker are canceled one by one
   through ``task_cancel``; latency = the worker's own request-log time of the
   ``/cancel`` request - the moment just before the ``task_cancel`` call (one machine,
   one clock). Also the time until the ``canceled`` event (the database confirms).
   PostgreSQL with ``REDIS_URL`` (a dispatcher process) and SQLite embedded (a
   dispatcher thread in this process).
4. **RSS** (``--rss``): one dispatcher process on PostgreSQL drains ``--rss-tasks``
   echo tasks (queued up front); its VmRSS is sampled every 10 % of the run; growth
   is measured from the sample after the first 10 %.

Figures are printed, never asserted: this VM's speed drifts up to 2x within minutes
(DESIGN.md), so compare figures only side by side within one run. The machine has
2 cores, shared by PostgreSQL, the worker, the dispatchers and this driver; each
throughput run prints the CPU seconds each of them used.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as c  # bench/ is on sys.path (above), so this works when run as a script

PG_DATABASE = "agency_bench_dispatch"
RESULT_PREFIX = "RESULT "
# Where a task rests when the dispatcher is done with it (awaiting_review: a risk tier 1 verdict).
TERMINAL = ("completed", "failed", "canceled", "awaiting_review")


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ================================================================================================
# Child side: one run, in its own process, with its own Django settings.
# ================================================================================================


def child_env(spec: dict[str, Any], tmp: Path) -> dict[str, str]:
    extra: dict[str, str | None] = {"LOG_LEVEL": spec.get("log_level", "INFO")}
    template = spec.get("pg_template", "")
    if spec["backend"] == "pg":
        c.recreate_database(spec["pg_url"], template=template)
        extra["DATABASE_URL"] = spec["pg_url"]
    else:
        path = tmp / "agency.sqlite3"
        shutil.copyfile(spec["sqlite_template"], path)
        extra["SQLITE_PATH"] = str(path)
        extra["DATA_DIR"] = str(tmp)
    if spec.get("redis_url"):
        extra["REDIS_URL"] = spec["redis_url"]
    env = c.base_env(**extra)
    if spec["backend"] == "pg" and not template:
        c.migrate(env)  # no migrated template to copy: migrate the fresh database itself
    return env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _operator_token() -> str:
    """A DRF token of an ``operator`` user (the API producer's credentials)."""
    from django.contrib.auth.models import Group, User

    from security.tokens import token_issue

    user, _ = User.objects.get_or_create(username="bench-producer")
    user.groups.add(Group.objects.get(name="operator"))
    return token_issue(user=user, actor="system", name="bench producer")[1]


def _start_api_server(env: dict[str, str], tmp: Path) -> tuple[c.Proc, int]:
    """daphne serving the ASGI app on 127.0.0.1 (no dispatcher in it), once /healthz answers."""
    import requests

    port = free_port()
    server = c.spawn(
        "api server",
        [c.PYTHON, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "config.asgi:application"],
        env=env | {"LOG_LEVEL": "WARNING"},
        log_path=tmp / "api-server.log",
    )

    def up() -> bool:
        if not server.alive():
            raise RuntimeError(f"api server exited: {server.log_text()[-2000:]}")
        try:
            return requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).ok
        except requests.ConnectionError:
            return False

    if not c.wait_until(up, timeout_s=60, every_s=0.2):
        raise RuntimeError(f"api server not up in 60 s: {server.log_text()[-2000:]}")
    return server, port


def _idle_cpu(groups: dict[str, list[int]], seconds: float) -> dict[str, float]:
    """CPU ms a second of each process while nothing is queued (the cost of waiting)."""
    if seconds <= 0:
        return {}
    meter = c.CpuMeter(lambda: groups)
    meter.start()
    time.sleep(seconds)
    used = meter.stop()
    return {name: round(1000 * s / used["wall_s"], 1) for name, s in used["cpu_s"].items()}


def run_throughput(spec: dict[str, Any], env: dict[str, str], tmp: Path) -> dict[str, Any]:
    from django.db.models import Count, Max, Min

    from audit.models import AuditRecord
    from tasks.models import Task, TaskEvent

    n, concurrency, mode, feed = spec["tasks"], spec["concurrency"], spec["mode"], spec.get("feed", "prequeued")
    total = concurrency * spec.get("dispatchers", 1)
    # Worker capacity (and Worker.max_concurrency) well above the dispatchers' total by default,
    # so that --concurrency is the only limit; --worker-capacity sets it (serve: its --concurrency).
    capacity = spec.get("worker_capacity") or max(256, total)
    procs: list[c.Proc] = []
    if mode == "serve":
        serve_port = free_port()
        serve = c.spawn(
            "serve",
            [c.PYTHON, "manage.py", "serve", "--port", str(serve_port), "--concurrency", str(concurrency)],
            env=env,
            log_path=tmp / "serve.log",
        )
        c.wait_for_log(serve, "started (concurrency")
        procs.append(serve)
        dispatcher_groups = ["serve (dispatcher+worker+asgi)"]
        # Its reference worker is a child process: the embedded system's CPU is both together.
        groups = {dispatcher_groups[0]: [serve.pid, *c.child_pids(serve.pid)]}
    else:
        worker = c.start_worker(capacity=capacity, tmp=tmp)
        c.register_worker(worker.info["url"], capacity=capacity)
        for i in range(spec["dispatchers"]):
            procs.append(c.start_dispatcher(env=env, tmp=tmp, concurrency=concurrency, dispatcher_id=f"tp-{i}"))
        for proc in procs:
            c.wait_for_log(proc, "running (concurrency")
        dispatcher_groups = ["dispatchers"]
        groups = {"dispatchers": [p.pid for p in procs], "worker": [worker.pid]}
    if spec.get("redis_url"):
        groups["redis"] = c.redis_pids()
    timeout_s = max(120.0, n / 10)
    result: dict[str, Any] = {"feed": feed}

    if feed == "fair":
        producer_spec = {
            "producer": spec["producer"],
            "tasks": n,
            "warmup": spec["warmup"],
            "batch": spec["batch"],
            "payload": spec["payload"],
            "linger_s": timeout_s + 60,
        }
        if spec["producer"] != "task_create":
            if mode == "serve":  # the embedded process's own ASGI server, as a fresh clone is used
                port = serve_port
            else:
                server, port = _start_api_server(env, tmp)
                groups["api server"] = [server.pid]
            producer_spec |= {"url": f"http://127.0.0.1:{port}/api/v1/tasks", "token": _operator_token()}
        producer = c.spawn(
            "producer",
            [c.PYTHON, __file__, "--producer-child", json.dumps(producer_spec)],
            env=env,
            log_path=tmp / "producer.log",
            stdout_pipe=True,
        )
        c.read_line(producer, "READY", timeout_s=180)  # Django set up, warm-up tasks done
        groups["producer"] = [producer.pid]
        result["idle_cpu_ms_per_s"] = _idle_cpu(groups, spec.get("idle_s", 0))
        meter = c.CpuMeter(lambda: groups)
        meter.start()
        os.kill(producer.pid, signal.SIGUSR1)  # go
        c.wait_until(
            lambda: c.count_in(TERMINAL) >= n + spec["warmup"] or not producer.alive(),
            timeout_s=timeout_s,
            every_s=0.25,
        )
        cpu = meter.stop()
        if not producer.alive():  # it stays until stopped: gone means it failed
            raise RuntimeError(f"the producer exited ({producer.popen.returncode}): {producer.log_text()[-3000:]}")
        made = json.loads(c.read_line(producer, RESULT_PREFIX, timeout_s=60))
        go = datetime.fromtimestamp(made["t_go"]).astimezone()
        measured = Task.objects.filter(created_at__gte=go)
        result |= {"producer": made, "measured": measured.count()}
        start_at = go
    else:
        result["idle_cpu_ms_per_s"] = _idle_cpu(groups, spec.get("idle_s", 0))
        meter = c.CpuMeter(lambda: groups)
        c.bulk_create_tasks([c.task_spec(spec["payload"], i) for i in range(n)])
        start_at = datetime.now().astimezone()  # the commit of the queued tasks
        meter.start()
        c.wait_until(lambda: c.count_in(TERMINAL) >= n, timeout_s=timeout_s, every_s=0.25)
        cpu = meter.stop()
        measured = Task.objects.all()

    done = measured.filter(state="completed")
    agg = done.aggregate(first=Min("started_at"), created=Min("created_at"), last=Max("finished_at"), n=Count("id"))
    finished = sorted(done.values_list("finished_at", flat=True))
    result |= {"states": c.state_counts(), "cpu": cpu, "completed": agg["n"]}
    result["cpu_ms_per_task"] = c.cpu_ms_per_task(
        cpu, n, dispatcher=dispatcher_groups, producer=("producer", "api server")
    )
    if agg["n"]:
        drain_s = (agg["last"] - agg["first"]).total_seconds()
        span_s = (agg["last"] - start_at).total_seconds()
        lo, hi = finished[int(0.1 * (len(finished) - 1))], finished[int(0.9 * (len(finished) - 1))]
        middle_s = (hi - lo).total_seconds()
        result |= {
            "drain_rate": agg["n"] / drain_s if drain_s > 0 else float("nan"),
            # prequeued: from the commit of the queued tasks; fair: from the producer's start.
            "commit_rate": agg["n"] / span_s if span_s > 0 else float("nan"),
            "middle_rate": 0.8 * len(finished) / middle_s if middle_s > 0 else float("nan"),
            "drain_s": drain_s,
        }
        if feed == "fair":
            made = result["producer"]
            first_created_s = (agg["last"] - agg["created"]).total_seconds()
            result |= {
                "tasks_per_s": result["commit_rate"],
                # The Celery driver's own definition: from the first created_at to the last finished_at.
                "celery_def_rate": agg["n"] / first_created_s if first_created_s > 0 else float("nan"),
                "enqueue_rate": n / (made["t_end"] - made["t_go"]) if made["t_end"] > made["t_go"] else float("nan"),
            }
        else:
            result["tasks_per_s"] = result["drain_rate"]
    result["retried"] = Task.objects.filter(attempt__gt=1).count()
    tasks_in_db = max(1, Task.objects.count())  # fair mode: the warm-up tasks too
    result["events_per_task"] = TaskEvent.objects.count() / tasks_in_db
    result["audit_per_task"] = AuditRecord.objects.count() / tasks_in_db
    return result


def _creator(spec: dict[str, Any]) -> Any:
    """The producer's way of creating a list of tasks: ``task_create`` per task, one
    ``POST /api/v1/tasks`` per task, or one POST per ``batch`` of them (a JSON list)."""
    kind = spec["producer"]
    if kind == "task_create":
        from security.principals import SYSTEM
        from tasks import services

        def create(specs: list[dict[str, Any]]) -> None:
            for one in specs:
                services.task_create(spec=one, actor=SYSTEM)

        return create

    import requests

    session = requests.Session()
    session.headers.update({"Authorization": f"Token {spec['token']}", "Accept": "application/json"})
    url = spec["url"]
    step = 1 if kind == "api" else spec["batch"]

    def post(specs: list[dict[str, Any]]) -> None:
        for start in range(0, len(specs), step):
            body = specs[start] if kind == "api" else specs[start : start + step]
            response = session.post(url, json=body, timeout=60)
            if response.status_code != 201:
                raise RuntimeError(f"POST {url}: {response.status_code} {response.text[:500]}")

    return post


def producer_main(raw: str) -> None:
    """The producer process of the fair mode: set up, warm up, wait for SIGUSR1, create, report.

    Like the Celery driver's producer: its specs are built before the go, each task is created
    with one call (and one commit), and its CPU time is its own process's.
    """
    spec = json.loads(raw)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})  # delivered to sigwait below, never lost
    c.setup_django(dict(os.environ))
    create = _creator(spec)
    warmup, n = spec["warmup"], spec["tasks"]
    if warmup:  # connections, pools and code paths warm in every process, as the Celery driver does
        create([c.task_spec(spec["payload"], i) for i in range(warmup)])
        if not c.wait_until(lambda: c.count_in(TERMINAL) >= warmup, timeout_s=120, every_s=0.1):
            raise RuntimeError(f"warm-up: {c.state_counts()} after 120 s")
    from django.db import connection

    connection.close()  # its polling connection; task_create opens its own again
    specs = [c.task_spec(spec["payload"], warmup + i) for i in range(n)]
    print("READY", flush=True)
    signal.sigwait({signal.SIGUSR1})
    cpu0, t_go = os.times(), time.time()
    create(specs)
    t_end, cpu1 = time.time(), os.times()
    made = {"t_go": t_go, "t_end": t_end, "cpu_s": round(cpu1.user + cpu1.system - cpu0.user - cpu0.system, 3)}
    print(RESULT_PREFIX + json.dumps(made), flush=True)
    # Stay until stopped (the driver reads this process's CPU time at the end of the run), but
    # never outlive the run: leave when the driver is gone or after linger_s.
    parent, deadline = os.getppid(), time.monotonic() + spec["linger_s"]
    while os.getppid() == parent and time.monotonic() < deadline:
        time.sleep(0.5)


def _start_inprocess_dispatcher(concurrency: int) -> Any:
    from tasks.dispatch.dispatcher import Dispatcher

    dispatcher = Dispatcher(concurrency=concurrency)
    dispatcher.start()
    return dispatcher


def _warm_up(n: int = 10) -> None:
    """A few tasks through the whole path first: connections, pools and code paths are warm."""
    from security.principals import SYSTEM
    from tasks import services

    ids = [services.task_create(spec=c.echo_spec(), actor=SYSTEM).pk for _ in range(n)]
    from tasks.models import Task

    c.wait_until(lambda: Task.objects.filter(pk__in=ids, state__in=TERMINAL).count() == n, timeout_s=60)


def run_latency(spec: dict[str, Any], env: dict[str, str], tmp: Path) -> dict[str, Any]:
    from security.principals import SYSTEM
    from tasks import services
    from tasks.models import Task, TaskEvent

    worker = c.start_worker(capacity=256, tmp=tmp)
    c.register_worker(worker.info["url"], capacity=256)
    dispatcher = None
    if spec["inprocess"]:
        dispatcher = _start_inprocess_dispatcher(spec["concurrency"])
    else:
        proc = c.start_dispatcher(env=env, tmp=tmp, concurrency=spec["concurrency"], dispatcher_id="lat-0")
        c.wait_for_log(proc, "running (concurrency")
    try:
        _warm_up()
        meter = c.CpuMeter(lambda: {"dispatcher": [] if dispatcher else [proc.pid], "worker": [worker.pid]})
        meter.start()
        rate, seconds = spec["rate"], spec["seconds"]
        count = int(rate * seconds)
        ids: list[str] = []
        behind = 0
        start = time.monotonic()
        for i in range(count):
            due = start + i / rate
            pause = due - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            elif pause < -0.005:
                behind += 1
            ids.append(str(services.task_create(spec=c.echo_spec(), actor=SYSTEM).pk))
        offered_s = time.monotonic() - start
        c.wait_until(lambda: Task.objects.filter(pk__in=ids, state__in=TERMINAL).count() == count, timeout_s=120)
        cpu = meter.stop()
    finally:
        if dispatcher is not None:
            dispatcher.stop(grace_s=2)
    created = dict(Task.objects.filter(pk__in=ids).values_list("pk", "created_at"))
    started: dict[Any, datetime] = {}
    completed: dict[Any, datetime] = {}
    for task_id, kind, at in (
        TaskEvent.objects.filter(task_id__in=ids, type__in=("attempt_started", "completed"))
        .order_by("seq")
        .values_list("task_id", "type", "created_at")
    ):
        (started if kind == "attempt_started" else completed).setdefault(task_id, at)
    dispatch_ms = [(started[t] - created[t]).total_seconds() * 1000 for t in created if t in started]
    done_ms = [(completed[t] - created[t]).total_seconds() * 1000 for t in created if t in completed]
    return {
        "tasks": count,
        "offered_rate": count / offered_s,
        "late_creates": behind,
        "dispatch_ms": {"p50": c.median(dispatch_ms), "p99": c.percentile(dispatch_ms, 99), "max": max(dispatch_ms)},
        "done_ms": {"p50": c.median(done_ms), "p99": c.percentile(done_ms, 99), "max": max(done_ms)},
        "states": c.state_counts(),
        "cpu": cpu,
    }


def run_cancel(spec: dict[str, Any], env: dict[str, str], tmp: Path) -> dict[str, Any]:
    from security.principals import SYSTEM
    from tasks import services
    from tasks.models import Task, TaskEvent

    concurrency = spec["concurrency"]
    worker = c.start_worker(capacity=256, tmp=tmp, request_log=True)
    c.register_worker(worker.info["url"], capacity=256)
    dispatcher = None
    if spec["inprocess"]:
        dispatcher = _start_inprocess_dispatcher(concurrency)
    else:
        proc = c.start_dispatcher(env=env, tmp=tmp, concurrency=concurrency, dispatcher_id="cancel-0")
        c.wait_for_log(proc, "running (concurrency")
    requested: dict[str, float] = {}  # task id -> time.time() just before task_cancel
    returned_ms: list[float] = []
    meter = c.CpuMeter(lambda: {"dispatcher": [] if dispatcher else [proc.pid], "worker": [worker.pid]})
    try:
        _warm_up()
        meter.start()
        while len(requested) < spec["samples"]:
            wave = min(concurrency, spec["samples"] - len(requested))
            ids = [
                str(services.task_create(spec=c.sleep_spec(seconds=120, interval_s=0.5), actor=SYSTEM).pk)
                for _ in range(wave)
            ]
            # Running at the worker: its first stream line (a log event) is on the timeline.
            started = TaskEvent.objects.filter(task_id__in=ids, type="worker.log").values("task_id").distinct()
            ok = c.wait_until(
                lambda started=started, ids=ids: started.count() == len(ids),
                timeout_s=30,
                every_s=0.05,
            )
            if not ok:
                raise RuntimeError("sleep tasks did not start on the worker within 30 s")
            time.sleep(0.2)
            for task_id in ids:
                before = time.time()
                services.task_cancel(task_id=task_id, actor=SYSTEM, reason="bench")
                requested[task_id] = before
                returned_ms.append((time.time() - before) * 1000)
                time.sleep(0.05)  # one cancel at a time: each measured on its own
            c.wait_until(
                lambda ids=ids: Task.objects.filter(pk__in=ids, state="canceled").count() == len(ids), timeout_s=30
            )
        cpu = meter.stop()
    finally:
        if dispatcher is not None:
            dispatcher.stop(grace_s=1)
    worker_ms: dict[str, float] = {}
    for line in Path(worker.info["request_log"]).read_text().splitlines():
        entry = json.loads(line)
        task_id = entry.get("task_id")
        if entry.get("path") == "/cancel" and task_id in requested and task_id not in worker_ms:
            at = datetime.fromisoformat(entry["time"].replace("Z", "+00:00")).timestamp()
            worker_ms[task_id] = (at - requested[task_id]) * 1000
    confirmed_ms = [
        (at.timestamp() - requested[str(task_id)]) * 1000
        for task_id, at in TaskEvent.objects.filter(task_id__in=list(requested), type="canceled").values_list(
            "task_id", "created_at"
        )
    ]
    values = list(worker_ms.values())
    return {
        "samples": len(requested),
        "worker_notified": len(values),
        "worker_ms": {"p50": c.median(values), "p95": c.percentile(values, 95), "max": max(values, default=0)},
        "confirmed_ms": {
            "p50": c.median(confirmed_ms),
            "p95": c.percentile(confirmed_ms, 95),
            "max": max(confirmed_ms, default=0),
        },
        "cancel_call_ms": {"p50": c.median(returned_ms), "p95": c.percentile(returned_ms, 95)},
        "states": c.state_counts(),
        "cpu": cpu,
    }


def run_rss(spec: dict[str, Any], env: dict[str, str], tmp: Path) -> dict[str, Any]:
    n, every = spec["tasks"], spec["sample_every"]
    worker = c.start_worker(capacity=256, tmp=tmp)
    c.register_worker(worker.info["url"], capacity=256)
    log(f"queueing {n:,} echo tasks")
    for start in range(0, n, 10_000):
        c.bulk_create_tasks([c.echo_spec() for _ in range(min(10_000, n - start))])
    c.analyze()
    proc = c.start_dispatcher(env=env, tmp=tmp, concurrency=spec["concurrency"], dispatcher_id="rss-0")
    c.wait_for_log(proc, "running (concurrency")
    meter = c.CpuMeter(lambda: {"dispatcher": [proc.pid], "worker": [worker.pid]})
    meter.start()
    samples: list[tuple[int, int, float]] = [(0, c.rss_kb(proc.pid) or 0, 0.0)]
    started = time.monotonic()
    deadline = started + spec["timeout_s"]
    next_mark = every
    done = 0
    while done < n and time.monotonic() < deadline:
        time.sleep(0.2)
        done = c.count_in(TERMINAL)
        if done >= next_mark:
            samples.append((done, c.rss_kb(proc.pid) or 0, time.monotonic() - started))
            log(f"  {done:,} done, dispatcher RSS {samples[-1][1] / 1024:.1f} MiB")
            while next_mark <= done:
                next_mark += every
    if samples[-1][0] != done:
        samples.append((done, c.rss_kb(proc.pid) or 0, time.monotonic() - started))
    return {"samples": samples, "done": done, "states": c.state_counts(), "cpu": meter.stop()}


RUNNERS = {"throughput": run_throughput, "latency": run_latency, "cancel": run_cancel, "rss": run_rss}


def child_main(raw: str) -> None:
    spec = json.loads(raw)

    def terminate(*_: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminate)
    tmp = Path(tempfile.mkdtemp(prefix=f"bench-dispatch-{spec['kind']}-"))
    try:
        env = child_env(spec, tmp)
        c.setup_django(env)
        c.log_to_file(tmp / "driver.log")  # the in-process dispatcher's INFO lines stay off the console
        result = RUNNERS[spec["kind"]](spec, env, tmp)
        print(RESULT_PREFIX + json.dumps(result, default=str), flush=True)
    finally:
        c.shield_cleanup()
        c.stop_all()
        if spec.get("keep_tmp"):
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


# ================================================================================================
# Driver side: prepares databases, runs the children, prints the tables.
# ================================================================================================


class Driver:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.pg_url = ""
        self.pg_template = PG_DATABASE + "_template"
        self.redis_url = ""
        self.tmp = Path(tempfile.mkdtemp(prefix="bench-dispatch-"))
        self.sqlite_template = self.tmp / "template.sqlite3"
        self.child: subprocess.Popen | None = None
        self.started_pg = False  # --pg durable: this run started that cluster, and stops it

    def prepare(self, *, sqlite: bool, redis: bool) -> None:
        if self.args.pg == "durable":
            c.use_durable_postgres()
            self.started_pg = not c.pg_cluster_running()
            log(f"PostgreSQL: the durable cluster {c.DURABLE_PG_ENV['PGC_DATA']} (fsync, synchronous_commit on)")
        log(f"PostgreSQL: scripts/pg-cluster start; migrating {self.pg_template} (each run gets a fresh copy)")
        template_url = c.postgres_url(self.pg_template)
        if self.args.pg == "durable":
            shown = c.make_durable()
            if shown != c.DURABLE_SETTINGS:
                raise RuntimeError(f"the durable cluster shows {shown}")
        c.migrate(c.base_env(DATABASE_URL=template_url))
        self.pg_url = template_url.rsplit("/", 1)[0] + "/" + PG_DATABASE
        if sqlite:
            log("SQLite: migrating a template database")
            c.migrate(c.base_env(SQLITE_PATH=str(self.sqlite_template), DATA_DIR=str(self.tmp)))
        if redis:
            log("Redis: scripts/redis-server start")
            self.redis_url = c.redis_url()

    def run(self, kind: str, backend: str, **spec: Any) -> dict[str, Any] | None:
        spec |= {
            "kind": kind,
            "backend": backend,
            "pg_url": self.pg_url,
            "pg_template": self.pg_template,
            "sqlite_template": str(self.sqlite_template),
        }
        spec["keep_tmp"] = self.args.keep_tmp
        if self.args.quiet_wait > 0:
            c.wait_for_quiet(max_wait_s=self.args.quiet_wait, log=log)
        self.child = subprocess.Popen(
            [c.PYTHON, __file__, "--child", json.dumps(spec)],
            cwd=c.ROOT,
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            out, _ = self.child.communicate(timeout=spec.get("timeout_s", 900) + 120)
        except subprocess.TimeoutExpired:
            log(f"{kind} {backend}: timed out")
            self.stop_child()
            return None
        finally:
            code = self.child.returncode
            self.child = None
        for line in out.splitlines():
            if line.startswith(RESULT_PREFIX):
                return json.loads(line[len(RESULT_PREFIX) :])
        log(f"{kind} {backend}: no result (exit {code})")
        return None

    def stop_child(self) -> None:
        if self.child is not None and self.child.poll() is None:
            os.killpg(self.child.pid, signal.SIGTERM)
            try:
                self.child.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.child.pid, signal.SIGKILL)
                self.child.wait(5)

    def close(self) -> None:
        self.stop_child()
        shutil.rmtree(self.tmp, ignore_errors=True)
        if self.started_pg:
            log("PostgreSQL: stopping the durable cluster this run started")
            c.pg_cluster_stop()


# (key for --setups, name, backend, run settings)
THROUGHPUT_SETUPS = [
    ("pg1", "PostgreSQL, 1 dispatch process", "pg", {"mode": "dispatch", "dispatchers": 1}),
    ("pg2", "PostgreSQL, 2 dispatch processes", "pg", {"mode": "dispatch", "dispatchers": 2}),
    (
        "pg1-redis",
        "PostgreSQL + REDIS_URL, 1 dispatch process",
        "pg",
        {"mode": "dispatch", "dispatchers": 1, "redis": True},
    ),
    ("sqlite", "SQLite, 1 dispatch process", "sqlite", {"mode": "dispatch", "dispatchers": 1}),
    ("serve", "SQLite embedded (manage.py serve)", "sqlite", {"mode": "serve", "dispatchers": 1}),
]


def _feed_label(feed: str, args: argparse.Namespace) -> str:
    if feed == "prequeued":
        return "prequeued"
    return f"fair, {args.producer}" + (f" {args.batch}" if args.producer == "api-bulk" else "")


def _json_line(
    key: str, name: str, concurrency: int, extra: dict[str, Any], r: dict[str, Any], args: argparse.Namespace
) -> dict[str, Any]:
    """The machine-readable record of one throughput run (``--json-out``; bench/versus_celery.sh reads it)."""
    ms = r["cpu_ms_per_task"]
    return {
        "setup": key,
        "name": name,
        "mode": r["feed"],
        "producer": args.producer if r["feed"] == "fair" else "bulk insert before timing",
        "batch": args.batch if r["feed"] == "fair" and args.producer == "api-bulk" else None,
        "concurrency": concurrency,
        "dispatchers": extra.get("dispatchers", 1),
        "tasks": args.tasks,
        "payload": args.payload,
        "postgres": args.pg,
        "completed": r["completed"],
        "tasks_per_s": r.get("tasks_per_s"),
        "drain_per_s": r.get("drain_rate"),
        "mid80_per_s": r.get("middle_rate"),
        "celery_def_per_s": r.get("celery_def_rate"),
        "enqueue_per_s": r.get("enqueue_rate"),
        "dispatcher_cpu_ms_per_task": ms["dispatcher"],
        "producer_cpu_ms_per_task": ms["producer"],
        "all_cpu_ms_per_task": ms["all"],
        "cpu_s": r["cpu"]["cpu_s"],
        "wall_s": r["cpu"]["wall_s"],
        "machine_busy_pct": r["cpu"]["machine_busy_pct"],
        "other_cpu_s": r["cpu"]["other_cpu_s"],
        "idle_cpu_ms_per_s": r.get("idle_cpu_ms_per_s", {}),
        "states": r["states"],
        "retried": r["retried"],
        "events_per_task": r["events_per_task"],
        "audit_per_task": r["audit_per_task"],
        "at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def bench_throughput(driver: Driver, args: argparse.Namespace) -> None:
    results: list[tuple[str, int, str, dict[str, Any]]] = []
    setups = [s for s in THROUGHPUT_SETUPS if not args.setups or s[0] in args.setups]
    feeds = ["prequeued", "fair"] if args.mode == "both" else [args.mode]
    for concurrency in args.concurrency:
        for key, name, backend, extra in setups:
            for feed in feeds:
                run_extra = dict(extra)
                if run_extra.pop("redis", False):
                    run_extra["redis_url"] = driver.redis_url
                label = _feed_label(feed, args)
                log(f"throughput: {name}, {label}, concurrency {concurrency}, {args.tasks:,} tasks")
                result = driver.run(
                    "throughput",
                    backend,
                    tasks=args.tasks,
                    concurrency=concurrency,
                    worker_capacity=args.worker_capacity,
                    feed=feed,
                    producer=args.producer,
                    batch=args.batch,
                    warmup=args.warmup,
                    payload=args.payload,
                    idle_s=args.idle_s,
                    **run_extra,
                )
                if result is None:
                    continue
                ms = result["cpu_ms_per_task"]
                log(
                    f"  {result.get('tasks_per_s', float('nan')):.0f} tasks/s, CPU ms a task: dispatcher "
                    f"{ms['dispatcher']:.2f}, all processes {ms['all']:.2f}; states {result['states']}; "
                    f"{c.cpu_note(result['cpu'])}"
                )
                results.append((name, concurrency, label, result))
                if args.json_out:
                    with open(args.json_out, "a") as out:
                        out.write(
                            json.dumps(_json_line(key, name, concurrency, extra, result, args), default=str) + "\n"
                        )
    nan = float("nan")
    rows = []
    for name, concurrency, label, r in results:
        ms, fair = r["cpu_ms_per_task"], r["feed"] == "fair"
        rows.append(
            [
                name,
                label,
                concurrency,
                r["completed"],
                r.get("tasks_per_s", nan),
                nan if fair else r.get("commit_rate", nan),
                r.get("middle_rate", nan),
                r.get("enqueue_rate", nan),
                r["cpu"]["machine_busy_pct"],
                ms["dispatcher"],
                ms["all"],
                r["cpu"].get("other_cpu_s", nan),
                r["retried"],
            ]
        )
    c.print_table(
        f"End-to-end throughput, {args.payload} tasks ({args.tasks:,} a run; tasks/s; CPU ms a task)",
        [
            "setup",
            "mode",
            "conc.",
            "done",
            "tasks/s",
            "commit→done/s",
            "mid-80%/s",
            "enqueue/s",
            "busy %",
            "disp ms/task",
            "all ms/task",
            "other CPU s",
            "retried",
        ],
        rows,
    )
    cpu_rows = []
    for name, concurrency, label, r in results:
        used, n = r["cpu"]["cpu_s"], args.tasks
        dispatcher = used.get("dispatchers", used.get("serve (dispatcher+worker+asgi)", 0.0))
        idle = r.get("idle_cpu_ms_per_s", {})
        cpu_rows.append(
            [name, label, concurrency]
            + [round(1000 * v / n, 2) for v in (dispatcher, used.get("worker", nan), used.get("postgres", 0.0))]
            + [round(1000 * used.get(k, 0.0) / n, 2) for k in ("producer", "api server", "redis", "bench driver")]
            + [r["cpu_ms_per_task"]["all"], sum(idle.values()) if idle else nan]
        )
    c.print_table(
        "CPU ms a task, by process (idle: CPU ms a second of all of them together before the run, nothing queued)",
        [
            "setup",
            "mode",
            "conc.",
            "dispatcher",
            "worker",
            "postgres",
            "producer",
            "api server",
            "redis",
            "driver",
            "all",
            "idle ms/s",
        ],
        [[_ms(v) for v in row] for row in cpu_rows],
    )
    best_rows = []
    for _, name, _, _ in setups:
        for feed in feeds:
            label = _feed_label(feed, args)
            mine = [
                (conc, r)
                for n, conc, lab, r in results
                if n == name and lab == label and r.get("tasks_per_s", float("nan")) == r.get("tasks_per_s")
            ]
            if mine:
                conc, best = max(mine, key=lambda item: item[1].get("tasks_per_s", 0))
                best_rows.append(
                    [name, label, conc, best["tasks_per_s"], best["cpu_ms_per_task"]["dispatcher"],
                     best["cpu_ms_per_task"]["all"], best["events_per_task"], best["audit_per_task"]]
                )  # fmt: skip
    c.print_table(
        "Best rate per setup and mode (issue 14's targets, fair mode: PostgreSQL 1 process ≥ 2x and 2 processes "
        "≥ 3x the better Celery pool of the same session, SQLite ≥ 250/s, serve ≥ 200/s; dispatcher ≤ 2.5 ms a task, "
        "all processes ≤ 5 ms)",
        ["setup", "mode", "best --concurrency", "tasks/s", "disp ms/task", "all ms/task", "events/task", "audit/task"],
        [[_ms(v) for v in row] for row in best_rows],
    )
    print(
        "  tasks/s: prequeued = drain = completed / (last finished_at - first started_at), the tasks queued with bulk "
        "INSERTs before timing; fair = completed / (last finished_at - the producer's start), the tasks created by a "
        "producer process while the dispatchers run. commit→done (prequeued): from the commit of the queued tasks. "
        "mid-80% between the 10th and 90th percentile of finished_at. enqueue/s: the producer's own rate.\n"
        "  CPU ms a task = CPU time during the run / tasks: disp = the dispatcher process(es) (serve: its process, "
        "which also hosts the ASGI server, and its reference worker child); all = every process measured together: "
        "dispatchers, worker, "
        "the pg-cluster's PostgreSQL processes, producer, API server, Redis (when used) and this driver's polling. "
        "other = every other process on the machine (a figure with much 'other' shared the cores with someone else's "
        "work); busy % = the machine's 2 cores."
    )


def _ms(value: Any) -> Any:
    """Two decimals for CPU ms figures (print_table gives floats one)."""
    return f"{value:.2f}" if isinstance(value, float) and value == value else value


def bench_latency(driver: Driver, args: argparse.Namespace) -> None:
    rows = []
    for name, backend, inprocess in (
        ("PostgreSQL, dispatch process (NOTIFY)", "pg", False),
        ("SQLite, dispatcher thread in-process", "sqlite", True),
    ):
        log(f"latency: {name}, {args.rate}/s for {args.seconds} s")
        r = driver.run(
            "latency", backend, rate=args.rate, seconds=args.seconds, concurrency=args.latency_concurrency,
            inprocess=inprocess,
        )  # fmt: skip
        if r is None:
            continue
        rows.append(
            [
                name,
                r["tasks"],
                r["offered_rate"],
                r["dispatch_ms"]["p50"],
                r["dispatch_ms"]["p99"],
                r["dispatch_ms"]["max"],
                r["done_ms"]["p50"],
                r["done_ms"]["p99"],
                r["cpu"]["machine_busy_pct"],
                r["cpu"]["other_cpu_s"],
            ]
        )
    c.print_table(
        f"Enqueue-to-dispatch latency, echo tasks created through task_create at {args.rate}/s "
        "(ms; issue 14's targets p50 ≤ 10, p99 ≤ 50 on both databases)",
        [
            "setup",
            "tasks",
            "offered/s",
            "p50 ms",
            "p99 ms",
            "max ms",
            "→done p50",
            "→done p99",
            "busy %",
            "other CPU s",
        ],
        rows,
    )
    print("  latency = attempt_started event created_at - task created_at; →done = completed event - task created_at.")


def bench_cancel(driver: Driver, args: argparse.Namespace) -> None:
    rows = []
    for name, backend, inprocess, redis in (
        ("PostgreSQL + REDIS_URL, dispatch process", "pg", False, True),
        ("SQLite embedded, dispatcher thread in-process", "sqlite", True, False),
    ):
        log(f"cancel: {name}, {args.cancels} cancels")
        r = driver.run(
            "cancel", backend, samples=args.cancels, concurrency=args.cancel_concurrency, inprocess=inprocess,
            redis_url=driver.redis_url if redis else "",
        )  # fmt: skip
        if r is None:
            continue
        rows.append(
            [
                name,
                r["samples"],
                r["worker_notified"],
                r["worker_ms"]["p50"],
                r["worker_ms"]["p95"],
                r["worker_ms"]["max"],
                r["confirmed_ms"]["p50"],
                r["confirmed_ms"]["p95"],
                r["cancel_call_ms"]["p50"],
                r["cpu"]["other_cpu_s"],
            ]
        )
    c.print_table(
        "Cancel latency of running sleep tasks (ms; targets p95 ≤ 250 with Redis, ≤ 1,000 embedded)",
        [
            "setup",
            "cancels",
            "notified",
            "p50 ms",
            "p95 ms",
            "max ms",
            "canceled p50",
            "canceled p95",
            "call p50",
            "other CPU s",
        ],
        rows,
    )
    print(
        "  p50/p95 = worker's request-log time of POST /cancel - just before task_cancel(); canceled = the "
        "'canceled' event; call = task_cancel() itself."
    )


def bench_rss(driver: Driver, args: argparse.Namespace) -> None:
    every = max(1, args.rss_tasks // 10)
    log(f"rss: PostgreSQL, 1 dispatch process, concurrency {args.rss_concurrency}, {args.rss_tasks:,} tasks")
    r = driver.run(
        "rss", "pg", tasks=args.rss_tasks, sample_every=every, concurrency=args.rss_concurrency, timeout_s=900
    )
    if r is None:
        return
    samples = r["samples"]
    base = next((kb for done, kb, _ in samples if done >= every), samples[0][1])
    rows = [[done, kb / 1024, at, 100 * (kb - base) / base if base else float("nan")] for done, kb, at in samples]
    c.print_table(
        f"Dispatcher RSS over {args.rss_tasks:,} echo tasks (PostgreSQL, 1 process, concurrency "
        f"{args.rss_concurrency}; target growth < 10 % after the first {every:,})",
        ["tasks done", "RSS MiB", "at s", f"vs {every:,} %"],
        rows,
    )
    end = samples[-1][1]
    print(f"  growth from {every:,} tasks to the end: {100 * (end - base) / base:+.1f} %  ({r['states']})")
    print(f"  {c.cpu_note(r['cpu'])}")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="A short smoke run of every phase.")
    parser.add_argument("--only", default="", help="Comma-separated phases: throughput,latency,cancel,rss.")
    parser.add_argument("--rss", action="store_true", help="Run the RSS phase only (same as --only rss).")
    parser.add_argument("--tasks", type=int, default=5000, help="Tasks per throughput run.")
    parser.add_argument("--concurrency", default="16,32,64", help="Dispatcher --concurrency values to sweep.")
    parser.add_argument(
        "--worker-capacity",
        type=int,
        default=0,
        help="Throughput: the worker's --capacity and Worker.max_concurrency (default: 256, above any dispatcher).",
    )
    parser.add_argument(
        "--setups",
        default="",
        help="Throughput setups to run, comma-separated: " + ", ".join(s[0] for s in THROUGHPUT_SETUPS) + " (all).",
    )
    parser.add_argument(
        "--mode",
        choices=("prequeued", "fair", "both"),
        default="both",
        help="Throughput: tasks queued before timing (prequeued), created by a producer process while the "
        "dispatchers run (fair), or both, side by side (default).",
    )
    parser.add_argument(
        "--producer",
        choices=("task_create", "api", "api-bulk"),
        default="task_create",
        help="Fair mode: the producer calls tasks.services.task_create once a task (default), POSTs each spec to "
        "/api/v1/tasks (api), or POSTs lists of --batch specs (api-bulk).",
    )
    parser.add_argument("--batch", type=int, default=100, help="Specs a POST with --producer api-bulk (1-1000).")
    parser.add_argument(
        "--warmup", type=int, default=50, help="Fair mode: tasks through the whole path before timing (not measured)."
    )
    parser.add_argument(
        "--payload",
        choices=c.PAYLOADS,
        default="echo",
        help="Throughput: the minimal echo spec (default), or the Celery baseline's task (celery: ~1 KB of spec "
        "and ~1 KB of result, three diffs for the gates).",
    )
    parser.add_argument(
        "--pg",
        choices=("test", "durable"),
        default="test",
        help="PostgreSQL: scripts/pg-cluster's test cluster (fsync, synchronous_commit off; default) or a second "
        "cluster with stock durability, as the Celery baseline's (durable).",
    )
    parser.add_argument(
        "--idle-s", type=float, default=2.0, help="Throughput: measure idle CPU this long before each run (0: no)."
    )
    parser.add_argument("--json-out", default="", help="Throughput: append one JSON line a run to this file.")
    parser.add_argument("--rate", type=float, default=50.0, help="Offered rate of the latency phase (tasks/s).")
    parser.add_argument("--seconds", type=float, default=20.0, help="Length of the latency phase.")
    parser.add_argument("--latency-concurrency", type=int, default=32)
    parser.add_argument("--cancels", type=int, default=100, help="Cancels measured per setup.")
    parser.add_argument("--cancel-concurrency", type=int, default=16)
    parser.add_argument("--rss-tasks", type=int, default=50_000)
    parser.add_argument("--rss-concurrency", type=int, default=32)
    parser.add_argument("--keep-tmp", action="store_true", help="Keep each run's directory (process logs).")
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=120.0,
        help="Before each run, wait up to this many s for the machine to be idle (0: do not wait).",
    )
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--producer-child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.tasks = min(args.tasks, 500)
        args.concurrency = "32"
        args.seconds = min(args.seconds, 5.0)
        args.cancels = min(args.cancels, 10)
        args.rss_tasks = min(args.rss_tasks, 5000)
    args.concurrency = [int(v) for v in str(args.concurrency).split(",") if v]
    args.setups = [s.strip() for s in args.setups.split(",") if s.strip()]
    unknown_setups = set(args.setups) - {s[0] for s in THROUGHPUT_SETUPS}
    if unknown_setups:
        parser.error(f"unknown setup(s): {', '.join(sorted(unknown_setups))}")
    if not 1 <= args.batch <= 1000:
        parser.error("--batch: 1 to 1000 specs a POST")
    phases = [p.strip() for p in args.only.split(",") if p.strip()]
    if args.rss:
        phases = ["rss"]
    args.phases = phases or (["throughput", "latency", "cancel"] + (["rss"] if args.quick else []))
    unknown = set(args.phases) - {"throughput", "latency", "cancel", "rss"}
    if unknown:
        parser.error(f"unknown phase(s): {', '.join(sorted(unknown))}")
    return args


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    if args.child is not None:
        child_main(args.child)
        return
    if args.producer_child is not None:
        producer_main(args.producer_child)
        return

    def terminate(*_: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminate)  # a killed benchmark still stops its run's processes
    driver = Driver(args)
    started = time.monotonic()
    try:
        needs_sqlite = bool({"throughput", "latency", "cancel"} & set(args.phases))
        driver.prepare(sqlite=needs_sqlite, redis=bool({"throughput", "cancel"} & set(args.phases)))
        print(
            f"bench/dispatch.py {' '.join(argv)}\n{os.cpu_count()} CPUs shared by PostgreSQL, the reference worker, "
            f"the dispatcher(s) and this driver; {time.strftime('%Y-%m-%d %H:%M')}",
            flush=True,
        )
        for phase in args.phases:
            {"throughput": bench_throughput, "latency": bench_latency, "cancel": bench_cancel, "rss": bench_rss}[phase](
                driver, args
            )
    finally:
        c.shield_cleanup()
        driver.close()
    print(f"\ntotal {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main(sys.argv[1:])
