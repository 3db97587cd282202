"""The refusal corpus: whatever its text, a query can only read the allowed tables, on SQLite and PostgreSQL.

The same corpus runs on the database of the suite: SQLite in the embedded run, PostgreSQL (as
the role ``create_readonly_role`` makes) in the scaled run. Nothing here inspects query text:
each refusal is the database's own.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.db import connection

from metrics.queries import readonly
from metrics.queries.errors import QueryRefused, QueryTimedOut
from tasks.models import Task, Worker

pytestmark = pytest.mark.django_db(transaction=True)

WRITES = [
    "INSERT INTO tasks_task (id, title, spec, state) VALUES ('x', 't', '{}', 'queued')",
    "UPDATE tasks_task SET title = 'changed'",
    "DELETE FROM tasks_task",
    "DELETE/**/FROM tasks_task",
    "CREATE TABLE stolen (a int)",
    "DROP TABLE tasks_task",
    "ALTER TABLE tasks_task ADD COLUMN x int",
    "SELECT 1; DELETE FROM tasks_task",
    "SELECT 'it''s'; DELETE FROM tasks_task -- '",
    "SELECT 1 /* harmless? */; UPDATE tasks_task SET title = 'x'",
    "WITH gone AS (DELETE FROM tasks_task RETURNING id) SELECT id FROM gone",
]
SECRETS = [
    "SELECT * FROM django_session",
    "SELECT digest FROM security_apitoken",
    "SELECT password FROM auth_user",
    "SELECT token_ciphertext FROM tasks_worker",
    "SELECT base_url FROM tasks_worker",
    "SELECT * FROM tasks_worker",
    "SELECT data FROM django_eventstream_event",
]
SQLITE_ONLY = [
    "PRAGMA query_only = OFF",
    "PRAGMA writable_schema = 1",
    "ATTACH DATABASE '/tmp/agency-stolen.db' AS stolen",
    "SELECT load_extension('/tmp/evil.so')",
    "SELECT name FROM sqlite_master",
    "BEGIN IMMEDIATE",
    "VACUUM INTO '/tmp/agency-copy.db'",
]
POSTGRES_ONLY = [
    "SET TRANSACTION READ WRITE",
    "SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE",
    "SELECT 1; SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE",
    "DO $$ BEGIN DELETE FROM tasks_task; END $$",
    "COPY tasks_task TO PROGRAM 'id'",
    "SELECT lo_import('/etc/passwd')",
    "SELECT dblink_exec('dbname=agency', 'DELETE FROM tasks_task')",
    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid <> pg_backend_pid()",
    "SELECT * FROM pg_authid",
]


@pytest.fixture
def rows(operator) -> None:
    from tasks import services

    for i in range(3):
        services.task_create(spec={"title": f"t{i}", "input": {"kind": "echo"}}, actor=operator)
    worker = Worker(name="w", base_url="https://svc:pw-in-url@worker.example.com")
    worker.token = "a-worker-token-123456"
    worker.save()


@pytest.fixture(autouse=True)
def readonly_role(settings) -> Iterator[None]:
    """On PostgreSQL, the role the command makes, on this test database; SQLite needs nothing."""
    if connection.vendor != "postgresql":
        yield
        return
    import psycopg

    from metrics.management.commands.create_readonly_role import grant_readonly
    from tests.audit.conftest import superuser_dsn

    dsn = superuser_dsn()
    if dsn is None:
        pytest.fail("the read-only role needs a superuser DSN (AGENCY_PG_SUPERUSER_DSN or scripts/pg-cluster)")
    database = connection.settings_dict["NAME"]
    role = f"ro_{database}"  # roles are the cluster's: one per test database (xdist workers run side by side)
    with psycopg.connect(dsn, dbname=database) as admin:
        grant_readonly(admin, role=role, password="readonly-test-pw", database=database)
    db = connection.settings_dict
    settings.DATABASE_READONLY_URL = (
        f"postgres://{role}:readonly-test-pw@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{database}"
    )
    yield
    readonly.close_idle()


def refusal(sql: str) -> QueryRefused:
    with pytest.raises(QueryRefused) as caught:
        readonly.run(sql, {}, limit=10)
    return caught.value


@pytest.mark.parametrize("sql", WRITES)
def test_writes_are_refused_and_nothing_changes(rows, sql):
    before = list(Task.objects.order_by("id").values_list("id", "title"))
    error = refusal(sql)
    assert error.fields["sql"], error
    assert list(Task.objects.order_by("id").values_list("id", "title")) == before


@pytest.mark.parametrize("sql", SECRETS)
def test_secret_tables_and_columns_cannot_be_read(rows, sql):
    message = refusal(sql).fields["sql"][0]
    assert "Refused by the database" in message or "refused" in message


@pytest.mark.parametrize("sql", SQLITE_ONLY)
def test_sqlite_specific_escapes_are_refused(sql):
    if connection.vendor != "sqlite":
        pytest.skip("SQLite's own statements")
    refusal(sql)


@pytest.mark.parametrize("sql", POSTGRES_ONLY)
def test_postgres_specific_escapes_are_refused(rows, sql):
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL's own statements")
    refusal(sql)
    readonly.run("SELECT 1 AS still_read_only", {}, limit=1)  # and the pooled session is unchanged:
    with pytest.raises(QueryRefused):
        readonly.run("SELECT 1; SELECT 2", {}, limit=1)


def test_a_session_setting_a_query_changes_does_not_outlive_its_run():
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL's session settings")
    # Allowed inside the read-only transaction, and undone with it: every run is rolled back.
    readonly.run("SELECT set_config('default_transaction_read_only', 'off', false) AS s", {}, limit=1)
    readonly.run("SELECT set_config('statement_timeout', '1', false) AS s", {}, limit=1)
    page = readonly.run(
        "SELECT current_setting('default_transaction_read_only') AS ro, pg_sleep(0.01) AS z", {}, limit=1
    )
    assert page.rows[0][0] == "on"


def test_a_query_past_the_timeout_is_stopped():
    forever = "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT count(*) FROM r"
    with pytest.raises(QueryTimedOut, match=r"ran past 0\.3 s"):
        readonly.run(forever, {}, limit=10, timeout_s=0.3)


def test_harmless_queries_that_name_dangerous_words_run(rows):
    page = readonly.run(
        "SELECT title, updated_at, 'DELETE FROM tasks_task' AS delete_flag FROM tasks_task "
        "WHERE title <> 'drop table' /* ; DELETE */ ORDER BY title",
        {},
        limit=2,
    )
    assert page.columns == ["title", "updated_at", "delete_flag"]
    assert [r[0] for r in page.rows] == ["t0", "t1"]
    assert page.more is True
    assert page.rows[0][2] == "DELETE FROM tasks_task"


def test_named_parameters_are_bound_not_formatted(rows):
    page = readonly.run(
        "WITH t AS (SELECT title, state FROM tasks_task) SELECT title FROM t WHERE title = :title AND state = :state",
        {"title": "t1' OR '1'='1", "state": "queued"},
        limit=10,
    )
    assert page.rows == []
    page = readonly.run("SELECT title FROM tasks_task WHERE title = :title", {"title": "t1"}, limit=10)
    assert page.rows == [["t1"]]


def test_pages_read_only_what_they_need(rows):
    page = readonly.run("SELECT title FROM tasks_task ORDER BY title", {}, limit=1, offset=1)
    assert (page.rows, page.more) == ([["t1"]], True)
    last = readonly.run("SELECT title FROM tasks_task ORDER BY title", {}, limit=5, offset=2)
    assert (last.rows, last.more) == ([["t2"]], False)


def test_a_worker_can_be_read_without_its_secret_columns(rows):
    page = readonly.run("SELECT name, enabled FROM tasks_worker", {}, limit=10)
    assert page.rows == [["w", True]] or page.rows == [["w", 1]]


@pytest.mark.parametrize(
    ("sql", "params", "field", "message"),
    [
        ("", {}, "sql", "Enter a query."),
        ("SELECT :missing", {}, "params", None),
        ("SELECT 1", {"bad name": 1}, "params", "'bad name' is not a parameter name."),
        ("SELECT 1\x00", {}, "sql", "A query cannot contain NUL."),
    ],
)
def test_bad_input_names_its_field(sql, params, field, message):
    with pytest.raises(QueryRefused) as caught:
        readonly.run(sql, params, limit=1)
    assert field in caught.value.fields
    if message:
        assert caught.value.fields[field] == [message]


def test_create_readonly_role_prints_the_url_to_set(monkeypatch):
    from io import StringIO

    from django.core.management import call_command
    from django.core.management.base import CommandError

    if connection.vendor != "postgresql":
        with pytest.raises(CommandError, match="Only for PostgreSQL"):
            call_command("create_readonly_role", stdout=StringIO())
        return
    from tests.audit.conftest import superuser_dsn

    monkeypatch.setenv("AGENCY_TEST_ADMIN_DSN", f"{superuser_dsn()} dbname={connection.settings_dict['NAME']}")
    monkeypatch.setenv("AGENCY_TEST_RO_PASSWORD", "another-ro-password")
    out = StringIO()
    role = f"ro_cmd_{connection.settings_dict['NAME']}"
    call_command(
        "create_readonly_role",
        "--role",
        role,
        "--admin-dsn-env",
        "AGENCY_TEST_ADMIN_DSN",
        "--password-env",
        "AGENCY_TEST_RO_PASSWORD",
        stdout=out,
    )
    assert out.getvalue().startswith(f"DATABASE_READONLY_URL=postgres://{role}:<from AGENCY_TEST_RO_PASSWORD>@")
    with connection.cursor() as cursor:
        cursor.execute("SELECT has_table_privilege(%s, 'tasks_task', 'SELECT')", [role])
        assert cursor.fetchone() == (True,)
        cursor.execute("SELECT has_table_privilege(%s, 'django_session', 'SELECT')", [role])
        assert cursor.fetchone() == (False,)
        cursor.execute("SELECT has_column_privilege(%s, 'tasks_worker', 'token_ciphertext', 'SELECT')", [role])
        assert cursor.fetchone() == (False,)


def test_values_the_database_cannot_take_are_refused_not_crashed():
    if connection.vendor == "sqlite":  # PostgreSQL takes it as a numeric
        with pytest.raises(QueryRefused) as caught:
            readonly.run("SELECT :n AS n", {"n": 2**70}, limit=1)
        assert "params" in caught.value.fields
    with pytest.raises(QueryRefused):
        readonly.run("SELECT '\ud800' AS s", {}, limit=1)
