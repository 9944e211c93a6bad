"""Each database at its own address: routing by host, its own sign-in and session, Connect,
the workspace pages, and its outgoing mail.

Requests go through Django's test client with the Host a browser would send:
`<name>.localhost` (TENANTRY_BASE_DOMAIN is `localhost` here).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import timedelta
from email.message import EmailMessage

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client, TestCase
from django.utils import timezone

from tenantry.accounts.models import User
from tenantry.databases import lifecycle
from tenantry.databases.models import ConnectToken, Database, Membership
from tenantry.engines import filestore, sqlite
from tenantry.engines.fleet import engine_for
from tenantry.gateway import sites
from tenantry.operations.models import Operation
from tenantry.operations.tasks import run_operation
from tenantry.workspace import models as ws
from tenantry.workspace import releases, tenant
from tenantry.workspace.mail import queue_mail
from tests.conftest import PASSWORD, api, client_for, reauthenticate, totp_code
from tests.helpers import (
    DB_PASSWORD,
    PORTAL_ORIGIN,
    connect_token,
    enable_totp,
    host,
    run_due_jobs,
    set_db_password,
    sign_in_db,
    signed_in,
    visitor,
)
from tests.smtp import SMTPServer

# Its lookups and limits live in the caches: each test runs with them in the control
# database, then in Redis (tests/redis_server.py).
pytestmark = pytest.mark.usefixtures("both_caches")


def is_signed_in(client: Client) -> bool:
    response = client.get("/")
    return response.status_code == 200 and b"Sign out" in response.content


@pytest.fixture
def acme(owner: User, engine_kind: str) -> Database:
    return lifecycle.create("acme", by=owner)


# Routing


def test_the_portal_hosts_reach_the_portal_and_other_hosts_a_plain_404(acme: Database) -> None:
    assert Client(HTTP_HOST="localhost").get("/accounts/login/").status_code == 200
    for unknown in ("example.org", "a.b.localhost", "nothing.example.com"):
        response = Client(HTTP_HOST=unknown).get("/accounts/login/")
        assert response.status_code == 404, unknown
        assert b"nothing at this address" in response.content
    response = visitor("nosuchdb").get("/login/")
    assert response.status_code == 404
    assert "no database “nosuchdb”".encode() in response.content
    # A database host serves the workspace, not the portal.
    assert visitor("acme").get("/accounts/login/").status_code == 404
    response = visitor("acme").get("/login/")
    assert response.status_code == 200
    assert b"Sign in to acme" in response.content


def test_a_renamed_database_answers_only_at_its_new_name(acme: Database, owner: User) -> None:
    assert visitor("acme").get("/login/").status_code == 200  # cached now
    lifecycle.rename(acme, "acme-renamed", by=owner)
    assert visitor("acme").get("/login/").status_code == 404
    assert visitor("acme-renamed").get("/login/").status_code == 200
    # The name is free again: a new database there is a different one.
    other = lifecycle.create("acme", by=owner)
    client = visitor("acme")
    assert sign_in_db(client, owner.email, PASSWORD) == "/"
    assert client.session["workspace"]["db"] == other.pk


def test_a_deleted_database_stops_answering_at_once(acme: Database, owner: User) -> None:
    client = visitor("acme")
    assert sign_in_db(client, owner.email, PASSWORD) == "/"
    assert is_signed_in(client)
    operation = lifecycle.start_delete(acme, by=owner)
    assert client.get("/").status_code == 404  # before the worker has even dropped it
    run_operation.call(operation.pk)
    assert Operation.objects.get(pk=operation.pk).state == "done"
    assert visitor("acme").get("/login/").status_code == 404


def test_the_lookup_is_cached_and_forgotten_on_change(acme: Database) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    assert sites.lookup("acme") is not None
    with CaptureQueriesContext(connection) as queries:
        found = sites.lookup("acme")
    assert found is not None and found.pk == acme.pk
    assert not any("databases_database" in q["sql"] for q in queries.captured_queries)
    acme.expires_at = timezone.now() - timedelta(minutes=1)
    acme.save()
    found = sites.lookup("acme")
    assert found is not None and found.is_expired


def test_an_expired_database_lets_nobody_in(acme: Database, owner: User) -> None:
    client = visitor("acme")
    assert sign_in_db(client, owner.email, PASSWORD) == "/"
    acme.expires_at = timezone.now() - timedelta(days=1)
    acme.save()
    for path in ("/", "/login/", "/contacts/"):
        response = client.get(path)
        assert response.status_code == 403
        assert b"This database has expired" in response.content
    response = client.post("/login/", {"login": owner.email, "password": PASSWORD})
    assert response.status_code == 403


# Signing in


def test_sign_in_with_the_account_password(acme: Database, owner: User) -> None:
    client = visitor("acme")
    assert client.get("/").status_code == 302  # to the sign-in page
    assert sign_in_db(client, owner.email, "wrong password") == "Wrong login or password."
    assert not is_signed_in(client)
    assert sign_in_db(client, owner.email.upper(), PASSWORD) == "/"
    assert is_signed_in(client)
    response = client.post("/logout/")
    assert response.status_code == 302
    assert not is_signed_in(client)


def test_the_database_password_works_beside_the_account_password(
    acme: Database, owner: User
) -> None:
    set_db_password(acme, owner.email, DB_PASSWORD)
    assert sign_in_db(visitor("acme"), owner.email, DB_PASSWORD) == "/"
    assert sign_in_db(visitor("acme"), owner.email, PASSWORD) == "/"
    # A changed account password: the old one no longer works, the new one and the database
    # password do.
    owner.set_password("a brand new account passphrase")
    owner.save()
    assert sign_in_db(visitor("acme"), owner.email, PASSWORD) == "Wrong login or password."
    assert sign_in_db(visitor("acme"), owner.email, "a brand new account passphrase") == "/"
    assert sign_in_db(visitor("acme"), owner.email, DB_PASSWORD) == "/"


def test_unknown_logins_and_inactive_users_are_refused(acme: Database, owner: User) -> None:
    assert sign_in_db(visitor("acme"), "nobody@example.com", PASSWORD) == "Wrong login or password."
    with tenant.using(acme) as db:
        ws.User.objects.using(db).update(is_active=False)
    assert sign_in_db(visitor("acme"), owner.email, PASSWORD) == "Wrong login or password."


def test_account_2fa_is_asked_after_the_account_password(acme: Database, owner: User) -> None:
    portal = client_for(owner)
    reauthenticate(portal)
    secret = enable_totp(portal)
    client = visitor("acme")
    assert sign_in_db(client, owner.email, PASSWORD).startswith("/login/code/")
    assert not is_signed_in(client)
    response = client.post("/login/code/", {"code": "000000"})
    assert "Wrong code" in response.content.decode()
    assert not is_signed_in(client)
    response = client.post("/login/code/", {"code": totp_code(secret)})
    assert response.status_code == 302
    assert is_signed_in(client)
    # The database password is no way around it (tests/test_lockout.py goes on from here).
    set_db_password(acme, owner.email, DB_PASSWORD)
    assert sign_in_db(visitor("acme"), owner.email, DB_PASSWORD).startswith("/login/code/")


def test_a_password_change_or_logout_everywhere_ends_account_opened_sessions(
    acme: Database, owner: User
) -> None:
    set_db_password(acme, owner.email, DB_PASSWORD)
    by_account, by_db_password = visitor("acme"), visitor("acme")
    assert sign_in_db(by_account, owner.email, PASSWORD) == "/"
    assert sign_in_db(by_db_password, owner.email, DB_PASSWORD) == "/"
    portal = client_for(owner)
    reauthenticate(portal)
    with TestCase.captureOnCommitCallbacks(execute=True):
        assert portal.post("/account/security/logout-all/").status_code == 302
    assert not is_signed_in(by_account)
    assert is_signed_in(by_db_password)

    again = visitor("acme")
    assert sign_in_db(again, owner.email, PASSWORD) == "/"
    owner.set_password("another account passphrase 77")
    owner.save()
    assert not is_signed_in(again)


def test_changing_the_database_password_ends_sessions_opened_with_it(
    acme: Database, owner: User
) -> None:
    set_db_password(acme, owner.email, DB_PASSWORD)
    client = visitor("acme")
    assert sign_in_db(client, owner.email, DB_PASSWORD) == "/"
    set_db_password(acme, owner.email, "yet another database passphrase")
    assert not is_signed_in(client)


def test_a_session_of_one_database_is_not_accepted_by_another(
    owner: User, engine_kind: str
) -> None:
    lifecycle.create("first", by=owner)
    lifecycle.create("second", by=owner)
    client = visitor("first")
    assert sign_in_db(client, owner.email, PASSWORD) == "/"
    assert is_signed_in(client)
    stolen = client.cookies["sessionid"].value
    other = visitor("second")
    other.cookies["sessionid"] = stolen
    assert not is_signed_in(other)
    assert other.get("/contacts/").status_code == 302


def test_sign_in_is_rate_limited_per_database_and_login(acme: Database, owner: User) -> None:
    for _ in range(5):
        assert sign_in_db(visitor("acme"), owner.email, "wrong") == "Wrong login or password."
    assert "Too many failed attempts" in sign_in_db(visitor("acme"), owner.email, PASSWORD)


def test_the_account_password_is_rate_limited_across_databases(acme: Database, owner: User) -> None:
    lifecycle.create("other", by=owner)

    def attempt(name: str, password: str) -> str:  # all from one address
        client = Client(HTTP_HOST=host(name), REMOTE_ADDR="192.0.2.1")
        return sign_in_db(client, owner.email, password)

    for name in ("acme", "other", "acme", "other", "acme"):
        assert attempt(name, "wrong") == "Wrong login or password."
    # Two tries only in "other", but five for the account from that address.
    assert "Too many failed attempts" in attempt("other", PASSWORD)


# Connect


def test_connect_opens_the_database_signed_in_once(acme: Database, owner: User) -> None:
    portal = client_for(owner)
    token = connect_token(portal, "acme")
    assert ConnectToken.objects.get().token_hash != token  # only the hash is kept
    client = visitor("acme")
    response = client.post("/connect/", {"token": token}, HTTP_ORIGIN=PORTAL_ORIGIN)
    assert response.status_code == 302 and response["Location"] == "/"
    assert is_signed_in(client)
    # Single use.
    assert (
        visitor("acme").post("/connect/", {"token": token}, HTTP_ORIGIN=PORTAL_ORIGIN).status_code
        == 400
    )


def test_connect_tokens_expire_and_belong_to_one_database(
    acme: Database, owner: User, outsider: User
) -> None:
    lifecycle.create("other", by=owner)
    portal = client_for(owner)
    token = connect_token(portal, "acme")
    assert (
        visitor("other").post("/connect/", {"token": token}, HTTP_ORIGIN=PORTAL_ORIGIN).status_code
        == 400
    )
    assert (
        visitor("acme")
        .post("/connect/", {"token": "made-up"}, HTTP_ORIGIN=PORTAL_ORIGIN)
        .status_code
        == 400
    )
    token = connect_token(portal, "acme")
    ConnectToken.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    assert (
        visitor("acme").post("/connect/", {"token": token}, HTTP_ORIGIN=PORTAL_ORIGIN).status_code
        == 400
    )
    # Outsiders get no token: the database is not theirs to see.
    assert client_for(outsider).post("/databases/acme/connect/").status_code == 404
    # A token of someone no longer a member is refused.
    token = connect_token(portal, "acme")
    Membership.objects.filter(user=owner).delete()
    assert (
        visitor("acme").post("/connect/", {"token": token}, HTTP_ORIGIN=PORTAL_ORIGIN).status_code
        == 400
    )


def test_a_page_elsewhere_cannot_sign_a_visitor_in_to_the_attackers_database(
    acme: Database, owner: User
) -> None:
    """Login CSRF: the attacker takes a token of their own database and has a page post it
    from the visitor's browser."""
    token = connect_token(client_for(owner), "acme")
    for origin in ("https://evil.example", "null", "http://acme.localhost:8000", None):
        victim = visitor("acme")
        headers = {"HTTP_ORIGIN": origin} if origin else {}
        response = victim.post("/connect/", {"token": token}, **headers)
        assert response.status_code == 403, origin
        assert not is_signed_in(victim)
    # The token was not spent by the refused posts: the portal's own still works, at any of
    # the portal's hosts (the README sends passkey users to localhost).
    from_localhost = {"HTTP_ORIGIN": "http://localhost:8000"}
    assert visitor("acme").post("/connect/", {"token": token}, **from_localhost).status_code == 302


# Pages


def test_contacts_and_attachments(acme: Database, owner: User) -> None:
    client = signed_in(acme, owner)
    response = client.post("/contacts/", {"name": "Ada Lovelace", "email": "ada@example.com"})
    assert response.status_code == 302
    response = client.post("/contacts/", {"name": "", "email": "not an email"})
    assert response.status_code == 200 and response.context["form"].errors
    with tenant.using(acme) as db:
        contact = releases.model(acme.release, "Contact").objects.using(db).get()
    assert contact.name == "Ada Lovelace"
    response = client.post(
        f"/contacts/{contact.pk}/", {"name": "Ada King", "email": "ada@example.com"}
    )
    assert response.status_code == 302
    assert b"Ada King" in client.get("/contacts/").content
    assert client.get("/contacts/999/").status_code == 404

    upload = SimpleUploadedFile("notes.txt", b"hello filestore", content_type="text/plain")
    assert client.post("/attachments/", {"file": upload}).status_code == 302
    with tenant.using(acme) as db:
        attachment = ws.Attachment.objects.using(db).get()
    response = client.get(f"/attachments/{attachment.pk}/")
    assert b"".join(response.streaming_content) == b"hello filestore"  # type: ignore[attr-defined]
    assert "notes.txt" in response["Content-Disposition"]
    odd = SimpleUploadedFile("odd.bin", b"odd", content_type="x/" + "y" * 500)
    assert client.post("/attachments/", {"file": odd}).status_code == 302
    with tenant.using(acme) as db:
        assert ws.Attachment.objects.using(db).get(name="odd.bin").mimetype == (
            "application/octet-stream"
        )
    home = client.get("/").content.decode()
    assert 'id="fig-contacts">1<' in home and 'id="fig-attachments">2<' in home
    assert f"Release {acme.release}" in home


def test_unused_and_half_written_files_are_removed_after_a_day(acme: Database, owner: User) -> None:
    client = signed_in(acme, owner)
    upload = SimpleUploadedFile("notes.txt", b"in use", content_type="text/plain")
    assert client.post("/attachments/", {"file": upload}).status_code == 302

    def cut_off() -> Iterator[bytes]:
        yield b"the first half"
        raise ConnectionResetError("the client went away")

    with pytest.raises(ConnectionResetError):
        filestore.store(acme.physical_name, cut_off())
    root = filestore.root(acme.physical_name)
    assert not list(root.glob(".partial-*"))  # an upload cut off leaves nothing

    unused = [filestore.path(acme.physical_name, filestore.store(acme.physical_name, [b])[0])
              for b in (b"old", b"new")]  # fmt: skip
    killed = [root / ".partial-1-1", root / ".partial-2-2"]  # what killed processes left
    for path in killed:
        path.write_bytes(b"half")
    two_days_ago = time.time() - 2 * 86400
    for path in (unused[0], killed[0]):
        os.utime(path, (two_days_ago, two_days_ago))

    run_due_jobs(timezone.now() + timedelta(days=1, minutes=1))  # the daily job is due
    left = sorted(p.name for p in root.rglob("*") if p.is_file())
    with tenant.using(acme) as db:
        in_use = ws.Attachment.objects.using(db).get().sha256
    assert left == sorted([in_use, unused[1].name, killed[1].name])


def test_my_preferences(acme: Database, owner: User) -> None:
    client = signed_in(acme, owner)
    page = client.get("/preferences/").content.decode()
    assert owner.email in page and "Only Tenantry's support changes it" in page
    response = client.post(
        "/preferences/",
        {
            "action": "profile",
            "name": "Olivia",
            "contact_email": "olivia@example.com",
            "login": "x",
        },
    )
    assert response.status_code == 302
    with tenant.using(acme) as db:
        user = ws.User.objects.using(db).get()
    assert (user.name, user.contact_email, user.login) == (
        "Olivia",
        "olivia@example.com",
        owner.email,
    )

    form = {"action": "set", "new_password": DB_PASSWORD, "confirm_password": DB_PASSWORD}
    response = client.post("/preferences/", {**form, "current_password": "wrong"})
    assert "This is not your current password." in response.content.decode()
    response = client.post(
        "/preferences/", {**form, "current_password": PASSWORD, "confirm_password": "x"}
    )
    assert "The two passwords differ." in response.content.decode()
    response = client.post(
        "/preferences/",
        {**form, "current_password": PASSWORD, "new_password": "123", "confirm_password": "123"},
    )
    assert response.status_code == 200 and response.context["password"].errors
    assert client.post("/preferences/", {**form, "current_password": PASSWORD}).status_code == 302
    assert sign_in_db(visitor("acme"), owner.email, DB_PASSWORD) == "/"
    # Clearing it: the database password no longer works, the account password still does.
    assert (
        client.post(
            "/preferences/", {"action": "clear", "current_password": DB_PASSWORD}
        ).status_code
        == 302
    )
    assert sign_in_db(visitor("acme"), owner.email, DB_PASSWORD) == "Wrong login or password."
    assert is_signed_in(client)


def test_only_administrators_see_the_users_page(acme: Database, owner: User, member: User) -> None:
    with tenant.using(acme) as db:
        ws.User.objects.using(db).create(login=member.email, account_id=member.pk)
    assert b"Administrator" in signed_in(acme, owner).get("/users/").content
    assert signed_in(acme, member).get("/users/").status_code == 403


def test_post_without_csrf_token_is_refused(acme: Database, owner: User) -> None:
    client = Client(HTTP_HOST=host("acme"), enforce_csrf_checks=True)
    response = client.post("/login/", {"login": owner.email, "password": PASSWORD})
    assert response.status_code == 403


def test_a_test_copy_shows_its_banner(acme: Database, owner: User) -> None:
    operation = lifecycle.start_duplicate(acme, "acme-test", for_testing=True, by=owner)
    run_operation.call(operation.pk)
    copy = Database.objects.get(name="acme-test")
    page = signed_in(copy, owner).get("/").content.decode()
    assert f"Test database, expires on {copy.expires_at:%Y-%m-%d}" in page
    assert "Test database" not in signed_in(acme, owner).get("/").content.decode()


# Outgoing mail


def test_queued_mail_is_sent_except_from_a_neutralized_copy(
    acme: Database, owner: User, smtp_mail: SMTPServer
) -> None:
    with tenant.using(acme) as db:
        queue_mail(db, "customer@example.com", "Before the copy", "Hello")
    operation = lifecycle.start_duplicate(acme, "acme-test", for_testing=True, by=owner)
    run_operation.call(operation.pk)
    copy = Database.objects.get(name="acme-test")
    with tenant.using(acme) as db:
        queue_mail(db, "customer@example.com", "From the original", "Hello")
    with tenant.using(copy) as db:
        queue_mail(db, "customer@example.com", "From the copy", "Hello")
        assert set(ws.Mail.objects.using(db).values_list("state", flat=True)) == {"held"}

    run_due_jobs(timezone.now() + timedelta(minutes=2))
    smtp_mail.wait_for("customer@example.com", skip=1)
    subjects = sorted(m.subject for m in smtp_mail.messages)
    assert subjects == ["Before the copy", "From the original"]
    message: EmailMessage = smtp_mail.messages[0].message
    assert message["From"].startswith("acme <")
    with tenant.using(acme) as db:
        assert set(ws.Mail.objects.using(db).values_list("state", flat=True)) == {"sent"}
    with tenant.using(copy) as db:
        assert set(ws.Mail.objects.using(db).values_list("state", flat=True)) == {"held"}
    # Sent once: the next run finds nothing queued.
    run_due_jobs(timezone.now() + timedelta(minutes=4))
    assert len(smtp_mail.messages) == 2


def test_a_mail_whose_headers_would_break_neither_injects_nor_blocks_the_others(
    acme: Database, owner: User, smtp_mail: SMTPServer
) -> None:
    client = signed_in(acme, owner)
    Contact = releases.model(acme.release, "Contact")
    with tenant.using(acme) as db:
        contact = Contact.objects.using(db).create(name="Ada", email="ada@example.com")
        # Not through a form (it checks the address), but a restored dump may hold anything.
        queue_mail(db, "ada@example.com\nBcc: evil@example.com", "Cannot be sent", "Hello")
    message = {"action": "send", "subject": "Hi\nBcc: evil@example.com", "body": "Hello"}
    assert client.post(f"/contacts/{contact.pk}/", message).status_code == 302
    with tenant.using(acme) as db:
        queue_mail(db, "grace@example.com", "After them", "Hello")

    run_due_jobs(timezone.now() + timedelta(minutes=2))
    smtp_mail.wait_for("grace@example.com")
    [ada] = smtp_mail.messages_to("ada@example.com")
    assert ada.message["Subject"] == "Hi Bcc: evil@example.com"  # one line: no header added
    assert not smtp_mail.messages_to("evil@example.com")
    with tenant.using(acme) as db:
        states = dict(ws.Mail.objects.using(db).values_list("subject", "state"))
    assert states["Cannot be sent"] == "queued" and states["After them"] == "sent"


# A move or a restore over a database holds it: reads go on, and a write waits a while, then
# is refused with a sentence (never a 500) and changes nothing: in the workspace, and in the
# portal and the API where they write into the database (its users).
def test_a_write_to_a_held_database_gets_a_sentence_and_changes_nothing(
    acme: Database, owner: User, member: User
) -> None:
    Membership.objects.create(database=acme, user=member, role=Membership.Role.USER)
    client = signed_in(acme, owner)
    portal, key = client_for(owner), api(owner)
    reauthenticate(portal)
    held = "“acme” is being copied, moved or restored: it can be read, but not changed"
    with engine_for(acme).held(acme.physical_name):
        assert client.get("/contacts/").status_code == 200
        started = time.monotonic()
        response = client.post("/contacts/", {"name": "Ada Lovelace", "email": "ada@example.com"})
        assert response.status_code == 503
        assert held in response.content.decode()
        # SQLite: the writer gave up after HELD_TIMEOUT_MS, not the minute a duplicate gets.
        assert time.monotonic() - started < sqlite.HELD_TIMEOUT_MS / 1000 + 5
        assert client.get("/").status_code == 200

        response = portal.post(
            "/databases/acme/users/", {"action": "admin", "email": [member.email]}, follow=True
        )
        assert response.status_code == 200 and held in response.content.decode()
        response = key.delete(f"/api/v1/databases/acme/users/{member.email}")
        assert response.status_code == 503 and held in response.json()["detail"]
    with tenant.using(acme) as db:
        assert not releases.model(acme.release, "Contact").objects.using(db).exists()
    assert Membership.objects.get(user=member).role == "user"
    response = client.post("/contacts/", {"name": "Ada Lovelace", "email": "ada@example.com"})
    assert response.status_code == 302


def test_a_database_whose_storage_is_gone_answers_503(owner: User, db: None) -> None:
    broken = lifecycle.create("broken", by=owner)  # SQLite: no server is registered
    client = signed_in(broken, owner)
    engine_for(broken).drop(broken.physical_name)
    response = client.get("/contacts/")
    assert response.status_code == 503
    assert b"cannot be reached right now" in response.content
    assert not engine_for(broken).exists(broken.physical_name)  # no empty file made on the way
    lifecycle.drop_storage(broken)
