"""Users of a database: invitations by email (a real SMTP server), acceptance with or without
an account, removal, roles, and who may do what in the portal, the API and the CLI."""

from __future__ import annotations

import re
import time
from datetime import timedelta
from typing import Any

import pytest
from allauth.account.models import EmailAddress
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from django.utils import timezone

from tenantry.accounts.models import User
from tenantry.databases import lifecycle, members
from tenantry.databases.models import Database, Invitation, Membership
from tenantry.operations.models import Operation
from tenantry.workspace import models as ws
from tenantry.workspace import tenant
from tests.conftest import PASSWORD, api, client_for, make_account, reauthenticate, run_tasks
from tests.helpers import DB_PASSWORD, run_pending, sign_in_db
from tests.smtp import SMTPServer


@pytest.fixture
def acme(owner: User, engine_kind: str) -> Database:
    return lifecycle.create("acme", by=owner)


def invite(client: Client, emails: str, role: str = "user") -> str:
    response = client.post(
        "/databases/acme/users/", {"action": "invite", "emails": emails, "role": role}
    )
    assert response.status_code in (200, 302), response
    return response.content.decode() if response.status_code == 200 else ""


def link_in(smtp: SMTPServer, email: str, skip: int = 0) -> str:
    run_tasks()  # the worker mails invitations
    body = smtp.wait_for(email, skip=skip).text
    found = re.search(r"https?://\S+/invitations/([\w-]+)/", body)
    assert found, body
    return f"/invitations/{found.group(1)}/"


def db_user(database: Database, login: str) -> ws.User | None:
    with tenant.using(database) as db:
        return ws.User.objects.using(db).filter(login=login).first()


def test_invite_several_people_and_they_accept(
    acme: Database, owner: User, smtp_mail: SMTPServer
) -> None:
    portal = client_for(owner)
    invite(portal, "member@example.com, NEWCOMER@example.com\nmember@example.com", "user")
    assert sorted(Invitation.objects.values_list("email", flat=True)) == [
        "member@example.com", "newcomer@example.com",
    ]  # fmt: skip
    page = portal.get("/databases/acme/users/").content.decode()
    assert "Pending invitations" in page and "newcomer@example.com" in page

    # Someone with an account signs in and accepts.
    member = make_account("member@example.com")
    link = link_in(smtp_mail, "member@example.com")
    assert "invites you to the database “acme”" in smtp_mail.wait_for("member@example.com").text
    anonymous = Client()
    assert "Sign in to accept" in anonymous.get(link).content.decode()
    member_client = client_for(member)
    assert member_client.post(link).status_code == 302
    assert Membership.objects.get(database=acme, user=member).role == "user"
    user = db_user(acme, "member@example.com")
    assert user is not None and user.account_id == member.pk and not user.is_admin
    assert "acme" in member_client.get("/databases/").content.decode()
    # The account password now works in the database.
    visitor = Client(HTTP_HOST="acme.localhost")
    response = visitor.post("/login/", {"login": "member@example.com", "password": PASSWORD})
    assert response.status_code == 302

    # Someone without an account signs up through the link: the address is taken as verified.
    link = link_in(smtp_mail, "newcomer@example.com")
    newcomer_client = Client()
    assert "Create your account to accept" in newcomer_client.get(link).content.decode()
    response = newcomer_client.post(
        f"/accounts/signup/?next={link}",
        {"email": "newcomer@example.com", "password1": PASSWORD, "password2": PASSWORD},
    )
    assert response.status_code == 302 and response["Location"] == link
    newcomer = User.objects.get(email="newcomer@example.com")
    assert newcomer.emailaddress_set.get().verified  # type: ignore[attr-defined]
    assert newcomer_client.post(link).status_code == 302
    assert Membership.objects.filter(database=acme, user=newcomer).exists()
    assert not Invitation.objects.filter(accepted_at=None).exists()


def test_invitation_links_are_refused_when_reused_expired_or_for_another_email(
    acme: Database, owner: User, member: User, outsider: User, smtp_mail: SMTPServer
) -> None:
    portal = client_for(owner)
    invite(portal, "member@example.com")
    link = link_in(smtp_mail, "member@example.com")
    # Another account cannot use it.
    response = client_for(outsider).post(link)
    assert "This invitation is for member@example.com" in response.content.decode()
    assert not Membership.objects.filter(user=outsider).exists()
    # Used once; then refused.
    member_client = client_for(member)
    assert member_client.post(link).status_code == 302
    response = member_client.post(link)
    assert response.status_code == 400 and "not valid" in response.content.decode()
    # Expired.
    invite(portal, "late@example.com")
    link = link_in(smtp_mail, "late@example.com")
    Invitation.objects.filter(email="late@example.com").update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    late = client_for(make_account("late@example.com"))
    response = late.post(link)
    assert response.status_code == 400 and "expired" in response.content.decode()
    assert client_for(outsider).get("/invitations/made-up-token/").status_code == 400


def test_an_address_a_member_left_does_not_hand_over_their_user(
    acme: Database, owner: User, member: User, smtp_mail: SMTPServer
) -> None:
    """The member's user keeps its login when they change their account's email; whoever
    takes up the old address later is not given that user by an invitation."""
    [invitation] = members.invite(acme, [member.email], "user", by=owner)
    members.accept(invitation, member)
    old = member.email
    member.email = "member@new.example.com"
    member.save()
    EmailAddress.objects.filter(user=member).update(email=member.email)
    newcomer = make_account(old)
    invite(client_for(owner), old)
    response = client_for(newcomer).post(link_in(smtp_mail, old))  # the first one never left
    assert "is the login of another user of “acme”" in response.content.decode()
    assert db_user(acme, old).account_id == member.pk  # type: ignore[union-attr]
    assert not Membership.objects.filter(user=newcomer).exists()
    # Once that member has left (their account deleted), the address may be taken up.
    member.delete()
    assert client_for(newcomer).post(link_in(smtp_mail, old)).status_code == 302
    assert db_user(acme, old).account_id == newcomer.pk  # type: ignore[union-attr]


def test_resend_replaces_the_link_and_cancel_removes_it(
    acme: Database, owner: User, smtp_mail: SMTPServer
) -> None:
    portal = client_for(owner)
    invite(portal, "late@example.com")
    first = link_in(smtp_mail, "late@example.com")
    invitation = Invitation.objects.get()
    portal.post("/databases/acme/users/", {"action": "resend", "invitation": invitation.pk})
    second = link_in(smtp_mail, "late@example.com", skip=1)
    assert first != second
    late = client_for(make_account("late@example.com"))
    assert late.post(first).status_code == 400
    portal.post("/databases/acme/users/", {"action": "cancel", "invitation": invitation.pk})
    assert not Invitation.objects.exists()
    assert late.post(second).status_code == 400


def test_bad_invitations_get_clear_errors(acme: Database, owner: User) -> None:
    portal = client_for(owner)
    assert "“not-an-email” is not an email address." in invite(portal, "a@example.com not-an-email")
    assert "Already a user of “acme”: owner@example.com." in invite(portal, "owner@example.com")
    for pk in ("abc", "999", "²", "9" * 30):  # "²" is a digit to str.isdigit()
        response = portal.post(
            "/databases/acme/users/", {"action": "cancel", "invitation": pk}, follow=True
        )
        assert "This invitation is no longer pending." in response.content.decode()
    reauthenticate(portal)
    response = portal.post("/databases/acme/users/", {"action": "remove"}, follow=True)
    assert "Select at least one user." in response.content.decode()
    assert not Invitation.objects.exists()


def test_remove_and_roles(acme: Database, owner: User, member: User) -> None:
    [invitation] = members.invite(acme, [member.email], "user", by=owner)
    members.accept(invitation, member)
    member_db = Client(HTTP_HOST="acme.localhost")
    assert (
        member_db.post("/login/", {"login": member.email, "password": PASSWORD}).status_code == 302
    )
    assert member_db.get("/").status_code == 200

    portal = client_for(owner)
    # Promote (the password again first), then demote.
    response = portal.post("/databases/acme/users/", {"action": "admin", "email": [member.email]})
    assert response["Location"].startswith("/accounts/reauthenticate/")
    assert Membership.objects.get(user=member).role == "user"
    response = portal.post(response["Location"], {"password": PASSWORD})
    assert response["Location"] == "/databases/acme/users/"  # the promotion went on
    assert Membership.objects.get(user=member).role == "admin"
    assert db_user(acme, member.email).is_admin  # type: ignore[union-attr]
    portal.post("/databases/acme/users/", {"action": "user", "email": [member.email]})
    assert Membership.objects.get(user=member).role == "user"
    # Nobody can remove or demote the last administrator.
    response = portal.post(
        "/databases/acme/users/", {"action": "remove", "email": [owner.email]}, follow=True
    )
    assert "A database keeps at least one administrator." in response.content.decode()
    response = portal.post(
        "/databases/acme/users/", {"action": "user", "email": [owner.email]}, follow=True
    )
    assert "A database keeps at least one administrator." in response.content.decode()
    assert Membership.objects.get(user=owner).role == "admin"
    # Removing: the database user is deactivated and unlinked, its sessions end, and the
    # database leaves the member's manager.
    portal.post("/databases/acme/users/", {"action": "remove", "email": [member.email]})
    assert not Membership.objects.filter(user=member).exists()
    user = db_user(acme, member.email)
    assert user is not None and not user.is_active and user.account_id is None
    assert member_db.get("/").status_code == 302
    assert "acme" not in client_for(member).get("/databases/").content.decode()
    assert client_for(member).post("/databases/acme/connect/").status_code == 404


def test_members_and_outsiders_cannot_manage_users(
    acme: Database, owner: User, member: User, outsider: User
) -> None:
    Membership.objects.create(database=acme, user=member, role="user")
    for client, status in ((client_for(member), 403), (client_for(outsider), 404)):
        assert client.get("/databases/acme/users/").status_code == status
        response = client.post(
            "/databases/acme/users/", {"action": "invite", "emails": "x@example.com"}
        )
        assert response.status_code == status
    for key, status in ((api(member), 403), (api(outsider), 404)):
        assert key.get("/api/v1/databases/acme/users").status_code == status
        response = key.post(
            "/api/v1/databases/acme/users",
            {"emails": ["x@example.com"]},
            content_type="application/json",
        )
        assert response.status_code == status
        assert key.delete(f"/api/v1/databases/acme/users/{owner.email}").status_code == status
    assert not Invitation.objects.exists()
    assert Membership.objects.filter(user=owner, role="admin").exists()


def test_the_api_lists_invites_and_removes(acme: Database, owner: User, member: User) -> None:
    key = api(owner)
    response = key.post(
        "/api/v1/databases/acme/users",
        {"emails": ["new@example.com", "bad"], "role": "user"},
        content_type="application/json",
    )
    assert (
        response.status_code == 400
        and "“bad” is not an email address." in response.json()["detail"]
    )
    response = key.post(
        "/api/v1/databases/acme/users", {"emails": ["new@example.com"], "role": "admin"},
        content_type="application/json",
    )  # fmt: skip
    assert response.status_code == 201
    rows = key.get("/api/v1/databases/acme/users").json()["data"]
    assert {"email": "new@example.com", "role": "admin", "status": "invited"} in rows
    assert {"email": owner.email, "role": "admin", "status": "member"} in rows
    assert key.delete("/api/v1/databases/acme/users/new@example.com").status_code == 204
    assert key.delete("/api/v1/databases/acme/users/nobody@example.com").status_code == 404
    response = key.delete(f"/api/v1/databases/acme/users/{owner.email}")
    assert response.status_code == 400 and "at least one administrator" in response.json()["detail"]


def test_the_cli_invites_lists_and_removes(
    acme: Database, owner: User, capsys: pytest.CaptureFixture[str]
) -> None:
    call_command("db", "invite", "acme", "new@example.com", "--by", owner.email)
    call_command("db", "users", "acme")
    out = capsys.readouterr().out
    assert "new@example.com\tuser\tinvited" in out and f"{owner.email}\tadmin\tmember" in out
    call_command("db", "remove-user", "acme", "new@example.com")
    assert not Invitation.objects.exists()
    with pytest.raises(CommandError, match="at least one administrator"):
        call_command("db", "remove-user", "acme", owner.email)
    with pytest.raises(CommandError, match="nobody@example.com is not a user of “acme”"):
        call_command("db", "remove-user", "acme", "nobody@example.com")
    with pytest.raises(CommandError, match="is not an administrator of acme"):
        call_command("db", "invite", "acme", "x@example.com", "--by", "nobody@example.com")


# The whole matrix: what each person reaches. Manage actions: administrators only (members
# 403); connect and read: every member; outsiders and removed users: 404 for everything.
PORTAL_MANAGE = ["duplicate", "rename", "delete", "download", "users"]
API_MANAGE = [
    ("patch", "/api/v1/databases/acme", {"name": "stolen"}),
    ("delete", "/api/v1/databases/acme", None),
    ("post", "/api/v1/databases/acme/duplicate", {"name": "acme-x"}),
    ("get", "/api/v1/databases/acme/download", None),
    ("get", "/api/v1/databases/acme/users", None),
    ("post", "/api/v1/databases/acme/users", {"emails": ["x@example.com"]}),
    ("delete", "/api/v1/databases/acme/users/owner@example.com", None),
]


def test_who_reaches_what_in_the_portal_and_the_api(
    acme: Database, owner: User, member: User, outsider: User
) -> None:
    [invitation] = members.invite(acme, [member.email], "user", by=owner)
    members.accept(invitation, member)
    removed = make_account("removed@example.com")
    [invitation] = members.invite(acme, [removed.email], "admin", by=owner)
    members.accept(invitation, removed)
    members.remove(acme, [removed], by=owner)

    expected = {owner: 200, member: 403, outsider: 404, removed: 404}
    for account, status in expected.items():
        portal = client_for(account)
        for action in PORTAL_MANAGE:
            assert portal.get(f"/databases/acme/{action}/").status_code == status, (account, action)
            if status != 200:
                response = portal.post(
                    f"/databases/acme/{action}/",
                    {
                        "name": "x-y-z",
                        "confirm": "acme",
                        "action": "remove",
                        "email": [owner.email],
                    },
                )
                assert response.status_code == status, (account, action)
        connect = portal.post("/databases/acme/connect/").status_code
        assert connect == (200 if status in (200, 403) else 404), account
        key = api(account)
        read = key.get("/api/v1/databases/acme").status_code
        assert read == (200 if status in (200, 403) else 404), account
        if status != 200:
            for method, path, body in API_MANAGE:
                kwargs = {"content_type": "application/json", "data": body} if body else {}
                assert getattr(key, method)(path, **kwargs).status_code == status, (account, path)
    # Nothing changed.
    assert Database.objects.get(pk=acme.pk).name == "acme"
    assert Membership.objects.get(user=owner).role == "admin"
    assert not Invitation.objects.filter(accepted_at=None).exists()
    assert Database.objects.count() == 1


def test_the_sweep_purges_invitations_a_month_after_they_expire(
    acme: Database, owner: User
) -> None:
    from datetime import timedelta

    from django.utils import timezone

    from tenantry.databases.models import ConnectToken
    from tenantry.operations.sweep import sweep

    now = timezone.now()
    for email, expired in (("old@example.com", 31), ("recent@example.com", 29)):
        invitation = Invitation(database=acme, email=email, role="user")
        invitation.new_token()
        invitation.expires_at = now - timedelta(days=expired)
        invitation.save()
    ConnectToken.issue(acme, owner)
    sweep(now + timedelta(minutes=2))
    pending = Invitation.objects.values_list("email", flat=True)
    assert list(pending) == ["recent@example.com"]  # still listed, to be resent
    assert not ConnectToken.objects.exists()


def test_a_restored_backup_does_not_bring_a_removed_user_back(
    acme: Database, owner: User, member: User
) -> None:
    [invitation] = members.invite(acme, [member.email], "user", by=owner)
    members.accept(invitation, member)
    # The member sets a password of their own in the database, and keeps a session open.
    member_db = Client(HTTP_HOST="acme.localhost")
    assert sign_in_db(member_db, member.email, PASSWORD) == "/"
    form = {"action": "set", "new_password": DB_PASSWORD, "confirm_password": DB_PASSWORD}
    assert (
        member_db.post("/preferences/", {**form, "current_password": PASSWORD}).status_code == 302
    )
    by_db_password = Client(HTTP_HOST="acme.localhost")
    assert sign_in_db(by_db_password, member.email, DB_PASSWORD) == "/"

    # The owner downloads a backup, removes the member, then restores the backup: over the
    # database, and into a new one.
    key = api(owner)
    backup = b"".join(key.get("/api/v1/databases/acme/download").streaming_content)  # type: ignore[attr-defined]
    assert key.delete(f"/api/v1/databases/acme/users/{member.email}").status_code == 204
    for name, replace in (("acme", "true"), ("acme-old", "false")):
        upload = SimpleUploadedFile("acme.zip", backup, "application/zip")
        response = key.post(
            f"/api/v1/databases/{name}/restore", {"file": upload, "replace": replace}
        )
        assert response.status_code == 202, response.content
        run_pending()
        assert Operation.objects.get(pk=response.json()["id"]).state == "done"

        # The removed member signs in with neither password, and the old session is over.
        attempt = Client(HTTP_HOST=f"{name}.localhost")
        assert sign_in_db(attempt, member.email, DB_PASSWORD) == "Wrong login or password."
        assert sign_in_db(attempt, member.email, PASSWORD) == "Wrong login or password."
        user = db_user(Database.objects.get(name=name), member.email)
        assert user is not None and not user.is_active and not user.password
    assert by_db_password.get("/").status_code == 302
    # The owner still signs in to both.
    assert sign_in_db(Client(HTTP_HOST="acme.localhost"), owner.email, PASSWORD) == "/"
    assert sign_in_db(Client(HTTP_HOST="acme-old.localhost"), owner.email, PASSWORD) == "/"


def test_invitations_are_limited_per_request_and_per_day_and_mailed_by_the_worker(
    acme: Database, owner: User, smtp_mail: SMTPServer, settings: Any
) -> None:
    from django_tasks_db.models import DBTaskResult

    key = api(owner)

    def invite_by_api(emails: list[str]) -> Any:
        return key.post(
            "/api/v1/databases/acme/users", {"emails": emails}, content_type="application/json"
        )

    # The bulk invite of the attack: refused at once, nothing made, nothing sent.
    started = time.monotonic()
    response = invite_by_api([f"u{i}@example.com" for i in range(100_000)])
    assert response.status_code == 400
    assert response.json()["detail"] == "Invite at most 50 addresses at once, not 100000."
    assert time.monotonic() - started < 10
    response = client_for(owner).post(
        "/databases/acme/users/",
        {"action": "invite", "emails": " ".join(f"u{i}@example.com" for i in range(51))},
    )
    assert "Invite at most 50 addresses at once, not 51." in response.content.decode()
    assert not Invitation.objects.exists() and not DBTaskResult.objects.exists()

    # The request only records; the worker mails.
    settings.INVITES_PER_DAY = 60
    batch = [f"u{i}@example.com" for i in range(50)]
    assert invite_by_api(batch).status_code == 201
    assert Invitation.objects.count() == 50
    assert not [m for m in smtp_mail.messages if m.recipients != [owner.email]]
    run_tasks()
    assert "/invitations/" in smtp_mail.wait_for("u49@example.com").text

    # Cancelling does not give the day's invitations back.
    for email in batch:
        assert key.delete(f"/api/v1/databases/acme/users/{email}").status_code == 204
    response = invite_by_api([f"v{i}@example.com" for i in range(11)])
    assert response.status_code == 429 and int(response["Retry-After"]) <= 24 * 60 * 60
    assert response.json()["detail"] == (
        "An account can send 60 invitations a day, and 10 are left today. Try again tomorrow."
    )
    assert invite_by_api([f"v{i}@example.com" for i in range(10)]).status_code == 201
    pending = Invitation.objects.first()
    portal = client_for(owner)
    response = portal.post(
        "/databases/acme/users/", {"action": "resend", "invitation": pending.pk}, follow=True
    )
    assert "and none is left today" in response.content.decode()
    assert Invitation.objects.count() == 10


def test_parallel_invitations_cannot_both_fit_in_the_day(transactional_db: None) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connection

    account = make_account("sender@example.com")

    def spend() -> bool:
        try:
            return account.spend_invitations(50, 60)
        finally:
            connection.close()

    with ThreadPoolExecutor(8) as pool:
        fitted = list(pool.map(lambda _: spend(), range(8)))
    assert fitted.count(True) == 1 and account.invitations_left(60) == 10
