"""A partner's trial project in a real browser, from its creation to the client's subscription:
the partner starts it from the manager, makes a staging database and watches it made, refreshes
it from production and watches the refresh end, reads the usage bar (on a phone too); the
client, an administrator of production, subscribes; the partner links production with the
client's code on the project's page, and the manager then shows that code.
"""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect
from pytest_django.live_server_helper import LiveServer

from tenantry.billing import subscriptions
from tenantry.billing.models import Plan, Project
from tenantry.databases.models import Database, Membership
from tenantry.operations.models import Operation
from tests.browser import (
    TIMEOUT_MS,
    Console,
    Worker,
    htmx_polls,
    new_page,
    sign_in,
    watch_until_done,
)
from tests.conftest import make_account

pytestmark = pytest.mark.slow

PARTNER = "partner@example.com"
CLIENT = "client@example.com"
SCREENS = Path("/tmp/tenantry-screens")  # noqa: S108 (for a person to look at, not read back)


def test_a_partners_trial_project_from_creation_to_the_clients_subscription(
    live_server: LiveServer, browser: Browser, worker: Worker
) -> None:
    # The worker fixture allows the ORM calls below (see there).
    base = live_server.url
    expect.set_options(timeout=TIMEOUT_MS)
    console = Console()
    partner = make_account(PARTNER)
    partner.partner_code = "P-0BR0WSER"
    partner.save(update_fields=["partner_code"])
    worker.start()

    page = new_page(browser, console)
    polls = htmx_polls(page)
    sign_in(page, base, PARTNER)
    expect(page).to_have_url(f"{base}/databases/")

    # New trial project, beside New database: its page, with production made at once.
    page.get_by_label("New trial project").fill("acme")
    page.get_by_role("button", name="Start trial project").click()
    expect(page).to_have_url(re.compile(re.escape(f"{base}/projects/") + r"\d+/$"))
    project = Project.objects.get(partner=partner)
    acme = Database.objects.get(name="acme")
    assert acme.project == project
    expect(page.locator(".messages")).to_contain_text(
        f"Your trial project is ready: its production database is at {acme.url}."
    )
    expect(page.get_by_role("heading", name="Trial project “acme”")).to_be_visible()
    expect(page.locator("#production")).to_contain_text("P-0BR0WSER")
    expect(page.locator("#usage")).to_contain_text(re.compile(r" of 1\.0\sGB"))
    project_url = page.url

    # A staging database, watched while it is made.
    page.get_by_label("New staging database").fill("acme-staging")
    page.get_by_role("button", name="Make a staging copy").click()
    expect(page).to_have_url(re.compile(re.escape(f"{base}/operations/") + r"\d+/$"))
    watch_until_done(page, polls)
    staging = Database.objects.get(name="acme-staging")
    assert (staging.project, staging.expires_at, staging.is_test_copy) == (project, None, True)
    expect(page.locator("#progress .status")).to_contain_text(
        f"The copy is ready at {staging.url}."
    )
    page.get_by_role("link", name="Back to the trial project").click()
    expect(page).to_have_url(project_url)

    # Refreshed from production, watched until it ends.
    physical = staging.physical_name
    polls.clear()
    page.get_by_role("button", name="Refresh acme-staging from production").click()
    expect(page).to_have_url(re.compile(re.escape(f"{base}/operations/") + r"\d+/$"))
    expect(page.get_by_role("heading", name="Refresh “acme-staging”")).to_be_visible()
    watch_until_done(page, polls)
    expect(page.locator("#progress .status")).to_contain_text(
        "“acme-staging” has production's data again, neutralized"
    )
    assert Operation.objects.get(kind="refresh").state == "done"
    staging.refresh_from_db()
    assert staging.physical_name != physical  # swapped in

    # The manager: both databases with the project's usage bar and a way to its page.
    page.get_by_role("link", name="Back to my databases").click()
    expect(page).to_have_url(f"{base}/databases/")
    for name in ("acme", "acme-staging"):
        row = page.locator(f"#db-{name}")
        expect(row.locator(".usage progress")).to_be_visible()
        expect(row.locator(".usage")).to_contain_text(re.compile(r" of 1\.0\sGB"))
        expect(row.get_by_role("link", name="Trial project")).to_have_attribute(
            "href", project_url.removeprefix(base)
        )
    SCREENS.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENS / "manager-project.png"), full_page=True)
    on_a_phone(page, "manager-project-390.png")

    # The client: an administrator of production, with a subscription of its own.
    customer = make_account(CLIENT)
    Membership.objects.create(database=acme, user=customer, role=Membership.Role.ADMIN)
    plan = Plan.objects.create(
        name="Standard", price_month=Decimal("10"), price_year=Decimal("100"),
        storage_bytes=10 * 1024**3, max_databases=3,
    )  # fmt: skip
    subscription = subscriptions.subscribe(customer, plan, users=3, by=customer)

    # The partner links production with the client's code, on the project's page.
    page.locator("#db-acme").get_by_role("link", name="Trial project").click()
    expect(page).to_have_url(project_url)
    page.get_by_label("Client's subscription code").fill(subscription.code)
    page.get_by_role("button", name="Link", exact=True).click()
    expect(page).to_have_url(project_url)
    expect(page.locator(".messages")).to_contain_text(f"“acme” is linked to {subscription.code}")
    expect(page.locator("#production dd").nth(2)).to_have_text(subscription.code)
    expect(page.locator("#usage")).to_contain_text(re.compile(r" of 10\.0\sGB"))
    expect(page.locator("#link")).to_have_count(0)
    page.screenshot(path=str(SCREENS / "project.png"), full_page=True)
    on_a_phone(page, "project-390.png")
    acme.refresh_from_db()
    assert acme.subscription == subscription

    # The manager now shows the client's code, with the plan's storage.
    page.get_by_role("link", name="My databases").click()
    expect(page).to_have_url(f"{base}/databases/")
    row = page.locator("#db-acme")
    expect(row).to_contain_text(subscription.code)
    expect(row.locator(".usage")).to_contain_text(re.compile(r" of 10\.0\sGB"))

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
