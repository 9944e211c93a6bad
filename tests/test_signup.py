from __future__ import annotations

import re
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth.hashers import identify_hasher
from django.core import mail
from django.test import Client

from tenantry.accounts.models import SecurityEvent, User
from tests.conftest import PASSWORD, make_account


def sign_up(client: Client, email: str, password: str = PASSWORD):  # type: ignore[no-untyped-def]
    return client.post(
        "/accounts/signup/", {"email": email, "password1": password, "password2": password}
    )


def test_sign_up_sends_a_verification_link_and_the_link_signs_in(db: None) -> None:
    client = Client()
    response = sign_up(client, "new@example.com")
    assert response.status_code == 302
    assert response["Location"] == "/accounts/confirm-email/"
    assert len(mail.outbox) == 1
    link = re.search(r"http://\S+/accounts/confirm-email/\S+/", mail.outbox[0].body)
    assert link, mail.outbox[0].body
    # Not signed in before verifying.
    assert client.get("/databases/").status_code == 302

    assert link.group(0).startswith(settings.PORTAL_URL + "/")  # whatever host was asked
    path = link.group(0).removeprefix(settings.PORTAL_URL)
    assert client.get(path).status_code == 200  # a page with a button, not a GET side effect
    response = client.post(path)
    assert response.status_code == 302
    assert client.get("/databases/").status_code == 200
    user = User.objects.get(email="new@example.com")
    assert user.emailaddress_set.get().verified
    assert SecurityEvent.objects.filter(user=user, kind="signed_in").exists()
    # The first verification is not an email change.
    assert not SecurityEvent.objects.filter(user=user, kind="email_changed").exists()


def test_sign_in_is_refused_until_the_email_is_verified(db: None) -> None:
    make_account("late@example.com", verified=False)
    client = Client()
    response = client.post("/accounts/login/", {"login": "late@example.com", "password": PASSWORD})
    assert response["Location"] == "/accounts/confirm-email/"
    assert client.get("/databases/").status_code == 302


def test_passwords_are_hashed_with_argon2id(db: None, settings: Any) -> None:
    settings.PASSWORD_HASHERS = settings.PROJECT_PASSWORD_HASHERS  # the suite's is a fast one
    sign_up(Client(), "hash@example.com")
    user = User.objects.get(email="hash@example.com")
    assert identify_hasher(user.password).algorithm == "argon2"
    assert "$argon2id$" in user.password


def test_a_common_password_is_refused(db: None) -> None:
    response = sign_up(Client(), "weak@example.com", "password123")
    assert response.status_code == 200
    assert "This password is too common." in response.content.decode()
    assert not User.objects.filter(email="weak@example.com").exists()


def test_an_email_already_taken_makes_no_account_and_does_not_reveal_it(alice: User) -> None:
    # Answering "taken" would tell strangers who has an account: the owner is mailed instead.
    response = sign_up(Client(), "ALICE@example.com")
    assert response["Location"] == "/accounts/confirm-email/"
    assert User.objects.filter(email__iexact="alice@example.com").count() == 1
    assert mail.outbox[-1].to == ["alice@example.com"]
    assert "already" in mail.outbox[-1].body


@pytest.mark.usefixtures("both_caches")  # in the caches: also on Redis
def test_sign_up_rate_limit(db: None, settings) -> None:  # type: ignore[no-untyped-def]
    client = Client()
    for i in range(20):
        sign_up(client, f"bulk{i}@example.com")
    response = sign_up(client, "one-too-many@example.com")
    assert response.status_code == 429
    assert not User.objects.filter(email="one-too-many@example.com").exists()
