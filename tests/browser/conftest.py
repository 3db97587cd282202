"""Fixtures of the browser tests: the real server, headless Chromium, a signed-in page per role.

Scopes: the server and the browser live for the package (one of each per xdist worker that
runs browser tests). Playwright's sync API keeps an asyncio loop running in the main thread
from ``start()`` to ``stop()``, and Django's ORM refuses to run under a running loop
(SynchronousOnlyOperation): the package scope stops Playwright as soon as the last browser
test of a worker is done, so the database tests that follow on that worker are unaffected.
Nothing here opens the database; the server is seeded by a script of its own (seed.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest

from tests.browser.support import CHROMIUM, CHROMIUM_ARGS, VIEWPORT, WAIT_MS, AgencyServer

LOCAL_HOSTS = {"127.0.0.1"}


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    # The contexts fixture reads this to keep a screenshot of every open page of a failed test.
    setattr(item, f"rep_{report.when}", report)
    return report


@pytest.fixture(scope="package")
def server(tmp_path_factory) -> Iterator[AgencyServer]:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is absent (apt-get install chromium)")
    agency = AgencyServer(data_dir=tmp_path_factory.mktemp("browser-server"))
    agency.start()
    try:
        yield agency
    finally:
        agency.stop()


@pytest.fixture(scope="package")
def chromium() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is absent (apt-get install chromium)")
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=WAIT_MS)
    playwright = sync_playwright().start()
    try:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
    finally:
        playwright.stop()


@pytest.fixture
def new_context(request, server, chromium) -> Iterator[Callable[..., Any]]:
    """A factory of fresh browser contexts (separate cookies: "a second browser"), closed afterwards.

    Every request a page makes is checked to go to the server under test: no CDN, no font or
    script from elsewhere. Uncaught page errors (a broken live.js) fail the test too.
    """
    contexts: list[Any] = []
    stray: list[str] = []
    page_errors: list[str] = []

    def on_request(req: Any) -> None:
        parts = urlsplit(req.url)
        if parts.scheme in {"http", "https", "ws", "wss"} and parts.hostname not in LOCAL_HOSTS:
            stray.append(req.url)

    def make(**options: Any) -> Any:
        options.setdefault("viewport", VIEWPORT)
        options.setdefault("base_url", server.url)
        context = chromium.new_context(**options)
        context.set_default_timeout(WAIT_MS)
        context.set_default_navigation_timeout(WAIT_MS)
        context.on("request", on_request)
        context.on("page", lambda page: page.on("pageerror", lambda error: page_errors.append(str(error))))
        contexts.append(context)
        return context

    yield make
    failed = getattr(request.node, "rep_call", None)
    if failed is not None and failed.failed:
        out = Path(server.data_dir) / "failures"
        out.mkdir(exist_ok=True)
        for i, context in enumerate(contexts):
            for j, page in enumerate(context.pages):
                try:
                    page.screenshot(path=str(out / f"{request.node.name}-{i}-{j}.png"), full_page=True)
                except Exception as error:  # a crashed page: the test's own failure says more
                    print(f"no failure screenshot of {page.url}: {error}")
        print(f"failure screenshots in {out}; server log tail:\n{server.log_tail(30)}")
    for context in contexts:
        context.close()
    assert not stray, f"requests left 127.0.0.1: {stray}"
    assert not page_errors, f"uncaught errors in the page: {page_errors}"


def log_in(page: Any, server: AgencyServer, role: str, next_path: str = "/") -> None:
    """Sign in through the real /login/ form, as a person would."""
    user = server.users[role]
    page.goto(f"/login/?{urlencode({'next': next_path})}")
    page.get_by_label("Username").fill(user["username"])
    page.get_by_label("Password").fill(user["password"])
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda url: not urlsplit(url).path.startswith("/login/"))


@pytest.fixture
def page_as(server, new_context) -> Callable[[str], Any]:
    """``page_as("operator")``: a page in a context of its own, signed in through the form."""

    def make(role: str, next_path: str = "/") -> Any:
        page = new_context().new_page()
        log_in(page, server, role, next_path)
        return page

    return make


@pytest.fixture
def operator_page(page_as) -> Any:
    return page_as("operator")


@pytest.fixture
def viewer_page(page_as) -> Any:
    return page_as("viewer")


@pytest.fixture
def admin_page(page_as) -> Any:
    return page_as("admin")
