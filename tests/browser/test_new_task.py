"""An operator creates a task from the "new task" form and watches it complete, live."""

from __future__ import annotations

import re

from playwright.sync_api import expect

from tests.browser.support import BROWSER_MARKS, assert_accessible, screenshot

pytestmark = BROWSER_MARKS

UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
TITLE = "Write the release notes from the browser"


def field_error_of(page, field):
    """The error shown for ``field``: what aria-describedby names, else what its own paragraph holds."""
    described = (field.get_attribute("aria-describedby") or "").split()
    for element_id in described:
        node = page.locator(f"[id='{element_id}']")
        if node.count() and "error" in (node.get_attribute("class") or ""):
            return node
    return field.locator("xpath=ancestor::*[.//*[contains(@class, 'field-error')]][1]").locator(".field-error")


def test_a_task_from_the_form_shows_its_field_error_then_completes_on_its_page_without_a_reload(server, operator_page):
    page = operator_page
    page.goto("/tasks/")
    page.get_by_role("link", name=re.compile(r"^new task$", re.I)).first.click()
    expect(page).to_have_url(re.compile(r"/tasks/new/$"))
    assert_accessible(page, "the new-task form")

    page.get_by_label("Title").fill(TITLE)
    tier = page.get_by_label(re.compile(r"^risk tier", re.I))
    tier.fill("7")
    # The browser's own check comes first (min/max on the field) ...
    assert tier.evaluate("el => !el.validity.valid"), "the risk tier field accepts 7 in the browser"
    # ... and the server's answer, next to the field, is what a person sees when it is skipped.
    tier.evaluate("el => { el.form.noValidate = true; }")
    page.get_by_role("button", name=re.compile(r"create|queue|submit", re.I)).click()

    expect(page).to_have_url(re.compile(r"/tasks/new/$"))
    error = field_error_of(page, page.get_by_label(re.compile(r"^risk tier", re.I)))
    expect(error).to_be_visible()
    expect(error).to_contain_text(re.compile(r"3"))  # "less than or equal to 3"
    expect(page.get_by_label("Title")).to_have_value(TITLE)  # what was typed is kept
    assert_accessible(page, "the new-task form with a field error")
    listed = server.api("operator").get(f"{server.url}/api/v1/tasks", params={"q": TITLE}, timeout=10).json()
    assert listed["results"] == [], "a refused form created a task"

    # Tier 2 asks for acceptance criteria (the acceptance gate fails the task without them).
    page.get_by_label(re.compile(r"^risk tier", re.I)).fill("2")
    page.get_by_label("Acceptance criteria").fill("A1 | the release | the notes are read | every change is listed")
    page.get_by_label(re.compile(r"^input", re.I)).fill('{"kind": "sleep", "seconds": 2, "interval_s": 0.2}')
    page.get_by_role("button", name=re.compile(r"create|queue|submit", re.I)).click()

    expect(page).to_have_url(re.compile(rf"/tasks/{UUID}/$"))
    task_id = re.search(UUID, page.url).group(0)
    page.evaluate("() => { window.__notReloaded = true; }")
    state = page.locator("#state-heading [data-state]")
    expect(state).to_have_text("completed", timeout=20_000)
    assert page.evaluate("window.__notReloaded === true"), "the page reloaded to show the new state"
    expect(page.get_by_role("heading", level=1)).to_contain_text(TITLE)
    assert server.task(task_id)["state"] == "completed"
    assert server.task(task_id)["spec"]["risk_tier"] == 2
    screenshot(page, "task-detail.png")  # before the check, so the picture stays current whatever it finds
    assert_accessible(page, "the task page of a completed task")
