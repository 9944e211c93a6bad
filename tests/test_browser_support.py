"""A support request in a real browser: the owner opens Contact support from a database's
Manage menu, reads its details, attaches a file and sends it; a staff member confirms their
password, finds it on the desk, extends the database's trial and answers; the customer reads
the answer (mailed too) and replies, which opens the request again. Mails go through a real
SMTP server."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.core.management import call_command
from playwright.sync_api import Browser, expect

from tenantry.databases import lifecycle
from tenantry.databases.models import Activity
from tenantry.support.models import Ticket
from tests.browser import (
    SCREENS,
    TIMEOUT_MS,
    WIDTHS,
    Console,
    Worker,
    assert_no_sideways_scroll,
    confirm_password,
    manage,
    new_page,
    show,
    sign_in,
)
from tests.conftest import make_account
from tests.smtp import SMTPServer

pytestmark = pytest.mark.slow

OWNER, AGENT, SUPPORT = "olga@example.com", "agent@tenantry.test", "help@tenantry.test"
NAME = "northwind-trading-international-warehouse-logistics-and-finance"  # 63: the longest


def test_a_request_from_the_manager_answered_on_the_desk_and_replied_to(
    portal: str,
    browser: Browser,
    smtp_mail: SMTPServer,
    worker: Worker,
    settings: pytest.FixtureRequest,
    tmp_path: Path,
) -> None:
    expect.set_options(timeout=TIMEOUT_MS)
    settings.SUPPORT_EMAIL = SUPPORT  # type: ignore[attr-defined]
    worker.start()  # it sends the mails
    console = Console()
    owner = make_account(OWNER)
    make_account(AGENT)
    call_command("staff", "add", AGENT)
    acme = lifecycle.create("acme", by=owner)
    log = tmp_path / "error.log"
    log.write_text("Traceback (most recent call last): ...\n")

    customer = new_page(browser, console)
    sign_in(customer, portal, OWNER)
    manage(customer, "acme", "Contact support")
    details = customer.locator("#database-details")
    expect(details).to_contain_text(str(acme.uuid))
    expect(details).to_contain_text(acme.url)
    customer.get_by_label("Category").select_option("technical")
    customer.get_by_label("Subject").fill("Contacts page is slow")
    customer.get_by_label("Description").fill("It takes ten seconds since yesterday.")
    customer.get_by_label("Attachments").set_input_files(str(log))
    customer.get_by_role("button", name="Send request").click()
    ticket = Ticket.objects.get()
    expect(customer.locator(".messages")).to_contain_text(f"Your request #{ticket.pk} is sent.")
    expect(customer.locator(".conversation")).to_contain_text("error.log")
    to_support = smtp_mail.wait_for(SUPPORT)
    assert str(acme.uuid) in to_support.text
    assert [p.get_filename() for p in to_support.message.iter_attachments()] == ["error.log"]
    assert f"#{ticket.pk}" in smtp_mail.wait_for(OWNER).subject

    agent = new_page(browser, console)
    sign_in(agent, portal, AGENT)
    agent.get_by_label("User menu").click()
    agent.get_by_role("link", name="Support desk").click()
    confirm_password(agent, portal)
    agent.get_by_label("State").select_option("open")
    agent.get_by_role("button", name="Filter").click()
    agent.get_by_role("link", name="Contacts page is slow").click()
    expect(agent.locator(".conversation")).to_contain_text("ten seconds")
    agent.get_by_label("Days to add").fill("30")
    agent.get_by_role("button", name="Extend").click()
    expect(agent.locator(".messages")).to_contain_text("“acme” now lasts until")
    agent.get_by_label("Reply").fill("Fixed: an index was missing. Your trial has 30 more days.")
    agent.get_by_role("button", name="Send answer").click()
    expect(agent.locator(".messages")).to_contain_text(f"Your answer is sent to {OWNER}.")
    entry = Activity.objects.get(database=acme, kind="expiry")
    assert entry.actor == "support"

    answer = smtp_mail.wait_for(OWNER, skip=1)
    assert "an index was missing" in answer.text
    link = re.search(r"https?://\S+/support/\d+/", answer.text)
    assert link
    customer.goto(link.group(0))
    expect(customer.locator(".conversation")).to_contain_text("Tenantry support")
    expect(customer.locator(".conversation")).to_contain_text("an index was missing")
    expect(customer.locator(".badge").first).to_have_text("Answered")
    customer.get_by_label("Reply").fill("Thank you, it is fast again.")
    customer.get_by_role("button", name="Send reply").click()
    expect(customer.locator(".messages")).to_contain_text("Your reply is sent.")
    expect(customer.locator(".badge").first).to_have_text("Open")
    reply = smtp_mail.wait_for(SUPPORT, skip=1)
    assert reply.subject == f"[Tenantry] Reply to #{ticket.pk}: Contacts page is slow"
    # The customer's activity page says who extended the trial: support.
    customer.goto(f"{portal}/databases/acme/activity/")
    expect(customer.locator("body")).to_contain_text("support")
    assert not console.errors, console.errors


def test_the_support_pages_fit_a_desktop_and_a_phone(
    portal: str, browser: Browser, worker: Worker, tmp_path: Path
) -> None:
    """Contact support with a database of the longest name, the request, My requests and the
    desk at 1280 and 390 px: nothing scrolls sideways; screenshots for a person."""
    expect.set_options(timeout=TIMEOUT_MS)
    console = Console()
    owner = make_account(OWNER)
    make_account(AGENT)
    call_command("staff", "add", AGENT)
    lifecycle.create(NAME, by=owner)
    customer = new_page(browser, console)
    sign_in(customer, portal, OWNER)
    customer.goto(f"{portal}/support/new/?database={NAME}")
    customer.get_by_label("Subject").fill(
        "A subject long enough to wrap on a phone's narrow screen"
    )
    customer.get_by_label("Description").fill("Line one.\n" * 5)
    customer.get_by_role("button", name="Send request").click()
    ticket = Ticket.objects.get()
    agent = new_page(browser, console)
    sign_in(agent, portal, AGENT)
    agent.goto(f"{portal}/desk/")
    confirm_password(agent, portal)
    SCREENS.mkdir(exist_ok=True)
    pages = [
        (customer, f"/support/new/?database={NAME}", "support-new"),
        (customer, f"/support/{ticket.pk}/", "support-request"),
        (customer, "/support/", "support-requests"),
        (agent, "/desk/", "desk"),
        (agent, f"/desk/{ticket.pk}/", "desk-request"),
    ]
    for page, path, name in pages:
        for width in WIDTHS:
            show(page, width, f"{portal}{path}")
            assert_no_sideways_scroll(page)
            page.screenshot(path=str(SCREENS / f"{name}-{width}.png"), full_page=True)
    assert not console.errors, console.errors
