"""GET /tasks/: the table, its filters kept in the URL, paging both ways, the live fragment."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlparse

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tasks.models import Task

pytestmark = pytest.mark.django_db

URL = "/tasks/"
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def rows(response) -> list[str]:
    """The task ids of the table's rows, in order."""
    return re.findall(r'<tr data-task="([0-9a-f-]{36})">', response.content.decode())


def at(task: Task, when: datetime) -> Task:
    Task.objects.filter(pk=task.pk).update(created_at=when)
    return task


def test_it_sends_anonymous_visitors_to_the_login_page(client):
    r = client.get(URL + "?state=running")
    assert r.status_code == 302
    assert r["Location"].startswith("/login/?next=/tasks/")


def test_it_refuses_a_user_without_a_role(nobody_page, make_task):
    make_task()
    r = nobody_page.get(URL)
    assert r.status_code == 403
    assert "the viewer role" in r.content.decode()


def test_a_viewer_sees_the_table_without_any_control(viewer_page, make_task, run):
    task = run(make_task(title="Index the archive"))
    r = viewer_page.get(URL)
    body = r.content.decode()
    assert r.status_code == 200
    assert rows(r) == [str(task.pk)]
    assert f'href="/tasks/{task.pk}/"' in body
    assert '<span class="badge running">running</span>' in body
    assert "1 of 3" in body  # attempt
    assert "w1" in body  # worker
    assert "<progress" in body
    assert "New task" not in body
    assert 'id="bulk-form"' not in body
    assert 'name="task_ids"' not in body
    # The page subscribes to the task stream and its rows refresh on task changes.
    assert 'data-stream="/api/v1/tasks/stream"' in body
    assert 'hx-trigger="agency-task from:body throttle:1s' in body


def test_an_operator_sees_the_new_task_link_and_the_bulk_controls(operator_page, make_task):
    task = make_task()
    body = operator_page.get(URL).content.decode()
    assert 'href="/tasks/new/"' in body
    assert 'id="bulk-form"' in body
    assert f'name="task_ids" value="{task.pk}" form="bulk-form"' in body
    assert "At most 500 tasks per bulk action" in body


def test_it_filters_by_every_api_filter_and_shows_them_in_the_form(viewer_page, make_task, run, worker):
    hit = at(run(make_task(title="Deploy the parser", priority="high")), T0)
    at(run(make_task(title="Deploy the parser", priority="low")), T0)  # another priority
    at(run(make_task(title="Something else", priority="high")), T0)  # another title
    at(run(make_task(title="Deploy the parser", priority="high")), T0 - timedelta(days=2))  # too old
    at(make_task(title="Deploy the parser", priority="high"), T0)  # queued: another state
    query = (
        "state=running,paused&priority=high&priority=critical&worker=w1&q=parser"
        "&created_after=2025-03-01T00:00:00Z&created_before=2025-03-02T00:00:00Z&ordering=created_at"
    )
    r = viewer_page.get(f"{URL}?{query}")
    body = r.content.decode()
    assert r.status_code == 200
    assert rows(r) == [str(hit.pk)]
    # The filter survives a reload: the form shows it.
    assert 'name="state" value="running" checked' in body
    assert 'name="state" value="paused" checked' in body
    assert 'name="state" value="queued" >' in body
    assert 'name="priority" value="high" checked' in body
    assert 'name="priority" value="critical" checked' in body
    assert 'name="worker" type="text" value="w1"' in body
    assert 'name="q" type="search" value="parser"' in body
    assert 'value="2025-03-01T00:00:00"' in body
    assert 'value="2025-03-02T00:00:00"' in body
    assert '<option value="created_at" selected>' in body


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("state=bogus", "state"),
        ("priority=urgent", "priority"),
        ("worker=not%20a%20slug", "worker"),
        ("created_after=yesterday", "created_after"),
        ("created_before=2025-13-01", "created_before"),
        ("ordering=title", "ordering"),
        ("page_size=0", "page_size"),
        ("q=" + "x" * 201, "q"),
    ],
)
def test_a_bad_filter_is_a_400_with_the_error_next_to_its_field(viewer_page, make_task, query, field):
    make_task()
    r = viewer_page.get(f"{URL}?{query}")
    body = r.content.decode()
    assert r.status_code == 400
    assert f'<ul class="field-error" id="{field}-errors">' in body
    assert rows(r) == []
    assert "Fix the filter above to see tasks." in body


def test_the_empty_fields_a_form_sends_mean_any(viewer_page, make_task, run):
    # What the filter form submits when only a state and a title are filled in.
    hit = run(make_task(title="Filtered: this one"))
    run(make_task(title="Another"))
    query = "state=running&q=Filtered%3A&worker=&created_after=&created_before=&ordering=-created_at&page_size=50"
    r = viewer_page.get(f"{URL}?{query}")
    assert r.status_code == 200, r.content.decode()[:500]
    assert rows(r) == [str(hit.pk)]


def test_an_unknown_parameter_is_named_as_the_api_names_it(viewer_page):
    r = viewer_page.get(f"{URL}?stat=failed")
    assert r.status_code == 400
    assert "stat: Unknown field." in r.content.decode()


def test_a_forged_cursor_is_a_400(viewer_page):
    r = viewer_page.get(f"{URL}?cursor=garbage")
    assert r.status_code == 400
    assert "cursor: Invalid cursor." in r.content.decode()
    r = viewer_page.get(f"{URL}?before=garbage")
    assert r.status_code == 400
    assert "before: Invalid cursor." in r.content.decode()


def test_it_pages_forward_and_back_keeping_the_filter(viewer_page, make_task):
    tasks = [at(make_task(title=f"task {i}", priority="high"), T0 + timedelta(minutes=i)) for i in range(7)]
    make_task(title="low one", priority="low")
    newest_first = [str(t.pk) for t in reversed(tasks)]

    first = viewer_page.get(f"{URL}?priority=high&page_size=3")
    assert rows(first) == newest_first[:3]
    next_url = re.search(r'<a href="([^"]+)" rel="next">', first.content.decode()).group(1).replace("&amp;", "&")
    assert parse_qs(urlparse(next_url).query)["priority"] == ["high"]
    assert 'rel="prev"' not in first.content.decode()

    second = viewer_page.get(next_url)
    assert rows(second) == newest_first[3:6]
    body = second.content.decode()
    prev_url = re.search(r'<a href="([^"]+)" rel="prev">', body).group(1).replace("&amp;", "&")
    assert parse_qs(urlparse(prev_url).query)["page_size"] == ["3"]

    back = viewer_page.get(prev_url)
    assert rows(back) == newest_first[:3]
    assert 'rel="prev"' not in back.content.decode()  # nothing newer than the first page
    forward = re.search(r'<a href="([^"]+)" rel="next">', back.content.decode()).group(1).replace("&amp;", "&")
    assert rows(viewer_page.get(forward)) == newest_first[3:6]

    third = viewer_page.get(re.search(r'<a href="([^"]+)" rel="next">', body).group(1).replace("&amp;", "&"))
    assert rows(third) == newest_first[6:]
    assert 'rel="next"' not in third.content.decode()


def test_an_htmx_request_gets_the_rows_alone(viewer_page, make_task):
    task = make_task()
    r = viewer_page.get(f"{URL}?state=queued", headers={"HX-Request": "true"})
    body = r.content.decode()
    assert r.status_code == 200
    assert rows(r) == [str(task.pk)]
    assert "<html" not in body
    assert "<thead" not in body


def test_the_page_costs_the_same_queries_for_5_rows_as_for_50(viewer_page, make_task, run, worker):
    def count() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert viewer_page.get(f"{URL}?page_size=50").status_code == 200
        return len(queries)

    for i in range(5):
        run(make_task(title=f"t{i}"))
    small = count()
    for i in range(45):
        run(make_task(title=f"u{i}"))
    assert count() == small


def test_the_list_page_queries_are_pinned(viewer_page, make_task, django_assert_num_queries):
    for i in range(20):
        make_task(title=f"t{i}")
    viewer_page.get(URL)  # the session is read once warm
    # session, user, the user's groups (roles), the task stream's current id (the page resumes
    # its stream from it), the page of tasks, the user's saved views
    with django_assert_num_queries(6):
        assert viewer_page.get(URL).status_code == 200


def test_the_page_resumes_the_task_stream_from_the_id_it_was_rendered_at(viewer_page, make_task):
    from django_eventstream.models import EventCounter

    make_task()
    EventCounter.objects.update_or_create(name="tasks", defaults={"value": 41})
    body = viewer_page.get(URL).content.decode()
    assert 'data-stream="/api/v1/tasks/stream" data-last-event-id="tasks:41"' in body
