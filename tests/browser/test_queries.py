"""The SQL explorer in a browser: write a query with a parameter, save it, run it, export CSV, see the history."""

from __future__ import annotations

import csv
import io
import re

from playwright.sync_api import expect

from tests.browser.support import BROWSER_MARKS, assert_accessible, screenshot

pytestmark = BROWSER_MARKS

SQL = "SELECT state, count(*) AS tasks\nFROM tasks_task\nWHERE title LIKE :pattern\nGROUP BY state\nORDER BY state"


def test_write_save_run_export_and_find_the_runs_in_the_history(server, page_as):
    for n in range(3):
        done = server.create_task(title=f"Explorer done {n}", input={"kind": "echo", "note": "x"})
        server.wait_for_state(done["id"], "completed")
    failed = server.create_task(title="Explorer failed", input={"kind": "fail", "error": "no", "retryable": False})
    server.wait_for_state(failed["id"], "failed")

    page = page_as("admin", "/queries/")
    expect(page.get_by_role("heading", name="Saved queries")).to_be_visible()
    schema = page.locator("details[data-table='tasks_task']")
    expect(schema).to_have_count(1)
    schema.locator("summary").click()
    expect(schema.get_by_text("risk_tier")).to_be_visible()
    assert_accessible(page, "the queries page with the editor")

    page.get_by_label("Name").fill("Explorer tasks by state")
    page.get_by_label("SQL").fill(SQL)
    page.get_by_label("Parameters").fill("pattern text Explorer%")
    page.get_by_label("Shared").check()
    page.get_by_role("button", name="Save query").click()
    expect(page).to_have_url(re.compile(r"/queries/[0-9a-f-]{36}/$"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Explorer tasks by state")
    expect(page.locator("[data-sql]")).to_contain_text("WHERE title LIKE :pattern")

    # Run with the parameter: htmx swaps in the results, a chart of the two columns and the history.
    pattern = page.get_by_label("pattern (text)")
    expect(pattern).to_have_value("Explorer%")
    pattern.fill("Explorer%")
    page.get_by_role("button", name="Run", exact=True).click()
    results = page.locator("table[data-results]")
    expect(results.locator("tbody tr")).to_have_count(2)
    expect(results.locator("tbody tr").nth(0)).to_contain_text("completed")
    expect(results.locator("tbody tr").nth(0)).to_contain_text("3")
    expect(results.locator("tbody tr").nth(1)).to_contain_text("failed")
    expect(page.locator("figure.chart svg[role='img']")).to_have_count(1)
    history = page.locator("table[data-history] tbody tr[data-run]")
    expect(history).to_have_count(1)
    expect(history.first).to_contain_text("pattern=Explorer%")
    expect(history.first).to_contain_text(server.users["admin"]["username"])
    assert_accessible(page, "a query's page with its results, chart and history")
    screenshot(page, "queries.png")

    # A parameter that matches only the failed task, exported as CSV: a real download.
    pattern.fill("Explorer failed")
    with page.expect_download() as started:
        page.get_by_role("button", name="Export CSV").click()
    download = started.value
    assert download.suggested_filename == "Explorer-tasks-by-state.csv"
    rows = list(csv.reader(io.StringIO(open(download.path(), encoding="utf-8").read())))  # noqa: SIM115
    assert rows == [["state", "tasks"], ["failed", "1"]]

    # The export is in the history, after the run, with its own parameters and row count.
    page.reload()
    expect(history).to_have_count(2)
    newest = history.first
    expect(newest).to_contain_text("CSV export")
    expect(newest).to_contain_text("pattern=Explorer failed")
    expect(newest.locator("td").nth(4)).to_have_text("1")
    expect(history.nth(1)).to_contain_text("page")

    # A viewer finds the shared query, runs it, and has no editor.
    viewer = page_as("viewer", "/queries/")
    viewer.get_by_role("link", name="Explorer tasks by state").click()
    expect(viewer.get_by_role("button", name="Save changes")).to_have_count(0)
    viewer.get_by_role("button", name="Run", exact=True).click()
    expect(viewer.locator("table[data-results] tbody tr")).to_have_count(2)
    expect(viewer.locator("table[data-history] tbody tr[data-run]")).to_have_count(3)
    assert_accessible(viewer, "a shared query's page as a viewer")
