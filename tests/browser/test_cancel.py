"""An operator cancels a running task: "cancel requested", then canceled, and the audit record says who."""

from __future__ import annotations

import re

from playwright.sync_api import expect

from tests.browser.support import BROWSER_MARKS, assert_accessible

pytestmark = BROWSER_MARKS


def test_cancel_shows_the_request_then_the_canceled_state_and_its_audit_record(server, operator_page):
    task = server.create_task(title="Sleep until canceled", input={"kind": "sleep", "seconds": 60, "interval_s": 0.5})
    server.wait_for_state(task["id"], "running")
    page = operator_page
    page.on("dialog", lambda dialog: dialog.accept())  # an hx-confirm / confirm() before the cancel
    page.goto(f"/tasks/{task['id']}/")
    state = page.locator("#state-heading [data-state]")
    expect(state).to_have_text("running")

    page.get_by_label("Reason for the cancel").fill("not needed any more")
    page.get_by_role("button", name="Cancel task").click()

    requested = page.locator("[data-fact='cancel-requested']")
    expect(requested).to_contain_text(f"by {server.users['operator']['username']}")
    expect(requested).to_contain_text("not needed any more")
    expect(state).to_have_text("canceled", timeout=20_000)
    # Two facts, shown apart: who asked for the cancel, and that the worker's attempt stopped.
    expect(page.locator("dt", has_text="Cancel requested")).to_have_count(1)
    expect(page.locator("[data-fact='worker-stopped']")).to_contain_text("stopped")
    expect(requested).to_be_visible()
    expect(page.get_by_role("button", name="Cancel task")).to_have_count(0)
    assert_accessible(page, "the task page of a canceled task")
    assert server.task(task["id"])["state"] == "canceled"

    page.goto(f"/audit/?action=task.cancel&resource_type=task&resource_id={task['id']}")
    rows = page.get_by_role("row").filter(has_text="task.cancel")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text(server.users["operator"]["username"])
    link = rows.first.locator(f"a[href$='/tasks/{task['id']}/']")
    expect(link).to_have_count(1)
    assert_accessible(page, "the audit page filtered to one record")
    link.click()
    expect(page).to_have_url(re.compile(rf"/tasks/{task['id']}/$"))
