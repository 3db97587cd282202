"""The chat page in Chromium: send, see the reply, reload and find the history, drop the socket and catch up."""

from __future__ import annotations

import json
from urllib.parse import urlsplit

from playwright.sync_api import expect
from websockets.sync.client import connect

from tests.browser.support import BROWSER_MARKS

pytestmark = BROWSER_MARKS


def test_a_conversation_survives_a_reload_and_a_dropped_socket(server, operator_page):
    page = operator_page
    page.goto("/chat/")
    page.get_by_label("Title (optional)").fill("From the browser")
    page.get_by_role("button", name="Start a conversation").click()
    status = page.locator("[data-chat-status]")
    expect(status).to_have_attribute("data-state", "live")
    session_id = urlsplit(page.url).path.strip("/").split("/")[-1]

    page.get_by_role("textbox", name="Message").fill("help")
    page.get_by_role("button", name="Send").click()
    messages = page.locator("#chat-messages li[data-seq]")
    expect(messages).to_have_count(2)
    expect(messages.nth(1)).to_contain_text("Commands:")
    expect(status).to_contain_text("sent #1")
    assert page.get_by_role("textbox", name="Message").input_value() == ""

    page.reload()
    expect(messages).to_have_count(2)
    expect(messages.nth(0)).to_contain_text("help")
    expect(status).to_have_attribute("data-state", "live")

    # Drop the socket; meanwhile the same user says something from elsewhere (a script).
    page.evaluate("window.__notReloaded = true")
    page.evaluate("window.agencyChat.drop()")
    url = f"ws://127.0.0.1:{server.port}/api/v1/chat/ws/{session_id}"
    headers = {"Authorization": f"Token {server.users['operator']['token']}"}
    with connect(url, additional_headers=headers, open_timeout=10) as other:
        other.recv(timeout=10)  # its history
        other.send(json.dumps({"type": "message", "content": "status nope"}))
        assert json.loads(other.recv(timeout=10))["type"] == "ack"
    expect(status).to_have_attribute("data-state", "live", timeout=15_000)
    expect(messages).to_have_count(4)
    seqs = [int(s) for s in messages.evaluate_all("items => items.map((li) => li.dataset.seq)")]
    assert seqs == [1, 2, 3, 4]  # each once, in order
    expect(messages.nth(2)).to_contain_text("status nope")
    expect(messages.nth(3)).to_contain_text("status refused")
    assert page.evaluate("window.__notReloaded === true")
