from __future__ import annotations

import pytest
from allauth.usersessions.models import UserSession
from django.conf import settings
from django.test import Client

from tenantry.accounts.models import SecurityEvent, User
from tests.conftest import PASSWORD, sign_in

NEW_PASSWORD = "a brand new passphrase"


def signed_in(client: Client) -> bool:
    return client.get("/account/security/").status_code == 200


def test_sign_in_by_email_and_sign_out(alice: User) -> None:
    client = Client()
    sign_in(client, "Alice@Example.com")
    assert signed_in(client)
    client.post("/accounts/logout/")
    assert not signed_in(client)
    kinds = list(SecurityEvent.objects.filter(user=alice).values_list("kind", flat=True))
    assert "signed_in" in kinds and "signed_out" in kinds


def test_a_wrong_password_is_refused_and_recorded(alice: User) -> None:
    response = Client().post("/accounts/login/", {"login": alice.email, "password": "nope"})
    assert response.status_code == 200
    assert SecurityEvent.objects.filter(user=alice, kind="sign_in_failed").exists()


@pytest.mark.usefixtures("both_caches")  # in the caches: also on Redis
def test_failed_sign_ins_are_rate_limited_even_with_the_right_password(alice: User) -> None:
    client = Client()
    for _ in range(5):
        client.post("/accounts/login/", {"login": alice.email, "password": "wrong guess"})
    response = client.post("/accounts/login/", {"login": alice.email, "password": PASSWORD})
    assert "Too many failed attempts. Try again in 5 minutes." in response.content.decode()
    assert not signed_in(client)


def test_the_security_page_shows_recent_activity(alice: User) -> None:
    Client().post("/accounts/login/", {"login": alice.email, "password": "nope"})
    client = Client()
    sign_in(client, alice.email)
    page = client.get("/account/security/").content.decode()
    assert 'Failed sign-in <span class="muted">(wrong password)</span>' in page
    assert "Signed in" in page


def test_the_security_page_lists_sessions_with_device_and_ip(alice: User) -> None:
    firefox = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0"
    client = Client(HTTP_USER_AGENT=firefox)
    sign_in(client, alice.email)
    page = client.get("/account/security/").content.decode()
    assert "Firefox on Windows" in page
    assert "127.0.0.1" in page
    assert "This device" in page


def test_logout_from_all_devices_ends_every_other_session(alice: User) -> None:
    first, second = Client(), Client()
    sign_in(first, alice.email)
    sign_in(second, alice.email)
    # A session allauth never listed (no UserSession row) must end too: the epoch does it.
    unlisted = Client()
    unlisted.force_login(alice)
    assert signed_in(second) and signed_in(unlisted)

    response = first.post("/account/security/logout-all/")
    assert response.status_code == 302
    assert signed_in(first)
    assert not signed_in(second)
    assert not signed_in(unlisted)
    assert UserSession.objects.filter(user=alice).count() == 1
    assert SecurityEvent.objects.filter(user=alice, kind="logged_out_all").exists()


def test_logout_all_needs_post(alice_client: Client) -> None:
    assert alice_client.get("/account/security/logout-all/").status_code == 405


def test_logout_all_is_protected_by_csrf(alice: User) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    assert client.post("/account/security/logout-all/").status_code == 403


def test_changing_the_password_needs_the_current_one_and_ends_other_sessions(alice: User) -> None:
    first, second = Client(), Client()
    sign_in(first, alice.email)
    sign_in(second, alice.email)
    form = {"oldpassword": "not it", "password1": NEW_PASSWORD, "password2": NEW_PASSWORD}
    response = first.post("/accounts/password/change/", form)
    assert response.status_code == 200
    assert signed_in(second)

    form["oldpassword"] = PASSWORD
    response = first.post("/accounts/password/change/", form)
    assert response.status_code == 302
    assert signed_in(first)
    assert not signed_in(second)
    sign_in(Client(), alice.email, NEW_PASSWORD)
    assert SecurityEvent.objects.filter(user=alice, kind="password_changed").exists()


def test_password_reset_by_email(alice: User, mailoutbox) -> None:  # type: ignore[no-untyped-def]
    client = Client()
    client.post("/accounts/password/reset/", {"email": alice.email})
    body = mailoutbox[-1].body
    path = next(w for w in body.split() if "/accounts/password/reset/key/" in w)
    assert path.startswith(settings.PORTAL_URL + "/")  # whatever host was asked
    path = path.removeprefix(settings.PORTAL_URL)
    response = client.get(path)
    assert response.status_code == 302  # allauth moves the key out of the URL
    form = {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD}
    response = client.post(response["Location"], form)
    assert response.status_code == 302
    sign_in(Client(), alice.email, NEW_PASSWORD)
    response = Client().post("/accounts/login/", {"login": alice.email, "password": PASSWORD})
    assert response.status_code == 200
