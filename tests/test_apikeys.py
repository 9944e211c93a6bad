from __future__ import annotations

import hashlib
import re
from datetime import timedelta

from django.test import Client
from django.utils import timezone

from tenantry.accounts.models import ApiKey, SecurityEvent, User
from tests.conftest import PASSWORD, client_for, make_account, reauthenticate


def developer(client: Client) -> None:
    reauthenticate(client)
    response = client.post("/account/security/developer-mode/", {"enabled": "1"})
    assert response["Location"] == "/account/security/"


def create_key(client: Client, name: str = "deploy", expires: str = "") -> str:
    reauthenticate(client)
    response = client.post("/account/security/api-keys/new/", {"name": name, "expires": expires})
    assert response.status_code == 200
    match = re.search(
        r'<pre class="secret" id="api-key">(tnt_[^<]+)</pre>', response.content.decode()
    )
    assert match
    return match.group(1)


def me(key: str):  # type: ignore[no-untyped-def]
    return Client().get("/api/v1/me", headers={"Authorization": f"Bearer {key}"})


def test_api_keys_are_hidden_until_developer_mode_is_on(alice_client: Client) -> None:
    page = alice_client.get("/account/security/").content.decode()
    assert "New API key" not in page
    reauthenticate(alice_client)
    response = alice_client.get("/account/security/api-keys/new/")
    assert response.status_code == 302
    developer(alice_client)
    assert "New API key" in alice_client.get("/account/security/").content.decode()


def test_creating_a_key_asks_to_reauthenticate(alice_client: Client, alice: User) -> None:
    alice.developer_mode = True  # on, but not just now: no recent password
    alice.save()
    response = alice_client.get("/account/security/api-keys/new/")
    assert response["Location"].startswith("/accounts/reauthenticate/")
    response = alice_client.post("/account/security/api-keys/new/", {"name": "sneaky"})
    assert response["Location"].startswith("/accounts/reauthenticate/")
    assert not ApiKey.objects.exists()


def test_a_key_is_shown_once_stored_hashed_and_announced_by_email(
    alice_client: Client, alice: User, mailoutbox
) -> None:  # type: ignore[no-untyped-def]
    developer(alice_client)
    raw = create_key(alice_client)
    assert raw.startswith("tnt_") and len(raw) > 40
    key = ApiKey.objects.get()
    assert key.key_hash == hashlib.sha256(raw.encode()).hexdigest()
    assert key.last_four == raw[-4:]
    assert raw not in str(list(ApiKey.objects.values()))
    page = alice_client.get("/account/security/").content.decode()
    assert raw not in page and key.masked in page
    assert mailoutbox[-1].to == [alice.email]
    assert "deploy" in mailoutbox[-1].body
    assert SecurityEvent.objects.filter(user=alice, kind="key_created").exists()


def test_the_api_answers_me_with_a_live_key_and_records_last_use(
    alice_client: Client, alice: User
) -> None:
    developer(alice_client)
    raw = create_key(alice_client)
    response = me(raw)
    assert response.status_code == 200
    assert response.json()["email"] == alice.email
    assert ApiKey.objects.get().last_used_at is not None


def test_a_revoked_key_gets_401(alice_client: Client) -> None:
    developer(alice_client)
    raw = create_key(alice_client)
    key = ApiKey.objects.get()
    alice_client.post(f"/account/security/api-keys/{key.pk}/revoke/")
    response = me(raw)
    assert response.status_code == 401
    assert "revoked" in response.json()["detail"]
    assert SecurityEvent.objects.filter(kind="key_revoked").exists()


def test_an_expired_key_gets_401(alice_client: Client) -> None:
    developer(alice_client)
    raw = create_key(alice_client, expires="30")
    assert me(raw).status_code == 200
    ApiKey.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    assert me(raw).status_code == 401


def test_keys_stop_working_when_developer_mode_is_off(alice_client: Client) -> None:
    developer(alice_client)
    raw = create_key(alice_client)
    alice_client.post("/account/security/developer-mode/", {"enabled": "0"})
    assert me(raw).status_code == 401
    developer(alice_client)
    assert me(raw).status_code == 200


def test_turning_developer_mode_on_asks_for_the_password_and_off_does_not(
    alice: User,
) -> None:
    """On brings back the keys made before: someone at an unlocked session may not."""
    earlier = client_for(alice)
    developer(earlier)
    raw = create_key(earlier)
    late = client_for(alice)  # signed in, but not recently asked for the password
    assert late.post("/account/security/developer-mode/", {"enabled": "0"}).status_code == 302
    assert me(raw).status_code == 401
    response = late.post("/account/security/developer-mode/", {"enabled": "1"})
    assert response["Location"].startswith("/accounts/reauthenticate/")
    assert me(raw).status_code == 401
    response = late.post(response["Location"], {"password": PASSWORD}, follow=True)
    assert "Developer mode is on" in response.content.decode()
    assert me(raw).status_code == 200


def test_wrong_and_missing_keys_get_401(db: None) -> None:
    assert Client().get("/api/v1/me").status_code == 401
    assert me("tnt_not-a-real-key").status_code == 401
    assert me("something-else").status_code == 401


def test_nobody_can_revoke_someone_elses_key(alice_client: Client, bob: User) -> None:
    bob_key, raw = ApiKey.objects.issue(bob, "bob's")
    bob.developer_mode = True
    bob.save()
    reauthenticate(alice_client)
    response = alice_client.post(f"/account/security/api-keys/{bob_key.pk}/revoke/")
    assert response.status_code == 404
    assert me(raw).status_code == 200


def test_revoking_needs_reauthentication(alice_client: Client, alice: User) -> None:
    developer(alice_client)
    create_key(alice_client)
    key = ApiKey.objects.get()
    late = client_for(alice)  # signed in, but not recently asked for the password
    response = late.post(f"/account/security/api-keys/{key.pk}/revoke/")
    assert response["Location"].startswith("/accounts/reauthenticate/")
    key.refresh_from_db()
    assert key.revoked_at is None


def test_a_key_of_a_deactivated_account_gets_401(db: None) -> None:
    carol = make_account("carol@example.com")
    carol.developer_mode = True
    carol.save()
    _, raw = ApiKey.objects.issue(carol, "ci")
    assert me(raw).status_code == 200
    carol.is_active = False
    carol.save()
    assert me(raw).status_code == 401
