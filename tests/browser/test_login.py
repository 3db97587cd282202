"""A new user opens the root URL: the login page, then the overview."""

from __future__ import annotations

import re

from playwright.sync_api import expect

from tests.browser.support import BROWSER_MARKS, assert_accessible

pytestmark = BROWSER_MARKS


def test_the_root_url_asks_an_anonymous_visitor_to_sign_in_then_shows_the_overview(server, new_context):
    page = new_context().new_page()
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/login/\?next=/$"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Sign in")
    assert_accessible(page, "the login page")

    user = server.users["operator"]
    page.get_by_label("Username").fill(user["username"])
    page.get_by_label("Password").fill(user["password"])
    page.get_by_role("button", name="Sign in").click()

    expect(page).to_have_url(f"{server.url}/")
    expect(page.get_by_role("navigation", name="Main")).to_be_visible()
    expect(page.locator("header")).to_contain_text(f"{user['username']} (operator)")
    expect(page.get_by_role("heading", level=1)).to_have_count(1)


def test_a_wrong_password_is_refused_on_the_login_page_with_its_message(server, new_context):
    page = new_context().new_page()
    page.goto("/login/")
    page.get_by_label("Username").fill(server.users["viewer"]["username"])
    page.get_by_label("Password").fill("not-the-password")
    page.get_by_role("button", name="Sign in").click()

    expect(page).to_have_url(re.compile(r"/login/"))
    expect(page.get_by_role("alert")).to_be_visible()
    assert_accessible(page, "the login page with an error")
    # Nothing signed in: the root still sends to the login page.
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/login/\?next=/$"))


def test_signing_out_ends_the_session(page_as):
    page = page_as("viewer")
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/login/"))
    page.goto("/tasks/")
    expect(page).to_have_url(re.compile(r"/login/\?next=/tasks/$"))
