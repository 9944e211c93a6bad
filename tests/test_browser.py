"""A new person's first steps in a real browser: sign up, verify the email, turn on 2FA,
sign in on two devices, and log out from all devices.

It runs Debian's Chromium through Playwright against pytest-django's live server, with mail
going through a real SMTP server (tests/smtp.py).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import pytest
from playwright.sync_api import (
    Browser,
    Page,
    expect,
)

from tests.browser import TIMEOUT_MS, Console, confirm_password, new_page
from tests.conftest import PASSWORD, totp_code

pytestmark = pytest.mark.slow

if TYPE_CHECKING:
    from tests.smtp import SMTPServer


EMAIL = "newcomer@example.com"
SCREENSHOT = "/tmp/security.png"  # noqa: S108 (for a person to look at, not read back)


def sign_in(page: Page, base: str, code: str) -> None:
    """Email and password, then the second factor (a TOTP or recovery code)."""
    page.goto(f"{base}/accounts/login/")
    page.locator("input[name=login]").fill(EMAIL)
    page.locator("input[name=password]").fill(PASSWORD)
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page).to_have_url(f"{base}/accounts/2fa/authenticate/")
    page.locator("input[name=code]").fill(code)
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page).to_have_url(f"{base}/databases/")
    expect(page.get_by_role("heading", name="My databases")).to_be_visible()


def test_signup_2fa_and_logout_from_all_devices(
    portal: str, smtp_mail: SMTPServer, browser: Browser
) -> None:
    # transactional_db comes with live_server: the server thread sees what the test writes.
    # The live server is the portal: mailed links are at the portal's address.
    base = portal
    expect.set_options(timeout=TIMEOUT_MS)
    console = Console()
    page = new_page(browser, console, TIMEOUT_MS)

    # Sign up: with mandatory verification, allauth only says a mail was sent.
    page.goto(f"{base}/accounts/signup/")
    page.locator("input[name=email]").fill(EMAIL)
    page.locator("input[name=password1]").fill(PASSWORD)
    page.locator("input[name=password2]").fill(PASSWORD)
    page.get_by_role("button", name="Sign up", exact=True).click()
    expect(page).to_have_url(f"{base}/accounts/confirm-email/")
    expect(page.get_by_role("heading", name="Verify your email address")).to_be_visible()

    # The verification link arrives over SMTP and points at this very server.
    mail = smtp_mail.wait_for(EMAIL)
    assert mail.recipients == [EMAIL]
    assert mail.subject.startswith("[Tenantry] ")
    match = re.search(r"https?://\S+/accounts/confirm-email/[^/\s]+/", mail.text)
    assert match, mail.text
    link = match.group(0)
    assert link.startswith(f"{base}/"), link

    # The link only shows a Confirm button (no confirmation on GET); confirming signs in,
    # since it is the browser that signed up.
    page.goto(link)
    expect(page.get_by_text(EMAIL).first).to_be_visible()
    page.get_by_role("button", name="Confirm", exact=True).click()
    expect(page).to_have_url(f"{base}/databases/")
    expect(page.get_by_role("heading", name="My databases")).to_be_visible()

    # Security page → Manage two-factor authentication → activate the authenticator app.
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Security").click()
    expect(page).to_have_url(f"{base}/account/security/")
    expect(page.locator("#two-factor")).to_contain_text("Off")
    page.get_by_role("link", name="Manage two-factor authentication").click()
    expect(page).to_have_url(f"{base}/accounts/2fa/")
    expect(page.get_by_text("An authenticator app is not active.")).to_be_visible()
    page.get_by_role("link", name="Activate", exact=True).click()

    confirm_password(page, base)
    expect(page).to_have_url(f"{base}/accounts/2fa/totp/activate/")

    # The secret is shown (disabled input) next to the QR code, for manual entry.
    secret = page.locator("#authenticator_secret").input_value()
    assert re.fullmatch(r"[A-Z2-7]{16,}", secret), secret
    expect(page.get_by_role("img", name=secret)).to_be_visible()
    page.locator("input[name=code]").fill(totp_code(secret))
    page.get_by_role("button", name="Activate", exact=True).click()

    # Recovery codes are generated with the first authenticator and shown at once.
    expect(page).to_have_url(f"{base}/accounts/2fa/recovery-codes/")
    codes = page.locator("#recovery_codes").input_value().split()
    assert len(codes) == 10 and all(re.fullmatch(r"[0-9a-f]{8}", c) for c in codes), codes
    recovery_code = codes[0]
    # The account is told by email that a second factor was added.
    notice = smtp_mail.wait_for(EMAIL, skip=1)
    assert notice.subject == "[Tenantry] Authenticator App Activated", notice.subject

    page.goto(f"{base}/account/security/")
    two_factor = page.locator("#two-factor")
    expect(two_factor).to_contain_text("asks for a second factor")
    expect(two_factor).to_contain_text("Recovery codes: set up")

    # Sign out through the user menu (a <details> at the top right).
    menu = page.locator("details.usermenu")
    menu.locator("summary").click()
    expect(menu).to_contain_text(EMAIL)
    menu.get_by_role("button", name="Sign out").click()
    # The menu posts straight to allauth's logout; should allauth ask to confirm, do so.
    page.wait_for_url(re.compile(r"/accounts/(login|logout)/"))
    if "/accounts/logout/" in page.url:
        page.get_by_role("button", name="Sign out", exact=True).click()
    expect(page).to_have_url(re.compile(re.escape(f"{base}/accounts/login/")))
    page.goto(f"{base}/databases/")
    expect(page).to_have_url(re.compile(re.escape(f"{base}/accounts/login/")))

    # Back in with password + a TOTP code (the activation code was not marked as used).
    sign_in(page, base, totp_code(secret))

    # A second device. A TOTP code from the same 30 s window would be refused as a replay,
    # so this one uses a recovery code.
    other = new_page(browser, console, TIMEOUT_MS)
    sign_in(other, base, recovery_code)

    page.goto(f"{base}/account/security/")
    sessions = page.locator("#sessions tbody tr")
    expect(sessions).to_have_count(2)
    expect(page.locator("#sessions")).to_contain_text("This device")
    page.screenshot(path=SCREENSHOT, full_page=True)

    # Log out from all devices: this session is re-stamped and survives, the other ends.
    page.get_by_role("button", name="Log out from all devices").click()
    expect(page).to_have_url(f"{base}/account/security/")
    signed_out = "Every other session of your account has been signed out."
    expect(page.locator(".messages")).to_contain_text(signed_out)
    page.reload()
    expect(page).to_have_url(f"{base}/account/security/")
    expect(page.get_by_role("heading", name="Connection & security")).to_be_visible()
    expect(sessions).to_have_count(1)

    other.goto(f"{base}/databases/")
    expect(other).to_have_url(f"{base}/accounts/login/?next=/databases/")
    expect(other.get_by_role("button", name="Sign in", exact=True)).to_be_visible()

    # A script or style that the Content-Security-Policy blocks is a broken page, even when
    # the flow above happens not to need it. Other console noise is only shown (with -s).
    for error in console.errors:
        print("browser console:", error)
    assert not console.csp_violations, console.csp_violations
