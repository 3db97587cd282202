"""Every migration of every app goes back to zero and forward again, on the configured database.

Run by .ci/run (phase 7) once on SQLite and once on PostgreSQL, each on an empty database of
its own: ``DJANGO_SETTINGS_MODULE=config.settings .venv/bin/python .ci/migrations_roundtrip.py``.

1. migrate forward, then write a few rows (the admin account and its group, a token, an audit
   record), so that reversing runs against data, as it would in a real rollback;
2. migrate each app to zero, in the reverse of the order they were applied (Django unapplies
   the dependents of an app first);
3. check that nothing is left behind: no table but ``django_migrations``, and no trigger or
   function of ours (the audit log's append-only triggers are raw SQL, the first thing a
   missing ``reverse_code`` would leave);
4. migrate forward again and write the same rows, proving the schema usable.

Any step that raises fails the run (exit 1), naming it.
"""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from django.db.migrations.executor import MigrationExecutor  # noqa: E402


def apps_in_applied_order() -> list[str]:
    executor = MigrationExecutor(connection)
    plan = executor.migration_plan(executor.loader.graph.leaf_nodes(), clean_start=True)
    order: list[str] = []
    for migration, _backwards in plan:
        if migration.app_label not in order:
            order.append(migration.app_label)
    return order


def unapplied() -> list[str]:
    executor = MigrationExecutor(connection)
    return [str(m) for m, _ in executor.migration_plan(executor.loader.graph.leaf_nodes())]


def seed() -> None:
    from django.contrib.auth import get_user_model

    from audit.services import audit_record
    from security.tokens import token_issue

    os.environ.setdefault("ADMIN_PASSWORD", "migrations-roundtrip-only")
    call_command("ensure_admin", verbosity=0, stdout=io.StringIO())
    user = get_user_model().objects.get(username="admin")
    token_issue(user=user, actor="system", name="roundtrip")
    with transaction.atomic():
        audit_record(actor="system", action="ci.migrations", resource_type="ci", resource_id="roundtrip")


def leftovers() -> list[str]:
    found = [f"table {name}" for name in connection.introspection.table_names() if name != "django_migrations"]
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT tgname FROM pg_trigger WHERE NOT tgisinternal")
            found += [f"trigger {name}" for (name,) in cursor.fetchall()]
            # Functions in our schema that no extension owns (pg_trgm's are the extension's).
            cursor.execute(
                """
                SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                WHERE n.nspname = current_schema()
                  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = p.oid AND d.deptype = 'e')
                """
            )
            found += [f"function {name}" for (name,) in cursor.fetchall()]
        else:
            cursor.execute("SELECT type, name FROM sqlite_master WHERE type IN ('trigger', 'view')")
            found += [f"{kind} {name}" for kind, name in cursor.fetchall()]
    return found


def step(label: str, action: Callable[[], object]) -> None:
    print(f"-- {label}", flush=True)
    try:
        action()
    except Exception as exc:
        print(f"MIGRATIONS ROUNDTRIP FAILED at: {label}: {exc!r}", file=sys.stderr)
        raise SystemExit(1) from exc


def main() -> None:
    print(f"database: {connection.vendor} {connection.settings_dict['NAME']}")
    if connection.introspection.table_names():
        raise SystemExit(f"refusing to run on a database that has tables: {connection.settings_dict['NAME']}")
    step("migrate forward", lambda: call_command("migrate", verbosity=0, interactive=False))
    step("write rows", seed)
    for app in reversed(apps_in_applied_order()):
        step(f"migrate {app} zero", lambda app=app: call_command("migrate", app, "zero", verbosity=1))
    left = leftovers()
    if left:
        print(f"MIGRATIONS ROUNDTRIP FAILED: left behind after zero: {', '.join(left)}", file=sys.stderr)
        raise SystemExit(1)
    print("-- nothing left behind at zero")
    step("migrate forward again", lambda: call_command("migrate", verbosity=0, interactive=False))
    step("write rows again", seed)
    if pending := unapplied():
        print(f"MIGRATIONS ROUNDTRIP FAILED: unapplied after forward: {pending}", file=sys.stderr)
        raise SystemExit(1)
    print("migrations roundtrip: ok")


if __name__ == "__main__":
    main()
