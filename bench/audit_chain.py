"""What the audit hash chain costs (issue 4): records/s with and without chaining, and verify time.

    .venv/bin/python bench/audit_chain.py                    # PostgreSQL and SQLite (about 3 min)
    .venv/bin/python bench/audit_chain.py --quick            # smoke run
    .venv/bin/python bench/audit_chain.py --verify 1000000   # also fill 1M records and time verify/export/pages
    .venv/bin/python bench/audit_chain.py --only sqlite

*chained* is ``audit.services.audit_record`` (chain lock, head read, canonical
JSON, SHA-256, INSERT); *plain* writes the same row with ``Model.objects.create``
and a ready-made seq and hash: the INSERT alone. Both run in transactions of 1,
10 or 100 records (the dispatcher's writer puts a whole batch of reports in one
transaction), from 1 thread and from 4 threads (each its own connection). The
pairs run side by side, alternating, best of ``--rounds``: this VM's speed drifts
(DESIGN.md), so compare figures only within one run.

PostgreSQL is the cluster of scripts/pg-cluster with a database of this
benchmark's own (``agency_bench_audit``, created if missing, emptied between
runs as its owner: the audit table refuses TRUNCATE otherwise); SQLite is a fresh
file. Each backend runs in a child process with its own settings.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from _common import LOCAL_PRODUCTION  # bench/ is on sys.path when run as a script

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
DATABASE = "agency_bench_audit"


def child_env(backend: str, sqlite_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "SQLITE_PATH")}
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings",
        DEBUG="false",
        SECRET_KEY="bench-audit-" + "k" * 50,
        ALLOWED_HOSTS="testserver,localhost",
        DB_POOL_MAX_SIZE="8",
        **LOCAL_PRODUCTION,
    )
    if backend == "postgres":
        env["DATABASE_URL"] = postgres_url()
    else:
        env["SQLITE_PATH"] = str(sqlite_path)
    return env


def postgres_url() -> str:
    """Start scripts/pg-cluster (reused if running) and return the URL of this benchmark's database."""
    import psycopg

    script = ROOT / "scripts" / "pg-cluster"
    subprocess.run([script, "start"], check=True, stderr=subprocess.DEVNULL)
    base = subprocess.run([script, "url"], check=True, stdout=subprocess.PIPE, text=True).stdout.strip()
    with psycopg.connect(base.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DATABASE]).fetchone():
            conn.execute(f'CREATE DATABASE "{DATABASE}"')
    return base.rsplit("/", 1)[0] + "/" + DATABASE


# --- the child: one backend ------------------------------------------------------------------


def purge() -> None:
    """Empty the audit table as its owner (the benchmark's database is ours)."""
    from django.db import connection

    from audit.triggers import append_only_lifted

    with append_only_lifted(connection), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("TRUNCATE audit_auditrecord")
        else:
            cursor.execute("DELETE FROM audit_auditrecord")
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE audit_auditrecord")


_plain_seq = itertools.count(1)


def write(mode: str, *, transactions: int, batch: int, thread: int) -> None:
    from django.db import connection, transaction

    from audit.models import AuditRecord
    from audit.services import audit_record

    try:
        for t in range(transactions):
            with transaction.atomic():
                for i in range(batch):
                    fields = {
                        "actor": f"dispatcher:bench-{thread}",
                        "action": "task.complete",
                        "resource_type": "task",
                        "resource_id": f"{thread}-{t}-{i}",
                        "data": {"attempt": 1, "worker": "bench-ref"},
                    }
                    if mode == "chained":
                        audit_record(**fields)
                    else:
                        AuditRecord.objects.create(**fields, seq=next(_plain_seq), prev_hash="0" * 64, hash="f" * 64)
    finally:
        connection.close()


def timed_run(mode: str, *, threads: int, batch: int, records: int) -> float:
    """Records per second for ``records`` written by ``threads`` threads in transactions of ``batch``."""
    purge()
    per_thread = max(1, records // threads // batch)
    workers = [
        threading.Thread(target=write, args=(mode,), kwargs={"transactions": per_thread, "batch": batch, "thread": n})
        for n in range(threads)
    ]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - started
    if mode == "chained":
        from audit.verification import verify_chain

        check(verify_chain(), per_thread * batch * threads)
    return per_thread * batch * threads / elapsed


def check(report: Any, expected: int) -> None:
    """A benchmark that broke the chain measured nothing worth printing."""
    if not report.intact or report.verified != expected:
        raise RuntimeError(f"chain not intact after the run: {report}")


def throughput(records: int, rounds: int) -> list[dict[str, Any]]:
    rows = []
    for threads in (1, 4):
        for batch in (1, 10, 100):
            best: dict[str, float] = {"plain": 0.0, "chained": 0.0}
            for _ in range(rounds):
                for mode in ("plain", "chained"):
                    best[mode] = max(best[mode], timed_run(mode, threads=threads, batch=batch, records=records))
            rows.append({"threads": threads, "batch": batch, **best})
    return rows


def big_log(n: int) -> dict[str, float]:
    """Fill ``n`` chained records, then time verify_chain, the export and a few reads."""
    from io import StringIO

    from django.contrib.auth.models import User
    from django.core.management import call_command
    from django.db import connection, transaction
    from django.test import Client

    from audit.services import AuditEntry, audit_records
    from audit.verification import verify_chain

    purge()
    started = time.perf_counter()
    actions = ["task.create", "task.start", "task.complete", "task.cancel", "task.fail", "worker.breaker_open"]
    step = 5000
    for start in range(0, n, step):
        entries = [
            AuditEntry(
                actor=f"dispatcher:d{i % 3}",
                action=actions[i % len(actions)],
                resource_type="task",
                resource_id=f"{i // 3:08x}",
                data={"attempt": 1 + i % 3, "worker": "bench-ref", "n": i},
            )
            for i in range(start, min(n, start + step))
        ]
        with transaction.atomic():
            audit_records(entries)
    fill_s = time.perf_counter() - started
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE audit_auditrecord")

    started = time.perf_counter()
    check(verify_chain(), n)
    verify_s = time.perf_counter() - started

    started = time.perf_counter()
    out = StringIO()
    call_command("export_audit", "--since", "2000-01-01", stdout=out)
    export_s = time.perf_counter() - started
    assert out.getvalue().count("\n") == n

    user = User.objects.filter(username="bench-admin").first() or User.objects.create_superuser("bench-admin")
    client = Client()
    client.force_login(user)

    def best_ms(url: str, params: dict[str, str] | None = None) -> float:
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            response = client.get(url, params or {})
            times.append((time.perf_counter() - t0) * 1000)
            assert response.status_code == 200, (url, response.status_code)
        return min(times)

    return {
        "records": n,
        "fill_s": fill_s,
        "verify_s": verify_s,
        "verify_per_s": n / verify_s,
        "export_s": export_s,
        "api_first_page_ms": best_ms("/api/v1/audit"),
        "api_action_page_ms": best_ms("/api/v1/audit", {"action": "task.cancel"}),
        "api_two_actions_ms": best_ms("/api/v1/audit", {"action": "task.cancel,task.fail"}),
        "api_old_window_ms": best_ms("/api/v1/audit", {"until": "2100-01-01", "actor": "dispatcher:d1"}),
        "admin_changelist_ms": best_ms("/admin/audit/auditrecord/"),
        "admin_filtered_ms": best_ms("/admin/audit/auditrecord/", {"action": "task.cancel"}),
        "admin_search_ms": best_ms("/admin/audit/auditrecord/", {"q": "dispatcher:d2"}),
    }


def child(args: argparse.Namespace) -> None:
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    result: dict[str, Any] = {"throughput": throughput(args.records, args.rounds)}
    if args.verify:
        result["big"] = big_log(args.verify)
    purge()
    print(json.dumps(result))


# --- the driver --------------------------------------------------------------------------------


def cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.0f}" if value >= 100 else f"{value:.2f}"
    return str(value)


def table(headers: list[str], rows: list[list[Any]]) -> str:
    cells = [[cell(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(headers, widths, strict=True))]
    lines += ["  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default="postgres,sqlite", help="postgres,sqlite (comma-separated)")
    parser.add_argument("--records", type=int, default=4000, help="records per timed run")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per pair; the best counts")
    parser.add_argument("--verify", type=int, default=0, metavar="N", help="also time verify/export over N records")
    parser.add_argument("--quick", action="store_true", help="400 records, 1 round")
    parser.add_argument("--child", choices=["postgres", "sqlite"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.records, args.rounds = 400, 1
    if args.child:
        child(args)
        return

    print(f"audit chain benchmark: {args.records} records a run, best of {args.rounds}; {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory(prefix="bench-audit-") as tmp:
        for backend in args.only.split(","):
            env = child_env(backend, Path(tmp) / "bench.sqlite3")
            env["DATA_DIR"] = tmp
            Path(tmp, "static").mkdir(exist_ok=True)
            command = [sys.executable, __file__, "--child", backend, "--records", str(args.records)]
            command += ["--rounds", str(args.rounds), "--verify", str(args.verify)]
            started = time.perf_counter()
            out = subprocess.run(command, cwd=ROOT, env=env, check=True, stdout=subprocess.PIPE, text=True).stdout
            result = json.loads(out.strip().splitlines()[-1])
            print(f"\n== {backend} ({time.perf_counter() - started:.0f} s)")
            rows = [
                [r["threads"], r["batch"], r["plain"], r["chained"], r["chained"] / r["plain"]]
                for r in result["throughput"]
            ]
            print(table(["threads", "records/txn", "plain rec/s", "chained rec/s", "chained/plain"], rows))
            if "big" in result:
                big = result["big"]
                print(
                    f"\n{big['records']:,} chained records: filled in {big['fill_s']:.1f} s (audit_records, 5,000/txn)"
                )
                print(f"  verify_audit walk   {big['verify_s']:.1f} s ({big['verify_per_s']:,.0f} records/s)")
                print(f"  export_audit (all)  {big['export_s']:.1f} s")
                for key in (k for k in big if k.endswith("_ms")):
                    print(f"  {key[:-3]:<20}{big[key]:.1f} ms (best of 5)")


if __name__ == "__main__":
    main()
