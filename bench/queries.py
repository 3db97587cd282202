"""Saved queries on a million tasks: the first page through the API, and the CSV export's memory.

    .venv/bin/python bench/queries.py                      # both databases, 1,000,000 tasks
    .venv/bin/python bench/queries.py --database sqlite --rows 1000000 --requests 100

For each database (SQLite, the embedded default, in a file of its own under /tmp; PostgreSQL on
the throwaway cluster of ``scripts/pg-cluster``, database ``agency_bench_queries``, with the
read-only role made by the same ``grant_readonly`` as ``manage.py create_readonly_role``) it
seeds ``--rows`` tasks with one INSERT … SELECT (kept between runs), saves three queries, serves
the real ASGI app with daphne (one process, DEBUG off) on 127.0.0.1, and measures over HTTP:

- ``POST /api/v1/queries/{id}/run`` with ``limit`` 500 (a token), p50 / p95 / max of
  ``--requests`` runs of each query: the newest failed tasks (an index range), the first rows
  of the whole table, and a count by state (the whole table read: no index can answer it);
- the CSV export of the page (``POST /queries/{id}/export.csv`` with a session) of 10,000,
  100,000 and 1,000,000 rows: bytes, time, and the server's RSS sampled every 10 ms — its growth
  over the RSS before the export. Constant memory means the growth does not follow the rows.

Every run is a real run: recorded (QueryRun) and audited like any other. Figures are printed,
never asserted: this VM's speed drifts (see DESIGN.md), so compare figures only within one run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import requests
from _common import ROOT, base_env, percentile, postgres_url, rss_kb, serve_asgi  # bench/ is on sys.path as a script
from sse import free_port

BENCH_DB = "agency_bench_queries"
SQLITE_DIR = Path(os.environ.get("BENCH_QUERIES_DIR", "/tmp/agency-bench-queries"))  # noqa: S108 - throwaway data
EXPORT_SIZES = (10_000, 100_000, 1_000_000)

QUERIES = {
    "newest failed tasks (index range)": (
        "SELECT id, title, state, priority, created_at FROM tasks_task WHERE state = :state "
        "ORDER BY created_at DESC, id DESC",
        [{"name": "state", "type": "text", "default": "failed"}],
    ),
    "whole table, first rows": ("SELECT * FROM tasks_task", []),
    "count by state (reads every row)": (
        "SELECT state, count(*) AS tasks FROM tasks_task GROUP BY state ORDER BY tasks DESC",
        [],
    ),
}
EXPORT_SQL = "SELECT id, title, state, priority, risk_tier, created_at FROM tasks_task ORDER BY created_at, id LIMIT :n"

SQLITE_SEED = """
INSERT INTO tasks_task (
    id, title, spec, state, priority, risk_tier, attempt, max_attempts, lease_owner, progress_percent,
    progress_phase, error, event_seq, created_at, updated_at, cancel_reason, violations
)
WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq WHERE i < {rows})
SELECT
    lower(hex(randomblob(16))),
    'Task ' || i || ' ' || (CASE i % 4 WHEN 0 THEN 'refactor billing' WHEN 1 THEN 'fix login'
                                        WHEN 2 THEN 'add rate limit' ELSE 'update docs' END),
    json_object('title', 'Task ' || i, 'priority', 'medium', 'risk_tier', 2),
    (CASE i % 8 WHEN 0 THEN 'queued' WHEN 1 THEN 'running' WHEN 5 THEN 'failed' WHEN 6 THEN 'canceled'
                WHEN 7 THEN 'paused' ELSE 'completed' END),
    (CASE (i / 7) % 5 WHEN 0 THEN 10 WHEN 1 THEN 20 WHEN 2 THEN 20 WHEN 3 THEN 30 ELSE 40 END),
    1 + i % 3, 1, 3, '', 0, '', '', 0,
    strftime('%Y-%m-%d %H:%M:%f', 'now', '-' || ({rows} - i) || ' seconds'),
    strftime('%Y-%m-%d %H:%M:%f', 'now', '-' || ({rows} - i) || ' seconds'),
    '', '[]'
FROM seq
"""


# --- the child: one database -------------------------------------------------------------------


def prepare(database: str, rows: int) -> dict[str, str]:
    """The server's environment for ``database``, migrated and seeded (kept between runs)."""
    if database == "sqlite":
        SQLITE_DIR.mkdir(parents=True, exist_ok=True)
        env = base_env(DATA_DIR=str(SQLITE_DIR), DATABASE_URL="")
    else:
        env = base_env(DATABASE_URL=postgres_url(BENCH_DB, fresh=False))
    env["LOG_LEVEL"] = "WARNING"
    subprocess.run([sys.executable, "manage.py", "migrate", "--verbosity", "0"], cwd=ROOT, env=env, check=True)
    for name in ("DATABASE_URL", "SQLITE_PATH"):
        os.environ.pop(name, None)
    os.environ.update(env)
    import django

    django.setup()
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM tasks_task")
        have = cursor.fetchone()[0]
        if have < rows:
            print(f"seeding {rows - have:,} tasks on {database} ...", flush=True)
            start = time.perf_counter()
            if database == "sqlite":
                cursor.execute(SQLITE_SEED.replace("{rows}", str(rows - have)))
                cursor.execute("ANALYZE")
            else:
                from api import SEED_SQL

                cursor.execute(SEED_SQL, {"rows": rows - have})
                cursor.execute("VACUUM ANALYZE tasks_task")
            print(f"  seeded in {time.perf_counter() - start:.1f} s", flush=True)
    if database == "postgres":
        env["DATABASE_READONLY_URL"] = readonly_role(env["DATABASE_URL"])
    return env


def readonly_role(url: str) -> str:
    """The read-only role of this database, made as ``manage.py create_readonly_role`` makes it."""
    import psycopg

    from metrics.management.commands.create_readonly_role import grant_readonly

    role, password = "bench_queries_ro", "bench-readonly-password"
    socket_dir = os.environ.get("PGC_SOCKET_DIR") or os.environ.get("PGC_DATA", "/tmp/agency-pg") + ".run"  # noqa: S108
    port = url.rsplit(":", 1)[1].split("/", 1)[0]
    with psycopg.connect(f"host={socket_dir} port={port} user=postgres dbname={BENCH_DB}") as conn:
        grant_readonly(conn, role=role, password=password, database=BENCH_DB)
        conn.commit()
    return f"postgres://{role}:{password}@127.0.0.1:{port}/{BENCH_DB}"


def credentials() -> tuple[object, str, str]:
    """The bench admin (user), a token, and a session cookie."""
    from api import credentials as api_credentials
    from django.contrib.auth.models import User

    token, session_key = api_credentials()
    return User.objects.get(username="bench"), token, session_key


def saved_queries(user: object) -> dict[str, str]:
    from metrics.models import SavedQuery
    from metrics.queries import services

    ids = {}
    for name, (sql, parameters) in [*QUERIES.items(), ("export", (EXPORT_SQL, [{"name": "n", "type": "integer"}]))]:
        SavedQuery.objects.filter(owner=user, name=name).delete()
        ids[name] = str(services.query_create(actor=user, name=name, sql=sql, parameters=parameters).pk)
    return ids


class RssSampler(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak, self.done = pid, 0, threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            self.peak = max(self.peak, rss_kb(self.pid) or 0)
            time.sleep(0.01)


def one_database(database: str, rows: int, n_requests: int) -> None:
    env = prepare(database, rows)
    user, token, session_key = credentials()
    ids = saved_queries(user)
    port = free_port()
    server = serve_asgi(env, port)
    base = f"http://127.0.0.1:{port}"
    try:
        api = requests.Session()
        api.headers["Authorization"] = f"Token {token}"
        print(f"\n{rows:,} tasks on {database}: POST /api/v1/queries/{{id}}/run, limit 500, {n_requests} runs each")
        print(f"{'query':40} {'rows':>5} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8} {'db ms p50':>10}")
        for name in QUERIES:
            url = f"{base}/api/v1/queries/{ids[name]}/run"
            api.post(url, json={"limit": 500}, timeout=60).raise_for_status()  # warm-up
            samples, inner, got = [], [], 0
            for _ in range(n_requests):
                start = time.perf_counter()
                response = api.post(url, json={"limit": 500}, timeout=60)
                samples.append((time.perf_counter() - start) * 1000)
                response.raise_for_status()
                body = response.json()
                got, inner = len(body["rows"]), [*inner, body["duration_ms"]]
            print(
                f"{name:40} {got:5d} {statistics.median(samples):8.1f} {percentile(samples, 95):8.1f} "
                f"{max(samples):8.1f} {statistics.median(inner):10.1f}",
                flush=True,
            )

        browser = requests.Session()
        browser.cookies.set("sessionid", session_key)
        page = browser.get(f"{base}/queries/{ids['export']}/", timeout=30)
        page.raise_for_status()
        csrf = browser.cookies.get("csrftoken")
        print(f"\nCSV export on {database} (POST /queries/{{id}}/export.csv, streamed), server RSS sampled every 10 ms")
        print(f"{'rows':>10} {'MB':>8} {'s':>7} {'MB/s':>7} {'RSS before MiB':>15} {'peak growth MiB':>16}")
        for size in EXPORT_SIZES:
            if size > rows:
                continue
            before = rss_kb(server.pid) or 0
            sampler = RssSampler(server.pid)
            sampler.start()
            start = time.perf_counter()
            total = lines = 0
            with browser.post(
                f"{base}/queries/{ids['export']}/export.csv",
                data={"p_n": str(size)},
                headers={"X-CSRFToken": csrf or ""},
                stream=True,
                timeout=600,
            ) as response:
                response.raise_for_status()
                for chunk in response.iter_content(chunk_size=65536):
                    total += len(chunk)
                    lines += chunk.count(b"\n")
            elapsed = time.perf_counter() - start
            sampler.done.set()
            sampler.join()
            assert lines == size + 1, f"expected {size + 1} lines, got {lines}"
            print(
                f"{size:10,d} {total / 1e6:8.1f} {elapsed:7.2f} {total / 1e6 / elapsed:7.1f} "
                f"{before / 1024:15.1f} {(sampler.peak - before) / 1024:16.1f}",
                flush=True,
            )
    finally:
        server.terminate()
        server.wait(timeout=15)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=100)
    args = parser.parse_args()
    if args.database == "both":
        for database in ("sqlite", "postgres"):
            argv = [sys.executable, __file__, "--database", database, "--rows", str(args.rows)]
            subprocess.run([*argv, "--requests", str(args.requests)], check=True)
        return
    sys.path.insert(0, str(ROOT))
    one_database(args.database, args.rows, args.requests)


if __name__ == "__main__":
    main()
