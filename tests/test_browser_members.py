"""Inviting people in a real browser: the owner invites two addresses at once; one person has an
account and signs in, the other signs up through the link; both find the database in their
manager and can connect; the owner removes one, who then can no longer connect.

Invitation mails go through a real SMTP server (aiosmtpd) started by the test.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Browser, Page, expect

from tenantry.databases import lifecycle
from tenantry.databases.models import Database
from tests.browser import TIMEOUT_MS, Console, Worker, confirm_password, new_page, sign_in
from tests.conftest import PASSWORD, make_account
from tests.smtp import SMTPServer

pytestmark = pytest.mark.slow

OWNER, KNOWN, NEWCOMER = "olga@example.com", "kim@example.com", "nina@example.com"


def link(smtp: SMTPServer, email: str) -> str:
    found = re.search(r"https?://\S+/invitations/[\w-]+/", smtp.wait_for(email).text)
    assert found
    return found.group(0)


def connect(page: Page, portal: str) -> None:
    page.goto(f"{portal}/databases/")
    page.get_by_role("button", name="Connect to acme").click()


def test_invite_two_people_both_accept_one_is_removed(
    portal: str, browser: Browser, smtp_mail: SMTPServer, worker: Worker
) -> None:
    expect.set_options(timeout=TIMEOUT_MS)
    worker.start()  # it sends the invitations
    console = Console()
    owner_account = make_account(OWNER)
    make_account(KNOWN)
    lifecycle.create("acme", by=owner_account)
    acme_url = Database.objects.get(name="acme").url

    owner = new_page(browser, console)
    sign_in(owner, portal, OWNER)
    owner.locator("#db-acme").get_by_label("Manage acme").click()
    owner.locator("#db-acme").get_by_role("link", name="Users", exact=True).click()
    owner.get_by_label("Email addresses").fill(f"{KNOWN}\n{NEWCOMER}")
    owner.get_by_role("button", name="Invite", exact=True).click()
    expect(owner.locator(".messages")).to_contain_text(f"Invitation sent to {KNOWN}, {NEWCOMER}.")
    expect(owner.locator("table.invitations")).to_contain_text(NEWCOMER)

    # Kim has an account: sign in from the link, accept.
    kim = new_page(browser, console)
    kim.goto(link(smtp_mail, KNOWN))
    kim.get_by_role("link", name="Sign in to accept").click()
    kim.locator("input[name=login]").fill(KNOWN)
    kim.locator("input[name=password]").fill(PASSWORD)
    kim.get_by_role("button", name="Sign in", exact=True).click()
    kim.get_by_role("button", name="Accept the invitation").click()
    expect(kim).to_have_url(f"{portal}/databases/")
    expect(kim.locator("#db-acme")).to_contain_text("User")
    expect(kim.locator("#db-acme").get_by_label("Manage acme")).to_have_count(0)

    # Nina has none: sign up from the link (no verification mail needed), accept.
    nina = new_page(browser, console)
    nina.goto(link(smtp_mail, NEWCOMER))
    nina.get_by_role("link", name="Create your account to accept").click()
    nina.locator("input[name=email]").fill(NEWCOMER)
    nina.locator("input[name=password1]").fill(PASSWORD)
    nina.locator("input[name=password2]").fill(PASSWORD)
    nina.get_by_role("button", name="Sign up", exact=True).click()
    nina.get_by_role("button", name="Accept the invitation").click()
    expect(nina.locator("#db-acme")).to_be_visible()

    # Both connect.
    for page in (kim, nina):
        connect(page, portal)
        expect(page).to_have_url(f"{acme_url}/")
        expect(page.get_by_role("button", name="Sign out")).to_be_visible()

    # The owner removes Kim: Kim's database session ends and Connect is gone.
    owner.reload()
    owner.get_by_label(f"Select {KNOWN}").check()
    owner.get_by_role("button", name="Remove").click()
    confirm_password(owner, portal)
    expect(owner.locator(".messages")).to_contain_text(f"Removed: {KNOWN}.")
    kim.goto(f"{acme_url}/contacts/")
    expect(kim).to_have_url(re.compile(re.escape(f"{acme_url}/login/")))
    kim.goto(f"{portal}/databases/")
    expect(kim.locator("#db-acme")).to_have_count(0)
    nina.goto(f"{acme_url}/contacts/")
    expect(nina.get_by_role("heading", name="Contacts")).to_be_visible()
    assert console.errors == []
