"""Shared plumbing of the dispatcher benchmarks (``bench/dispatch.py``, ``bench/chaos.py``).

Processes: every process a benchmark starts is a session leader (its own process
group), registered in :data:`PROCS`, and stopped by :func:`stop_all` from a
``finally`` (SIGTERM to the group, SIGKILL after a grace). Nothing listens on
anything but 127.0.0.1.

Databases: PostgreSQL is the throwaway cluster of ``scripts/pg-cluster``, with a fresh
database of the benchmark's own per run (copied from a migrated template database);
SQLite is a fresh file per run, copied from a migrated template file. Fresh, because
the audit table is append-only: its triggers refuse DELETE and TRUNCATE.

Figures are printed, never asserted: this VM's speed drifts (see DESIGN.md), so
compare figures only within one run.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

PYTHON = sys.executable
BENCH_SECRET_KEY = "bench-dispatch-" + "k" * 50  # a throwaway key for throwaway databases
WORKER_TOKEN = "bench-worker-token"  # noqa: S105 - the reference worker's token on loopback
# DEBUG off is production, which redirects plain HTTP to HTTPS, sends cookies over HTTPS only
# and calls no worker on loopback; a benchmark serves plain HTTP on 127.0.0.1 with its workers there.
LOCAL_PRODUCTION = {
    "SECURE_SSL_REDIRECT": "false",
    "SESSION_COOKIE_SECURE": "false",
    "CSRF_COOKIE_SECURE": "false",
    "EGRESS_ALLOWED_NETWORKS": "127.0.0.0/8",
    # DEBUG off needs a keystore: one master key for this run, shared by every process it starts.
    "KEYSTORE_URL": "env://",
    "AGENCY_MASTER_KEYS": Fernet.generate_key().decode(),
}
WORKER_NAME = "bench-ref"
CLK_TCK = os.sysconf("SC_CLK_TCK")


# --- environment and databases ------------------------------------------------------------------


def base_env(**extra: str | None) -> dict[str, str]:
    """The environment of every Django process of a benchmark (the driver's children and itself).

    DEBUG off (no query log growing in long runs), a fixed SECRET_KEY, and one master key for
    the run so that all processes decrypt the worker token alike. ``extra`` values of None remove a variable.
    """
    env = dict(os.environ)
    for name in ("DATABASE_URL", "REDIS_URL", "SQLITE_PATH", "AGENCY_LEASE_S", "AGENCY_POLL_S", "AGENCY_REAP_S"):
        env.pop(name, None)
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings",
        DEBUG="false",
        SECRET_KEY=BENCH_SECRET_KEY,
        ALLOWED_HOSTS="127.0.0.1,localhost",
        PYTHONUNBUFFERED="1",
        **LOCAL_PRODUCTION,
    )
    for name, value in extra.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def postgres_url(database: str, *, fresh: bool = True, template: str = "") -> str:
    """Start ``scripts/pg-cluster`` (reused if running) and return the URL of ``database`` on it.

    ``fresh``: drop and create the database first (from ``template`` when given), so that its
    schema is exactly what this checkout's migrations make. The audit table is append-only
    (its triggers refuse DELETE and TRUNCATE), so a fresh database is also how a run starts
    from empty tables (docs/audit.md: "drop the PostgreSQL database to start afresh").
    """
    subprocess.run([ROOT / "scripts" / "pg-cluster", "start"], check=True, stderr=subprocess.DEVNULL)
    base = subprocess.run(
        [ROOT / "scripts" / "pg-cluster", "url"], check=True, capture_output=True, text=True
    ).stdout.strip()
    url = base.rsplit("/", 1)[0] + "/" + database
    recreate_database(url, fresh=fresh, template=template)
    return url


def recreate_database(url: str, *, fresh: bool = True, template: str = "") -> None:
    """Create the database of ``url`` if missing; ``fresh``: drop it first (copy ``template``)."""
    import psycopg

    admin_url, database = url.rsplit("/", 1)
    with psycopg.connect(f"{admin_url}/postgres", autocommit=True) as conn:
        if fresh:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [database]).fetchone():
            suffix = f' TEMPLATE "{template}"' if template else ""
            conn.execute(f'CREATE DATABASE "{database}"{suffix}')


def redis_url() -> str:
    subprocess.run([ROOT / "scripts" / "redis-server", "start"], check=True, stderr=subprocess.DEVNULL)
    return subprocess.run(
        [ROOT / "scripts" / "redis-server", "url"], check=True, capture_output=True, text=True
    ).stdout.strip()


# A second scripts/pg-cluster, with PostgreSQL's stock durability (fsync, synchronous_commit and
# full_page_writes on) as the Celery baseline's cluster has: the usual one is a test cluster with
# all three off, which spares every commit its WAL flush to disk and so flatters any benchmark
# that commits once per task (../shared/bench/celery's producer does, and so does task_create).
DURABLE_PG_ENV = {
    "PGC_DATA": os.environ.get("BENCH_DURABLE_PGC_DATA", "/tmp/agency-pg-durable"),  # noqa: S108 - a throwaway cluster
    "PGC_PORT": os.environ.get("BENCH_DURABLE_PGC_PORT", "55442"),
}
DURABLE_SETTINGS = {"fsync": "on", "synchronous_commit": "on", "full_page_writes": "on"}


def use_durable_postgres() -> None:
    """Make ``scripts/pg-cluster`` (in this process and every process it starts) mean the
    durable cluster; :func:`postgres_url` then starts it and :func:`make_durable` sets it up."""
    os.environ.update(DURABLE_PG_ENV)


def pg_cluster_running() -> bool:
    return subprocess.run([ROOT / "scripts" / "pg-cluster", "status"], capture_output=True).returncode == 0


def pg_cluster_stop() -> None:
    subprocess.run([ROOT / "scripts" / "pg-cluster", "stop"], check=False, stderr=subprocess.DEVNULL)


def make_durable() -> dict[str, str]:
    """Turn the running cluster's durability on and return the settings it then shows.

    ALTER SYSTEM writes postgresql.auto.conf, which is read after the settings file that
    scripts/pg-cluster rewrites on every start, so the cluster stays durable across restarts.
    All three settings take a reload, not a restart.
    """
    psql = [ROOT / "scripts" / "pg-cluster", "psql", "-d", "postgres", "-qAt", "-v", "ON_ERROR_STOP=1"]
    statements = [f"ALTER SYSTEM SET {name} = {value}" for name, value in DURABLE_SETTINGS.items()]
    subprocess.run([*psql, *(arg for sql in [*statements, "SELECT pg_reload_conf()"] for arg in ("-c", sql))],
                   check=True, capture_output=True)  # fmt: skip
    shown: dict[str, str] = {}
    for _ in range(50):  # the reload is asynchronous
        out = subprocess.run(
            [*psql, "-c", "SELECT name, setting FROM pg_settings WHERE name IN ('fsync', 'synchronous_commit', "
             "'full_page_writes')"],
            check=True, capture_output=True, text=True,
        ).stdout  # fmt: skip
        shown = dict(line.split("|", 1) for line in out.split())
        if shown == DURABLE_SETTINGS:
            break
        time.sleep(0.1)
    return shown


def migrate(env: dict[str, str]) -> None:
    subprocess.run([PYTHON, "manage.py", "migrate", "--verbosity", "0"], cwd=ROOT, env=env, check=True)


def setup_django(env: dict[str, str]) -> None:
    """Configure this process from ``env`` and set Django up (once per process)."""
    for name in ("DATABASE_URL", "REDIS_URL", "SQLITE_PATH"):
        os.environ.pop(name, None)
    os.environ.update(env)
    import django

    django.setup()


def log_to_file(path: Path) -> None:
    """Send this process's logging (Django's console handler) to ``path`` instead of stderr."""
    import logging

    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(threadName)s %(message)s"))
    root.addHandler(handler)


def analyze() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")


# --- the data a benchmark runs on ---------------------------------------------------------------


def register_worker(url: str, *, capacity: int, name: str = WORKER_NAME, token: str = WORKER_TOKEN) -> None:
    """Register the reference worker (token through the model's encrypting setter)."""
    from tasks.models import Worker

    worker = Worker.objects.filter(name=name).first() or Worker(name=name)
    worker.base_url = url
    worker.capabilities = ["reference"]
    worker.max_concurrency = capacity
    worker.enabled = True
    worker.token = token
    worker.save()


def echo_spec(**extra: Any) -> dict[str, Any]:
    return {"title": "bench echo", "capabilities": ["reference"], "input": {"kind": "echo", "n": 1}, **extra}


# The Celery baseline's working spec and worker result (../shared/bench/celery/common.py), in this
# project's spec: about 1 KB of spec, and an echo input that makes the reference worker answer
# with about 1 KB of result (output, three files created inside the scope, rationale).
_CELERY_PROMPT = (
    "Refactor the retry helper in the payments client so that transient HTTP errors "
    "(timeouts, 429, 5xx) are retried with exponential backoff and full jitter, while 4xx "
    "responses fail fast. Keep the public signature unchanged, add unit tests for each branch, "
    "and update the changelog entry. Do not touch the billing models or migrations."
)
_CELERY_OUTPUT = (
    "Implemented exponential backoff with full jitter in retry.py, routed client calls "
    "through it, and added six unit tests covering 2xx, 404, 429, 503 and timeout paths. "
    "All tests pass locally."
)
_CELERY_FILES = [  # creates, not the baseline's diffs: a diff needs the file in the worker's workspace (serve)
    {
        "path": "src/payments/retry.py",
        "operation": "create",
        "content": "def call_with_retry(fn, *, attempts=3, base=0.1):\n"
        "    delay = random.uniform(0, base * 2 ** attempts)\n",
    },
    {
        "path": "src/payments/client.py",
        "operation": "create",
        "content": "class Client:\n    def send(self, req):\n        return call_with_retry(lambda: self._send(req))\n",
    },
    {
        "path": "tests/payments/test_retry.py",
        "operation": "create",
        "content": "def test_retries_503(client):\n    assert client.get('/flaky').status == 200\n",
    },
]


def celery_like_spec(i: int) -> dict[str, Any]:
    """The Celery baseline's task ``i``: the same text, scope, budget and acceptance, and a result
    of the same size. Its three files are created with their content rather than changed by diffs
    (a diff needs the file in the worker's workspace, as serve's worker has one), and the
    baseline's stub body (``...``) is a real line, which the gates accept."""
    return {
        "title": f"Task {i:06d}: harden payments client retries",
        "description": _CELERY_PROMPT,
        "risk_tier": 2,
        "mode": "refactor",
        "scope": {
            "in": ["src/payments/client.py", "src/payments/retry.py", "tests/payments/"],
            "out": ["src/billing/", "migrations/"],
        },
        "change_budget": {"max_files": 8, "max_lines": 300},
        "acceptance": [
            {"id": "A1", "given": "a 503 response", "when": "the client calls", "then": "it retries up to 3 times"},
            {"id": "A2", "given": "a 404 response", "when": "the client calls", "then": "it raises immediately"},
            {"id": "A3", "given": "the test suite", "when": "it runs", "then": "all tests pass"},
        ],
        "capabilities": ["reference"],
        "input": {
            "kind": "echo",
            "output": _CELERY_OUTPUT,
            "files_modified": _CELERY_FILES,
            "rationale": "Retry policy centralised; 4xx never retried so that bad requests surface immediately.",
            "self_assessment": {"confidence": 0.82, "quality_score": 0.9, "concerns": ["jitter in timing tests"]},
        },
    }


PAYLOADS = ("echo", "celery")


def task_spec(payload: str, i: int) -> dict[str, Any]:
    """Task ``i`` of a benchmark: the minimal ``echo`` spec, or the Celery baseline's (``celery``)."""
    return celery_like_spec(i) if payload == "celery" else echo_spec()


def sleep_spec(seconds: float, interval_s: float, **extra: Any) -> dict[str, Any]:
    return {
        "title": "bench sleep",
        "capabilities": ["reference"],
        "input": {"kind": "sleep", "seconds": seconds, "interval_s": interval_s},
        **extra,
    }


def bulk_create_tasks(specs: Sequence[dict[str, Any]], *, batch: int = 1000) -> list[str]:
    """Queue tasks exactly as ``tasks.services.task_create`` would (task, ``created`` event,
    ``task.create`` audit record, validated spec), but with bulk INSERTs in one transaction,
    so that creation is not part of any dispatch timing. One ``work`` signal on commit."""
    from django.db import transaction

    from audit.services import AuditEntry, audit_records
    from tasks.dispatch import bus
    from tasks.models import Priority, Task, TaskEvent
    from tasks.spec import validate_spec

    cleaned: dict[str, dict[str, Any]] = {}
    ids: list[str] = []
    with transaction.atomic():
        for start in range(0, len(specs), batch):
            tasks = []
            for spec in specs[start : start + batch]:
                key = json.dumps(spec, sort_keys=True)
                clean = cleaned.get(key)
                if clean is None:
                    clean = cleaned[key] = validate_spec(spec)
                tasks.append(
                    Task(
                        title=clean["title"],
                        spec=clean,
                        priority=Priority.from_name(clean["priority"]),
                        risk_tier=clean["risk_tier"],
                        max_attempts=clean["max_attempts"],
                        event_seq=1,
                    )
                )
            Task.objects.bulk_create(tasks)
            TaskEvent.objects.bulk_create(
                TaskEvent(task=t, seq=1, type="created", data={"state": "queued", "actor": "system"}) for t in tasks
            )
            audit_records(  # the hash-chained audit log's own bulk writer
                [
                    AuditEntry(
                        actor="system",
                        action="task.create",
                        resource_type="task",
                        resource_id=str(t.pk),
                        data={"title": t.title, "priority": t.spec["priority"], "risk_tier": t.risk_tier},
                    )
                    for t in tasks
                ]
            )
            ids.extend(str(t.pk) for t in tasks)
        bus.publish({"kind": "work"})
    return ids


def state_counts() -> dict[str, int]:
    from django.db.models import Count

    from tasks.models import Task

    return {row["state"]: row["n"] for row in Task.objects.values("state").annotate(n=Count("id"))}


def count_in(states: Iterable[str]) -> int:
    from tasks.models import Task

    return Task.objects.filter(state__in=list(states)).count()


# --- processes ----------------------------------------------------------------------------------


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen
    log_path: Path | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_text(self) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")


PROCS: list[Proc] = []


def spawn(
    name: str, cmd: Sequence[str], *, env: dict[str, str], log_path: Path | None = None, stdout_pipe: bool = False
) -> Proc:
    """Start ``cmd`` as the leader of a new process group, output to ``log_path`` (or a pipe)."""
    log = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115 - closed right after Popen
    try:
        popen = subprocess.Popen(
            list(cmd),
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if stdout_pipe else log,
            stderr=log,
            start_new_session=True,
        )
    finally:
        if log_path:
            log.close()
    proc = Proc(name, popen, log_path)
    PROCS.append(proc)
    return proc


def kill_group(proc: Proc, sig: int = signal.SIGKILL) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def stop(proc: Proc, grace_s: float = 10.0) -> None:
    """SIGTERM the process group, SIGKILL it after ``grace_s``; always reaps."""
    if proc.alive():
        kill_group(proc, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.popen.wait(grace_s)
    kill_group(proc, signal.SIGKILL)  # leftovers of the group, if any
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.popen.wait(5)
    if proc.popen.stdout is not None:
        proc.popen.stdout.close()
    if proc in PROCS:
        PROCS.remove(proc)


def shield_cleanup() -> None:
    """From here on, ignore SIGTERM and SIGINT: a second signal must not cut short the clean-up
    that stops every process we started (the first one is what brought us here)."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def stop_all(grace_s: float = 10.0) -> None:
    for proc in list(reversed(PROCS)):
        stop(proc, grace_s)


def start_worker(*, capacity: int, tmp: Path, request_log: bool = False, extra: Sequence[str] = ()) -> Proc:
    """A reference worker process on 127.0.0.1 (``python -m tasks.reference_worker --port 0``)."""
    cmd = [PYTHON, "-m", "tasks.reference_worker", "--port", "0", "--capacity", str(capacity)]
    cmd += ["--token", WORKER_TOKEN, "--drain-timeout", "0", *extra]
    if request_log:
        cmd += ["--request-log", str(tmp / "worker-requests.jsonl")]
    proc = spawn("worker", cmd, env=base_env(), log_path=tmp / "worker.log", stdout_pipe=True)
    assert proc.popen.stdout is not None
    ready, _, _ = select.select([proc.popen.stdout], [], [], 15)
    line = proc.popen.stdout.readline().decode() if ready else ""
    if not line.startswith("listening on "):
        raise RuntimeError(f"reference worker did not start: {line!r} {proc.log_text()[-2000:]}")
    proc.info["url"] = line.removeprefix("listening on ").strip()
    if request_log:
        proc.info["request_log"] = tmp / "worker-requests.jsonl"
    return proc


def start_dispatcher(
    *, env: dict[str, str], tmp: Path, concurrency: int, dispatcher_id: str, lease_s: float | None = None
) -> Proc:
    cmd = [PYTHON, "manage.py", "dispatch", "--concurrency", str(concurrency), "--id", dispatcher_id]
    cmd += ["--grace", "2"]
    if lease_s is not None:
        cmd += ["--lease", str(lease_s)]
    proc = spawn(f"dispatch {dispatcher_id}", cmd, env=env, log_path=tmp / f"dispatch-{dispatcher_id}.log")
    proc.info["id"] = dispatcher_id
    return proc


def read_line(proc: Proc, prefix: str, timeout_s: float) -> str:
    """The rest of the next line that ``proc`` prints (on its stdout pipe) starting with ``prefix``.

    Reads the pipe's descriptor itself, so that no line waits in a file object's buffer while
    ``select`` says there is nothing to read.
    """
    assert proc.popen.stdout is not None
    fd = proc.popen.stdout.fileno()
    buffer: bytes = proc.info.setdefault("_stdout", b"")
    deadline = time.monotonic() + timeout_s
    while True:
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            proc.info["_stdout"] = buffer
            text = line.decode(errors="replace")
            if text.startswith(prefix):
                return text[len(prefix) :].strip()
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise RuntimeError(
                f"{proc.name}: no {prefix.strip()!r} line in {timeout_s:.0f} s: {proc.log_text()[-3000:]}"
            )
        ready, _, _ = select.select([fd], [], [], min(remaining, 1.0))
        if ready:
            chunk = os.read(fd, 65536)
            if not chunk:
                raise RuntimeError(f"{proc.name} exited ({proc.popen.poll()}): {proc.log_text()[-3000:]}")
            buffer += chunk
            proc.info["_stdout"] = buffer


def wait_for_log(proc: Proc, needle: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if needle in proc.log_text():
            return
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited ({proc.popen.returncode}): {proc.log_text()[-3000:]}")
        time.sleep(0.05)
    raise RuntimeError(f"{proc.name} not ready in {timeout_s} s: {proc.log_text()[-3000:]}")


def wait_until(predicate: Callable[[], Any], *, timeout_s: float, every_s: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(every_s)


# --- measuring ------------------------------------------------------------------------------------


def rss_kb(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _proc_cpu_s(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime


def _postgres_pids() -> list[int]:
    """The processes of the ``scripts/pg-cluster`` server (its postmaster and its children).

    Only that cluster's: other PostgreSQL servers on the machine (another checkout's tests)
    count as "other" load.
    """
    data = Path(os.environ.get("PGC_DATA", "/tmp/agency-pg"))  # noqa: S108 - scripts/pg-cluster's default
    try:
        postmaster = int((data / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return []
    pids = [postmaster]
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == postmaster:
            pids.append(int(entry.name))
    return pids


def redis_pids() -> list[int]:
    """The ``scripts/redis-server`` process (its pid file), when it runs."""
    path = Path(os.environ.get("REDIS_DIR", "/tmp/agency-redis")) / "redis.pid"  # noqa: S108 - the script's default
    try:
        pid = int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return []
    return [pid] if Path(f"/proc/{pid}").exists() else []


def _machine_cpu() -> tuple[float, float]:
    """(busy, total) jiffies from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    total = sum(values[:8])
    return total - idle, total


def child_pids(pid: int) -> list[int]:
    """The processes ``pid`` started (any of its threads), from /proc."""
    found: list[int] = []
    for children in Path(f"/proc/{pid}/task").glob("*/children"):
        with contextlib.suppress(OSError):
            found += [int(child) for child in children.read_text().split()]
    return sorted(set(found))


class CpuMeter:
    """CPU seconds per component over an interval, and the machine's busy share."""

    def __init__(self, groups: Callable[[], dict[str, list[int]]]) -> None:
        self._groups = groups
        self._start: dict[str, dict[int, float]] = {}
        self._machine = (0.0, 0.0)
        self._self = 0.0
        self._t0 = 0.0
        self._final: dict[str, dict[int, float]] = {}

    def account_exit(self, group: str, pid: int) -> None:
        """Call just before killing ``pid``: its CPU time is read while it can still be read."""
        self._final.setdefault(group, {})[pid] = _proc_cpu_s(pid)

    def _sample(self) -> dict[str, dict[int, float]]:
        groups = self._groups() | {"postgres": _postgres_pids()}
        return {name: {pid: _proc_cpu_s(pid) for pid in pids} for name, pids in groups.items()}

    def start(self) -> None:
        self._start = self._sample()
        self._machine = _machine_cpu()
        times = os.times()
        self._self = times.user + times.system
        self._t0 = time.monotonic()

    def stop(self) -> dict[str, Any]:
        end = self._sample()
        for name, finals in self._final.items():
            for pid, seconds in finals.items():
                end.setdefault(name, {}).setdefault(pid, seconds)
        busy0, total0 = self._machine
        busy1, total1 = _machine_cpu()
        times = os.times()
        wall = time.monotonic() - self._t0
        used = {}
        for name, pids in end.items():
            before = self._start.get(name, {})
            used[name] = round(sum(t - before.get(pid, 0.0) for pid, t in pids.items()), 2)
        used["bench driver"] = round(times.user + times.system - self._self, 2)
        busy_s = (busy1 - busy0) / CLK_TCK
        return {
            "wall_s": round(wall, 2),
            "machine_busy_pct": round(100 * (busy1 - busy0) / max(1, total1 - total0), 1),
            "cpu_s": used,
            # Whatever else ran on the machine meanwhile (other sessions' tests...): figures of a
            # run with much of it are suspect.
            "other_cpu_s": round(max(0.0, busy_s - sum(used.values())), 1),
        }


def cpu_ms_per_task(
    cpu: dict[str, Any], tasks: int, *, dispatcher: Sequence[str], producer: Sequence[str]
) -> dict[str, float]:
    """CPU ms a task: of the dispatcher process(es), of the producer, and of every process measured
    together (dispatchers, worker, PostgreSQL, producer, API server, Redis, the polling driver)."""
    used = cpu["cpu_s"]

    def ms(names: Iterable[str]) -> float:
        return round(1000 * sum(used.get(name, 0.0) for name in names) / max(1, tasks), 3)

    return {"dispatcher": ms(dispatcher), "producer": ms(producer), "all": ms(used)}


def machine_busy_pct(seconds: float) -> float:
    busy0, total0 = _machine_cpu()
    time.sleep(seconds)
    busy1, total1 = _machine_cpu()
    return 100 * (busy1 - busy0) / max(1, total1 - total0)


def wait_for_quiet(*, below_pct: float = 15.0, max_wait_s: float = 180.0, log: Callable[[str], None] = print) -> float:
    """Wait (up to ``max_wait_s``) until the machine is nearly idle, so that a run does not share
    the 2 cores with someone else's work; returns the last busy share seen."""
    deadline = time.monotonic() + max_wait_s
    busy = machine_busy_pct(1.0)
    waited = False
    while busy >= below_pct and time.monotonic() < deadline:
        if not waited:
            log(f"  machine {busy:.0f} % busy before the run: waiting for it to settle (up to {max_wait_s:.0f} s)")
            waited = True
        busy = machine_busy_pct(2.0)
    if busy >= below_pct:
        log(f"  machine still {busy:.0f} % busy: running anyway (see 'other CPU s')")
    return busy


def percentile(values: Sequence[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def print_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    cells = [[str(h) for h in headers]] + [[_fmt(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    print(f"\n{title}")
    for index, row in enumerate(cells):
        line = "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True)))
        print(line.rstrip())
        if index == 0:
            print("  ".join("-" * w for w in widths))
    sys.stdout.flush()


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if value != value:  # NaN
            return "-"
        return f"{value:,.1f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def cpu_note(cpu: dict[str, Any]) -> str:
    parts = ", ".join(f"{name} {seconds:.1f}" for name, seconds in cpu["cpu_s"].items())
    return (
        f"wall {cpu['wall_s']:.1f} s, machine busy {cpu['machine_busy_pct']:.0f} % of 2 cores; CPU s: {parts}, "
        f"other processes {cpu.get('other_cpu_s', 0):.1f}"
    )


def serve_asgi(env: dict[str, str], port: int, *, timeout_s: float = 20.0) -> subprocess.Popen:
    """The real ASGI app under daphne (one process) on 127.0.0.1:``port``, once /healthz answers."""
    import requests

    server = subprocess.Popen(
        [PYTHON, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "config.asgi:application"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
            return server
        except requests.ConnectionError:
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                raise RuntimeError(f"daphne on port {port} did not answer /healthz within {timeout_s:g} s") from None
            time.sleep(0.1)
