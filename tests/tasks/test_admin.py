"""The Django admin as the operator console: roles, actions, the add form, the timeline, the big changelist."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import User
from django.contrib.messages import get_messages
from django.db import connection
from django.test import Client
from django.urls import reverse

from audit.models import AuditRecord
from config.admin_paginator import EstimatedCountPaginator, is_unfiltered
from security.principals import SYSTEM
from tasks import services
from tasks.admin import common as admin_common
from tasks.models import Task, TaskEvent, Worker

CHANGELIST = reverse("admin:tasks_task_changelist")
ADD = reverse("admin:tasks_task_add")


def change_url(task: Task) -> str:
    return reverse("admin:tasks_task_change", args=[task.pk])


def act_url(task: Task) -> str:
    return reverse("admin:tasks_task_act", args=[task.pk])


def console(client: Client, user: User) -> Client:
    """Log ``user`` in to the admin; admin access needs is_staff on top of a role."""
    user.is_staff = True
    user.save(update_fields=["is_staff"])
    client.force_login(user)
    return client


def action_post(client: Client, action: str, tasks: list[Task], reason: str = "") -> Any:
    data = {"action": action, "_selected_action": [str(t.pk) for t in tasks], "index": "0", "reason": reason}
    return client.post(CHANGELIST, data)


def messages_of(response: Any) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def counts() -> tuple[int, int, int]:
    return Task.objects.count(), TaskEvent.objects.count(), AuditRecord.objects.count()


# --- access -----------------------------------------------------------------------


def test_changelist_renders_for_viewer(client, viewer, make_task):
    task = make_task(title="Index the archive")
    response = console(client, viewer).get(CHANGELIST)
    assert response.status_code == 200
    assert task.title in response.text
    assert b"Index the archive" in response.content


def test_anonymous_is_sent_to_login(client, make_task):
    task = make_task()
    for url in (CHANGELIST, change_url(task), ADD):
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("admin:login"))
    response = client.post(act_url(task), {"action": "cancel"})
    assert response.status_code == 302
    assert Task.objects.get(pk=task.pk).state == "queued"


def test_a_role_without_is_staff_is_sent_to_login(client, operator, make_task):
    make_task()
    client.force_login(operator)  # operator, but not staff
    response = client.get(CHANGELIST)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))


def test_staff_without_a_role_is_denied(client, nobody, make_task):
    task = make_task()
    console(client, nobody)
    assert client.get(CHANGELIST).status_code == 403
    assert client.get(change_url(task)).status_code == 403
    assert client.get(reverse("admin:tasks_worker_changelist")).status_code == 403
    assert client.get(reverse("admin:audit_auditrecord_changelist")).status_code == 403
    index = client.get(reverse("admin:index"))
    assert index.status_code == 200
    assert CHANGELIST not in index.text


def test_viewer_sees_tasks_workers_and_audit(client, viewer, make_task):
    task = make_task()
    console(client, viewer)
    assert client.get(change_url(task)).status_code == 200
    assert client.get(reverse("admin:tasks_worker_changelist")).status_code == 200
    assert client.get(reverse("admin:audit_auditrecord_changelist")).status_code == 200


# --- bulk actions -------------------------------------------------------------------


def _queued(task: Task) -> None:
    pass


def _paused(task: Task) -> None:
    services.task_pause(task_id=task.pk, actor=SYSTEM)


def _canceled(task: Task) -> None:
    services.task_cancel(task_id=task.pk, actor=SYSTEM)


@pytest.mark.parametrize(
    ("prepare", "action", "expected"),
    [
        (_queued, "cancel_tasks", "canceled"),
        (_queued, "pause_tasks", "paused"),
        (_paused, "resume_tasks", "queued"),
        (_canceled, "retry_tasks", "queued"),
    ],
)
def test_each_action_goes_through_the_service(client, operator, make_task, prepare, action, expected):
    tasks = [make_task(title=f"Task {i}") for i in range(2)]
    for task in tasks:
        prepare(task)
    before = {t.pk: (t.events.count(), AuditRecord.objects.filter(resource_id=str(t.pk)).count()) for t in tasks}

    response = action_post(console(client, operator), action, tasks, reason="operator said so")

    assert response.status_code == 302
    verb = action.removesuffix("_tasks")
    for task in tasks:
        task.refresh_from_db()
        assert task.state == expected
        events, audits = before[task.pk]
        assert task.events.count() == events + 1
        records = AuditRecord.objects.filter(resource_id=str(task.pk)).order_by("id")
        assert records.count() == audits + 1
        record = records.last()
        assert record.action == f"task.{verb}"
        assert record.actor == f"user:{operator.pk}"
        assert record.reason == "operator said so"
        assert task.events.order_by("-seq").first().data["actor"] == f"user:{operator.pk}"
    assert any("applied to 2" in m for m in messages_of(response))


def test_a_partly_illegal_selection_applies_the_legal_ones_and_reports_the_others(client, operator, make_task):
    first, second, done = (make_task(title=t) for t in ("First", "Second", "Already done"))
    services.task_cancel(task_id=done.pk, actor=SYSTEM)
    done_events = done.events.count()
    done_audits = AuditRecord.objects.filter(resource_id=str(done.pk)).count()

    response = action_post(console(client, operator), "cancel_tasks", [first, second, done])

    assert response.status_code == 302
    assert Task.objects.get(pk=first.pk).state == "canceled"
    assert Task.objects.get(pk=second.pk).state == "canceled"
    assert done.events.count() == done_events
    assert AuditRecord.objects.filter(resource_id=str(done.pk)).count() == done_audits
    texts = messages_of(response)
    assert any(t.startswith("Cancel applied to 2") for t in texts)
    assert "Already done: Cannot cancel a task that is canceled." in texts


def test_an_illegal_action_writes_nothing(client, operator, make_task):
    task = make_task()
    before = counts()
    response = action_post(console(client, operator), "resume_tasks", [task])
    assert response.status_code == 302
    assert Task.objects.get(pk=task.pk).state == "queued"
    assert counts() == before
    assert f"{task.title}: Cannot resume a task that is queued." in messages_of(response)


def test_viewer_is_not_offered_actions_and_cannot_post_them(client, viewer, make_task):
    task = make_task()
    console(client, viewer)
    response = client.get(CHANGELIST)
    assert response.context["action_form"] is None
    assert "cancel_tasks" not in response.text

    before = counts()
    response = action_post(client, "cancel_tasks", [task])
    assert response.status_code == 200  # no action is offered, so the list is just shown again
    assert Task.objects.get(pk=task.pk).state == "queued"
    assert counts() == before


def test_operator_is_offered_the_four_actions_and_no_delete(client, operator, make_task):
    make_task()
    response = console(client, operator).get(CHANGELIST)
    choices = [name for name, _ in response.context["action_form"].fields["action"].choices if name]
    assert choices == ["cancel_tasks", "pause_tasks", "resume_tasks", "retry_tasks"]


def test_a_bulk_action_over_the_limit_changes_nothing(client, operator, make_task, monkeypatch):
    monkeypatch.setattr(admin_common, "BULK_ACTION_LIMIT", 2)
    tasks = [make_task(title=f"T{i}") for i in range(3)]
    before = counts()
    response = action_post(console(client, operator), "cancel_tasks", tasks)
    assert counts() == before
    assert any("at most 2 tasks" in m for m in messages_of(response))


# --- per-task buttons ---------------------------------------------------------------


def test_operator_sees_only_the_legal_buttons(client, operator, make_task):
    task = make_task()
    response = console(client, operator).get(change_url(task))
    assert response.context["task_actions"] == [("cancel", "Cancel"), ("pause", "Pause")]
    assert act_url(task) in response.text


def test_viewer_sees_no_buttons(client, viewer, make_task):
    task = make_task()
    response = console(client, viewer).get(change_url(task))
    assert response.status_code == 200
    assert "task_actions" not in response.context
    assert act_url(task) not in response.text


def test_a_button_calls_the_service(client, operator, make_task):
    task = make_task()
    response = console(client, operator).post(act_url(task), {"action": "pause", "reason": "lunch"})
    assert response.status_code == 302
    assert response["Location"] == change_url(task)
    task.refresh_from_db()
    assert task.state == "paused"
    record = AuditRecord.objects.filter(resource_id=str(task.pk), action="task.pause").get()
    assert record.actor == f"user:{operator.pk}"
    assert record.reason == "lunch"


def test_an_illegal_button_is_reported_and_writes_nothing(client, operator, make_task):
    task = make_task()
    before = counts()
    response = console(client, operator).post(act_url(task), {"action": "retry"})
    assert response.status_code == 302
    assert counts() == before
    assert messages_of(response) == ["Cannot retry a task that is queued."]


def test_the_button_view_refuses_viewer_bad_input_get_and_missing_csrf(operator, viewer, make_task):
    task = make_task()
    before = counts()
    assert console(Client(), viewer).post(act_url(task), {"action": "cancel"}).status_code == 403
    as_operator = console(Client(), operator)
    assert as_operator.post(act_url(task), {"action": "explode"}).status_code == 400
    assert as_operator.post(act_url(task), {"action": "cancel", "reason": "x" * 1001}).status_code == 400
    assert as_operator.get(act_url(task)).status_code == 405
    missing = reverse("admin:tasks_task_act", args=[uuid.uuid4()])
    assert as_operator.post(missing, {"action": "cancel"}).status_code == 404
    strict = console(Client(enforce_csrf_checks=True), operator)
    assert strict.post(act_url(task), {"action": "cancel"}).status_code == 403
    assert counts() == before
    assert Task.objects.get(pk=task.pk).state == "queued"


# --- read-only task page, no delete --------------------------------------------------


def test_task_fields_are_read_only_for_everyone(client, make_task):
    task = make_task()
    superuser = User.objects.create_superuser("root", password="pw-root")
    client.force_login(superuser)
    response = client.get(change_url(task))
    assert response.status_code == 200
    assert dict(response.context["adminform"].form.fields) == {}
    assert 'name="title"' not in response.text
    assert 'name="state"' not in response.text
    assert 'name="_save"' not in response.text
    response = client.post(change_url(task), {"title": "Renamed", "state": "completed"})
    assert response.status_code == 403
    task.refresh_from_db()
    assert (task.title, task.state) == ("Write the release notes", "queued")


def test_tasks_cannot_be_deleted_by_anyone(client, admin_user, make_task):
    task = make_task()
    superuser = User.objects.create_superuser("root", password="pw-root")
    for user in (admin_user, superuser):
        console(client, user)
        assert client.get(reverse("admin:tasks_task_delete", args=[task.pk])).status_code == 403
        assert client.post(reverse("admin:tasks_task_delete", args=[task.pk]), {"post": "yes"}).status_code == 403
        response = client.get(CHANGELIST)
        assert "delete_selected" not in dict(response.context["action_form"].fields["action"].choices)
        response = action_post(client, "delete_selected", [task])
        assert Task.objects.filter(pk=task.pk).exists()


# --- add form -----------------------------------------------------------------------


def test_operator_creates_a_task_through_the_service(client, operator):
    console(client, operator)
    assert client.get(ADD).status_code == 200
    spec = {"title": "Ship the admin", "risk_tier": 1, "priority": "high"}
    response = client.post(ADD, {"spec": json.dumps(spec)})
    assert response.status_code == 302
    task = Task.objects.get()
    assert (task.title, task.state, task.risk_tier, task.get_priority_display()) == (
        "Ship the admin",
        "queued",
        1,
        "high",
    )
    assert task.created_by == operator
    assert list(task.events.values_list("seq", "type")) == [(1, "created")]
    record = AuditRecord.objects.get()
    assert (record.action, record.actor, record.resource_id) == ("task.create", f"user:{operator.pk}", str(task.pk))
    assert response["Location"] == change_url(task)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("{not json", "Enter a valid JSON."),
        ("null", "This field is required."),
        ("[1, 2]", "Invalid data. Expected a dictionary"),
        (json.dumps({"title": "x", "risk_tier": 9}), "risk_tier: Ensure this value is less than or equal to 3."),
        (json.dumps({"title": "x", "risk_teir": 1}), "risk_teir: Unknown field."),
        (json.dumps({"risk_tier": 1}), "title: This field is required."),
        (json.dumps({"title": "x", "scope": {"in": ["/etc"]}}), "scope.in.0: Must be a relative path"),
    ],
)
def test_a_bad_spec_is_refused_on_the_field_and_writes_nothing(client, operator, raw, expected):
    console(client, operator)
    before = (*counts(), LogEntry.objects.count())
    response = client.post(ADD, {"spec": raw})
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors["spec"]
    assert any(expected in e for e in errors), errors
    assert (*counts(), LogEntry.objects.count()) == before


def test_viewer_cannot_add_a_task(client, viewer):
    console(client, viewer)
    assert client.get(ADD).status_code == 403
    assert client.post(ADD, {"spec": json.dumps({"title": "Sneaky"})}).status_code == 403
    assert counts() == (0, 0, 0)


# --- timeline ------------------------------------------------------------------------


def _long_timeline(task: Task, extra: int) -> None:
    """Give ``task`` ``extra`` more events, numbered as the services number them."""
    start = task.event_seq
    TaskEvent.objects.bulk_create(
        TaskEvent(task=task, seq=start + i, type="progress", data={"percent": i % 100}) for i in range(1, extra + 1)
    )
    Task.objects.filter(pk=task.pk).update(event_seq=start + extra)
    task.refresh_from_db()


def test_the_timeline_shows_the_latest_events_and_the_total(client, viewer, make_task, django_assert_max_num_queries):
    task = make_task()
    _long_timeline(task, 1200)
    console(client, viewer)
    with django_assert_max_num_queries(12):
        response = client.get(change_url(task))
    assert response.status_code == 200
    (timeline,) = response.context["inline_admin_formsets"]
    seqs = [form.instance.seq for form in timeline.formset.forms]
    assert seqs == list(range(1152, 1202))
    assert "latest 50 of 1201 events" in response.text
    assert 'name="events-0-type"' not in response.text  # read-only rows


def test_a_short_timeline_is_shown_whole(client, viewer, make_task):
    task = make_task()
    services.task_pause(task_id=task.pk, actor=SYSTEM)
    response = console(client, viewer).get(change_url(task))
    (timeline,) = response.context["inline_admin_formsets"]
    assert [f.instance.type for f in timeline.formset.forms] == ["created", "paused"]
    assert "timeline (2 events)" in response.text.lower()


# --- the big changelist --------------------------------------------------------------


def _spread(tasks: list[Task], workers: list[Worker]) -> None:
    for i, task in enumerate(tasks):
        Task.objects.filter(pk=task.pk).update(worker=workers[i % len(workers)])


def test_the_changelist_query_count_does_not_grow_with_rows(client, viewer, make_task, django_assert_num_queries):
    workers = [Worker.objects.create(name=f"w{i}", base_url=f"http://127.0.0.1:90{i}0") for i in range(3)]
    console(client, viewer)
    _spread([make_task(title=f"few {i}") for i in range(3)], workers)
    # session, user, role groups, worker filter choices, count (on PostgreSQL preceded by the planner
    # estimate), the auth app's model permissions (two, for the nav sidebar), the page
    expected = 9 if connection.vendor == "postgresql" else 8
    with django_assert_num_queries(expected):
        assert client.get(CHANGELIST).status_code == 200
    _spread([make_task(title=f"many {i}") for i in range(40)], workers)
    with django_assert_num_queries(expected):
        response = client.get(CHANGELIST)
    assert "many 39" in response.text
    assert "w2" in response.text


def test_filters_and_search(client, viewer, make_task):
    keep = make_task(title="Rotate the keys", risk_tier=1)
    other = make_task(title="Water the plants", risk_tier=3)
    services.task_pause(task_id=other.pk, actor=SYSTEM)
    console(client, viewer)

    def titles(query: dict[str, str]) -> set[str]:
        response = client.get(CHANGELIST, query)
        assert response.status_code == 200
        return {t.title for t in response.context["cl"].result_list}

    assert titles({"state__exact": "paused"}) == {"Water the plants"}
    assert titles({"risk_tier": "1"}) == {"Rotate the keys"}
    assert titles({"q": "rotate keys"}) == {"Rotate the keys"}
    assert titles({"q": str(other.pk)}) == {"Water the plants"}
    assert titles({"q": str(uuid.uuid4())}) == set()
    assert keep.pk != other.pk


def test_the_task_admin_is_set_up_for_a_million_rows():
    from django.contrib import admin

    model_admin = admin.site._registry[Task]
    assert model_admin.show_full_result_count is False
    assert model_admin.paginator is EstimatedCountPaginator
    assert model_admin.date_hierarchy is None
    assert list(model_admin.ordering) == ["-created_at", "-id"]


# --- the estimating paginator ---------------------------------------------------------


def test_the_paginator_counts_exactly_on_sqlite(make_task, django_assert_num_queries):
    if connection.vendor != "sqlite":
        pytest.skip("the SQLite path")
    for i in range(3):
        make_task(title=f"t{i}")
    paginator = EstimatedCountPaginator(Task.objects.all(), 2)
    with django_assert_num_queries(1) as captured:
        assert paginator.count == 3
    assert "COUNT" in captured.captured_queries[0]["sql"].upper()
    assert EstimatedCountPaginator(Task.objects.filter(title="t1"), 2).count == 1


def test_unfiltered_means_no_where_clause():
    assert is_unfiltered(Task.objects.all())
    assert is_unfiltered(Task.objects.select_related("worker").order_by("-created_at").filter())
    assert not is_unfiltered(Task.objects.filter(state="queued"))
    assert not is_unfiltered(Task.objects.all()[:5])
    assert not is_unfiltered(Task.objects.distinct())
    assert not is_unfiltered([1, 2, 3])


@pytest.fixture
def analyzed_tasks(db) -> Callable[[int], None]:
    """Insert rows and ANALYZE, then undo both: ANALYZE writes pg_class in place, past any rollback."""

    def analyze(n: int) -> None:
        Task.objects.bulk_create(Task(title=f"bulk {i}", spec={"title": f"bulk {i}"}) for i in range(n))
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE tasks_task")

    yield analyze
    Task.objects.all().delete()
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE tasks_task")


@pytest.mark.postgres
def test_the_paginator_uses_the_planner_estimate_on_a_large_postgres_table(analyzed_tasks, monkeypatch):
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL")
    monkeypatch.setattr(EstimatedCountPaginator, "estimate_threshold", 40)
    analyzed_tasks(50)
    # Rows added after ANALYZE are not in the estimate: that is how we see it was used.
    Task.objects.bulk_create(Task(title=f"late {i}", spec={"title": "late"}) for i in range(5))
    assert EstimatedCountPaginator(Task.objects.all(), 10).count == 50
    # Filtered: always an exact count.
    assert EstimatedCountPaginator(Task.objects.filter(title__startswith="late"), 10).count == 5
    # Below the threshold: exact.
    monkeypatch.setattr(EstimatedCountPaginator, "estimate_threshold", 10_000)
    assert EstimatedCountPaginator(Task.objects.all(), 10).count == 55


@pytest.mark.postgres
def test_the_paginator_counts_exactly_on_a_never_analyzed_postgres_table(make_task):
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL")
    make_task()
    assert EstimatedCountPaginator(Task.objects.all(), 10).count == 1


# --- workers and audit ----------------------------------------------------------------


def _worker_form(**overrides: Any) -> dict[str, Any]:
    data = {
        "name": "builder",
        "base_url": "http://127.0.0.1:9100",
        "capabilities": '["python"]',
        "max_concurrency": 4,
        "enabled": "on",
        "request_timeout_s": 30,
        "retry_max_attempts": 3,
        "retry_initial_backoff_ms": 500,
        "retry_max_backoff_ms": 5000,
        "breaker_fail_max": 5,
        "breaker_reset_timeout_s": 60,
    }
    return data | overrides


def test_only_the_admin_role_writes_workers(client, viewer, operator, admin_user):
    add = reverse("admin:tasks_worker_add")
    for user in (viewer, operator):
        console(client, user)
        assert client.get(reverse("admin:tasks_worker_changelist")).status_code == 200
        assert client.post(add, _worker_form()).status_code == 403
    assert not Worker.objects.exists()

    console(client, admin_user)
    response = client.post(add, _worker_form())
    assert response.status_code == 302
    worker = Worker.objects.get(name="builder")
    assert worker.capabilities == ["python"]

    change = reverse("admin:tasks_worker_change", args=[worker.pk])
    delete = reverse("admin:tasks_worker_delete", args=[worker.pk])
    console(client, operator)
    assert client.post(change, _worker_form(max_concurrency=9)).status_code == 403
    assert client.post(delete, {"post": "yes"}).status_code == 403
    worker.refresh_from_db()
    assert worker.max_concurrency == 4

    console(client, admin_user)
    assert client.post(change, _worker_form(max_concurrency=9)).status_code == 302
    worker.refresh_from_db()
    assert worker.max_concurrency == 9
    assert client.post(delete, {"post": "yes"}).status_code == 302
    assert not Worker.objects.exists()
    actor = f"user:{admin_user.pk}"
    records = AuditRecord.objects.filter(resource_type="worker", resource_id="builder").order_by("id")
    assert [(r.actor, r.action) for r in records] == [
        (actor, "worker.register"),
        (actor, "worker.update"),
        (actor, "worker.delete"),
    ]
    assert "max_concurrency" in records[1].data["changed"]


def test_the_worker_form_rejects_bad_input(client, admin_user):
    console(client, admin_user)
    response = client.post(reverse("admin:tasks_worker_add"), _worker_form(base_url="not a url", max_concurrency=0))
    assert response.status_code == 200
    assert set(response.context["adminform"].form.errors) >= {"base_url"}
    assert not Worker.objects.exists()


LEGACY_URL = "https://bob:hunter2-pw@fn.example.net/run?code=abcdefgh1234"
LEGACY_SECRETS = ("bob", "hunter2", "abcdefgh1234", "code=")


def _legacy_worker() -> Worker:
    """A row from before the URL policy, credentials in its URL (no door can register one now)."""
    worker = Worker(name="legacy", base_url=LEGACY_URL, capabilities=["python"])
    worker.token = "legacy-bearer-token"
    worker.save()
    return worker


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("ftp://files.example.com/worker", "ftp:// is not supported"),
        ("http://user:pass@127.0.0.1:9100", "`token` field"),
        ("https://fn.example.net/run?code=abc", "`token` field"),
    ],
)
def test_the_worker_form_refuses_other_schemes_and_credentials_in_the_url(client, admin_user, url, words):
    console(client, admin_user)
    response = client.post(reverse("admin:tasks_worker_add"), _worker_form(base_url=url))
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert list(errors) == ["base_url"]
    assert words in errors["base_url"][0]
    assert not Worker.objects.exists()
    assert not AuditRecord.objects.exists()


def test_the_worker_form_accepts_a_single_label_host_as_the_api_does(client, admin_user):
    console(client, admin_user)
    response = client.post(reverse("admin:tasks_worker_add"), _worker_form(base_url="http://worker:8080"))
    assert response.status_code == 302
    assert Worker.objects.get().base_url == "http://worker:8080"


def test_a_taken_worker_name_is_a_form_error(client, admin_user):
    console(client, admin_user)
    assert client.post(reverse("admin:tasks_worker_add"), _worker_form()).status_code == 302
    response = client.post(reverse("admin:tasks_worker_add"), _worker_form(base_url="http://127.0.0.1:9200"))
    assert response.status_code == 200
    assert "name" in response.context["adminform"].form.errors
    assert Worker.objects.get().base_url == "http://127.0.0.1:9100"
    assert AuditRecord.objects.count() == 1


@pytest.mark.parametrize("role", ["viewer", "admin_user"])
def test_the_worker_list_never_shows_credentials(db, client, request, role):
    _legacy_worker()
    console(client, request.getfixturevalue(role))
    page = client.get(reverse("admin:tasks_worker_changelist")).text
    assert "https://fn.example.net/run" in page
    for secret in (*LEGACY_SECRETS, "legacy-bearer-token"):
        assert secret not in page
    # Searching the stored URL would let a viewer probe a credential character by character.
    found = client.get(reverse("admin:tasks_worker_changelist"), {"q": "hunter2"})
    assert found.context["cl"].result_count == 0


def test_a_viewer_sees_a_worker_without_its_credentials_or_token(client, viewer):
    worker = _legacy_worker()
    console(client, viewer)
    page = client.get(reverse("admin:tasks_worker_change", args=[worker.pk])).text
    assert "https://fn.example.net/run" in page
    for secret in (*LEGACY_SECRETS, "legacy-bearer-token", worker.token_ciphertext):
        assert secret not in page


def test_an_admin_edits_an_old_row_without_seeing_or_losing_its_url(client, admin_user):
    worker = _legacy_worker()
    console(client, admin_user)
    change = reverse("admin:tasks_worker_change", args=[worker.pk])
    page = client.get(change).text
    assert 'value="https://fn.example.net/run"' in page
    for secret in (*LEGACY_SECRETS, "legacy-bearer-token"):
        assert secret not in page
    # Posting the URL as shown keeps the stored one; only the changed setting is written.
    form = _worker_form(name="legacy", base_url="https://fn.example.net/run", max_concurrency=6)
    assert client.post(change, form).status_code == 302
    worker.refresh_from_db()
    assert (worker.base_url, worker.max_concurrency, worker.token) == (LEGACY_URL, 6, "legacy-bearer-token")
    record = AuditRecord.objects.get()
    assert (record.action, record.data["changed"], record.data["url"]) == (
        "worker.update",
        ["max_concurrency"],
        "https://fn.example.net/run",
    )


def test_a_workers_name_cannot_change_in_the_console(client, admin_user):
    console(client, admin_user)
    client.post(reverse("admin:tasks_worker_add"), _worker_form())
    worker = Worker.objects.get()
    change = reverse("admin:tasks_worker_change", args=[worker.pk])
    assert client.post(change, _worker_form(name="renamed", max_concurrency=2)).status_code == 302
    worker.refresh_from_db()
    assert (worker.name, worker.max_concurrency) == ("builder", 2)


def test_a_worker_with_a_running_task_is_protected_from_deletion(client, admin_user, make_task):
    console(client, admin_user)
    client.post(reverse("admin:tasks_worker_add"), _worker_form())
    worker = Worker.objects.get()
    task = make_task()
    Task.objects.filter(pk=task.pk).update(state="running", worker=worker, attempt=1)
    audit_count = AuditRecord.objects.count()
    delete = reverse("admin:tasks_worker_delete", args=[worker.pk])
    assert "1 task(s) running or canceling" in client.get(delete).text
    client.post(delete, {"post": "yes"})
    assert Worker.objects.filter(pk=worker.pk).exists()
    assert AuditRecord.objects.count() == audit_count


def test_audit_records_are_read_only_even_for_a_superuser(client, viewer, make_task):
    make_task()
    record = AuditRecord.objects.get()
    superuser = User.objects.create_superuser("root", password="pw-root")
    client.force_login(superuser)
    change = reverse("admin:audit_auditrecord_change", args=[record.pk])
    assert client.get(reverse("admin:audit_auditrecord_add")).status_code == 403
    response = client.get(change)
    assert response.status_code == 200
    assert 'name="_save"' not in response.text
    assert client.post(change, {"actor": "user:0", "action": "forged"}).status_code == 403
    assert client.post(reverse("admin:audit_auditrecord_delete", args=[record.pk]), {"post": "yes"}).status_code == 403
    response = client.get(reverse("admin:audit_auditrecord_changelist"))
    assert "delete_selected" not in response.text
    record.refresh_from_db()
    assert (record.action, AuditRecord.objects.count()) == ("task.create", 1)

    console(client, viewer)
    assert client.get(reverse("admin:audit_auditrecord_changelist")).status_code == 200


def test_the_worker_token_is_write_only_and_encrypted(client, admin_user):
    console(client, admin_user)
    assert client.post(reverse("admin:tasks_worker_add"), _worker_form(token="s3cret-token")).status_code == 302
    worker = Worker.objects.get()
    assert worker.token == "s3cret-token"
    assert "s3cret-token" not in worker.token_ciphertext
    change = reverse("admin:tasks_worker_change", args=[worker.pk])
    page = client.get(change).text
    assert "s3cret-token" not in page
    assert worker.token_ciphertext not in page
    # A blank token field keeps the stored token.
    assert client.post(change, _worker_form(max_concurrency=2)).status_code == 302
    worker.refresh_from_db()
    assert (worker.max_concurrency, worker.token) == (2, "s3cret-token")


def test_the_change_page_shows_verdicts_and_violations_and_operators_override(client, operator, viewer, make_task):
    from tasks.models import Verdict

    task = make_task(risk_tier=1, acceptance=[{"id": "A1", "given": "g", "when": "w", "then": "t"}])
    violation = {
        "gate": "placeholders",
        "rule": "placeholders.placeholder_code",
        "severity": "critical",
        "file": "src/a.py",
        "line": 2,
        "message": "PLACEHOLDER: fill in",
        "waived_by": None,
    }
    Task.objects.filter(pk=task.pk).update(state="awaiting_review", attempt=1, violations=[violation])
    verdict = Verdict.objects.create(
        task=task,
        attempt=1,
        decision="changes_requested",
        automatic=True,
        score=0.7,
        threshold=0.9,
        violations=[violation],
    )
    console(client, viewer)
    page = client.get(change_url(task))
    assert verdict.provenance_id in page.text
    assert "PLACEHOLDER: fill in" in page.text
    assert "task-override" not in page.text  # viewers get no override form

    console(client, operator)
    page = client.get(change_url(task))
    assert "task-override" in page.text
    short = client.post(act_url(task), {"action": "override", "decision": "approve", "reason": "ok"})
    assert short.status_code == 302
    assert Task.objects.get(pk=task.pk).state == "awaiting_review"
    response = client.post(
        act_url(task), {"action": "override", "decision": "approve", "reason": "Reviewed, the finding is fine."}
    )
    assert response.status_code == 302
    assert Task.objects.get(pk=task.pk).state == "completed"
    record = AuditRecord.objects.get(action="task.override")
    assert record.actor == f"user:{operator.pk}"
    assert Verdict.objects.filter(task=task, automatic=False, decided_by=operator).count() == 1


@pytest.mark.django_db
def test_a_lookup_no_filter_offers_is_refused_so_a_stored_url_cannot_be_probed(client, viewer):
    from tasks.models import Worker

    Worker.objects.create(name="legacy", base_url="https://svc:Sup3rS3cretPw@worker.example.com/run")
    viewer.is_staff = True
    viewer.save()
    client.force_login(viewer)
    for probe in ("base_url__contains=Sup3r", "base_url__contains=WRONG", "base_url__regex=S.p"):
        response = client.get(f"/admin/tasks/worker/?{probe}")
        # Django answers a disallowed lookup with a redirect to ?e=1 (an error), never the filtered list.
        assert response.status_code in (302, 400), (probe, response.status_code)
        assert b"legacy" not in response.content
    assert client.get("/admin/tasks/worker/?enabled__exact=1").status_code == 200
