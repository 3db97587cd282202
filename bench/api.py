"""API and admin latency on a million tasks (PostgreSQL).

    DATABASE_URL=postgres://... .venv/bin/python bench/api.py [--rows 1000000] [--requests 200]

Without DATABASE_URL it starts the throwaway cluster of ``scripts/pg-cluster``
(database ``agency_bench``). It seeds ``--rows`` tasks with SQL
(``generate_series``), 1,000 events on one task, runs ``VACUUM ANALYZE``, then
serves the real ASGI app with daphne on 127.0.0.1 and times, over HTTP with a
token (and a session for the admin), p50 and p95 of:

- a filtered list page (``?state=queued,running&priority=high``),
- a page deep in the keyset cursor (after following ``next`` 200 pages),
- a task detail (the task with 1,000 events),
- the admin task changelist.

Figures are printed, never asserted: this VM's speed drifts (see DESIGN.md).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import requests
from _common import LOCAL_PRODUCTION, serve_asgi  # bench/ is on sys.path when run as a script

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def ensure_database() -> str:
    url = os.environ.get("DATABASE_URL", "")
    if url:
        return url
    subprocess.run([ROOT / "scripts" / "pg-cluster", "start"], check=True)
    base = subprocess.run(
        [ROOT / "scripts" / "pg-cluster", "url"], check=True, capture_output=True, text=True
    ).stdout.strip()
    return base.rsplit("/", 1)[0] + "/agency_bench"


def create_database_if_missing(url: str) -> None:
    import psycopg

    admin_url, name = url.rsplit("/", 1)
    with psycopg.connect(f"{admin_url}/postgres", autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')


SEED_SQL = """
INSERT INTO tasks_task (
    id, title, spec, state, priority, risk_tier, attempt, max_attempts, lease_owner, progress_percent,
    progress_phase, error, event_seq, created_at, updated_at, cancel_reason, violations
)
SELECT
    gen_random_uuid(),
    'Task ' || i || ' ' || (ARRAY['refactor billing', 'fix login', 'add rate limit', 'update docs'])[1 + i %% 4],
    jsonb_build_object('title', 'Task ' || i, 'priority', 'medium', 'risk_tier', 2),
    (ARRAY['queued', 'running', 'completed', 'completed', 'completed', 'failed', 'canceled', 'paused'])[1 + i %% 8],
    (ARRAY[10, 20, 20, 30, 40])[1 + (i / 7) %% 5],
    1 + i %% 3, 1, 3, '', 0, '', '', 0,
    now() - make_interval(secs => %(rows)s - i),
    now() - make_interval(secs => %(rows)s - i),
    '', '[]'::jsonb
FROM generate_series(1, %(rows)s) AS i
"""


def seed(rows: int) -> str:
    """Bring the tasks table to ``rows`` rows; returns the id of the task with 1,000 events."""
    from django.db import connection

    from security.principals import SYSTEM
    from tasks import services
    from tasks.models import Task, TaskEvent

    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM tasks_task")
        have = cursor.fetchone()[0]
    if have < rows:
        print(f"seeding {rows - have:,} tasks ...", flush=True)
        start = time.perf_counter()
        with connection.cursor() as cursor:
            cursor.execute(SEED_SQL, {"rows": rows - have})
            cursor.execute("VACUUM ANALYZE tasks_task")
        print(f"  seeded in {time.perf_counter() - start:.1f} s", flush=True)
    busy = Task.objects.filter(title="bench: busy timeline").first()
    if busy is None:
        busy = services.task_create(spec={"title": "bench: busy timeline"}, actor=SYSTEM)
        TaskEvent.objects.bulk_create(
            TaskEvent(
                task=busy, seq=seq, type="worker.progress", data={"payload": {"percent": seq % 100, "phase": "work"}}
            )
            for seq in range(2, 1001)
        )
        Task.objects.filter(pk=busy.pk).update(event_seq=1000)
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE tasks_taskevent")
    return str(busy.pk)


def credentials() -> tuple[str, str]:
    """A token and an admin session cookie for the bench user."""
    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.auth.models import Group, User
    from django.contrib.sessions.backends.db import SessionStore

    from security.tokens import token_issue

    user, _ = User.objects.get_or_create(username="bench", defaults={"is_staff": True})
    user.groups.add(Group.objects.get(name="admin"))
    _, key = token_issue(user=user, actor="system", name="bench")
    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = settings.AUTHENTICATION_BACKENDS[0]
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.save()
    return key, session.session_key


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def timed(session: requests.Session, url: str, n: int) -> list[float]:
    session.get(url, timeout=30).raise_for_status()  # warm-up
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        response = session.get(url, timeout=30)
        samples.append((time.perf_counter() - start) * 1000)
        response.raise_for_status()
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--port", type=int, default=8799)
    args = parser.parse_args()

    url = ensure_database()
    create_database_if_missing(url)
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ["DEBUG"] = "false"
    os.environ.update(LOCAL_PRODUCTION)
    os.environ.setdefault("SECRET_KEY", "bench-" + "x" * 50)
    os.environ.setdefault("ALLOWED_HOSTS", "127.0.0.1,localhost")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    busy_id = seed(args.rows)
    token, session_key = credentials()

    env = os.environ | {"LOG_LEVEL": "WARNING"}
    server = serve_asgi(env, args.port)
    try:
        base = f"http://127.0.0.1:{args.port}"
        api = requests.Session()
        api.headers["Authorization"] = f"Token {token}"
        api.headers["Accept"] = "application/json"
        admin = requests.Session()
        admin.cookies.set("sessionid", session_key)

        deep = f"{base}/api/v1/tasks?page_size=50"
        for _ in range(200):
            deep = api.get(deep, timeout=30).json()["next"]
        cases = {
            "filtered list page": f"{base}/api/v1/tasks?state=queued,running&priority=high&page_size=50",
            "deep cursor page (200 pages in)": deep,
            "task detail (1,000 events)": f"{base}/api/v1/tasks/{busy_id}",
            "task events page": f"{base}/api/v1/tasks/{busy_id}/events?after=500&limit=100",
            "text search q=billing": f"{base}/api/v1/tasks?q=billing&page_size=50",
        }
        print(f"\n{args.rows:,} tasks on PostgreSQL, {args.requests} requests each, over HTTP (daphne, 1 process)")
        print(f"{'request':40} {'p50 ms':>8} {'p95 ms':>8}")
        for name, case_url in cases.items():
            samples = timed(api, case_url, args.requests)
            print(f"{name:40} {statistics.median(samples):8.1f} {percentile(samples, 95):8.1f}", flush=True)
        admin_samples = timed(admin, f"{base}/admin/tasks/task/", max(20, args.requests // 5))
        print(
            f"{'admin task changelist':40} {statistics.median(admin_samples):8.1f} {percentile(admin_samples, 95):8.1f}"
        )
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    main()
