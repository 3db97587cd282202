"""A viewer reads everything and can change nothing: no controls on the pages, 403 when posting anyway."""

from __future__ import annotations

import json
import re

from playwright.sync_api import expect

from tests.browser.support import BROWSER_MARKS

pytestmark = BROWSER_MARKS

CONTROLS = re.compile(r"^(cancel|pause|resume|retry|override|disable|enable|register|create task|new task)", re.I)


def csrf_token(page) -> str:
    """The token base.html hands htmx (``<body hx-headers>``): what any script on the page could send."""
    return json.loads(page.locator("body").get_attribute("hx-headers"))["X-CSRFToken"]


def audit_count(server, **filters: str) -> int:
    response = server.api("admin").get(f"{server.url}/api/v1/audit", params=filters, timeout=10)
    assert response.status_code == 200, response.text
    return len(response.json()["results"])


def test_a_viewer_sees_no_controls_and_a_forged_post_is_refused_with_nothing_written(server, page_as):
    task = server.create_task(title="Running while a viewer looks", input={"kind": "sleep", "seconds": 60})
    server.wait_for_state(task["id"], "running")

    # What an operator gets on the same page: the cancel form, and where it posts.
    operator = page_as("operator", f"/tasks/{task['id']}/")
    cancel_form = operator.locator("form").filter(has=operator.get_by_role("button", name=re.compile(r"^cancel", re.I)))
    expect(cancel_form.first).to_be_visible()
    action_url = cancel_form.first.get_attribute("action")
    assert action_url, "the cancel form has no action"

    viewer = page_as("viewer", f"/tasks/{task['id']}/")
    expect(viewer.get_by_role("heading", level=1)).to_have_text("Running while a viewer looks")
    expect(viewer.locator("main").get_by_role("button", name=CONTROLS)).to_have_count(0)
    viewer.goto("/tasks/")
    expect(viewer.locator("main").get_by_role("button", name=CONTROLS)).to_have_count(0)
    expect(viewer.get_by_role("link", name=re.compile(r"^new task$", re.I))).to_have_count(0)
    expect(viewer.locator("#task-rows input[type=checkbox]")).to_have_count(0)
    viewer.goto("/workers/")
    expect(viewer.locator("tr[data-worker]").first).to_be_visible()
    expect(viewer.locator("main").get_by_role("button", name=CONTROLS)).to_have_count(0)

    before = audit_count(server, action="task.cancel", resource_type="task", resource_id=task["id"])
    token = csrf_token(viewer)
    forged = viewer.request.post(
        action_url,
        form={"csrfmiddlewaretoken": token, "action": "cancel", "reason": "a viewer should not"},
        headers={"X-CSRFToken": token},
        max_redirects=0,
    )
    assert forged.status == 403, (forged.status, forged.text()[:500])
    htmx = viewer.request.post(
        action_url,
        form={"action": "cancel", "reason": "a viewer should not"},
        headers={"X-CSRFToken": token, "HX-Request": "true"},
        max_redirects=0,
    )
    assert htmx.status == 403, (htmx.status, htmx.text()[:500])
    disable = viewer.request.post(
        "/workers/local-reference/disable/", form={"csrfmiddlewaretoken": token}, max_redirects=0
    )
    assert disable.status == 403, (disable.status, disable.text()[:500])

    assert server.task(task["id"])["state"] == "running"
    assert audit_count(server, action="task.cancel", resource_type="task", resource_id=task["id"]) == before
    workers = server.api("admin").get(f"{server.url}/api/v1/workers/local-reference", timeout=10).json()
    assert workers["enabled"] is True

    # The operator's own post goes through the same door: the refusal above was the role's.
    server.api("operator").post(f"{server.url}/api/v1/tasks/{task['id']}/cancel", json={}, timeout=10)
    server.wait_for_state(task["id"], "canceled")


def test_only_an_admin_sees_the_worker_controls(page_as):
    operator = page_as("operator", "/workers/")
    expect(operator.locator("tr[data-worker='local-reference']")).to_be_visible()
    expect(operator.locator("main").get_by_role("button", name=CONTROLS)).to_have_count(0)

    admin = page_as("admin", "/workers/")
    row = admin.locator("tr[data-worker='local-reference']")
    expect(row.get_by_role("button", name=re.compile(r"^disable", re.I))).to_be_visible()
    expect(admin.get_by_role("button", name="Register")).to_be_visible()
