"""The SQL explorer pages: anonymous, no role, viewer, admin; bad input; runs, paging, chart, CSV export."""

from __future__ import annotations

import csv
import io
import warnings

import pytest

from audit.models import AuditRecord
from metrics.models import QueryRun, RunKind, RunOutcome, SavedQuery
from metrics.queries import pages, services
from tests.metrics.queries.test_readonly import readonly_role

pytestmark = pytest.mark.django_db(transaction=True)
__all__ = ["readonly_role"]

HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture(autouse=True)
def _role(readonly_role) -> None:
    return None


@pytest.fixture
def query(admin_user, make_task) -> SavedQuery:
    for n in range(7):
        make_task(title=f"t{n}")
    return services.query_create(
        actor=admin_user,
        name="tasks by title",
        sql="SELECT title, risk_tier FROM tasks_task WHERE title >= :start ORDER BY title",
        parameters=[{"name": "start", "type": "text", "default": "t0"}],
        shared=True,
    )


def logged_in(client, user):
    client.force_login(user)
    return client


def streamed(response) -> bytes:
    with warnings.catch_warnings():  # the test client reads an async body synchronously, and says so
        warnings.simplefilter("ignore")
        return b"".join(response)


def test_anonymous_is_sent_to_sign_in_and_nothing_runs(client, query):
    assert client.get("/queries/")["Location"] == "/login/?next=/queries/"
    assert client.post(f"/queries/{query.pk}/run/", {"p_start": "t0"}).status_code == 302
    assert client.post(f"/queries/{query.pk}/export.csv", {}).status_code == 302
    assert not QueryRun.objects.exists()


def test_no_role_gets_403(client, nobody, query):
    logged_in(client, nobody)
    assert client.get("/queries/").status_code == 403
    assert client.post(f"/queries/{query.pk}/run/", {}).status_code == 403
    assert not QueryRun.objects.exists()


def test_a_viewer_sees_shared_queries_without_the_editor_and_cannot_save(client, viewer, query):
    logged_in(client, viewer)
    listing = client.get("/queries/")
    assert listing.status_code == 200
    assert b"tasks by title" in listing.content
    assert b"New query" not in listing.content
    detail = client.get(f"/queries/{query.pk}/")
    assert b"Save changes" not in detail.content
    assert b"Delete this query" not in detail.content
    forged = client.post("/queries/", {"name": "x", "sql": "SELECT 1"})
    assert forged.status_code == 403
    assert client.post(f"/queries/{query.pk}/", {"name": "y", "sql": "SELECT 2"}).status_code == 403
    assert client.post(f"/queries/{query.pk}/delete/").status_code == 403
    assert list(SavedQuery.objects.values_list("name", flat=True)) == ["tasks by title"]


def test_a_private_query_of_an_admin_is_a_404_for_a_viewer(client, viewer, admin_user):
    private = services.query_create(actor=admin_user, name="mine", sql="SELECT 1 AS one")
    logged_in(client, viewer)
    assert client.get(f"/queries/{private.pk}/").status_code == 404
    assert client.post(f"/queries/{private.pk}/run/", {}).status_code == 404


def test_an_admin_saves_a_query_with_a_parameter_from_the_form(client, admin_user):
    logged_in(client, admin_user)
    page = client.get("/queries/")
    assert b"tasks_task" in page.content
    assert b"token_ciphertext" not in page.content
    response = client.post(
        "/queries/",
        {
            "name": "by tier",
            "sql": "SELECT title FROM tasks_task WHERE risk_tier = :tier",
            "parameters": "tier integer 2",
        },
    )
    assert response.status_code == 302
    saved = SavedQuery.objects.get(name="by tier")
    assert response["Location"] == f"/queries/{saved.pk}/"
    assert saved.parameters == [{"name": "tier", "type": "integer", "default": 2}]
    assert AuditRecord.objects.filter(action="query.create", resource_id=str(saved.pk)).count() == 1


def test_bad_input_is_shown_next_to_its_field_and_nothing_is_saved(client, admin_user):
    logged_in(client, admin_user)
    response = client.post("/queries/", {"name": "", "sql": "SELECT 1", "parameters": "ok text\n9bad text\nx kind"})
    assert response.status_code == 400
    body = response.content.decode()
    assert 'id="id_name_error"' in body
    assert 'id="id_parameters_error"' in body
    assert "line 2:" in body
    assert not SavedQuery.objects.exists()


def test_a_duplicate_name_is_a_field_error(client, admin_user, query):
    logged_in(client, admin_user)
    response = client.post("/queries/", {"name": query.name, "sql": "SELECT 1"})
    assert response.status_code == 400
    assert "You already have a query with this name." in response.content.decode()


def test_an_admin_changes_and_deletes_a_query(client, admin_user, query):
    logged_in(client, admin_user)
    changed = client.post(
        f"/queries/{query.pk}/", {"name": "renamed", "sql": query.sql, "parameters": "start text t3", "shared": "on"}
    )
    assert changed.status_code == 302
    query.refresh_from_db()
    assert (query.name, query.parameters) == ("renamed", [{"name": "start", "type": "text", "default": "t3"}])
    assert client.post(f"/queries/{query.pk}/delete/").status_code == 302
    assert not SavedQuery.objects.exists()


def test_a_run_shows_a_page_of_rows_pages_on_and_is_in_the_history(client, viewer, query):
    logged_in(client, viewer)
    first = client.post(f"/queries/{query.pk}/run/", {"p_start": "t1", "limit": "50"}, **HTMX)
    assert first.status_code == 200
    body = first.content.decode()
    assert "data-results" in body
    assert ">t1<" in body
    assert ">t6<" in body
    assert ">t0<" not in body
    assert 'hx-swap-oob="true"' in body  # the history comes along
    run = QueryRun.objects.get()
    assert (run.user, run.rows, run.outcome, run.kind, run.parameters) == (viewer, 6, "ok", "page", {"start": "t1"})
    assert AuditRecord.objects.filter(action="query.run", data__run=run.pk).count() == 1
    # A page size the form does not offer is refused by the form; the pager posts the offset.
    paged = client.post(f"/queries/{query.pk}/run/", {"p_start": "t0", "limit": "50", "offset": "5"}, **HTMX)
    assert ">t5<" in paged.content.decode()
    assert ">t4<" not in paged.content.decode()
    assert "First rows" in paged.content.decode()


def test_a_run_without_javascript_renders_the_whole_page(client, viewer, query):
    logged_in(client, viewer)
    response = client.post(f"/queries/{query.pk}/run/", {"p_start": "t5"})
    assert response.status_code == 200
    assert b"<html" in response.content
    assert b"data-results" in response.content


def test_a_bad_parameter_is_shown_beside_it_and_not_run(client, viewer, admin_user):
    typed = services.query_create(
        actor=admin_user, name="typed", sql="SELECT :n AS n", parameters=[{"name": "n", "type": "integer"}], shared=True
    )
    logged_in(client, viewer)
    response = client.post(f"/queries/{typed.pk}/run/", {"p_n": "seven"}, **HTMX)
    assert response.status_code == 400
    assert "Must be a whole number." in response.content.decode()
    missing = client.post(f"/queries/{typed.pk}/run/", {}, **HTMX)
    assert missing.status_code == 400
    assert not QueryRun.objects.exists()


def test_a_refused_query_shows_the_database_s_message_and_is_recorded(client, viewer, admin_user):
    bad = services.query_create(actor=admin_user, name="bad", sql="DELETE FROM tasks_task", shared=True)
    logged_in(client, viewer)
    response = client.post(f"/queries/{bad.pk}/run/", {}, **HTMX)
    assert response.status_code == 400
    assert "data-run-error" in response.content.decode()
    assert QueryRun.objects.get().outcome == RunOutcome.REFUSED


def test_one_label_and_one_numeric_column_draw_a_chart(client, viewer, admin_user, make_task):
    make_task(title="a")
    grouped = services.query_create(
        actor=admin_user,
        name="by state",
        sql="SELECT state, count(*) AS tasks FROM tasks_task GROUP BY state",
        shared=True,
    )
    logged_in(client, viewer)
    body = client.post(f"/queries/{grouped.pk}/run/", {}, **HTMX).content.decode()
    assert '<figure class="chart">' in body
    assert 'role="img"' in body


def test_the_chart_is_only_for_a_label_and_a_number():
    assert pages.chart_of(["a", "b"], [["x", 1], ["y", None]]) is not None
    assert pages.chart_of(["a", "b"], [["x", "1"]]) is None
    assert pages.chart_of(["a", "b", "c"], [["x", 1, 2]]) is None
    assert pages.chart_of(["a", "b"], [["x", True]]) is None


def test_the_csv_export_streams_every_row_and_is_recorded_once_done(client, viewer, query, admin_user, make_task):
    make_task(title='=HYPERLINK("http://evil")')
    logged_in(client, viewer)
    response = client.post(f"/queries/{query.pk}/export.csv", {"p_start": "="})
    assert response.status_code == 200
    assert response.streaming
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == 'attachment; filename="tasks-by-title.csv"'
    rows = list(csv.reader(io.StringIO(streamed(response).decode())))
    assert rows[0] == ["title", "risk_tier"]
    assert [r[0] for r in rows[1:]] == ['\'=HYPERLINK("http://evil")'] + [f"t{n}" for n in range(7)]
    run = QueryRun.objects.get()
    assert (run.kind, run.outcome, run.rows, run.parameters) == (RunKind.EXPORT, RunOutcome.OK, 8, {"start": "="})
    assert AuditRecord.objects.filter(action="query.run", data__kind="export").count() == 1


def test_a_text_cell_that_a_spreadsheet_would_run_is_written_as_text():
    assert pages.csv_piece([["=1+1", "+x", "-y", "@z", "plain", -3, None]]) == b"'=1+1,'+x,'-y,'@z,plain,-3,\r\n"


def test_the_export_reads_in_pieces_past_one_fetch(client, viewer, admin_user, make_task, settings):
    for n in range(services.EXPORT_CHUNK + 5):
        make_task(title=f"bulk{n:05d}")
    everything = services.query_create(
        actor=admin_user, name="all", sql="SELECT title FROM tasks_task ORDER BY title", shared=True
    )
    logged_in(client, viewer)
    body = streamed(client.post(f"/queries/{everything.pk}/export.csv", {}))
    assert body.count(b"\n") == 1 + services.EXPORT_CHUNK + 5
    settings.QUERY_EXPORT_MAX_ROWS = 10
    capped = streamed(client.post(f"/queries/{everything.pk}/export.csv", {}))
    assert capped.count(b"\n") == 11
    last = QueryRun.objects.order_by("-started_at", "-id").first()
    assert (last.rows, last.error) == (10, "Stopped at the export limit of 10 rows.")


def test_a_refused_export_is_a_400_page_and_no_download(client, viewer, admin_user):
    bad = services.query_create(actor=admin_user, name="bad", sql="SELECT * FROM django_session", shared=True)
    logged_in(client, viewer)
    response = client.post(f"/queries/{bad.pk}/export.csv", {})
    assert response.status_code == 400
    assert not response.streaming
    assert response["Content-Type"].startswith("text/html")
    run = QueryRun.objects.get()
    assert (run.kind, run.outcome) == (RunKind.EXPORT, RunOutcome.REFUSED)


def test_get_on_the_run_and_export_urls_is_405(client, viewer, query):
    logged_in(client, viewer)
    assert client.get(f"/queries/{query.pk}/run/").status_code == 405
    assert client.get(f"/queries/{query.pk}/export.csv").status_code == 405


def test_an_export_left_by_its_client_is_recorded_as_aborted(viewer, admin_user, make_task):
    from asgiref.sync import async_to_sync

    for n in range(services.EXPORT_CHUNK + 1):
        make_task(title=f"left{n:05d}")
    everything = services.query_create(actor=admin_user, name="all", sql="SELECT title FROM tasks_task", shared=True)
    export = services.query_export(actor=viewer, query_id=everything.pk)

    async def read_the_header_and_leave() -> None:
        body = pages.stream_csv(export)
        assert await body.__anext__() == b"title\r\n"
        await body.__anext__()  # the first piece of rows
        await body.aclose()  # the client went away: Django closes the body

    async_to_sync(read_the_header_and_leave)()
    run = QueryRun.objects.get()
    assert (run.kind, run.outcome, run.rows) == (RunKind.EXPORT, RunOutcome.ABORTED, services.EXPORT_CHUNK)
    assert run.error == "The client went away before the last row."


def test_on_postgresql_without_the_read_only_url_the_page_says_why_with_a_503(client, viewer, query, settings):
    from django.db import connection

    from metrics.queries import readonly

    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL only: SQLite needs no URL")
    readonly.close_idle()
    settings.DATABASE_READONLY_URL = ""
    logged_in(client, viewer)
    for path in (f"/queries/{query.pk}/run/", f"/queries/{query.pk}/export.csv"):
        response = client.post(path, {})
        assert response.status_code == 503
        assert "DATABASE_READONLY_URL is not set" in response.content.decode()
