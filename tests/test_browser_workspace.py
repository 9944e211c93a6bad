"""A database at its own address, in a real browser: create it in the portal, Connect, add a
contact, set a database password in My Preferences, sign out, and sign back in with it.

The portal is pytest-django's live server at http://localhost:<port>; the database answers at
http://acme.localhost:<port>, which Chromium resolves to this machine.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import Browser, expect

from tenantry.databases.models import Database
from tenantry.workspace import releases, tenant
from tests.browser import TIMEOUT_MS, Console, new_page
from tests.conftest import PASSWORD, make_account

pytestmark = pytest.mark.slow

EMAIL = "erin@example.com"
DB_PASSWORD = "only for acme, 2026"


def test_connect_add_a_contact_and_sign_in_with_a_database_password(
    portal: str, browser: Browser
) -> None:
    expect.set_options(timeout=TIMEOUT_MS)
    console = Console()
    make_account(EMAIL)
    page = new_page(browser, console, TIMEOUT_MS)

    page.goto(f"{portal}/accounts/login/")
    page.locator("input[name=login]").fill(EMAIL)
    page.locator("input[name=password]").fill(PASSWORD)
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page).to_have_url(f"{portal}/databases/")
    page.get_by_label("New database").fill("acme")
    page.get_by_role("button", name="Create database").click()
    expect(page.locator(".messages")).to_contain_text("“acme” is ready at ")
    acme = Database.objects.get(name="acme")
    assert acme.url.startswith("http://acme.localhost:")

    # Connect: through the portal's self-posting form, to the database, already signed in.
    page.get_by_role("button", name="Connect to acme").click()
    expect(page).to_have_url(f"{acme.url}/")
    expect(page.get_by_role("heading", name="acme")).to_be_visible()
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()

    page.get_by_role("link", name="Contacts").click()
    expect(page.get_by_text("No contacts yet.")).to_be_visible()
    page.get_by_label("Name").fill("Ada Lovelace")
    page.get_by_label("Email").fill("ada@example.com")
    page.get_by_role("button", name="Add contact").click()
    expect(page.locator(".messages")).to_contain_text("“Ada Lovelace” was added.")
    expect(page.locator("table.contacts")).to_contain_text("ada@example.com")
    Contact = releases.model(acme.release, "Contact")
    with tenant.using(acme) as db:
        assert list(Contact.objects.using(db).values_list("name", flat=True)) == ["Ada Lovelace"]

    page.get_by_role("link", name="My Preferences").click()
    expect(page.locator("#login")).to_have_text(EMAIL)
    expect(page.locator("#login-help")).to_contain_text("Only Tenantry's support changes it")
    page.get_by_label("Current password").fill(PASSWORD)
    page.get_by_label("New password").fill(DB_PASSWORD)
    page.get_by_label("Confirm password").fill(DB_PASSWORD)
    page.get_by_role("button", name="Set database password").click()
    expect(page.locator(".messages")).to_contain_text("Your database password is set.")

    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(f"{acme.url}/login/")
    page.goto(f"{acme.url}/contacts/")
    expect(page).to_have_url(f"{acme.url}/login/?next=/contacts/")
    page.get_by_label("Login").fill(EMAIL)
    page.get_by_label("Password").fill(DB_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{acme.url}/contacts/")
    expect(page.locator("table.contacts")).to_contain_text("Ada Lovelace")
    assert console.errors == []
