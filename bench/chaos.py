"""Chaos benchmark (issue 3): kill -9 dispatchers while tasks run, then check nothing was lost or done twice.

    .venv/bin/python bench/chaos.py              # 5,000 tasks, 3 dispatchers, a kill every 2-10 s
    .venv/bin/python bench/chaos.py --quick      # 500 tasks, a kill every 1-3 s

PostgreSQL only (``scripts/pg-cluster``, database ``agency_bench_chaos``, dropped and
created afresh first): the coordinator of several dispatcher processes. What runs, all on 127.0.0.1:

- one reference worker process (``python -m tasks.reference_worker``) writing its own
  request log (``--request-log``): the independent record of what it was asked to run;
- ``--dispatchers`` ``manage.py dispatch --id chaos-N --lease L`` processes with
  ``AGENCY_REAP_S`` small, each in its own process group;
- ``--tasks`` tasks queued up front (bulk INSERTs of what ``task_create`` writes): a
  seeded mix of ``sleep`` tasks of ``--sleep-min``..``--sleep-max`` seconds (many in
  flight at each kill) and ``echo`` tasks, with ``max_attempts`` ``--max-attempts`` so
  that kills alone cannot exhaust a task's budget.

Every ``--kill-min``..``--kill-max`` seconds (seeded) a random dispatcher gets SIGKILL;
right after, the attempts it held (``lease_owner`` = its id, still running) are
recorded, and a fresh dispatcher with a new id takes its place. When every task is
terminal (or ``--timeout`` passes) the survivors are stopped and the run is checked:

- **lost**: tasks not in a terminal state;
- **completed twice**: tasks with more than one ``completed`` event, or more than one
  automatic verdict (``task.verdict`` audit record; ``task.complete`` before the gates), and
  ``completed`` tasks with no ``completed`` event;
- from the worker's request log: idempotency keys (``task:attempt``) *executed* more than
  once (the worker's own guarantee), keys *sent* more than once, and tasks whose work was
  delivered under more than one attempt (re-execution after a kill: at-least-once
  delivery, expected, as long as the task completes once);
- **time to reclaim** each orphaned attempt: from the kill to its ``lease_expired`` event
  (whose ``lease_owner`` names the killed dispatcher); and ``lease_expired`` events of
  dispatchers that were *not* killed (a live dispatcher losing its lease);
- how many attempts tasks needed.

Figures are printed, never asserted (DESIGN.md: this VM's speed drifts).
"""

from __future__ import annotations

import argparse
import collections
import json
import random
import shutil
import signal
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as c  # bench/ is on sys.path (above), so this works when run as a script

PG_DATABASE = "agency_bench_chaos"
# Where a task rests when the dispatchers are done with it (awaiting_review: a risk tier 1 verdict).
TERMINAL = ("completed", "failed", "canceled", "awaiting_review")
ACTIVE = ("running", "canceling")


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def make_specs(args: argparse.Namespace, rng: random.Random) -> list[dict[str, Any]]:
    specs = []
    for _ in range(args.tasks):
        if rng.random() < args.echo_share:
            specs.append(c.echo_spec(max_attempts=args.max_attempts))
        else:
            seconds = round(rng.uniform(args.sleep_min, args.sleep_max), 1)
            specs.append(c.sleep_spec(seconds, interval_s=0.25, max_attempts=args.max_attempts))
    return specs


class Chaos:
    def __init__(self, args: argparse.Namespace, env: dict[str, str], tmp: Path) -> None:
        self.args = args
        self.env = env
        self.tmp = tmp
        self.rng = random.Random(args.seed)
        self.live: list[c.Proc] = []
        self.serial = 0
        # (kill time as epoch seconds, dispatcher id, [(task_id, attempt)] it held)
        self.kills: list[tuple[float, str, list[tuple[str, int]]]] = []
        self.unexpected_exits: list[str] = []
        self.worker_pid = 0
        self.meter = c.CpuMeter(lambda: {"dispatchers": [p.pid for p in self.live], "worker": [self.worker_pid]})
        self.cpu: dict[str, Any] = {}

    def start_one(self) -> c.Proc:
        proc = c.start_dispatcher(
            env=self.env,
            tmp=self.tmp,
            concurrency=self.args.concurrency,
            dispatcher_id=f"chaos-{self.serial}",
            lease_s=self.args.lease,
        )
        self.serial += 1
        self.live.append(proc)
        return proc

    def kill_one(self) -> None:
        from tasks.models import Task

        victim = self.rng.choice(self.live)
        self.meter.account_exit("dispatchers", victim.pid)
        killed_at = time.time()
        c.kill_group(victim, signal.SIGKILL)
        victim.popen.wait(10)
        self.live.remove(victim)
        c.stop(victim, grace_s=0)  # reaps and forgets it
        # The dead process can change nothing any more; what it held is what the reaper must give back.
        held = [
            (str(pk), attempt)
            for pk, attempt in Task.objects.filter(lease_owner=victim.info["id"], state__in=ACTIVE).values_list(
                "pk", "attempt"
            )
        ]
        self.kills.append((killed_at, victim.info["id"], held))
        log(f"  kill -9 {victim.info['id']} (pid {victim.pid}): held {len(held)} attempts")
        self.start_one()

    def run(self) -> float:
        args = self.args
        for _ in range(args.dispatchers):
            self.start_one()
        for proc in list(self.live):
            c.wait_for_log(proc, "running (concurrency")
        self.meter.start()
        started = time.monotonic()
        deadline = started + args.timeout
        next_kill = started + self.rng.uniform(args.kill_min, args.kill_max)
        last_report = started
        while time.monotonic() < deadline:
            time.sleep(0.1)
            done = c.count_in(TERMINAL)
            if done >= args.tasks:
                break
            for proc in list(self.live):
                if not proc.alive():
                    self.unexpected_exits.append(f"{proc.info['id']} exited {proc.popen.returncode}")
                    self.live.remove(proc)
                    c.stop(proc, grace_s=0)
                    self.start_one()
            now = time.monotonic()
            if now >= next_kill:
                self.kill_one()
                next_kill = now + self.rng.uniform(args.kill_min, args.kill_max)
            if now - last_report >= 10:
                log(f"  {done:,}/{args.tasks:,} terminal after {now - started:.0f} s, {len(self.kills)} kills")
                last_report = now
        elapsed = time.monotonic() - started
        self.cpu = self.meter.stop()
        log("stopping the surviving dispatchers (SIGTERM)")
        for proc in list(self.live):
            c.stop(proc, grace_s=15)
        self.live.clear()
        return elapsed


def analyse(chaos: Chaos, worker_log: Path, elapsed: float) -> None:
    from django.db.models import Count

    from audit.models import AuditRecord
    from tasks.models import Task, TaskEvent

    args = chaos.args
    states = c.state_counts()
    lost = args.tasks - sum(states.get(s, 0) for s in TERMINAL)  # awaiting_review rests: not lost

    completed_events = collections.Counter(
        dict(
            TaskEvent.objects.filter(type="completed")
            .values("task_id")
            .annotate(n=Count("id"))
            .values_list("task_id", "n")
        )
    )
    complete_audits = collections.Counter(
        dict(
            # task.complete before the gates existed; task.verdict (the automatic verdict) since.
            AuditRecord.objects.filter(action__in=("task.complete", "task.verdict"))
            .values("resource_id")
            .annotate(n=Count("id"))
            .values_list("resource_id", "n")
        )
    )
    completed_ids = {str(pk) for pk in Task.objects.filter(state="completed").values_list("pk", flat=True)}
    twice_events = sum(1 for n in completed_events.values() if n > 1)
    twice_audit = sum(1 for n in complete_audits.values() if n > 1)
    completed_without_event = sum(1 for t in completed_ids if completed_events.get(_uuid(t), 0) == 0)
    event_not_completed = sum(1 for t in completed_events if str(t) not in completed_ids)

    # The worker's own record.
    executed: collections.Counter[str] = collections.Counter()
    sent: collections.Counter[str] = collections.Counter()
    delivered_attempts: dict[str, set[int]] = collections.defaultdict(set)
    for line in worker_log.read_text().splitlines():
        entry = json.loads(line)
        if entry.get("path") != "/execute" or "idempotency_key" not in entry:
            continue
        key = entry["idempotency_key"]
        sent[key] += 1
        if entry.get("outcome") == "executed":
            executed[key] += 1
        if entry.get("delivered") and entry.get("result_status") == "completed":
            delivered_attempts[entry["task_id"]].add(entry["attempt"])
    keys_executed_twice = sum(1 for n in executed.values() if n > 1)
    keys_sent_twice = sum(1 for n in sent.values() if n > 1)
    redone = sum(1 for attempts in delivered_attempts.values() if len(attempts) > 1)

    # Reclaim times.
    expired = list(
        TaskEvent.objects.filter(type="lease_expired").values_list("task_id", "data", "created_at").order_by("id")
    )
    expired_at = {(str(t), d.get("attempt"), d.get("lease_owner")): at for t, d, at in expired}
    killed_ids = {victim for _, victim, _ in chaos.kills}
    reclaim_s: list[float] = []
    never = 0
    per_kill = []
    for killed_at, victim, held in chaos.kills:
        mine = []
        for task_id, attempt in held:
            at = expired_at.get((task_id, attempt, victim))
            if at is None:
                never += 1
            else:
                mine.append(at.timestamp() - killed_at)
        reclaim_s.extend(mine)
        per_kill.append((victim, len(held), max(mine, default=float("nan"))))
    live_lost = sum(1 for _, d, _ in expired if d.get("lease_owner") not in killed_ids)

    attempts = collections.Counter(Task.objects.filter(state="completed").values_list("attempt", flat=True))
    stale = TaskEvent.objects.filter(type__in=("stale_result", "late_result")).count()
    failed_errors = collections.Counter(
        e[:80] for e in Task.objects.filter(state="failed").values_list("error", flat=True)
    )

    c.print_table(
        f"Chaos run: {args.tasks:,} tasks ({1 - args.echo_share:.0%} sleep {args.sleep_min}-{args.sleep_max} s, "
        f"{args.echo_share:.0%} echo), {args.dispatchers} dispatchers x concurrency {args.concurrency}, "
        f"lease {args.lease} s, AGENCY_REAP_S {args.reap}, kill -9 every {args.kill_min}-{args.kill_max} s "
        f"(seed {args.seed})",
        ["figure", "value"],
        [
            ["duration s", elapsed],
            ["kills", len(chaos.kills)],
            ["attempts held by killed dispatchers (orphans)", sum(len(h) for _, _, h in chaos.kills)],
            ["unexpected dispatcher exits", len(chaos.unexpected_exits)],
            ["states", " ".join(f"{k}={v}" for k, v in sorted(states.items()))],
            ["LOST (not completed, failed, canceled or awaiting review)", lost],
            ["COMPLETED TWICE (>1 completed event)", twice_events],
            ["result applied twice (>1 task.verdict/task.complete audit)", twice_audit],
            ["completed state without a completed event", completed_without_event],
            ["completed event on a task not completed", event_not_completed],
            ["worker: (task, attempt) keys EXECUTED more than once", keys_executed_twice],
            ["worker: keys sent more than once (redelivery)", keys_sent_twice],
            ["worker: tasks whose work was delivered under >1 attempt", redone],
            ["stale or late results recorded, not applied", stale],
            ["failed tasks", sum(failed_errors.values())],
        ],
    )
    print(f"  {c.cpu_note(chaos.cpu)}")
    for error, n in failed_errors.most_common(5):
        print(f"  failed x{n}: {error}")
    c.print_table(
        "Time to reclaim an orphaned attempt (kill → lease_expired event; target p99 ≤ 30 s)",
        ["orphans", "reclaimed", "never reclaimed", "p50 s", "p99 s", "max s", "leases lost by live dispatchers"],
        [
            [
                sum(len(h) for _, _, h in chaos.kills),
                len(reclaim_s),
                never,
                c.median(reclaim_s),
                c.percentile(reclaim_s, 99),
                max(reclaim_s, default=float("nan")),
                live_lost,
            ]
        ],
    )
    c.print_table(
        "Attempts needed by completed tasks",
        ["attempts", "tasks"],
        [[k, v] for k, v in sorted(attempts.items())],
    )
    c.print_table("Kills", ["dispatcher", "held", "slowest reclaim s"], [[v, n, s] for v, n, s in per_kill])
    for note in chaos.unexpected_exits:
        print(f"  unexpected exit: {note}")


def _uuid(value: str) -> Any:
    import uuid

    return uuid.UUID(value)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="500 tasks, a kill every 1-3 s.")
    parser.add_argument("--tasks", type=int, default=5000)
    parser.add_argument("--dispatchers", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=16, help="Per dispatcher.")
    parser.add_argument("--lease", type=float, default=3.0, help="Dispatcher --lease seconds.")
    parser.add_argument("--reap", type=float, default=0.5, help="AGENCY_REAP_S of the dispatchers.")
    parser.add_argument("--kill-min", type=float, default=2.0)
    parser.add_argument("--kill-max", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--max-attempts", type=int, default=20)
    parser.add_argument("--echo-share", type=float, default=0.3)
    parser.add_argument("--sleep-min", type=float, default=0.2)
    parser.add_argument("--sleep-max", type=float, default=1.0)
    parser.add_argument("--timeout", type=float, default=900.0, help="Give up (and report) after this many s.")
    parser.add_argument(
        "--quiet-wait", type=float, default=120.0, help="Wait up to this many s for an idle machine first (0: no)."
    )
    parser.add_argument("--keep-tmp", action="store_true", help="Keep the process logs and the worker's request log.")
    args = parser.parse_args(argv)
    if args.quick:
        args.tasks = min(args.tasks, 500)
        args.kill_min, args.kill_max = 1.0, 3.0
        args.timeout = min(args.timeout, 300.0)
    return args


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="bench-chaos-"))

    def terminate(*_: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminate)
    try:
        log(f"PostgreSQL: scripts/pg-cluster start; migrating {PG_DATABASE}")
        url = c.postgres_url(PG_DATABASE)
        env = c.base_env(DATABASE_URL=url, AGENCY_REAP_S=str(args.reap), LOG_LEVEL="INFO")
        c.migrate(env)
        c.setup_django(env)
        c.log_to_file(tmp / "driver.log")
        worker = c.start_worker(capacity=256, tmp=tmp, request_log=True)
        c.register_worker(worker.info["url"], capacity=256)
        log(f"queueing {args.tasks:,} tasks")
        c.bulk_create_tasks(make_specs(args, random.Random(args.seed)))
        c.analyze()
        print(
            f"bench/chaos.py {' '.join(argv)}\n2 CPUs shared by PostgreSQL, the reference worker, "
            f"{args.dispatchers} dispatchers and this driver; {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
            flush=True,
        )
        chaos = Chaos(args, env, tmp)
        chaos.worker_pid = worker.pid
        if args.quiet_wait > 0:
            c.wait_for_quiet(max_wait_s=args.quiet_wait, log=log)
        elapsed = chaos.run()
        c.stop(worker, grace_s=5)  # flushes and closes its request log
        analyse(chaos, tmp / "worker-requests.jsonl", elapsed)
    finally:
        c.shield_cleanup()
        c.stop_all()
        if args.keep_tmp:
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main(sys.argv[1:])
