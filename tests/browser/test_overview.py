"""The overview at /: KPI tiles that update live from the metrics stream."""

from __future__ import annotations

from playwright.sync_api import expect

from metrics.kpis import KPI_NAMES
from tests.browser.support import BROWSER_MARKS, assert_accessible, screenshot

pytestmark = BROWSER_MARKS


def test_the_completed_tile_changes_within_ten_seconds_of_a_completion_without_a_reload(server, operator_page):
    page = operator_page
    page.goto("/")
    for name in KPI_NAMES:
        expect(page.locator(f"[data-kpi='{name}']").first).to_be_attached()
    tile = page.locator("[data-kpi='completed_per_minute']").first
    expect(tile).to_be_visible()
    expect(page.locator("[data-live-status]").first).to_have_attribute("data-state", "live")
    # The first snapshot on the stream is the latest one: wait until the tile holds the
    # stream's own text, so the change below is the completion's and not the page's first fill.
    page.wait_for_function(
        """() => {
          const s = window.agencyLive && Object.values(window.agencyLive.streams).find((x) => x.received > 0);
          return !!s;
        }"""
    )
    before = tile.inner_text()
    page.evaluate("() => { window.__notReloaded = true; }")

    task = server.create_task(title="Counted on the overview")
    server.wait_for_state(task["id"], "completed")
    expect(tile).not_to_have_text(before, timeout=10_000)
    assert float(tile.inner_text().replace(",", "")) > float(before.replace(",", "") or 0)
    assert page.evaluate("window.__notReloaded === true"), "the overview reloaded to show the new figure"
    screenshot(page, "overview.png")  # before the check, so the picture stays current whatever it finds
    assert_accessible(page, "the overview")
