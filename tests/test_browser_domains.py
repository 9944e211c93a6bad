"""A custom domain in a real browser: its administrator adds it on the Domains page, reads the
record to add, verifies it once the (real, test) DNS has the record, and opens the database
at that domain."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Browser, FloatRect, Locator, expect
from pytest_django.live_server_helper import LiveServer

from tenantry.databases import lifecycle
from tests.browser import TIMEOUT_MS, Console, Worker, manage, new_page, sign_in
from tests.conftest import make_account
from tests.dnsserver import Zone

pytestmark = pytest.mark.slow

EMAIL = "dana@example.com"
SCREENS = Path("/tmp/tenantry-screens")  # noqa: S108 (for a person to look at, not read back)


def bbox(locator: Locator) -> FloatRect:
    box = locator.bounding_box()
    assert box is not None
    return box


def test_a_domain_added_verified_and_opened(
    live_server: LiveServer, browser: Browser, worker: Worker, dns_server: Zone
) -> None:
    # The worker fixture allows the ORM calls below (see there).
    base = live_server.url
    port = base.rsplit(":", 1)[1]
    expect.set_options(timeout=TIMEOUT_MS)
    console = Console()
    account = make_account(EMAIL)
    lifecycle.create("shop", by=account)

    page = new_page(browser, console)
    sign_in(page, base, EMAIL)
    expect(page).to_have_url(f"{base}/databases/")
    manage(page, "shop", "Domains")
    expect(page).to_have_url(f"{base}/databases/shop/domains/")
    page.get_by_label("Domain").fill("Shop.Example.test")
    page.get_by_role("button", name="Add domain").click()
    expect(page.locator(".messages")).to_contain_text("shop.example.test is added")
    row = page.locator("#domain-shop\\.example\\.test")
    expect(row).to_contain_text("shop.example.test. CNAME shop.localhost.")
    expect(row).to_contain_text("Pending")

    row.get_by_role("button", name="Verify").click()
    expect(page.locator(".messages")).to_contain_text(
        "shop.example.test is not verified: the name does not exist."
    )
    dns_server.set("shop.example.test", "CNAME", "shop.localhost")
    page.locator("#domain-shop\\.example\\.test").get_by_role("button", name="Verify").click()
    expect(page.locator(".messages")).to_contain_text("shop.example.test is verified.")
    expect(page.locator("#domain-shop\\.example\\.test")).to_contain_text("Verified")
    SCREENS.mkdir(exist_ok=True)
    for width in (1280, 390):  # for a person to look at: the records must not run off a phone
        page.set_viewport_size({"width": width, "height": 900})
        page.screenshot(path=SCREENS / f"domains-{width}.png", full_page=True)
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, (width, overflow)
    page.set_viewport_size({"width": 1280, "height": 900})

    page.goto(f"http://shop.example.test:{port}/login/")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    expect(page.locator(".brand")).to_have_text("shop")

    # Renamed: the rename page names the domain; it stays verified, and says what to change.
    page.goto(f"{base}/databases/shop/rename/")
    expect(page.locator("main")).to_contain_text("Its domains (shop.example.test) go on serving")
    for width in (1280, 390):
        page.set_viewport_size({"width": width, "height": 900})
        page.screenshot(path=SCREENS / f"rename-with-domains-{width}.png", full_page=True)
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, (width, overflow)
    page.set_viewport_size({"width": 1280, "height": 900})
    page.get_by_label("New name").fill("boutique")
    page.get_by_role("button", name="Rename").click()
    expect(page.locator(".messages")).to_contain_text("“shop” is now “boutique”")
    manage(page, "boutique", "Domains")
    page.locator("#domain-shop\\.example\\.test").get_by_role("button", name="Verify").click()
    row = page.locator("#domain-shop\\.example\\.test")
    expect(row).to_contain_text("Verified")
    expect(row).to_contain_text(
        "the CNAME points to shop.localhost, the database's former name: change it to "
        "boutique.localhost"
    )
    expect(row).to_contain_text("shop.example.test. CNAME boutique.localhost.")
    for width in (1280, 390):
        page.set_viewport_size({"width": width, "height": 900})
        page.screenshot(path=SCREENS / f"domains-renamed-{width}.png", full_page=True)
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, (width, overflow)
        table, card = page.locator("table.domains"), page.locator("section.card").first
        assert bbox(table)["x"] + bbox(table)["width"] <= bbox(card)["x"] + bbox(card)["width"]
    assert not console.csp_violations, console.csp_violations
