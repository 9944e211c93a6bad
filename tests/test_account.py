from __future__ import annotations

import re

from allauth.account.models import EmailAddress
from django.test import Client

from tenantry.accounts.models import DELETION_CHECKS, ApiKey, SecurityEvent, User
from tests.conftest import reauthenticate, sign_in
from tests.helpers import enable_totp


def test_the_portal_layout_has_navigation_and_a_user_menu(alice_client: Client) -> None:
    page = alice_client.get("/databases/").content.decode()
    for link in ("/databases/", "/subscriptions/", "/account/", "/account/security/"):
        assert f'href="{link}"' in page
    assert "Sign out" in page and "No databases yet" in page
    assert "No subscriptions" in alice_client.get("/subscriptions/").content.decode()


def test_pages_need_a_signed_in_account(db: None) -> None:
    for path in ("/databases/", "/account/", "/account/security/", "/account/delete/"):
        response = Client().get(path)
        assert response.status_code == 302
        assert response["Location"].startswith("/accounts/login/")


def test_personal_details_can_be_edited(alice_client: Client, alice: User) -> None:
    form = {"name": "Alice Liddell", "company": "Wonderland", "phone": "+44 1", "country": "UK"}
    response = alice_client.post("/account/", form)
    assert response.status_code == 302
    alice.refresh_from_db()
    assert (alice.name, alice.company) == ("Alice Liddell", "Wonderland")


def request_email_change(client: Client, email: str):  # type: ignore[no-untyped-def]
    reauthenticate(client)
    return client.post("/account/email/", {"email": email})


def code_from(mailoutbox) -> str:  # type: ignore[no-untyped-def]
    match = re.search(r"Your code: (\S+)", mailoutbox[-1].body)
    assert match
    return match.group(1)


def test_the_email_changes_only_after_the_code_sent_to_it(
    alice_client: Client, alice: User, mailoutbox
) -> None:  # type: ignore[no-untyped-def]
    response = request_email_change(alice_client, "alice@new.example")
    assert response["Location"] == "/account/email/confirm/"
    assert mailoutbox[-1].to == ["alice@new.example"]
    alice.refresh_from_db()
    assert alice.email == "alice@example.com"

    response = alice_client.post("/account/email/confirm/", {"code": "WRONG1"})
    assert "That code is not right" in response.content.decode()
    alice.refresh_from_db()
    assert alice.email == "alice@example.com"

    alice_client.post("/account/email/confirm/", {"code": code_from(mailoutbox)})
    alice.refresh_from_db()
    assert alice.email == "alice@new.example"
    assert list(EmailAddress.objects.filter(user=alice).values_list("email", "verified")) == [
        ("alice@new.example", True)
    ]
    assert SecurityEvent.objects.filter(user=alice, kind="email_changed").exists()
    sign_in(Client(), "alice@new.example")


def test_the_email_change_works_with_2fa_on(alice_client: Client, alice: User, mailoutbox) -> None:  # type: ignore[no-untyped-def]
    reauthenticate(alice_client)
    enable_totp(alice_client)
    request_email_change(alice_client, "alice@mfa.example")
    alice_client.post("/account/email/confirm/", {"code": code_from(mailoutbox)})
    alice.refresh_from_db()
    assert alice.email == "alice@mfa.example"


def test_the_email_change_needs_reauthentication(alice_client: Client, alice: User) -> None:
    response = alice_client.post("/account/email/", {"email": "thief@example.com"})
    assert response["Location"].startswith("/accounts/reauthenticate/")


def test_an_email_of_another_account_is_refused(alice_client: Client, bob: User) -> None:
    response = request_email_change(alice_client, "BOB@example.com")
    assert response.status_code == 400
    assert "Another account already uses this email address." in response.content.decode()


def test_too_many_wrong_codes_cancel_the_change(
    alice_client: Client, alice: User, mailoutbox
) -> None:  # type: ignore[no-untyped-def]
    request_email_change(alice_client, "alice@new.example")
    for _ in range(5):
        alice_client.post("/account/email/confirm/", {"code": "WRONG1"})
    alice_client.post("/account/email/confirm/", {"code": code_from(mailoutbox)})
    alice.refresh_from_db()
    assert alice.email == "alice@example.com"


def test_deleting_the_account_needs_reauthentication_and_the_email_typed(
    alice_client: Client, alice: User
) -> None:
    response = alice_client.get("/account/delete/")
    assert response["Location"].startswith("/accounts/reauthenticate/")
    reauthenticate(alice_client)
    response = alice_client.post("/account/delete/", {"confirm": "someone@else.com"})
    assert "This is not your account" in response.content.decode()
    assert User.objects.filter(pk=alice.pk).exists()


def test_deleting_the_account_ends_every_session_and_revokes_every_key(
    alice_client: Client, alice: User, mailoutbox
) -> None:  # type: ignore[no-untyped-def]
    other = Client()
    sign_in(other, alice.email)
    alice.developer_mode = True
    alice.save()
    _, raw = ApiKey.objects.issue(alice, "ci")
    reauthenticate(alice_client)
    response = alice_client.post("/account/delete/", {"confirm": "Alice@example.com"})
    assert response.status_code == 302
    assert not User.objects.filter(email="alice@example.com").exists()
    assert not ApiKey.objects.exists()
    assert other.get("/account/security/").status_code == 302
    assert alice_client.get("/account/security/").status_code == 302
    auth = {"Authorization": f"Bearer {raw}"}
    assert Client().get("/api/v1/me", headers=auth).status_code == 401
    assert mailoutbox[-1].subject.endswith("Your account was deleted")


def test_a_deletion_check_refuses_with_its_reason(alice_client: Client, alice: User) -> None:
    def sole_admin(user: User) -> str | None:
        return "You are the only administrator of the database “acme”."

    DELETION_CHECKS.append(sole_admin)
    try:
        reauthenticate(alice_client)
        page = alice_client.get("/account/delete/").content.decode()
        assert "only administrator of the database" in page
        response = alice_client.post("/account/delete/", {"confirm": alice.email})
        assert "only administrator of the database" in response.content.decode()
        assert User.objects.filter(pk=alice.pk).exists()
    finally:
        DELETION_CHECKS.remove(sole_admin)
