"""The database manager in a real browser: create a database, duplicate it for testing, watch
the operation finish live, rename the copy, then delete it with its name as confirmation.

Debian's Chromium runs through Playwright against pytest-django's live server; a task worker
runs in a thread beside it, as `tenantry serve` does, so operations really run. New databases
go to SQLite (files under the test run's TENANTRY_DATA_DIR).
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import (
    Browser,
    expect,
)
from pytest_django.live_server_helper import LiveServer

from tenantry.databases.models import Database
from tenantry.engines.fleet import engine_for
from tests.browser import (
    TIMEOUT_MS,
    Console,
    Worker,
    confirm_password,
    htmx_polls,
    manage,
    sign_in,
    watch_until_done,
)
from tests.conftest import make_account

pytestmark = pytest.mark.slow

EMAIL = "dana@example.com"
SCREENSHOT = "/tmp/manager.png"  # noqa: S108 (for a person to look at, not read back)


def test_create_duplicate_rename_and_delete_databases(
    live_server: LiveServer, browser: Browser, worker: Worker
) -> None:
    # The worker fixture allows the ORM calls below (see there).
    # live_server brings transactional_db: the server and worker threads see what is written.
    base = live_server.url
    expect.set_options(timeout=TIMEOUT_MS)
    console = Console()
    make_account(EMAIL)

    context = console.watch(browser.new_context())
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    polls = htmx_polls(page)

    # Sign in: the manager is the home of a signed-in person, empty at first.
    sign_in(page, base, EMAIL)
    expect(page).to_have_url(f"{base}/databases/")
    expect(page.get_by_role("heading", name="My databases")).to_be_visible()
    expect(page.get_by_role("heading", name="No databases yet")).to_be_visible()
    expect(page.locator("table.databases")).to_have_count(0)

    # Create "acme": it is ready at once, at its own address.
    page.get_by_label("New database").fill("acme")
    page.get_by_role("button", name="Create database").click()
    expect(page.locator(".messages")).to_contain_text("“acme” is ready at ")
    acme = Database.objects.get(name="acme")
    expect(page.locator(".messages")).to_contain_text(f"“acme” is ready at {acme.url}.")
    expect(page.get_by_role("heading", name="No databases yet")).to_have_count(0)
    rows = page.locator("table.databases tbody tr")
    expect(rows).to_have_count(1)
    row = page.locator("#db-acme")
    expect(row.locator("strong")).to_have_text("acme")
    expect(row.get_by_role("link", name=acme.url)).to_have_attribute("href", acme.url)
    expect(row.locator(".badge")).to_have_text("Trial: 15 days left")
    expect(row).to_contain_text("Administrator")

    # Manage → Duplicate, for testing, as "acme-test". The worker is not running yet, so
    # the operation page first shows the operation waiting, then must update by itself.
    manage(page, "acme", "Duplicate")
    expect(page).to_have_url(f"{base}/databases/acme/duplicate/")
    expect(page.get_by_role("heading", name="Duplicate “acme”")).to_be_visible()
    expect(page.get_by_label("Name of the copy")).to_have_value("acme-copy")
    page.get_by_label("Name of the copy").fill("acme-test")
    page.get_by_label("For testing purposes").check()
    page.get_by_role("button", name="Duplicate", exact=True).click()
    expect(page).to_have_url(re.compile(re.escape(f"{base}/operations/") + r"\d+/$"))
    expect(page.get_by_role("heading", name="Duplicate “acme”")).to_be_visible()
    expect(page.locator("#progress .status")).to_contain_text("Waiting for a worker…")
    worker.start()
    watch_until_done(page, polls)
    copy = Database.objects.get(name="acme-test")
    assert copy.is_test_copy and copy.expires_at is not None
    expect(page.locator("#progress .status")).to_contain_text(f"The copy is ready at {copy.url}.")

    # Back on the manager: the copy is listed as a test copy, with its expiry date.
    page.get_by_role("link", name="Back to my databases").click()
    expect(page).to_have_url(f"{base}/databases/")
    expect(rows).to_have_count(2)
    row = page.locator("#db-acme-test")
    expect(row.locator("strong")).to_have_text("acme-test")
    expect(row.get_by_role("link", name=copy.url)).to_be_visible()
    badge = row.locator(".badge")
    expect(badge).to_have_text(re.compile(r"^Test copy until \d{4}-\d{2}-\d{2}$"))
    expect(badge).to_have_text(f"Test copy until {copy.expires_at:%Y-%m-%d}")
    expect(page.locator("#db-acme .badge")).to_have_text("Trial: 15 days left")
    page.screenshot(path=SCREENSHOT, full_page=True)

    # Manage → Rename: the copy moves to its new name, the old one is gone from the list.
    manage(page, "acme-test", "Rename")
    expect(page).to_have_url(f"{base}/databases/acme-test/rename/")
    expect(page.get_by_role("heading", name="Rename “acme-test”")).to_be_visible()
    expect(page.get_by_label("New name")).to_have_value("acme-test")
    page.get_by_label("New name").fill("acme-staging")
    page.get_by_role("button", name="Rename", exact=True).click()
    expect(page).to_have_url(f"{base}/databases/")
    copy.refresh_from_db()
    assert copy.name == "acme-staging"
    renamed = f"“acme-test” is now “acme-staging” at {copy.url}."
    expect(page.locator(".messages")).to_contain_text(renamed)
    expect(rows).to_have_count(2)
    expect(page.locator("#db-acme-staging strong")).to_have_text("acme-staging")
    expect(page.locator("#db-acme-staging .badge")).to_have_text(
        f"Test copy until {copy.expires_at:%Y-%m-%d}"
    )
    expect(page.locator("#db-acme-test")).to_have_count(0)
    expect(page.locator("table.databases")).not_to_contain_text("acme-test")

    # Manage → Delete: a clear warning, and the name typed exactly as confirmation.
    manage(page, "acme-staging", "Delete")
    expect(page).to_have_url(f"{base}/databases/acme-staging/delete/")
    expect(page.get_by_role("heading", name="Delete “acme-staging”")).to_be_visible()
    worker.stop()  # again, so that the deletion is seen waiting, then done
    warning = page.locator(".message.error")
    expect(warning).to_contain_text(
        "Deleting a database is instant and permanent, for all its users."
    )
    expect(warning).to_contain_text("All its data and files are lost and cannot be recovered.")
    confirm = page.get_by_label("Type the database name to confirm")
    confirm.fill("acme-test")
    page.get_by_role("button", name="Delete this database").click()
    confirm_password(page, base)  # then the confirmation goes on, and finds the wrong name
    expect(page.locator(".errorlist")).to_have_text("This is not the name of the database.")
    assert Database.objects.filter(name="acme-staging").exists()
    confirm.fill("acme-staging")
    page.get_by_role("button", name="Delete this database").click()
    expect(page).to_have_url(re.compile(re.escape(f"{base}/operations/") + r"\d+/$"))
    expect(page.get_by_role("heading", name="Delete “acme-staging”")).to_be_visible()
    # The name is free at once, and the copy is out of the list even before the storage goes.
    assert not Database.objects.filter(name="acme-staging").exists()
    expect(page.locator("#progress .status")).to_contain_text("Waiting for a worker…")
    polls.clear()
    worker.start()
    watch_until_done(page, polls)

    # Back on the manager: the copy is gone, "acme" remains.
    page.get_by_role("link", name="Back to my databases").click()
    expect(page).to_have_url(f"{base}/databases/")
    expect(rows).to_have_count(1)
    expect(page.locator("#db-acme-staging")).to_have_count(0)
    expect(page.locator("#db-acme .badge")).to_have_text("Trial: 15 days left")
    expect(page.locator("table.databases")).not_to_contain_text("acme-staging")

    # The copy's record and its storage are gone; the source's are untouched.
    assert not Database.objects.filter(pk=copy.pk).exists()
    assert engine_for(copy).exists(copy.physical_name) is False
    assert engine_for(acme).exists(acme.physical_name) is True

    # A script or style that the Content-Security-Policy blocks is a broken page, even when
    # the flow above happens not to need it. Other console noise is only shown (with -s).
    for error in console.errors:
        print("browser console:", error)
    assert not console.csp_violations, console.csp_violations
