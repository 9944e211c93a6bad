"""Passkeys in a real browser: add one through the pages, sign in with it alone, and check that
it also counts as a second factor for a password sign-in.

Debian's Chromium runs through Playwright against pytest-django's live server; a CDP virtual
authenticator stands in for the platform authenticator (Touch ID, Windows Hello, ...).
"""

from __future__ import annotations

import re

import pytest
from allauth.mfa.models import Authenticator
from playwright.sync_api import (
    Browser,
    BrowserContext,
    Page,
    expect,
)
from pytest_django.live_server_helper import LiveServer

from tests.browser import TIMEOUT_MS, Console
from tests.conftest import PASSWORD, make_account

pytestmark = pytest.mark.slow

EMAIL = "pat@example.com"
KEY_NAME = "Pat's laptop"
SCREENSHOT = "/tmp/passkeys.png"  # noqa: S108 (for a person to look at, not read back)

# A platform authenticator that can hold discoverable credentials (needed for passkey login)
# and verifies the user (PIN/biometrics); presence is simulated, so no prompt ever blocks.
VIRTUAL_AUTHENTICATOR = {
    "protocol": "ctap2",
    "transport": "internal",
    "hasResidentKey": True,
    "hasUserVerification": True,
    "isUserVerified": True,
    "automaticPresenceSimulation": True,
}


def new_page(browser: Browser, console: Console) -> tuple[BrowserContext, Page]:
    context = browser.new_context()
    context.set_default_timeout(TIMEOUT_MS)
    return context, console.watch(context.new_page())


def password_sign_in(page: Page, base: str) -> None:
    page.goto(f"{base}/accounts/login/")
    page.locator("input[name=login]").fill(EMAIL)
    page.locator("input[name=password]").fill(PASSWORD)
    page.get_by_role("button", name="Sign in", exact=True).click()


def test_add_passkey_and_sign_in_with_it(
    live_server: LiveServer, browser: Browser, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Playwright's sync API keeps an asyncio loop in this thread, so Django would refuse the
    # ORM calls below; they run between Playwright calls, never inside the loop.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    # live_server brings transactional_db: the server thread sees the account made here.
    base = live_server.url
    assert base.startswith("http://localhost:"), base  # a secure context, so WebAuthn works
    expect.set_options(timeout=TIMEOUT_MS)
    console = Console()
    user = make_account(EMAIL)

    context, page = new_page(browser, console)
    cdp = context.new_cdp_session(page)
    cdp.send("WebAuthn.enable")
    authenticator_id = cdp.send(
        "WebAuthn.addVirtualAuthenticator", {"options": VIRTUAL_AUTHENTICATOR}
    )["authenticatorId"]

    password_sign_in(page, base)
    expect(page).to_have_url(f"{base}/databases/")

    # Security page → Manage two-factor authentication → Security keys: Add.
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Security").click()
    expect(page).to_have_url(f"{base}/account/security/")
    page.get_by_role("link", name="Manage two-factor authentication").click()
    expect(page).to_have_url(f"{base}/accounts/2fa/")
    expect(page.get_by_text("No security keys have been added.")).to_be_visible()
    page.locator('a[href="/accounts/2fa/webauthn/add/"]').click()

    # A sensitive change: allauth asks for the password again, then goes on.
    expect(page).to_have_url(re.compile(re.escape(f"{base}/accounts/reauthenticate/")))
    page.locator("input[name=password]").fill(PASSWORD)
    page.get_by_role("button", name="Confirm", exact=True).click()
    expect(page).to_have_url(f"{base}/accounts/2fa/webauthn/add/")
    expect(page.get_by_role("heading", name="Add security key")).to_be_visible()

    page.locator("input[name=name]").fill(KEY_NAME)
    # "Passwordless" makes it a passkey: a discoverable credential with user verification.
    page.get_by_label("Passwordless").check()
    # The Add button runs the WebAuthn ceremony in JS (the virtual authenticator answers),
    # then submits the form with the credential.
    page.get_by_role("button", name="Add", exact=True).click()

    # The first authenticator also generates recovery codes, shown at once.
    expect(page).to_have_url(f"{base}/accounts/2fa/recovery-codes/")
    key = Authenticator.objects.get(user=user, type=Authenticator.Type.WEBAUTHN)
    assert key.wrap().name == KEY_NAME
    assert key.wrap().is_passwordless is True
    assert Authenticator.objects.filter(user=user, type=Authenticator.Type.RECOVERY_CODES).exists()
    credentials = cdp.send("WebAuthn.getCredentials", {"authenticatorId": authenticator_id})
    assert [c["isResidentCredential"] for c in credentials["credentials"]] == [True]

    page.goto(f"{base}/accounts/2fa/webauthn/")
    expect(page.get_by_role("heading", name="Security keys")).to_be_visible()
    row = page.locator("tbody tr")
    expect(row).to_have_count(1)
    expect(row).to_contain_text(KEY_NAME)
    expect(row).to_contain_text("Passkey")
    page.screenshot(path=SCREENSHOT, full_page=True)

    page.goto(f"{base}/account/security/")
    # A passkey alone turns two-factor authentication on.
    expect(page.locator("#two-factor")).to_contain_text("Passkeys: set up")
    expect(page.locator("#two-factor .badge")).to_have_text("On")

    # Sign out through the user menu (a <details> at the top right).
    menu = page.locator("details.usermenu")
    menu.locator("summary").click()
    menu.get_by_role("button", name="Sign out").click()
    # The menu posts straight to allauth's logout; should allauth ask to confirm, do so.
    page.wait_for_url(re.compile(r"/accounts/(login|logout)/"))
    if "/accounts/logout/" in page.url:
        page.get_by_role("button", name="Sign out", exact=True).click()
    expect(page).to_have_url(re.compile(re.escape(f"{base}/accounts/login/")))

    # Same context, same virtual authenticator: the passkey alone signs in (no email typed).
    page.get_by_role("button", name="Sign in with a passkey").click()
    expect(page).to_have_url(f"{base}/databases/")
    expect(page.get_by_role("heading", name="My databases")).to_be_visible()
    key.refresh_from_db()
    assert key.last_used_at is not None
    context.close()

    # Another browser, no authenticator: email + password now asks for the second factor.
    context, page = new_page(browser, console)
    password_sign_in(page, base)
    expect(page).to_have_url(f"{base}/accounts/2fa/authenticate/")
    expect(page.get_by_text("Please enter an authenticator code")).to_be_visible()
    # Not signed in yet: the portal sends the pending sign-in back to the code page.
    page.goto(f"{base}/databases/")
    expect(page).to_have_url(re.compile(rf"{re.escape(base)}/accounts/(login|2fa/authenticate)/"))
    expect(page.locator("details.usermenu")).to_have_count(0)
    context.close()

    assert console.csp_violations == [], "\n".join(console.csp_violations)
