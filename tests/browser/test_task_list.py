"""The tasks page: its filter lives in the URL (a reload keeps it), and a saved view opens from its link anywhere."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

from playwright.sync_api import expect

from tests.browser.conftest import log_in
from tests.browser.support import BROWSER_MARKS, assert_accessible, screenshot, wait_until

pytestmark = BROWSER_MARKS


def query_of(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query)


def test_the_filter_survives_a_reload_and_a_saved_view_opens_from_its_link_in_another_browser(
    server, operator_page, new_context
):
    done = server.create_task(title="Filtered: the one that completes")
    failed = server.create_task(
        title="Filtered: the one that fails", input={"kind": "fail", "error": "on purpose", "retryable": False}
    )
    server.wait_for_state(done["id"], "completed")
    server.wait_for_state(failed["id"], "failed")

    page = operator_page
    page.goto("/tasks/")
    assert_accessible(page, "the tasks page")
    page.get_by_role("group", name="State").get_by_label("completed", exact=True).check()
    page.get_by_label("Title contains").fill("Filtered:")
    page.get_by_role("button", name="Apply").click()

    expect(page).to_have_url(re.compile(r"/tasks/\?"))
    assert query_of(page.url)["state"] == ["completed"]
    assert query_of(page.url)["q"] == ["Filtered:"]
    rows = page.locator("#task-rows tr[data-task]")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("Filtered: the one that completes")

    page.reload()
    expect(page.get_by_role("group", name="State").get_by_label("completed", exact=True)).to_be_checked()
    expect(page.get_by_role("group", name="State").get_by_label("failed", exact=True)).not_to_be_checked()
    expect(page.get_by_label("Title contains")).to_have_value("Filtered:")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("Filtered: the one that completes")

    page.get_by_label(re.compile(r"^Save this filter")).fill("Completed filtered tasks")
    page.get_by_role("button", name="Save view").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Tasks: Completed filtered tasks")
    link = page.get_by_role("region", name="Saved views").get_by_role("link", name="Completed filtered tasks")
    expect(link).to_have_count(1)
    href = link.get_attribute("href")
    assert re.fullmatch(r"/tasks/views/[0-9a-f-]{36}/", href), href
    assert_accessible(page, "the tasks page of a saved view")

    # Another browser, another person (a viewer): the view is on the server, not in localStorage.
    other = new_context().new_page()
    log_in(other, server, "viewer", href)
    expect(other).to_have_url(re.compile(r"/tasks/\?"))
    assert query_of(other.url)["state"] == ["completed"]
    assert query_of(other.url)["q"] == ["Filtered:"]
    expect(other.get_by_role("heading", level=1)).to_have_text("Tasks: Completed filtered tasks")
    expect(other.get_by_role("group", name="State").get_by_label("completed", exact=True)).to_be_checked()
    expect(other.get_by_label("Title contains")).to_have_value("Filtered:")
    other_rows = other.locator("#task-rows tr[data-task]")
    expect(other_rows).to_have_count(1)
    expect(other_rows.first).to_contain_text("Filtered: the one that completes")


def test_the_tasks_page_screenshot(server, operator_page):
    made = {}
    for title, spec in (
        ("Summarise the incident report", {}),
        ("Refactor the billing module", {"input": {"kind": "sleep", "seconds": 30, "interval_s": 0.5}}),
        ("Migrate the search index", {"input": {"kind": "fail", "error": "index locked", "retryable": False}}),
    ):
        made[title] = server.create_task(title=title, **spec)
    # A picture of a task at 0 % says little: load the page once the sleeper has made progress.
    sleeper = made["Refactor the billing module"]["id"]
    wait_until(lambda: (server.task(sleeper).get("progress") or {}).get("percent", 0) > 0, what="progress")
    page = operator_page
    page.goto("/tasks/")
    expect(page.locator("#task-rows tr[data-task]").first).to_be_visible()
    running = page.locator("#task-rows tr[data-task]").filter(has_text="Refactor the billing module")
    expect(running.locator(".badge")).to_have_text("running")
    screenshot(page, "tasks.png")
