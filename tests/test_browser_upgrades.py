"""An upgrade in a real browser: release 2.0 is published; the manager offers the upgrade with
its deadline; a test upgrade runs on a copy while the page follows it; its report tells each
table's rows before and after; from the report, the production upgrade is one click; the
manager then shows the database at 2.0. The report is also read at 390 px (a phone).
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone
from playwright.sync_api import Browser, Page, expect
from pytest_django.live_server_helper import LiveServer

from tenantry.databases import lifecycle
from tenantry.databases.models import Database
from tenantry.releases import models as releases
from tenantry.releases.models import add_months
from tenantry.workspace import tenant
from tenantry.workspace.releases import model
from tests.browser import (
    TIMEOUT_MS,
    Console,
    Worker,
    htmx_polls,
    manage,
    new_page,
    sign_in,
    watch_until_done,
)
from tests.conftest import make_account

pytestmark = pytest.mark.slow

EMAIL = "dana@example.com"
SCREENS = Path("/tmp/tenantry-screens")  # noqa: S108 (for a person to look at, not read back)


def test_a_test_upgrade_then_the_upgrade_from_its_report(
    live_server: LiveServer, browser: Browser, worker: Worker
) -> None:
    # The worker fixture allows the ORM calls below (see there).
    base = live_server.url
    expect.set_options(timeout=TIMEOUT_MS)
    console = Console()
    account = make_account(EMAIL)
    a_minute_ago = timezone.now() - timedelta(minutes=1)
    for version in ("1.0", "1.1"):  # a transactional test starts with none recorded
        releases.publish(version, a_minute_ago)
    shop = lifecycle.create("shop", by=account)
    assert shop.release == "1.1"
    contact = model("1.1", "Contact")
    with tenant.using(shop) as db:
        contact.objects.using(db).bulk_create(
            [
                contact(name="Ada", email="ada@acme.com", company="Acme"),
                contact(name="Bob", email="bob@acme.com", company="Acme"),
                contact(name="Cy", email="cy@other.org", company="Other"),
            ]
        )
    published = releases.publish("2.0", a_minute_ago)
    assert published.published_at is not None
    deadline = add_months(published.published_at, 2)
    worker.start()

    page = new_page(browser, console)
    polls = htmx_polls(page)
    sign_in(page, base, EMAIL)
    expect(page).to_have_url(f"{base}/databases/")

    # The manager: 1.1, to be upgraded to 2.0 by two months after its publication.
    release = page.locator("#db-shop td[data-label=Release]")
    expect(release).to_have_text("1.1")
    row = page.locator("#db-shop")
    offer = row.get_by_role("link", name=f"Upgrade to 2.0 by {deadline:%Y-%m-%d}")
    expect(offer).to_be_visible()
    SCREENS.mkdir(exist_ok=True)
    on_a_phone(page, "manager-upgrade-390.png")
    offer.click()
    expect(page).to_have_url(f"{base}/databases/shop/upgrade/")
    expect(page.get_by_role("heading", name="Upgrade “shop”")).to_be_visible()
    expect(page.locator("#deadline")).to_contain_text(f"by {deadline:%Y-%m-%d}")
    expect(page.get_by_label("2.0 (latest)")).to_be_checked()

    # The test upgrade: a copy, upgraded while the page follows it.
    page.get_by_role("button", name="Test upgrade").click()
    expect(page).to_have_url(re.compile(re.escape(f"{base}/operations/") + r"\d+/$"))
    expect(page.get_by_role("heading", name="Upgrade “shop”")).to_be_visible()
    watch_until_done(page, polls)
    copy = Database.objects.get(name="shop-upgrade-2-0")
    expect(page.locator("#progress .status")).to_contain_text(f"The copy is ready at {copy.url}.")
    shop.refresh_from_db()
    assert shop.release == "1.1"

    # Its report: the rows of each table, before and after.
    page.get_by_role("link", name="Read the upgrade report").click()
    expect(page).to_have_url(re.compile(re.escape(f"{base}/upgrades/") + r"\d+/$"))
    expect(page.get_by_role("heading", name="Test upgrade of “shop” to 2.0")).to_be_visible()
    expect(page.locator("#outcome")).to_contain_text("Succeeded in ")
    expect(page.locator("#steps li")).to_have_text(["0003_release_2_0"])
    contacts = page.locator("#tables tr", has_text="workspace_contact")
    expect(contacts.locator("td[data-label=Before]")).to_have_text("3")
    expect(contacts.locator("td[data-label=After]")).to_have_text("3")
    companies = page.locator("#tables tr", has_text="workspace_company")
    expect(companies.locator("td[data-label=Before]")).to_have_text("–")
    expect(companies.locator("td[data-label=After]")).to_have_text("2")
    expect(page.locator("#copy a")).to_have_text(copy.url)

    # On a phone, each table a block of labelled lines.
    on_a_phone(page, "upgrade-report-390.png")

    # The upgrade itself, in one click from the report.
    polls.clear()
    page.get_by_role("button", name="Upgrade “shop” to 2.0").click()
    expect(page).to_have_url(re.compile(re.escape(f"{base}/operations/") + r"\d+/$"))
    watch_until_done(page, polls)
    expect(page.locator("#progress .status")).to_contain_text("“shop” is at release 2.0.")
    expect(page.get_by_role("link", name="Read the upgrade report")).to_be_visible()

    # The manager: at 2.0, nothing more to upgrade to; the last report is in its menu.
    page.get_by_role("link", name="Back to my databases").click()
    expect(page).to_have_url(f"{base}/databases/")
    expect(release).to_have_text("2.0")
    expect(row.get_by_role("link", name=re.compile("^Upgrade to"))).to_have_count(0)
    shop.refresh_from_db()
    assert shop.release == "2.0"
    page.screenshot(path=str(SCREENS / "manager-upgraded.png"), full_page=True)
    manage(page, "shop", "Upgrade report")
    expect(page.get_by_role("heading", name="Upgrade of “shop” to 2.0")).to_be_visible()
    expect(page.locator("#outcome")).to_contain_text("Succeeded in ")

    for error in console.errors:
        print("browser console:", error)
    assert not console.csp_violations, console.csp_violations


def on_a_phone(page: Page, screenshot: str) -> None:
    """The page at 390 px wide: nothing wider than the screen; a screenshot to look at."""
    page.set_viewport_size({"width": 390, "height": 900})
    widths = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert widths[0] <= widths[1], f"{page.url} scrolls sideways at 390 px: {widths}"
    page.screenshot(path=str(SCREENS / screenshot), full_page=True)
    page.set_viewport_size({"width": 1280, "height": 900})
