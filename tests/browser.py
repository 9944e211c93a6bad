"""A real browser for tests: Debian's Chromium through Playwright, and a console watcher.

Use the `browser` fixture for a launched Chromium (closed after the test), and `Console` to
collect console errors/warnings and uncaught page errors (CSP violations among them) of a page
or of a whole browser context; `worker` runs the task worker beside the live server, so that
operations started in the browser really run.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import connections
from playwright.sync_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Page,
    expect,
    sync_playwright,
)

from tenantry.databases import lifecycle
from tenantry.databases.models import Database
from tenantry.portal.management.commands._server import make_worker

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    # Custom domains of the tests (".test" is reserved) reach the live server on loopback.
    "--host-resolver-rules=MAP *.example.test 127.0.0.1",
]  # fmt: skip
TIMEOUT_MS = 15_000
# An operation waits for the worker's next poll (1 s), then runs; the page polls every second.
OPERATION_TIMEOUT_MS = 30_000


class Console:
    """Collects console errors/warnings and uncaught page errors (CSP violations among them)."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def watch[T: (Page, BrowserContext)](self, target: T) -> T:
        """Watch one page, or every page of a browser context; returns what it was given."""
        target.on("console", self._on_console)
        if isinstance(target, BrowserContext):
            target.on("weberror", lambda error: self.errors.append(f"page error: {error.error}"))
        else:
            page = target
            page.on(
                "pageerror",
                lambda error: self.errors.append(f"page error at {page.url}: {error}"),
            )
        return target

    def _on_console(self, message: ConsoleMessage) -> None:
        if message.type in ("error", "warning"):
            where = message.page.url if message.page else "?"
            self.errors.append(f"{message.type} at {where}: {message.text}")

    @property
    def csp_violations(self) -> list[str]:
        return [e for e in self.errors if "Content Security Policy" in e]


@pytest.fixture
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
            # Django keeps connections per context (contextvars), and inside sync_playwright()
            # the test runs in a context of Playwright's: the connections of its ORM calls are
            # reachable only here, to be closed. (A PostgreSQL control plane cannot drop the
            # test database while one is open.)
            connections.close_all()


def new_page(browser: Browser, console: Console, timeout_ms: int = TIMEOUT_MS) -> Page:
    """A page in a fresh context (its own cookies: one person), watched by `console`."""
    context = console.watch(browser.new_context())
    context.set_default_timeout(timeout_ms)
    return context.new_page()


@pytest.fixture
def portal(live_server: Any, settings: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The live server's URL as the portal's, so database addresses use its port; the
    databases made meanwhile are dropped afterwards."""
    from tenantry.databases.models import Database

    # Playwright's sync API keeps an asyncio loop in the test's thread; the ORM calls run
    # between Playwright calls.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    settings.PORTAL_URL = live_server.url
    yield live_server.url
    for database in Database.objects.all():
        lifecycle.drop_storage(database)


# The look of pages at a desktop's and a phone's width, screenshots kept for a person.
WIDTHS = (1280, 390)
SCREENS = Path("/tmp/tenantry-screens")  # noqa: S108 (for a person to look at, not read back)
Box = dict[str, float]


def show(page: Page, width: int, path: str) -> Box:
    """The page at `path`, `width` px wide; returns the viewport as a box."""
    page.set_viewport_size({"width": width, "height": 900})
    page.goto(path)
    return {"x": 0, "y": 0, "width": width, "height": 900}


def assert_no_sideways_scroll(page: Page) -> None:
    widths = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert widths[0] <= widths[1], f"the page scrolls sideways at {page.viewport_size}: {widths}"


def sign_in(page: Page, base: str, email: str) -> None:
    """Sign in to the portal at `base` with the test password."""
    from tests.conftest import PASSWORD

    page.goto(f"{base}/accounts/login/")
    page.locator("input[name=login]").fill(email)
    page.locator("input[name=password]").fill(PASSWORD)
    page.get_by_role("button", name="Sign in", exact=True).click()


def confirm_password(page: Page, base: str) -> None:
    """A sensitive action: allauth asks for the password again, then goes on."""
    from tests.conftest import PASSWORD

    expect(page).to_have_url(re.compile(re.escape(f"{base}/accounts/reauthenticate/")))
    page.locator("input[name=password]").fill(PASSWORD)
    page.get_by_role("button", name="Confirm", exact=True).click()


def htmx_polls(page: Page) -> list[str]:
    """The URLs htmx requests from the page, as they happen (the live progress polls)."""
    polls: list[str] = []
    page.on(
        "request",
        lambda request: (
            polls.append(request.url) if request.headers.get("hx-request") == "true" else None
        ),
    )
    return polls


def manage(page: Page, name: str, action: str) -> None:
    """Open a database's Manage menu (a <details>) in the list and choose an action."""
    row = page.locator(f"#db-{name}")
    row.get_by_label(f"Manage {name}").click()
    row.get_by_role("link", name=action, exact=True).click()


def watch_until_done(page: Page, polls: list[str]) -> None:
    """The operation page updates by itself: htmx polls until "Done.", with no reload."""
    page.evaluate("window.notReloaded = true")
    status = page.locator("#progress .status")
    expect(status).to_contain_text("Done.", timeout=OPERATION_TIMEOUT_MS)
    expect(status).to_have_attribute("data-state", "done")
    expect(page.locator("#progress progress")).to_have_attribute("value", "100")
    assert page.evaluate("window.notReloaded") is True, "the page was reloaded"
    assert polls, "htmx never polled the progress"
    # Once done, the progress part stops polling.
    expect(page.locator("#progress")).not_to_have_attribute("hx-trigger", re.compile(".*"))


class Worker:
    """django-tasks-db's worker, as `tenantry serve` makes it, in a thread for one test."""

    def __init__(self) -> None:
        self.worker = make_worker()
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        assert self.thread is None, "the worker is already running"
        self.worker = make_worker()  # a stopped worker does not start again
        self.thread = threading.Thread(target=self._run, name="test-worker", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.worker.run()
        finally:
            # As Django's live server thread does: a thread's connections are otherwise closed
            # only when garbage collection gets to them, and a PostgreSQL control plane cannot
            # drop the test database while one is open.
            connections.close_all()

    def stop(self) -> None:
        """Ends the worker's loop (within its 1 s poll interval, or after the running task)."""
        if self.thread is not None:
            self.worker.running = False
            self.thread.join(timeout=10)
            assert not self.thread.is_alive(), "the worker did not stop"
            self.thread = None


@pytest.fixture
def worker(transactional_db: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[Worker]:
    """Started by the test when it wants operations to run; stopped before the database goes."""
    # Playwright's sync API keeps an asyncio loop in the test's thread, so Django would refuse
    # the ORM calls of the test and of this teardown; they run between Playwright calls.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    worker = Worker()
    try:
        yield worker
    finally:
        worker.stop()
        for database in Database.objects.all():
            lifecycle.drop_storage(database)
