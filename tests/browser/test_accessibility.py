"""axe-core on every page, as each role sees it: no serious or critical violation.

The pages are checked once they have settled (the live fragments swapped in at least once
where a stream is open), since a fragment htmx swaps in is part of what a person meets.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from playwright.sync_api import expect

from tests.browser.support import BROWSER_MARKS, assert_accessible

pytestmark = BROWSER_MARKS

PAGES = ("/", "/tasks/", "/tasks/new/", "/workers/", "/audit/", "/health/", "/chat/", "/queries/")


@pytest.fixture(scope="module")
def tasks(server) -> dict[str, str]:
    """A task in each kind of state the detail page renders differently."""
    made = {
        "completed": server.create_task(title="Accessible: completed", input={"kind": "echo", "note": "hello"}),
        "failed": server.create_task(
            title="Accessible: failed", input={"kind": "fail", "error": "no luck", "retryable": False}
        ),
        "running": server.create_task(title="Accessible: running", input={"kind": "sleep", "seconds": 60}),
    }
    for state, task in made.items():
        server.wait_for_state(task["id"], state)
    return {state: task["id"] for state, task in made.items()}


def settle(page) -> None:
    expect(page.get_by_role("heading", level=1)).to_have_count(1)
    if page.locator("[data-stream]").count():
        expect(page.locator("[data-live-status]").first).to_have_attribute("data-state", "live")
    else:
        page.wait_for_load_state("networkidle")


@pytest.mark.parametrize("role", ["admin", "viewer"])
def test_every_page_has_no_serious_or_critical_violation(server, page_as, tasks, role):
    page = page_as(role)
    failures = []
    # A conversation of this user's, with a command and its reply in it.
    start = page.goto("/chat/")
    assert start.status == 200
    page.get_by_role("button", name="Start a conversation").click()
    expect(page.locator("[data-chat-status]")).to_have_attribute("data-state", "live")
    page.get_by_role("textbox", name="Message").fill("help")
    page.get_by_role("button", name="Send").click()
    expect(page.locator("#chat-messages li.assistant")).to_have_count(1)
    chat = urlsplit(page.url).path
    paths = [*PAGES, *(f"/tasks/{task_id}/" for task_id in tasks.values()), chat]
    for path in paths:
        response = page.goto(path)
        # The new-task form is the operator's: a viewer gets the 403 page, which must be accessible too.
        expected = 403 if (role == "viewer" and path == "/tasks/new/") else 200
        assert response.status == expected, f"{path}: {response.status}"
        settle(page)
        try:
            assert_accessible(page, f"{path} as {role}")
        except pytest.fail.Exception as failure:
            failures.append(str(failure))
    assert not failures, "\n\n".join(failures)


def test_the_login_and_error_pages_have_no_serious_or_critical_violation(new_context, page_as):
    anonymous = new_context().new_page()
    anonymous.goto("/login/?next=/tasks/")
    assert_accessible(anonymous, "the login page")
    viewer = page_as("viewer")
    response = viewer.goto("/tasks/00000000-0000-4000-8000-000000000000/")
    assert response.status == 404
    assert_accessible(viewer, "the 404 page of a task")
    response = viewer.goto("/audit/?since=not-a-date")
    assert response.status == 400
    assert_accessible(viewer, "the audit page with a refused filter")
