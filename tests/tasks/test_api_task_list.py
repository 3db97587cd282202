"""GET /api/v1/tasks: filters, ordering and keyset pagination."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlparse

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from audit.models import AuditRecord
from tasks.models import Priority, Task, TaskEvent, Worker

URL = "/api/v1/tasks"
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def ids(response) -> list[str]:
    assert response.status_code == 200, response.content
    return [row["id"] for row in response.json()["results"]]


def at(task: Task, when: datetime) -> Task:
    Task.objects.filter(pk=task.pk).update(created_at=when)
    task.refresh_from_db()
    return task


def set_state(task: Task, state: str) -> Task:
    # Fine in a test: the state machine is exercised by its own tests.
    Task.objects.filter(pk=task.pk).update(state=state)
    task.refresh_from_db()
    return task


def walk(client, query: str) -> list[str]:
    """Follow ``next`` links from the first page to the last, collecting ids."""
    seen: list[str] = []
    url: str | None = f"{URL}?{query}"
    pages = 0
    while url:
        r = client.get(url)
        seen += ids(r)
        url = r.json()["next"]
        pages += 1
        assert pages < 50, "pagination does not terminate"
    return seen


@pytest.mark.django_db
def test_it_lists_tasks_newest_first(viewer_client, make_task):
    old = at(make_task(title="old"), T0)
    new = at(make_task(title="new"), T0 + timedelta(minutes=1))
    r = viewer_client.get(URL)
    assert ids(r) == [str(new.id), str(old.id)]
    assert r.json()["next"] is None
    row = r.json()["results"][0]
    assert row["title"] == "new"
    assert row["state"] == "queued"
    assert row["priority"] == "medium"
    assert row["created_by"] == "otto"
    assert row["progress"] == {"percent": 0, "phase": ""}
    # The list is a summary: the spec and the timeline are on the detail page.
    assert "spec" not in row
    assert "events" not in row


@pytest.mark.django_db
def test_it_returns_an_empty_page(viewer_client):
    r = viewer_client.get(URL)
    assert r.status_code == 200
    assert r.json() == {"results": [], "next": None}


@pytest.mark.django_db
def test_it_lets_operators_and_admins_read(operator_client, admin_client_api, make_task):
    task = make_task()
    assert ids(operator_client.get(URL)) == [str(task.id)]
    assert ids(admin_client_api.get(URL)) == [str(task.id)]


@pytest.mark.django_db
def test_it_requires_authentication(anon_client, make_task):
    make_task()
    r = anon_client.get(URL)
    assert r.status_code == 401
    assert "results" not in r.json()


@pytest.mark.django_db
def test_it_rejects_a_user_without_a_role(nobody_client, make_task):
    make_task()
    r = nobody_client.get(URL)
    assert r.status_code == 403
    assert "results" not in r.json()


@pytest.mark.django_db
def test_it_accepts_session_authentication(client, viewer, make_task):
    task = make_task()
    client.force_login(viewer)
    assert ids(client.get(URL)) == [str(task.id)]


@pytest.mark.django_db
def test_it_renders_the_browsable_api(operator_client, make_task):
    make_task(title="Visible in the browser")
    r = operator_client.get(URL, HTTP_ACCEPT="text/html")
    assert r.status_code == 200
    assert r["Content-Type"].startswith("text/html")
    assert "Visible in the browser" in r.content.decode()


@pytest.mark.django_db
@pytest.mark.parametrize("method", ["put", "patch", "delete"])
def test_it_rejects_other_methods(operator_client, make_task, method):
    task = make_task()
    r = getattr(operator_client, method)(URL, {}, format="json")
    assert r.status_code == 405
    assert Task.objects.get().title == task.title
    assert (Task.objects.count(), TaskEvent.objects.count(), AuditRecord.objects.count()) == (1, 1, 1)


@pytest.mark.django_db
def test_it_filters_by_one_state(viewer_client, make_task):
    queued = make_task()
    set_state(make_task(), "paused")
    assert ids(viewer_client.get(URL, {"state": "queued"})) == [str(queued.id)]


@pytest.mark.django_db
@pytest.mark.parametrize("query", ["state=queued,paused", "state=queued&state=paused", "state=queued, paused,"])
def test_it_filters_by_several_states(viewer_client, make_task, query):
    queued = at(make_task(), T0)
    paused = at(set_state(make_task(), "paused"), T0 + timedelta(seconds=1))
    set_state(make_task(), "canceled")
    set_state(make_task(), "running")
    assert ids(viewer_client.get(f"{URL}?{query}")) == [str(paused.id), str(queued.id)]


@pytest.mark.django_db
@pytest.mark.parametrize("value", ["done", "queued,done", "QUEUED"])
def test_it_names_an_unknown_state(viewer_client, value):
    r = viewer_client.get(URL, {"state": value})
    assert r.status_code == 400
    assert set(r.json()) == {"state"}


@pytest.mark.django_db
def test_it_filters_by_priority(viewer_client, make_task):
    high = at(make_task(priority="high"), T0)
    critical = at(make_task(priority="critical"), T0 + timedelta(seconds=1))
    make_task(priority="low")
    make_task()
    assert ids(viewer_client.get(URL, {"priority": "high"})) == [str(high.id)]
    assert ids(viewer_client.get(URL, {"priority": "high,critical"})) == [str(critical.id), str(high.id)]


@pytest.mark.django_db
@pytest.mark.parametrize("value", ["urgent", "30", "High"])
def test_it_names_an_unknown_priority(viewer_client, value):
    r = viewer_client.get(URL, {"priority": value})
    assert r.status_code == 400
    assert set(r.json()) == {"priority"}


@pytest.mark.django_db
def test_it_filters_by_worker(viewer_client, make_task):
    alpha = Worker.objects.create(name="alpha", base_url="http://127.0.0.1:9001")
    beta = Worker.objects.create(name="beta", base_url="http://127.0.0.1:9002")
    on_alpha = make_task()
    on_beta = make_task()
    make_task()
    Task.objects.filter(pk=on_alpha.pk).update(worker=alpha)
    Task.objects.filter(pk=on_beta.pk).update(worker=beta)

    r = viewer_client.get(URL, {"worker": "alpha"})
    assert ids(r) == [str(on_alpha.id)]
    assert r.json()["results"][0]["worker"] == "alpha"
    assert ids(viewer_client.get(URL, {"worker": "gamma"})) == []


@pytest.mark.django_db
def test_it_rejects_a_worker_name_that_is_not_a_slug(viewer_client):
    r = viewer_client.get(URL, {"worker": "not a slug"})
    assert r.status_code == 400
    assert set(r.json()) == {"worker"}


@pytest.mark.django_db
def test_it_filters_by_creation_time(viewer_client, make_task):
    first = at(make_task(), T0)
    second = at(make_task(), T0 + timedelta(hours=1))
    third = at(make_task(), T0 + timedelta(hours=2))

    after = (T0 + timedelta(hours=1)).isoformat()
    before = (T0 + timedelta(hours=2)).isoformat()
    # created_after is inclusive, created_before exclusive: windows tile without overlap.
    assert ids(viewer_client.get(URL, {"created_after": after})) == [str(third.id), str(second.id)]
    assert ids(viewer_client.get(URL, {"created_before": before})) == [str(second.id), str(first.id)]
    assert ids(viewer_client.get(URL, {"created_after": after, "created_before": before})) == [str(second.id)]


@pytest.mark.django_db
@pytest.mark.parametrize("field", ["created_after", "created_before"])
def test_it_names_a_bad_date(viewer_client, field):
    r = viewer_client.get(URL, {field: "yesterday"})
    assert r.status_code == 400
    assert set(r.json()) == {field}


@pytest.mark.django_db
def test_it_searches_titles_ignoring_case(viewer_client, make_task):
    match = make_task(title="Fix the Flaky dispatcher test")
    make_task(title="Write docs")
    assert ids(viewer_client.get(URL, {"q": "flaky"})) == [str(match.id)]
    assert ids(viewer_client.get(URL, {"q": "FLAKY DISPATCHER"})) == [str(match.id)]
    assert ids(viewer_client.get(URL, {"q": "nothing like it"})) == []


@pytest.mark.django_db
def test_it_treats_search_wildcards_literally(viewer_client, make_task):
    match = make_task(title="Raise coverage to 100%")
    make_task(title="Raise coverage")
    assert ids(viewer_client.get(URL, {"q": "100%"})) == [str(match.id)]
    assert ids(viewer_client.get(URL, {"q": "%"})) == [str(match.id)]


@pytest.mark.django_db
def test_it_combines_filters(viewer_client, make_task):
    hit = make_task(title="alpha one", priority="high")
    make_task(title="alpha two", priority="low")
    set_state(make_task(title="alpha three", priority="high"), "paused")
    make_task(title="beta", priority="high")
    r = viewer_client.get(URL, {"q": "alpha", "priority": "high", "state": "queued"})
    assert ids(r) == [str(hit.id)]


@pytest.mark.django_db
def test_it_names_an_unknown_query_parameter(viewer_client):
    r = viewer_client.get(URL, {"status": "queued", "stat": "x"})
    assert r.status_code == 400
    assert r.json() == {"stat": ["Unknown field."], "status": ["Unknown field."]}


@pytest.mark.django_db
def test_it_accepts_the_format_parameter(viewer_client, make_task):
    task = make_task()
    assert ids(viewer_client.get(URL, {"format": "json"})) == [str(task.id)]


@pytest.fixture
def ordered_tasks(make_task) -> list[Task]:
    """Seven tasks with ties in created_at and in priority."""
    spec = [
        ("a", "low", T0),
        ("b", "high", T0),
        ("c", "high", T0),
        ("d", "medium", T0 + timedelta(seconds=1)),
        ("e", "critical", T0 + timedelta(seconds=1)),
        ("f", "high", T0 + timedelta(seconds=2)),
        ("g", "low", T0 + timedelta(seconds=3)),
    ]
    return [at(make_task(title=title, priority=priority), when) for title, priority, when in spec]


def expected(tasks: list[Task], ordering: str) -> list[str]:
    keys = {
        "-created_at": lambda t: (t.created_at, t.id),
        "created_at": lambda t: (t.created_at, t.id),
        "-priority": lambda t: (t.priority, t.created_at, t.id),
        "priority": lambda t: (t.priority, t.created_at, t.id),
    }
    rows = sorted(tasks, key=keys[ordering], reverse=ordering.startswith("-"))
    return [str(t.id) for t in rows]


@pytest.mark.django_db
@pytest.mark.parametrize("ordering", ["-created_at", "created_at", "-priority", "priority"])
def test_it_orders_the_list(viewer_client, ordered_tasks, ordering):
    assert ids(viewer_client.get(URL, {"ordering": ordering})) == expected(ordered_tasks, ordering)


@pytest.mark.django_db
def test_it_orders_by_priority_rank_not_by_name(viewer_client, ordered_tasks):
    priorities = [row["priority"] for row in viewer_client.get(URL, {"ordering": "-priority"}).json()["results"]]
    assert priorities == ["critical", "high", "high", "high", "medium", "low", "low"]


@pytest.mark.django_db
def test_it_names_an_unknown_ordering(viewer_client):
    r = viewer_client.get(URL, {"ordering": "title"})
    assert r.status_code == 400
    assert set(r.json()) == {"ordering"}


@pytest.mark.django_db
@pytest.mark.parametrize("ordering", ["-created_at", "created_at", "-priority", "priority"])
@pytest.mark.parametrize("page_size", [1, 2, 3])
def test_it_walks_every_page_once_in_order(viewer_client, ordered_tasks, ordering, page_size):
    seen = walk(viewer_client, f"ordering={ordering}&page_size={page_size}")
    assert seen == expected(ordered_tasks, ordering)
    assert len(set(seen)) == len(ordered_tasks)


@pytest.mark.django_db
def test_it_keeps_filters_across_pages(viewer_client, ordered_tasks):
    b, c, f = (t for t in ordered_tasks if t.priority == Priority.HIGH)
    set_state(b, "paused")
    seen = walk(viewer_client, "priority=high&state=queued&state=running&page_size=1&ordering=created_at")
    assert seen == expected([c, f], "created_at")

    first = viewer_client.get(URL, {"priority": "high", "page_size": 2}).json()["next"]
    query = parse_qs(urlparse(first).query)
    assert query["priority"] == ["high"]
    assert query["page_size"] == ["2"]
    assert query["cursor"]


@pytest.mark.django_db
def test_it_does_not_repeat_a_task_created_while_paging(viewer_client, ordered_tasks, make_task):
    r = viewer_client.get(URL, {"page_size": 3})
    first = ids(r)
    make_task(title="newer than every cursor")
    rest = walk(viewer_client, urlparse(r.json()["next"]).query)
    assert first + rest == expected(ordered_tasks, "-created_at")


@pytest.mark.django_db
@pytest.mark.parametrize(
    "cursor",
    [
        "garbage!",
        "e30",  # base64 of {}: not a list
        "WzFd",  # base64 of [1]: wrong length
        "WyJub3QgYSBkYXRlIiwgIm5vdCBhIHV1aWQiXQ",  # ["not a date", "not a uuid"]
        "x" * 501,
    ],
)
def test_it_names_an_invalid_cursor(viewer_client, ordered_tasks, cursor):
    r = viewer_client.get(URL, {"cursor": cursor})
    assert r.status_code == 400
    assert set(r.json()) == {"cursor"}


@pytest.mark.django_db
def test_it_rejects_a_cursor_from_another_ordering(viewer_client, ordered_tasks):
    by_date = viewer_client.get(URL, {"page_size": 2}).json()["next"]
    cursor = parse_qs(urlparse(by_date).query)["cursor"][0]
    r = viewer_client.get(URL, {"cursor": cursor, "ordering": "-priority"})
    assert r.status_code == 400
    assert set(r.json()) == {"cursor"}


@pytest.mark.django_db
@pytest.mark.parametrize("page_size", ["0", "501", "-1", "ten"])
def test_it_rejects_a_bad_page_size(viewer_client, page_size):
    r = viewer_client.get(URL, {"page_size": page_size})
    assert r.status_code == 400
    assert set(r.json()) == {"page_size"}


@pytest.mark.django_db
def test_it_defaults_to_pages_of_fifty(viewer_client, make_task):
    for _ in range(51):
        make_task()
    r = viewer_client.get(URL)
    assert len(ids(r)) == 50
    assert r.json()["next"]


def count_list_queries(client) -> int:
    with CaptureQueriesContext(connection) as ctx:
        assert client.get(URL, {"page_size": 50}).status_code == 200
    return len(ctx.captured_queries)


@pytest.mark.django_db
def test_it_lists_in_a_constant_number_of_queries(viewer_client, make_task, django_assert_max_num_queries):
    worker = Worker.objects.create(name="alpha", base_url="http://127.0.0.1:9001")

    def seed(n: int) -> None:
        for _ in range(n):
            make_task()
        Task.objects.update(worker=worker)

    seed(3)
    viewer_client.get(URL)  # warm the per-process caches (content types, etc.)
    few = count_list_queries(viewer_client)
    seed(17)
    many = count_list_queries(viewer_client)
    assert many == few
    # Token + user, the viewer's groups, one page of tasks with worker and creator joined.
    with django_assert_max_num_queries(3):
        viewer_client.get(URL, {"page_size": 50})
