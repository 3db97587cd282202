"""A page whose SSE connection is cut catches up when it comes back: every missed change, once, in order.

The cut is real, on the wire (see proxy.py: Chromium's offline emulation leaves an open
EventSource streaming): the page is loaded through a relay that resets every connection and
refuses new ones while the test causes changes through the API, straight to the server.
Then the relay lets connections through again and the page must show what happened.
The second test cuts the stream the other way a page can lose it, through live.js's own
``agencyLive.drop`` (EventSource closed: live.js reopens it with ``?lastEventId=``).
"""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import log_in
from tests.browser.proxy import Relay
from tests.browser.support import BROWSER_MARKS, wait_until

pytestmark = BROWSER_MARKS

# Collects the page's agency-task DOM events (what live.js re-dispatches from the stream).
RECORD_TASK_EVENTS = """() => {
  window.__agencyTasks = [];
  document.body.addEventListener("agency-task", (e) => window.__agencyTasks.push(e.detail));
  window.__notReloaded = true;
}"""


@pytest.fixture
def relay(server):
    cable = Relay(server.port)
    yield cable
    cable.close()


def live_status(page):
    return page.locator("[data-live-status]").first


def received_for(page, task_id: str) -> list[dict]:
    return page.evaluate("(id) => window.__agencyTasks.filter((d) => d && d.task_id === id)", task_id)


@pytest.mark.parametrize(
    "heard_before",
    [
        pytest.param(True, id="after-an-event"),
        # A page that has heard nothing yet holds no event id: the stream must give it the
        # current one when it opens, or what happens during the first cut is lost.
        pytest.param(False, id="before-any-event"),
    ],
)
def test_the_tasks_page_shows_a_task_that_ran_while_its_connection_was_cut(server, new_context, relay, heard_before):
    page = new_context(base_url=relay.url).new_page()
    log_in(page, server, "operator", "/tasks/")
    expect(live_status(page)).to_have_attribute("data-state", "live")
    page.evaluate(RECORD_TASK_EVENTS)
    if heard_before:
        earlier = server.create_task(title="Ran while the dashboard was connected")
        expect(page.get_by_role("row").filter(has_text="Ran while the dashboard was connected")).to_contain_text(
            "completed"
        )
        # The row may show "completed" (read from the database) a moment before its event arrives.
        wait_until(lambda: len(received_for(page, earlier["id"])) >= 3, what="the three transitions of the task")
        assert [e["to_state"] for e in received_for(page, earlier["id"])] == ["queued", "running", "completed"]

    relay.cut()
    expect(live_status(page)).to_have_attribute("data-state", "reconnecting")
    title = f"Ran while the dashboard was cut off ({'after' if heard_before else 'before'} an event)"
    task = server.create_task(title=title)
    server.wait_for_state(task["id"], "completed")
    rows = page.get_by_role("row").filter(has_text=title)
    expect(rows).to_have_count(0)  # the page could not have heard of it
    assert received_for(page, task["id"]) == []

    relay.restore()
    expect(live_status(page)).to_have_attribute("data-state", "live", timeout=20_000)
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("completed")
    # Caught up from Last-Event-ID: each missed transition once, in order.
    seen = received_for(page, task["id"])
    assert [e["to_state"] for e in seen] == ["queued", "running", "completed"], seen
    assert page.evaluate("window.__notReloaded === true"), "the page reloaded instead of catching up"


def test_the_task_page_replays_the_timeline_it_missed_after_live_js_lost_its_stream(server, operator_page):
    task = server.create_task(
        title="Sleeps through a dropped stream", input={"kind": "sleep", "seconds": 3, "interval_s": 0.2}
    )
    page = operator_page
    page.goto(f"/tasks/{task['id']}/")
    expect(live_status(page)).to_have_attribute("data-state", "live")
    page.evaluate("""() => {
      window.__agencyEvents = [];
      document.body.addEventListener("agency-event", (e) => window.__agencyEvents.push(e.detail));
      window.__notReloaded = true;
    }""")
    stream = page.evaluate("() => Object.keys(window.agencyLive.streams).find((u) => u.indexOf('task=') >= 0)")
    assert stream, "the task page opened no stream for its task (data-stream with ?task=)"

    # Closed as by a failed network: live.js reopens it after its delay with ?lastEventId=.
    page.evaluate("(url) => window.agencyLive.drop(url)", stream)
    server.wait_for_state(task["id"], "completed")

    expect(page.locator("#state-heading [data-state]")).to_have_text("completed", timeout=20_000)
    expect(live_status(page)).to_have_attribute("data-state", "live")
    events = page.evaluate("window.__agencyEvents")
    seqs = [e["seq"] for e in events if e and e.get("task_id") == task["id"]]
    assert seqs, "the page heard nothing of its task's timeline"
    # Every event from the first one the page heard of, none twice, in order: no gap where it was cut.
    assert seqs == list(range(seqs[0], seqs[-1] + 1)), f"events missing, twice or out of order: {seqs}"
    api_events = server.api("operator").get(
        f"{server.url}/api/v1/tasks/{task['id']}/events", params={"limit": 1000}, timeout=10
    )
    all_seqs = [e["seq"] for e in api_events.json()["results"]]
    assert seqs[-1] == all_seqs[-1], f"the page stopped at {seqs[-1:]} of {all_seqs}"
    # And the timeline on the page: each of those events once, in order, up to the last.
    rows = page.locator("#timeline-rows tr.event")
    shown = [int(seq) for seq in rows.evaluate_all("rows => rows.map((row) => row.dataset.seq)")]
    assert shown == list(range(shown[0], shown[-1] + 1)), f"the timeline has gaps or repeats: {shown}"
    assert shown[-1] == all_seqs[-1]
    assert page.evaluate("window.__notReloaded === true"), "the page reloaded instead of catching up"
    assert urlsplit(page.url).path == f"/tasks/{task['id']}/"
