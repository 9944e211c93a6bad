"""Support requests and the support desk under attack and careful use (a review of issue 20):
another account's requests and files, the desk for customers and signed-out visitors, CSRF,
re-authentication, escaping in pages and mails, the files' names and limits, logins too long
or differing in case, databases being made or changed, a mail server that is down, and the
rate limit spent only by what is sent."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

from tenantry.accounts.models import User
from tenantry.databases import lifecycle, members
from tenantry.databases.models import Activity, Database, Membership
from tenantry.releases import upgrade
from tenantry.support.models import Attachment, Ticket
from tenantry.workspace import models as ws
from tenantry.workspace import tenant
from tests.conftest import PASSWORD, client_for, make_account, run_tasks
from tests.helpers import desk_client, send_request, sign_in_db, visitor
from tests.smtp import SMTPServer

SUPPORT = "help@tenantry.test"
sqlite = pytest.mark.parametrize("engine_kind", ["sqlite"], indirect=True)


@pytest.fixture
def shop(engine_kind: str, owner: User, member: User) -> Database:
    database = lifecycle.create("shop", by=owner)
    members.invite(database, [member.email], "user", by=owner)
    members.accept(database.invitations.get(), member)  # type: ignore[attr-defined]
    return database


def quiet(user: User) -> Client:
    """A signed-in client that gets a 500 as a response, as a browser would."""
    client = Client(raise_request_exception=False)
    client.force_login(user)
    return client


def text(response: Any) -> str:
    return response.content.decode()


# Problems found


def test_a_long_login_at_the_desk_is_a_form_error_not_a_500(
    engine_kind: str,
    shop: Database,
    owner: User,
    member: User,
    staff: User,
    django_capture_on_commit_callbacks: Any,
) -> None:
    """An address Django's EmailField would accept (up to 320 characters) but longer than the
    database's login column (254): a form error on both engines, never a 500 (PostgreSQL's
    DataError) or a login nobody can type (SQLite)."""
    send_request(client_for(owner), django_capture_on_commit_callbacks, database="shop")
    ticket = Ticket.objects.get()
    login = "a" * 250 + "@example.com"  # 262 characters, a valid address
    response = desk_client(staff, raise_errors=False).post(
        f"/desk/{ticket.pk}/", {"action": "login", "account": member.email, "login": login}
    )
    assert response.status_code != 500, "a 500 (PostgreSQL's DataError)"
    if response.status_code == 302:  # SQLite stored it: can the user sign in with it?
        signed = sign_in_db(visitor("shop"), login, PASSWORD)
        assert signed == "/", "the user is locked out: the sign-in form takes 254 characters"
    else:
        with tenant.using(shop) as db:
            assert ws.User.objects.using(db).get(account_id=member.pk).login == member.email


@pytest.mark.parametrize("engine_kind", ["sqlite", "postgresql"], indirect=True)
def test_the_desk_page_of_a_request_about_a_database_still_being_created_opens(
    engine_kind: str, owner: User, staff: User, django_capture_on_commit_callbacks: Any
) -> None:
    """A customer whose new database is stuck "being created" asks support about it (it is in
    the form's list): the desk opens without reading logins from storage not there yet."""
    database = lifecycle.reserve("newshop", by=owner)
    Membership.objects.create(database=database, user=owner, role=Membership.Role.ADMIN)
    assert database.status == Database.Status.CREATING
    send_request(client_for(owner), django_capture_on_commit_callbacks, database="newshop")
    ticket = Ticket.objects.get()
    assert ticket.details["status"] == "Being created"
    response = desk_client(staff, raise_errors=False).get(f"/desk/{ticket.pk}/")
    assert response.status_code == 200, response.status_code


@sqlite
def test_mail_subjects_carry_the_subject_as_typed_not_html_escaped(
    shop: Database,
    owner: User,
    staff: User,
    smtp_mail: SMTPServer,
    settings: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    """allauth renders subjects with autoescape on: "Can't" would arrive as "Can&#x27;t"; the
    support subjects turn it off (as invitation_subject.txt does)."""
    settings.SUPPORT_EMAIL = SUPPORT
    subject = 'Can\'t pay: "Visa" & <Amex> refused'
    send_request(client_for(owner), django_capture_on_commit_callbacks, subject=subject)
    ticket = Ticket.objects.get()
    with django_capture_on_commit_callbacks(execute=True):
        desk_client(staff, raise_errors=False).post(
            f"/desk/{ticket.pk}/", {"action": "answer", "body": "Done."}
        )
    run_tasks()
    to_support = smtp_mail.wait_for(SUPPORT)
    answer = next(m for m in smtp_mail.messages if "Answer to your request" in m.subject)
    # Stripped: Python's email folds a long subject after "Subject:", and its parser keeps the
    # fold's space (a mail reader does not show it).
    assert to_support.subject.strip() == f"[Tenantry] Support request #{ticket.pk}: {subject}"
    assert answer.subject.strip() == f"[Tenantry] Answer to your request #{ticket.pk}: {subject}"


@sqlite
def test_a_refused_retry_of_the_upgrade_is_written_in_the_activity(
    shop: Database, owner: User, staff: User, django_capture_on_commit_callbacks: Any
) -> None:
    """A refused retry is in the activity, as a refused start() is (not undone with a
    transaction around both)."""
    Database.objects.filter(pk=shop.pk).update(upgrade_failed_at=timezone.now())
    send_request(client_for(owner), django_capture_on_commit_callbacks, database="shop")
    ticket = Ticket.objects.get()
    page = desk_client(staff, raise_errors=False).post(
        f"/desk/{ticket.pk}/", {"action": "upgrade"}, follow=True
    )
    assert "is already at release" in text(page)  # refused (no newer release), and said so
    refused = Activity.objects.filter(database=shop, kind="upgrade", result="refused")
    after_retry = refused.count()
    shop.refresh_from_db()
    with pytest.raises(ValidationError):  # the same refusal, by start() on its own
        upgrade.start(shop, by=None, automatic=True)
    assert refused.count() == after_retry + 1  # ... is written
    assert after_retry == 1, "the desk's refused retry left no entry"


def test_the_desk_does_not_exist_for_a_visitor_who_is_not_signed_in(db: None) -> None:
    """ "To anyone else it does not exist (404)": a visitor signed out too, not sent to the
    sign-in page with next=/desk/ (which would tell that the page exists)."""
    anonymous = Client()
    assert anonymous.get("/no-such-page/").status_code == 404
    for path in ["/desk/", "/desk/1/", "/desk/1/files/1/"]:
        assert anonymous.get(path).status_code == 404, path


def test_a_long_file_name_keeps_its_extension(
    alice: User, django_capture_on_commit_callbacks: Any
) -> None:
    """(A control: Django's UploadedFile cuts a name longer than 255 before clean_name does,
    keeping its extension.)"""
    name = "r" * 300 + ".pdf"
    send_request(
        client_for(alice), django_capture_on_commit_callbacks,
        attachments=[SimpleUploadedFile(name, b"%PDF-1.4")],
    )  # fmt: skip
    stored = Attachment.objects.get()
    assert len(stored.name) <= 255
    assert stored.name.endswith(".pdf"), stored.name[-10:]


@pytest.mark.usefixtures("both_caches")  # in the caches: also on Redis
def test_a_refused_request_does_not_spend_the_hours_allowance(
    alice: User, settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    """Only what is sent counts: a customer whose file is refused (empty, too large) and who
    tries again is not told to wait an hour."""
    settings.ACCOUNT_RATE_LIMITS = settings.ACCOUNT_RATE_LIMITS | {"support": "2/h/user"}
    client = client_for(alice)
    for _ in range(2):
        empty = SimpleUploadedFile("empty.txt", b"")
        refused = send_request(client, django_capture_on_commit_callbacks, attachments=[empty])
        assert "is empty" in text(refused)
    response = send_request(client, django_capture_on_commit_callbacks)
    assert response.status_code == 302, "many times in the last hour" in text(response)


# Controls that held


def test_nobody_reaches_another_accounts_request_or_its_files(
    alice: User, bob: User, staff: User, django_capture_on_commit_callbacks: Any
) -> None:
    send_request(
        client_for(alice), django_capture_on_commit_callbacks,
        attachments=[SimpleUploadedFile("alice.txt", b"alice's")],
    )  # fmt: skip
    send_request(
        client_for(bob), django_capture_on_commit_callbacks,
        attachments=[SimpleUploadedFile("bob.txt", b"bob's")],
    )  # fmt: skip
    theirs, mine = Ticket.objects.order_by("id")
    their_file = Attachment.objects.get(name="alice.txt")
    client = client_for(bob)
    # Alice's file under Bob's own request, and both under Alice's.
    for path in [
        f"/support/{mine.pk}/files/{their_file.pk}/",
        f"/support/{theirs.pk}/files/{their_file.pk}/",
        f"/desk/{theirs.pk}/files/{their_file.pk}/",
        f"/desk/{mine.pk}/",
    ]:
        assert client.get(path).status_code == 404, path
    desk = desk_client(staff, raise_errors=False)
    assert desk.get(f"/desk/{mine.pk}/files/{their_file.pk}/").status_code == 404
    assert desk.get(f"/desk/{theirs.pk}/files/{their_file.pk}/").status_code == 200


@sqlite
def test_every_post_needs_its_csrf_token(
    shop: Database, owner: User, staff: User, django_capture_on_commit_callbacks: Any
) -> None:
    send_request(client_for(owner), django_capture_on_commit_callbacks, database="shop")
    ticket = Ticket.objects.get()
    customer = Client(enforce_csrf_checks=True)
    customer.force_login(owner)
    new = {"category": "technical", "subject": "x", "description": "y"}
    assert customer.post("/support/new/", new).status_code == 403
    for data in [{"action": "reply", "body": "x"}, {"action": "close"}]:
        assert customer.post(f"/support/{ticket.pk}/", data).status_code == 403
    desk = Client(enforce_csrf_checks=True)
    desk.force_login(staff)
    reauthenticate_with_token(desk)
    for data in [
        {"action": "answer", "body": "x"},
        {"action": "close"},
        {"action": "extend", "days": "5"},
        {"action": "login", "account": owner.email, "login": "x@example.com"},
        {"action": "unlink"},
        {"action": "upgrade"},
    ]:
        assert desk.post(f"/desk/{ticket.pk}/", data).status_code == 403, data
    ticket.refresh_from_db()
    assert ticket.state == Ticket.State.OPEN and Ticket.objects.count() == 1
    assert ticket.messages.count() == 1  # type: ignore[attr-defined]
    assert not Activity.objects.filter(database=shop, channel="support").exists()


def reauthenticate_with_token(client: Client) -> None:
    page = client.get("/accounts/reauthenticate/")
    token = page.cookies["csrftoken"].value
    response = client.post(
        "/accounts/reauthenticate/",
        {"password": PASSWORD, "csrfmiddlewaretoken": token},
    )
    assert response.status_code == 302


@sqlite
def test_a_staff_account_that_did_not_sign_in_again_cannot_act(
    shop: Database, owner: User, staff: User, django_capture_on_commit_callbacks: Any
) -> None:
    send_request(client_for(owner), django_capture_on_commit_callbacks, database="shop")
    ticket = Ticket.objects.get()
    stale = client_for(staff)
    for data in [{"action": "extend", "days": "5"}, {"action": "answer", "body": "x"}]:
        response = stale.post(f"/desk/{ticket.pk}/", data)
        assert response.status_code == 302
        assert response["Location"].startswith("/accounts/reauthenticate/")
    attachment_path = f"/desk/{ticket.pk}/files/1/"
    assert stale.get(attachment_path)["Location"].startswith("/accounts/reauthenticate/")
    assert stale.get("/admin/")["Location"].startswith("/accounts/reauthenticate/")
    assert ticket.messages.count() == 1  # type: ignore[attr-defined]
    assert not Activity.objects.filter(database=shop, kind="expiry").exists()


@sqlite
def test_what_a_customer_types_is_escaped_on_their_pages_and_the_desk(
    shop: Database, owner: User, staff: User, django_capture_on_commit_callbacks: Any
) -> None:
    evil = "<script>alert(1)</script>"
    send_request(
        client_for(owner), django_capture_on_commit_callbacks, database="shop",
        subject=f"S{evil}", description=f"B{evil}",
        attachments=[SimpleUploadedFile(f"n{evil}.txt", b"x")],
    )  # fmt: skip
    ticket = Ticket.objects.get()
    pages = [
        client_for(owner).get("/support/"),
        client_for(owner).get(f"/support/{ticket.pk}/"),
        desk_client(staff, raise_errors=False).get("/desk/"),
        desk_client(staff, raise_errors=False).get(f"/desk/{ticket.pk}/"),
    ]
    for page in pages:
        assert evil not in text(page) and "&lt;script&gt;" in text(page)


def test_a_newline_in_the_subject_adds_no_mail_header(
    alice: User, smtp_mail: SMTPServer, settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    settings.SUPPORT_EMAIL = SUPPORT
    send_request(
        client_for(alice), django_capture_on_commit_callbacks,
        subject="Help\r\nBcc: victim@example.com\r\nX-Evil: 1",
    )  # fmt: skip
    run_tasks()
    mail = smtp_mail.wait_for(SUPPORT)
    assert mail.message["Bcc"] is None and mail.message["X-Evil"] is None
    assert not smtp_mail.messages_to("victim@example.com")


def test_odd_file_names_become_plain_names(
    alice: User, django_capture_on_commit_callbacks: Any
) -> None:
    names = {
        "in\u202egnp.exe": "ingnp.exe",  # right-to-left override
        "a\u200bb.txt": "ab.txt",  # zero-width space
        "CON": "CON",  # a Windows device name: only shown, never a path of ours
        "a\x00b.txt": "ab.txt",  # a NUL byte
    }
    files = [SimpleUploadedFile(name, b"x") for name in names]
    send_request(client_for(alice), django_capture_on_commit_callbacks, attachments=files)
    stored = list(Attachment.objects.order_by("id"))
    assert [a.name for a in stored] == list(names.values())
    assert all(str(a.file.name).count("/") == 2 and "CON" not in str(a.file.name) for a in stored)


def test_five_files_of_exactly_ten_megabytes_are_taken(
    alice: User, django_capture_on_commit_callbacks: Any
) -> None:
    files = [SimpleUploadedFile(f"f{i}.bin", b"x" * (10 * 1024 * 1024)) for i in range(5)]
    response = send_request(
        client_for(alice), django_capture_on_commit_callbacks, attachments=files
    )
    assert response.status_code == 302
    assert sorted(Attachment.objects.values_list("size", flat=True)) == [10 * 1024 * 1024] * 5


@sqlite
def test_a_removed_member_no_longer_asks_about_the_database(
    shop: Database, owner: User, member: User, django_capture_on_commit_callbacks: Any
) -> None:
    members.remove(shop, [member], by=owner)
    response = send_request(client_for(member), django_capture_on_commit_callbacks, database="shop")
    assert "Choose one of your databases." in text(response)
    assert not Ticket.objects.exists()


@sqlite
def test_the_login_of_a_non_member_is_not_changed(
    shop: Database,
    owner: User,
    outsider: User,
    staff: User,
    django_capture_on_commit_callbacks: Any,
) -> None:
    other = lifecycle.create("other", by=outsider)
    send_request(client_for(owner), django_capture_on_commit_callbacks, database="shop")
    ticket = Ticket.objects.get()
    response = desk_client(staff, raise_errors=False).post(
        f"/desk/{ticket.pk}/",
        {"action": "login", "account": outsider.email, "login": "new@example.com"},
    )
    assert response.status_code == 200
    assert "Select a valid choice" in text(response)
    with tenant.using(other) as db:
        assert ws.User.objects.using(db).get(account_id=outsider.pk).login == outsider.email


@pytest.mark.parametrize("engine_kind", ["sqlite", "postgresql"], indirect=True)
def test_a_login_differing_only_in_case_from_anothers_is_refused(
    engine_kind: str,
    shop: Database,
    owner: User,
    member: User,
    staff: User,
    django_capture_on_commit_callbacks: Any,
) -> None:
    send_request(client_for(owner), django_capture_on_commit_callbacks, database="shop")
    ticket = Ticket.objects.get()
    response = desk_client(staff, raise_errors=False).post(
        f"/desk/{ticket.pk}/",
        {"action": "login", "account": member.email, "login": owner.email.upper()},
    )
    assert "is the login of another user" in text(response)
    assert sign_in_db(visitor("shop"), member.email, PASSWORD) == "/"


def test_a_request_survives_a_mail_server_that_is_down(
    alice: User, settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    settings.MAILERS = {
        "default": {
            "BACKEND": "django.core.mail.backends.smtp.EmailBackend",
            "OPTIONS": {"host": "127.0.0.1", "port": 9, "timeout": 2},
        }
    }
    response = send_request(client_for(alice), django_capture_on_commit_callbacks)
    assert response.status_code == 302
    run_tasks()  # the worker's task cannot send; the request stays, its mails tried again
    message = Ticket.objects.get().messages.get()  # type: ignore[attr-defined]
    assert message.mailed_at is None and message.mail_due_at is not None


@sqlite
def test_extend_refuses_a_database_being_changed(
    shop: Database, owner: User, staff: User, django_capture_on_commit_callbacks: Any
) -> None:
    Database.objects.filter(pk=shop.pk).update(status=Database.Status.CREATING)
    send_request(client_for(owner), django_capture_on_commit_callbacks, database="shop")
    ticket = Ticket.objects.get()
    response = desk_client(staff, raise_errors=False).post(
        f"/desk/{ticket.pk}/", {"action": "extend", "days": "5"}
    )
    assert "is being changed" in text(response)


def test_the_staff_command_finds_an_account_whatever_the_case_of_its_address(
    db: None,
) -> None:
    """Accounts' addresses are stored lowercased (Python's lower()); the command looks them up
    with email__iexact, which SQLite folds for ASCII letters only."""
    user = make_account("eve@exämple.com")
    call_command("staff", "add", "Eve@EXÄMPLE.com")
    user.refresh_from_db()
    assert user.is_staff


@sqlite
def test_the_desk_says_a_deleted_database_is_gone_and_acts_on_nothing(
    shop: Database, owner: User, staff: User, django_capture_on_commit_callbacks: Any
) -> None:
    send_request(client_for(owner), django_capture_on_commit_callbacks, database="shop")
    ticket = Ticket.objects.get()
    Database.objects.filter(pk=shop.pk).update(name=None, status=Database.Status.DELETING)
    desk = desk_client(staff, raise_errors=False)
    assert "no longer exists" in text(desk.get(f"/desk/{ticket.pk}/"))
    assert desk.post(f"/desk/{ticket.pk}/", {"action": "extend", "days": "5"}).status_code == 404
