"""GET /tasks/<id>/: the spec, the live summary, the paged timeline; its htmx fragments."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from tasks.models import Task, TaskEvent, Waiver
from tasks.states import TaskAction, target_state

pytestmark = pytest.mark.django_db

PLACEHOLDER = {
    "status": "completed",
    "output": "half done",
    "files_modified": [
        {"path": "src/a.py", "operation": "create", "content": "def f():\n    raise NotImplementedError\n"}
    ],
}
HX = {"HX-Request": "true"}


def url(task: Task, query: str = "") -> str:
    return f"/tasks/{task.pk}/{query}"


def seqs(body: str) -> list[int]:
    return [int(s) for s in re.findall(r'<tr class="event" data-seq="(\d+)">', body)]


def add_events(task: Task, count: int) -> None:
    """``count`` more worker progress entries on the timeline (as the dispatcher stores them)."""
    first = task.event_seq + 1
    TaskEvent.objects.bulk_create(
        [
            TaskEvent(task=task, seq=seq, type="worker.progress", data={"payload": {"percent": seq % 100}})
            for seq in range(first, first + count)
        ],
        batch_size=5000,
    )
    Task.objects.filter(pk=task.pk).update(event_seq=first + count - 1)
    task.refresh_from_db()


def test_anonymous_visitors_are_sent_to_log_in(client, make_task):
    task = make_task()
    r = client.get(url(task))
    assert r.status_code == 302
    assert r["Location"] == f"/login/?next=/tasks/{task.pk}/"


def test_htmx_requests_of_anonymous_visitors_get_a_401_with_a_redirect(client, make_task):
    r = client.get(url(make_task()), headers=HX)
    assert r.status_code == 401
    assert r["HX-Redirect"].startswith("/login/")


def test_a_user_without_a_role_is_refused(nobody_page, make_task):
    assert nobody_page.get(url(make_task())).status_code == 403


def test_an_unknown_task_is_a_404(viewer_page):
    assert viewer_page.get(f"/tasks/{uuid.uuid4()}/").status_code == 404


@pytest.mark.parametrize(
    ("query", "field"), [("?before=0", "before"), ("?before=x", "before"), ("?after=-1", "after"), ("?page=2", "page")]
)
def test_bad_paging_input_is_a_400_naming_the_field(viewer_page, make_task, query, field):
    r = viewer_page.get(url(make_task(), query))
    assert r.status_code == 400
    assert f"<strong>{field}</strong>" in r.content.decode()


def test_a_viewer_sees_the_task_and_no_action(viewer_page, make_task, run, report):
    task = run(make_task(title="Index the archive", priority="high", scope={"in": ["src"]}))
    task = report(task, kind="progress", events=[{"type": "progress", "percent": 40, "phase": "indexing"}])
    body = viewer_page.get(url(task)).content.decode()
    assert "<h1>Index the archive</h1>" in body
    assert '<span class="badge running" data-state>running</span>' in body
    assert '<progress id="task-progress" value="40" max="100">' in body
    assert "Progress: indexing" in body
    assert "<dt>Attempt</dt><dd>1 of 3</dd>" in body
    assert "<dt>Worker</dt><dd>w1</dd>" in body
    assert "&quot;scope&quot;: {" in body  # the spec, as JSON
    assert 'data-stream="/api/v1/tasks/stream?task=' in body
    assert "Actions" not in body
    assert "/actions/" not in body
    assert "<button" not in body.split("<main")[1]


@pytest.mark.parametrize("state", ["queued", "running", "paused", "failed", "canceled", "canceling"])
def test_an_operator_is_offered_exactly_the_actions_legal_from_the_state(operator_page, make_task, state):
    task = make_task()
    Task.objects.filter(pk=task.pk).update(state=state)  # the table decides, not how it got there
    body = operator_page.get(url(task)).content.decode()
    offered = set(re.findall(r'<input type="hidden" name="action" value="(\w+)">', body))
    assert offered == {a.value for a in TaskAction if target_state(a, state)}
    assert "override" not in offered  # a failed task without a judged result


def test_an_override_is_offered_on_a_result_the_gates_failed(operator_page, viewer_page, make_task, run, report):
    task = report(run(make_task(max_attempts=1)), kind="result", result=PLACEHOLDER)
    assert task.state == "failed"
    body = operator_page.get(url(task)).content.decode()
    assert '<input type="hidden" name="action" value="override">' in body
    assert '<option value="request_changes">request changes</option>' in body
    assert 'name="action" value="override"' not in viewer_page.get(url(task)).content.decode()


def test_it_shows_result_verdict_violations_waivers_and_provenance(viewer_page, make_task, run, report, admin_user):
    task = make_task(title="gated", max_attempts=1)
    Waiver.objects.create(
        title="Legacy stub",
        reason="legacy_integration",
        gates=["placeholders"],
        justification="The legacy module keeps its stub until the port.",
        expires_at=timezone.now() + timedelta(days=1),
        task=task,
        status="approved",
        requested_by=admin_user,
        decided_by=admin_user,
    )
    task = report(run(task), kind="result", result=PLACEHOLDER)
    verdict = task.verdicts.get()
    body = viewer_page.get(url(task)).content.decode()
    assert "half done" in body  # the output
    assert "<code>src/a.py</code>" in body
    assert f"<code>{verdict.provenance_id}</code>" in body
    assert f"Agency-Task: {task.pk}" in body
    assert f"Agency-Verdict: {verdict.provenance_id}" in body
    assert "Violations" in body
    assert "Waivers that applied" in body
    assert "“Legacy stub”" in body


def test_cancel_requested_and_worker_stopped_are_two_facts(viewer_page, operator, make_task, run, report):
    from tasks import services

    task = run(make_task())
    services.task_cancel(task_id=task.pk, actor=operator, reason="wrong branch")
    body = viewer_page.get(url(task)).content.decode()
    requested = re.search(r'<dd data-fact="cancel-requested">(.*?)</dd>', body, re.S).group(1)
    assert "by otto" in requested
    assert "“wrong branch”" in requested
    stopped = re.search(r'<dd data-fact="worker-stopped">(.*?)</dd>', body, re.S).group(1)
    assert "not yet: waiting for the worker to stop attempt 1" in stopped

    task.refresh_from_db()
    report(task, kind="stopped", error="canceled")
    confirmation = TaskEvent.objects.filter(task=task, type="canceled").get()
    body = viewer_page.get(url(task)).content.decode()
    stopped = re.search(r'<dd data-fact="worker-stopped">(.*?)</dd>', body, re.S).group(1)
    assert confirmation.created_at.strftime("%Y-%m-%d %H:%M:%S") in stopped
    assert "attempt 1 stopped, confirmed by its dispatcher" in stopped
    assert '<dd data-fact="cancel-requested">' in body


def test_a_task_canceled_before_it_ran_says_no_attempt_was_running(viewer_page, canceled_task):
    body = viewer_page.get(url(canceled_task)).content.decode()
    assert "no attempt was running (canceled while queued)" in body


def test_the_timeline_shows_the_newest_50_and_links_to_older_ones(viewer_page, make_task):
    task = make_task()
    add_events(task, 119)  # 120 in all
    body = viewer_page.get(url(task)).content.decode()
    assert seqs(body) == list(range(71, 121))
    assert f'href="/tasks/{task.pk}/?before=71#timeline"' in body
    assert f'hx-get="/tasks/{task.pk}/?before=71"' in body
    assert '<input type="hidden" id="timeline-after" name="after" value="120">' in body

    older = viewer_page.get(url(task, "?before=71"), headers=HX).content.decode()
    assert seqs(older) == list(range(21, 71))
    assert "?before=21" in older
    assert "<html" not in older
    oldest = viewer_page.get(url(task, "?before=21"), headers=HX).content.decode()
    assert seqs(oldest) == list(range(1, 21))
    assert "Load older events" not in oldest


def test_without_javascript_older_events_are_a_page_of_their_own(viewer_page, make_task):
    task = make_task()
    add_events(task, 119)
    body = viewer_page.get(url(task, "?before=71")).content.decode()
    assert "<h1>" in body
    assert seqs(body) == list(range(21, 71))
    assert f'<a href="/tasks/{task.pk}/#timeline">Latest events</a>' in body
    assert "data-stream" not in body  # an old page does not grow at the bottom


def test_new_events_come_as_a_fragment_with_the_new_last_seq(viewer_page, make_task):
    task = make_task()
    add_events(task, 5)  # seq 2..6
    body = viewer_page.get(url(task, "?after=3"), headers=HX).content.decode()
    assert seqs(body) == [4, 5, 6]
    assert '<input type="hidden" id="timeline-after" name="after" value="6" hx-swap-oob="true">' in body
    nothing = viewer_page.get(url(task, "?after=6"), headers=HX).content.decode()
    assert seqs(nothing) == []
    assert 'value="6" hx-swap-oob="true"' in nothing


def test_the_summary_fragment_is_what_refreshes_on_an_event(viewer_page, make_task, run):
    task = run(make_task())
    body = viewer_page.get(url(task), headers=HX).content.decode()
    assert '<span class="badge running" data-state>running</span>' in body
    assert "<html" not in body
    assert "timeline-rows" not in body


def test_the_refresh_keeps_the_action_forms_until_the_actions_on_offer_change(operator_page, operator, make_task, run):
    # hx-preserve keeps the element of the same id: the same state offers the same forms, so a
    # refresh every second never replaces the button being clicked; a new state brings new ones.
    from tasks import services

    task = run(make_task())
    running = operator_page.get(url(task), headers=HX).content.decode()
    again = operator_page.get(url(task), headers=HX).content.decode()
    ids = re.findall(
        r'<section class="card" aria-labelledby="actions-heading" id="([^"]+)" hx-preserve="true">', running
    )
    assert len(ids) == 1
    assert ids == re.findall(r'id="(task-actions-[^"]+)" hx-preserve="true"', again)
    services.task_pause(task_id=task.pk, actor=operator, reason="hold")
    paused = operator_page.get(url(task), headers=HX).content.decode()
    assert re.findall(r'id="(task-actions-[^"]+)" hx-preserve="true"', paused) != ids


def test_a_task_with_100000_events_reads_one_page_of_them(viewer_page, make_task, django_assert_num_queries):
    task = make_task()
    add_events(task, 99_999)
    viewer_page.get(url(task))  # warm: the session
    # session, user, roles, the task, one page of events, the verdict (none: no provenance read)
    # (How fast it opens is measured by bench/sse.py, not here.)
    with django_assert_num_queries(6):
        r = viewer_page.get(url(task))
    body = r.content.decode()
    assert r.status_code == 200
    assert seqs(body) == list(range(99_951, 100_001))
    assert "Load older events" in body


def test_the_detail_queries_do_not_grow_with_the_timeline(operator_page, make_task, run, report):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    task = report(run(make_task(max_attempts=1)), kind="result", result=PLACEHOLDER)

    def count() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert operator_page.get(url(task)).status_code == 200
        return len(queries)

    small = count()
    add_events(task, 500)
    assert count() == small


def test_it_needs_a_get(viewer_page, make_task):
    assert viewer_page.post(url(make_task())).status_code == 405


def test_the_page_resumes_its_stream_from_the_event_it_was_rendered_at(viewer_page, make_task):
    # Whatever happens between the render and the stream's connection is replayed, not lost.
    task = make_task()
    add_events(task, 4)
    task.refresh_from_db()
    body = viewer_page.get(url(task)).content.decode()
    assert (
        f'data-stream="/api/v1/tasks/stream?task={task.pk}" data-last-event-id="task-{task.pk}:{task.event_seq}"'
        in body
    )


def test_an_event_committed_between_the_task_read_and_the_timeline_read_is_not_shown_twice(viewer_page, make_task):
    from tasks.pages.detail import _timeline

    task = make_task()
    stale = Task.objects.get(pk=task.pk)  # the row as the page read it
    add_events(task, 1)  # then the dispatcher commits seq 2, before the timeline is read
    timeline = _timeline(stale, None)
    assert [e.seq for e in timeline["entries"]] == [1]
    assert timeline["last_seq"] == 1
    # The first live append (?after=1) brings seq 2, so it is on the page once.
    appended = viewer_page.get(url(task, "?after=1"), headers=HX).content.decode()
    assert seqs(appended) == [2]
