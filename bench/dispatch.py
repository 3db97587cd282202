"""Dispatcher benchmarks (issue 3): throughput, enqueue-to-dispatch latency, cancel latency, RSS.

    .venv/bin/python bench/dispatch.py                 # throughput, latency, cancel (about 15 min)
    .venv/bin/python bench/dispatch.py --quick         # smoke run: 500 tasks, short phases
    .venv/bin/python bench/dispatch.py --rss           # dispatcher RSS over 50,000 tasks (about 6 min)
    .venv/bin/python bench/dispatch.py --only latency,cancel

Everything runs on 127.0.0.1: the reference worker as its own process
(``python -m tasks.reference_worker --port 0``), dispatchers as ``manage.py
dispatch`` processes (or in a thread of the benchmark process, or inside
``manage.py serve``), PostgreSQL from ``scripts/pg-cluster`` (database
``agency_bench_dispatch``, a fresh copy of a migrated template before each run: the
audit table is append-only) and SQLite as a fresh file per run. Each run is a child
process of this script (``--child``), so each has its own Django settings; every
process a run starts is stopped when it ends.

1. **Throughput** (``echo`` tasks, created → completed with events and audit, through
   the real dispatcher and state machine). The tasks are queued *before* timing
   starts, with bulk INSERTs that write what ``tasks.services.task_create`` writes
   (task, ``created`` event, ``task.create`` audit record) plus one ``work`` signal
   on commit, while the dispatchers are already up and idle. Reported:

   - *drain rate* = tasks / (last ``finished_at`` - first ``started_at``): the
     dispatch pipeline alone, from its first claim to its last completion;
   - *commit→done rate* = tasks / (last ``finished_at`` - commit of the queued tasks):
     the same, plus the wake-up (NOTIFY on PostgreSQL, the 1 s poll for a separate
     process on SQLite);
   - *middle 80 %*: the rate between the 10th and the 90th percentile of ``finished_at``
     (the steady state, without ramp-up and tail).

   Setups: PostgreSQL with 1 and 2 ``manage.py dispatch`` processes (and 1 with
   ``REDIS_URL``, where breakers live in Redis), SQLite with one ``manage.py
   dispatch`` process, and SQLite embedded: ``manage.py serve`` (ASGI server,
   dispatcher and its own reference worker in one process, as a fresh clone runs).
   Swept over ``--concurrency`` (per dispatcher process), interleaved so that setups
   are compared side by side.
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


def run_throughput(spec: dict[str, Any], env: dict[str, str], tmp: Path) -> dict[str, Any]:
    from django.db.models import Count, Max, Min

    from audit.models import AuditRecord
    from tasks.models import Task, TaskEvent

    n, concurrency, mode = spec["tasks"], spec["concurrency"], spec["mode"]
    total = concurrency * spec.get("dispatchers", 1)
    # Worker capacity (and Worker.max_concurrency) well above the dispatchers' total by default,
    # so that --concurrency is the only limit; --worker-capacity sets it (serve: its --concurrency).
    capacity = spec.get("worker_capacity") or max(256, total)
    procs: list[c.Proc] = []
    if mode == "serve":
        serve = c.spawn(
            "serve",
            [c.PYTHON, "manage.py", "serve", "--port", str(free_port()), "--concurrency", str(concurrency)],
            env=env,
            log_path=tmp / "serve.log",
        )
        c.wait_for_log(serve, "started (concurrency")
        procs.append(serve)
        groups = {"serve (dispatcher+worker+asgi)": [serve.pid]}
    else:
        worker = c.start_worker(capacity=capacity, tmp=tmp)
        c.register_worker(worker.info["url"], capacity=capacity)
        for i in range(spec["dispatchers"]):
            procs.append(c.start_dispatcher(env=env, tmp=tmp, concurrency=concurrency, dispatcher_id=f"tp-{i}"))
        for proc in procs:
            c.wait_for_log(proc, "running (concurrency")
        groups = {"dispatchers": [p.pid for p in procs], "worker": [worker.pid]}

    meter = c.CpuMeter(lambda: groups)
    c.bulk_create_tasks([c.echo_spec() for _ in range(n)])
    committed = datetime.now().astimezone()
    meter.start()
    timeout_s = max(120.0, n / 10)
    c.wait_until(lambda: c.count_in(TERMINAL) >= n, timeout_s=timeout_s, every_s=0.25)
    cpu = meter.stop()

    done = Task.objects.filter(state="completed")
    agg = done.aggregate(first=Min("started_at"), last=Max("finished_at"), n=Count("id"))
    finished = sorted(done.values_list("finished_at", flat=True))
    result: dict[str, Any] = {"states": c.state_counts(), "cpu": cpu, "completed": agg["n"]}
    if agg["n"]:
        drain_s = (agg["last"] - agg["first"]).total_seconds()
        wake_s = (agg["last"] - committed).total_seconds()
        lo, hi = finished[int(0.1 * (len(finished) - 1))], finished[int(0.9 * (len(finished) - 1))]
        middle_s = (hi - lo).total_seconds()
        result |= {
            "drain_rate": agg["n"] / drain_s if drain_s > 0 else float("nan"),
            "commit_rate": agg["n"] / wake_s if wake_s > 0 else float("nan"),
            "middle_rate": 0.8 * len(finished) / middle_s if middle_s > 0 else float("nan"),
            "drain_s": drain_s,
        }
    result["retried"] = Task.objects.filter(attempt__gt=1).count()
    result["events_per_task"] = TaskEvent.objects.count() / max(1, n)
    result["audit_per_task"] = AuditRecord.objects.count() / max(1, n)
    return result


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

    def prepare(self, *, sqlite: bool, redis: bool) -> None:
        log(f"PostgreSQL: scripts/pg-cluster start; migrating {self.pg_template} (each run gets a fresh copy)")
        template_url = c.postgres_url(self.pg_template)
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


def bench_throughput(driver: Driver, args: argparse.Namespace) -> None:
    results: list[tuple[str, int, dict[str, Any]]] = []
    setups = [s[1:] for s in THROUGHPUT_SETUPS if not args.setups or s[0] in args.setups]
    for concurrency in args.concurrency:
        for name, backend, extra in setups:
            extra = dict(extra)
            if extra.pop("redis", False):
                extra["redis_url"] = driver.redis_url
            log(f"throughput: {name}, concurrency {concurrency}, {args.tasks:,} tasks")
            result = driver.run(
                "throughput",
                backend,
                tasks=args.tasks,
                concurrency=concurrency,
                worker_capacity=args.worker_capacity,
                **extra,
            )
            if result is None:
                continue
            log(
                f"  drain {result.get('drain_rate', float('nan')):.0f}/s, "
                f"states {result['states']}; {c.cpu_note(result['cpu'])}"
            )
            results.append((name, concurrency, result))
    rows = []
    for name, concurrency, r in results:
        cpu = r["cpu"]["cpu_s"]
        rows.append(
            [
                name,
                concurrency,
                r["completed"],
                r.get("drain_rate", float("nan")),
                r.get("commit_rate", float("nan")),
                r.get("middle_rate", float("nan")),
                r["cpu"]["machine_busy_pct"],
                cpu.get("dispatchers", cpu.get("serve (dispatcher+worker+asgi)", 0.0)),
                cpu.get("worker", float("nan")),
                cpu.get("postgres", 0.0),
                r["cpu"].get("other_cpu_s", float("nan")),
                r["retried"],
            ]
        )
    c.print_table(
        f"End-to-end throughput, echo tasks ({args.tasks:,} queued before timing; tasks/s)",
        [
            "setup",
            "conc.",
            "done",
            "drain/s",
            "commit→done/s",
            "mid-80%/s",
            "busy %",
            "disp CPU s",
            "wrk CPU s",
            "pg CPU s",
            "other CPU s",
            "retried",
        ],
        rows,
    )
    best_rows = []
    for name, _, _ in setups:
        mine = [(conc, r) for n, conc, r in results if n == name and r.get("drain_rate") == r.get("drain_rate")]
        if mine:
            conc, best = max(mine, key=lambda item: item[1].get("drain_rate", 0))
            best_rows.append([name, conc, best["drain_rate"], best["events_per_task"], best["audit_per_task"]])
    c.print_table(
        "Best drain rate per setup (targets: ≥ 300/s PostgreSQL, ≥ 150/s SQLite)",
        ["setup", "best --concurrency", "drain/s", "events/task", "audit/task"],
        best_rows,
    )
    print(
        "  drain = completed / (last finished_at - first started_at); commit→done from the commit of the "
        "queued tasks; mid-80% between the 10th and 90th percentile of finished_at.\n"
        "  CPU s = CPU seconds used during the run by the dispatcher process(es), the worker and the "
        "pg-cluster's PostgreSQL processes; other = every other process on the machine (a figure with much "
        "'other' shared the cores with someone else's work); busy % = the machine's 2 cores."
    )


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
        "(ms; targets p50 ≤ 20, p99 ≤ 100)",
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
