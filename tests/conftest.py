"""Shared fixtures: named people, a signed-in client, TOTP codes, and mail."""

from __future__ import annotations

import time

import pytest
from allauth.account.models import EmailAddress
from allauth.mfa.totp.internal.auth import format_hotp_value, hotp_value
from django.test import Client

from tenantry.accounts.models import User

# Real servers for the tests that need them: PostgreSQL (started with initdb) and SMTP;
# and a real browser (Chromium through Playwright).
pytest_plugins = ["tests.postgres", "tests.smtp", "tests.browser"]

PASSWORD = "correct horse battery staple"


def make_account(email: str, password: str = PASSWORD, verified: bool = True) -> User:
    user = User.objects.create_user(email, password)
    EmailAddress.objects.create(user=user, email=email, primary=True, verified=verified)
    return user


def totp_code(secret: str, offset: int = 0) -> str:
    """The code an authenticator app shows now (offset: periods later)."""
    return format_hotp_value(hotp_value(secret, int(time.time()) // 30 + offset))


def sign_in(client: Client, email: str, password: str = PASSWORD, code: str | None = None) -> None:
    response = client.post("/accounts/login/", {"login": email, "password": password})
    assert response.status_code == 302, response.content.decode()[:2000]
    if code is not None:
        assert response["Location"] == "/accounts/2fa/authenticate/"
        response = client.post("/accounts/2fa/authenticate/", {"code": code})
        assert response.status_code == 302, response.content.decode()[:2000]


def reauthenticate(client: Client, password: str = PASSWORD) -> None:
    response = client.post("/accounts/reauthenticate/", {"password": password})
    assert response.status_code == 302, response.content.decode()[:2000]


@pytest.fixture
def alice(db: None) -> User:
    return make_account("alice@example.com")


@pytest.fixture
def bob(db: None) -> User:
    return make_account("bob@example.com")


@pytest.fixture
def alice_client(alice: User) -> Client:
    client = Client()
    sign_in(client, alice.email)
    return client
