from __future__ import annotations

import pytest
from allauth.mfa.adapter import get_adapter as get_mfa_adapter
from allauth.mfa.models import Authenticator
from django.test import Client

from tenantry.accounts.models import SecurityEvent, User
from tests.conftest import PASSWORD, reauthenticate, sign_in, totp_code
from tests.helpers import enable_totp


def test_enabling_2fa_asks_to_reauthenticate_first(alice_client: Client) -> None:
    response = alice_client.get("/accounts/2fa/totp/activate/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/reauthenticate/")
    reauthenticate(alice_client)
    enable_totp(alice_client)
    assert Authenticator.objects.filter(type="totp").count() == 1
    # Recovery codes come with it.
    assert Authenticator.objects.filter(type="recovery_codes").count() == 1
    assert SecurityEvent.objects.filter(kind="mfa_enabled").exists()


def test_the_activation_page_shows_a_qr_code_and_the_secret(alice_client: Client) -> None:
    reauthenticate(alice_client)
    response = alice_client.get("/accounts/2fa/totp/activate/")
    page = response.content.decode()
    assert 'src="data:image/svg+xml;base64,' in page
    assert response.context["form"].secret in page


def test_totp_seeds_are_encrypted_at_rest(alice_client: Client) -> None:
    reauthenticate(alice_client)
    secret = enable_totp(alice_client)
    stored = Authenticator.objects.get(type="totp").data["secret"]
    assert secret not in stored
    assert get_mfa_adapter().decrypt(stored) == secret
    seed = Authenticator.objects.get(type="recovery_codes").data["seed"]
    assert len(seed) > 60  # a Fernet token, not the 40-character hex seed


def test_sign_in_with_2fa_needs_the_code(alice_client: Client, alice: User) -> None:
    reauthenticate(alice_client)
    secret = enable_totp(alice_client)
    client = Client()
    response = client.post("/accounts/login/", {"login": alice.email, "password": PASSWORD})
    assert response["Location"] == "/accounts/2fa/authenticate/"
    # Password alone is not a session.
    assert client.get("/account/security/").status_code == 302
    response = client.post("/accounts/2fa/authenticate/", {"code": "000000"})
    assert response.status_code == 200
    assert client.get("/account/security/").status_code == 302
    client.post("/accounts/2fa/authenticate/", {"code": totp_code(secret)})
    assert client.get("/account/security/").status_code == 200
    assert SecurityEvent.objects.filter(kind="signed_in", detail="with 2FA").exists()
    assert SecurityEvent.objects.filter(kind="sign_in_failed", detail="wrong 2FA code").exists()


@pytest.mark.usefixtures("both_caches")  # in the caches: also on Redis
def test_a_replayed_totp_code_is_refused(alice_client: Client, alice: User) -> None:
    reauthenticate(alice_client)
    secret = enable_totp(alice_client)
    code = totp_code(secret)
    sign_in(Client(), alice.email, code=code)

    thief = Client()
    response = thief.post("/accounts/login/", {"login": alice.email, "password": PASSWORD})
    response = thief.post("/accounts/2fa/authenticate/", {"code": code})
    assert response.status_code == 200
    assert "Incorrect code" in response.content.decode()
    assert thief.get("/account/security/").status_code == 302


def test_a_recovery_code_signs_in_once(alice_client: Client, alice: User) -> None:
    reauthenticate(alice_client)
    enable_totp(alice_client)
    codes = alice_client.get("/accounts/2fa/recovery-codes/").context["unused_codes"]
    sign_in(Client(), alice.email, code=codes[0])
    again = Client()
    again.post("/accounts/login/", {"login": alice.email, "password": PASSWORD})
    response = again.post("/accounts/2fa/authenticate/", {"code": codes[0]})
    assert response.status_code == 200
    assert again.get("/account/security/").status_code == 302


@pytest.mark.usefixtures("both_caches")  # in the caches: also on Redis
def test_wrong_2fa_codes_are_rate_limited(alice_client: Client, alice: User) -> None:
    reauthenticate(alice_client)
    secret = enable_totp(alice_client)
    client = Client()
    client.post("/accounts/login/", {"login": alice.email, "password": PASSWORD})
    for _ in range(5):
        client.post("/accounts/2fa/authenticate/", {"code": "123456"})
    response = client.post("/accounts/2fa/authenticate/", {"code": totp_code(secret)})
    assert client.get("/account/security/").status_code == 302
    assert response.status_code in (200, 429)


def test_the_security_page_shows_2fa_state(alice_client: Client) -> None:
    page = alice_client.get("/account/security/").content.decode()
    assert "Protect your account with an authenticator app" in page
    reauthenticate(alice_client)
    enable_totp(alice_client)
    page = alice_client.get("/account/security/").content.decode()
    assert "Every sign-in with your password asks for a second factor" in page
