"""Contact support and the support desk through the portal: a customer's request pre-filled from
their database (details not forgeable), attachments and their limits, My requests and the
conversation; the desk for staff who signed in again, and the actions only support may do,
each in the database's activity as "support". Mails go through a real SMTP server."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.utils import timezone

from tenantry.accounts.models import User
from tenantry.databases import lifecycle, members
from tenantry.databases.models import Activity, Database
from tenantry.operations.models import Operation
from tenantry.operations.sweep import sweep
from tenantry.releases import models as releases
from tenantry.support import verbs
from tenantry.support.models import Attachment, Message, Ticket
from tests.conftest import PASSWORD, client_for, run_tasks
from tests.helpers import (
    desk_client,
    run_pending,
    send_request,
    sign_in_db,
    subscribed,
    visitor,
)
from tests.smtp import SMTPServer, free_port

SUPPORT = "help@tenantry.test"


@pytest.fixture
def shop(engine_kind: str, owner: User, member: User) -> Database:
    database = lifecycle.create("shop", by=owner)
    members.invite(database, [member.email], "user", by=owner)
    invitation = database.invitations.get()  # type: ignore[attr-defined]
    members.accept(invitation, member)
    return database


def text(response: Any) -> str:
    return response.content.decode()


@pytest.mark.parametrize("engine_kind", ["sqlite"], indirect=True)
def test_a_request_carries_its_databases_details_from_the_record_and_is_mailed(
    shop: Database,
    owner: User,
    smtp_mail: SMTPServer,
    settings: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    settings.SUPPORT_EMAIL = SUPPORT
    subscription = subscribed(shop, owner)
    client = client_for(owner)
    form = client.get("/support/new/?database=shop&category=billing&subject=Invoice")
    page = text(form)
    assert str(shop.uuid) in page and subscription.code in page and shop.url in page
    assert form.context["form"].initial["category"] == "billing"
    # Details posted by the client are not read: they come from the record.
    response = send_request(
        client, django_capture_on_commit_callbacks, database="shop",
        details="uuid: 000", size="1 TB",
        attachments=[SimpleUploadedFile("trace.log", b"Traceback ...")],
    )  # fmt: skip
    ticket = Ticket.objects.get()
    assert response["Location"] == f"/support/{ticket.pk}/"
    assert ticket.database == shop and ticket.account == owner
    assert ticket.details["uuid"] == str(shop.uuid)
    assert ticket.details["subscription"] == subscription.code
    assert ticket.details["release"] == shop.release and ticket.details["engine"] == "sqlite"
    run_tasks()
    to_support = smtp_mail.wait_for(SUPPORT)
    assert to_support.subject == f"[Tenantry] Support request #{ticket.pk}: It is slow"
    assert str(shop.uuid) in to_support.text and "Since Monday." in to_support.text
    assert to_support.message["Reply-To"] == owner.email
    attached = to_support.message.iter_attachments()
    files = [(p.get_filename(), p.get_payload(decode=True)) for p in attached]
    assert files == [("trace.log", b"Traceback ...")]
    ack = smtp_mail.wait_for(owner.email)
    assert ack.subject == f"[Tenantry] We received your request #{ticket.pk}"
    assert f"/support/{ticket.pk}/" in ack.text


@pytest.mark.parametrize("engine_kind", ["sqlite"], indirect=True)
def test_mails_that_fail_are_sent_again_once_the_mail_server_answers(
    shop: Database,
    owner: User,
    smtp_mail: SMTPServer,
    settings: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    settings.SUPPORT_EMAIL = SUPPORT
    answering = settings.MAILERS
    settings.MAILERS = mail_server_down()
    send_request(client_for(owner), django_capture_on_commit_callbacks, database="shop")
    run_tasks()
    message = Message.objects.get()
    assert (message.mailed_at, message.mail_tries) == (None, 1)
    assert message.mail_due_at is not None
    retry = message.mail_due_at
    assert Ticket.objects.get().state == "open"  # kept, and on the desk
    sweep(retry - timedelta(minutes=1))  # not yet
    run_tasks()
    assert Message.objects.get().mail_tries == 1
    settings.MAILERS = answering
    sweep(retry + timedelta(minutes=1))
    sweep(retry + timedelta(minutes=2))  # queued once, however many passes meanwhile
    run_tasks()
    assert smtp_mail.wait_for(SUPPORT).subject.endswith("It is slow")
    smtp_mail.wait_for(owner.email)
    assert len(smtp_mail.messages) == 2
    message.refresh_from_db()
    assert message.mailed_at is not None and message.mail_due_at is None
    # Sent: no pass sends it again, and a second task for it sends nothing.
    sweep(retry + timedelta(days=1))
    verbs.mail.call(message.pk)
    run_tasks()
    assert len(smtp_mail.messages) == 2


def mail_server_down() -> dict[str, Any]:
    """Django's mailer sending to a port where no server listens."""
    options = {"host": "127.0.0.1", "port": free_port(), "timeout": 2}
    return {
        "default": {"BACKEND": "django.core.mail.backends.smtp.EmailBackend", "OPTIONS": options}
    }


def test_mails_are_tried_for_days_then_left(
    owner: User, settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    settings.MAILERS = mail_server_down()
    send_request(client_for(owner), django_capture_on_commit_callbacks)
    run_tasks()
    waits = []
    for _ in range(verbs.MAIL_TRIES - 1):
        message = Message.objects.get()
        assert message.mail_due_at is not None
        waits.append(message.mail_due_at - timezone.now())
        verbs.retry_mails(message.mail_due_at)
        run_tasks()
    message = Message.objects.get()
    assert (message.mail_tries, message.mail_due_at) == (verbs.MAIL_TRIES, None)
    assert waits[1] > waits[0] * 1.9 and timedelta(days=2) < sum(waits, timedelta()) < timedelta(
        days=4
    )


@pytest.mark.parametrize("engine_kind", ["sqlite"], indirect=True)
def test_nobody_asks_about_a_database_they_do_not_belong_to(
    shop: Database, outsider: User, django_capture_on_commit_callbacks: Any
) -> None:
    client = client_for(outsider)
    page = text(client.get("/support/new/?database=shop"))
    assert str(shop.uuid) not in page and "database-details" not in page
    response = send_request(client, django_capture_on_commit_callbacks, database="shop")
    assert response.status_code == 200
    assert "Choose one of your databases." in text(response)
    assert not Ticket.objects.exists()


@pytest.mark.parametrize("engine_kind", ["sqlite"], indirect=True)
def test_a_member_who_is_no_administrator_may_ask_too(
    shop: Database, member: User, django_capture_on_commit_callbacks: Any
) -> None:
    send_request(client_for(member), django_capture_on_commit_callbacks, database="shop")
    assert Ticket.objects.get().details["name"] == "shop"


def test_attachments_are_limited_in_number_and_size_and_never_empty(
    alice: User, django_capture_on_commit_callbacks: Any
) -> None:
    client = client_for(alice)
    six = [SimpleUploadedFile(f"f{i}.txt", b"x") for i in range(6)]
    cases = [
        (six, "Attach at most 5 files, not 6."),
        ([SimpleUploadedFile("empty.txt", b"")], "“empty.txt” is empty"),
        (
            [SimpleUploadedFile("big.bin", b"x" * (10 * 1024 * 1024 + 1))],
            "MB: a file may be at most 10 MB.",
        ),
    ]
    for files, sentence in cases:
        response = send_request(client, django_capture_on_commit_callbacks, attachments=files)
        assert response.status_code == 200
        assert sentence in text(response)
    assert not Ticket.objects.exists() and not Attachment.objects.exists()


def test_a_files_name_keeps_no_folder_and_it_downloads_as_a_file(
    alice: User, bob: User, django_capture_on_commit_callbacks: Any
) -> None:
    client = client_for(alice)
    files = [
        SimpleUploadedFile("../../etc/passwd", b"root:x"),
        SimpleUploadedFile("C:\\Users\\me\\report.html", b"<script>alert(1)</script>"),
    ]
    send_request(client, django_capture_on_commit_callbacks, attachments=files)
    ticket = Ticket.objects.get()
    stored = list(Attachment.objects.order_by("id"))
    assert [a.name for a in stored] == ["passwd", "report.html"]
    assert all(".." not in a.file.name and "\\" not in a.file.name for a in stored)
    path = f"/support/{ticket.pk}/files/{stored[1].pk}/"
    response = client.get(path)
    assert response["Content-Type"] == "application/octet-stream"
    assert response["Content-Disposition"] == 'attachment; filename="report.html"'
    assert b"".join(response.streaming_content) == b"<script>alert(1)</script>"  # type: ignore[attr-defined]
    assert client_for(bob).get(path).status_code == 404


def test_my_requests_a_reply_and_closing_and_nobody_elses(
    alice: User, bob: User, django_capture_on_commit_callbacks: Any
) -> None:
    client = client_for(alice)
    send_request(client, django_capture_on_commit_callbacks, subject="Where is my invoice?")
    ticket = Ticket.objects.get()
    listing = text(client.get("/support/"))
    assert "Where is my invoice?" in listing and f"#{ticket.pk}" in listing
    other = client_for(bob)
    assert "Where is my invoice?" not in text(other.get("/support/"))
    for path, data in [
        (f"/support/{ticket.pk}/", None),
        (f"/support/{ticket.pk}/", {"action": "reply", "body": "Mine now"}),
        (f"/support/{ticket.pk}/", {"action": "close"}),
    ]:
        answer = other.post(path, data) if data else other.get(path)
        assert answer.status_code == 404
    assert ticket.messages.count() == 1  # type: ignore[attr-defined]
    with django_capture_on_commit_callbacks(execute=True):
        client.post(f"/support/{ticket.pk}/", {"action": "reply", "body": "Any news?"})
    client.post(f"/support/{ticket.pk}/", {"action": "close"})
    ticket.refresh_from_db()
    assert ticket.state == Ticket.State.CLOSED
    assert [m.body for m in ticket.messages.all()] == ["Since Monday.", "Any news?"]  # type: ignore[attr-defined]
    empty = client.post(f"/support/{ticket.pk}/", {"action": "reply", "body": "  "})
    assert "This field is required." in text(empty) or "Write a message." in text(empty)


@pytest.mark.usefixtures("both_caches")  # in the caches: also on Redis
def test_sending_too_many_is_refused_for_an_hour(
    alice: User, settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    settings.ACCOUNT_RATE_LIMITS = settings.ACCOUNT_RATE_LIMITS | {"support": "2/h/user"}
    client = client_for(alice)
    for _ in range(2):
        assert send_request(client, django_capture_on_commit_callbacks).status_code == 302
    refused = send_request(client, django_capture_on_commit_callbacks)
    assert "many times in the last hour" in text(refused)
    assert Ticket.objects.count() == 2


def test_the_desk_is_for_staff_who_signed_in_again(
    alice: User, staff: User, django_capture_on_commit_callbacks: Any
) -> None:
    send_request(client_for(alice), django_capture_on_commit_callbacks, subject="Help")
    ticket = Ticket.objects.get()
    customer = desk_client(alice)
    for path in ["/desk/", f"/desk/{ticket.pk}/"]:
        assert customer.get(path).status_code == 404
    answer = customer.post(f"/desk/{ticket.pk}/", {"action": "answer", "body": "Hi"})
    assert answer.status_code == 404
    not_recent = client_for(staff)  # signed in, but not just now
    response = not_recent.get("/desk/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/reauthenticate/")
    client = desk_client(staff)
    assert "Help" in text(client.get("/desk/"))
    assert "Support desk" in text(client.get("/databases/"))  # in the account menu
    assert "Support desk" not in text(customer.get("/databases/"))


def test_the_desk_filters_answers_and_closes_and_the_customer_is_mailed(
    alice: User,
    staff: User,
    smtp_mail: SMTPServer,
    django_capture_on_commit_callbacks: Any,
) -> None:
    client = client_for(alice)
    send_request(
        client, django_capture_on_commit_callbacks, subject="Billing question", category="billing"
    )
    send_request(
        client, django_capture_on_commit_callbacks, subject="Cannot sign in", category="account"
    )
    billing, account = Ticket.objects.order_by("id")
    desk = desk_client(staff)
    listed = text(desk.get("/desk/?category=billing"))
    assert "Billing question" in listed and "Cannot sign in" not in listed
    with django_capture_on_commit_callbacks(execute=True):
        desk.post(f"/desk/{account.pk}/", {"action": "answer", "body": "Reset it from the link."})
    account.refresh_from_db()
    assert account.state == Ticket.State.ANSWERED
    assert "Cannot sign in" not in text(desk.get("/desk/?state=open"))
    assert "Cannot sign in" in text(desk.get("/desk/?state=answered"))
    run_tasks()
    mail = next(m for m in smtp_mail.messages if "Answer to your request" in m.subject)
    assert mail.is_to(alice.email) and "Reset it from the link." in mail.text
    assert f"/support/{account.pk}/" in mail.text
    # The customer sees it as support's, and their reply opens it again.
    page = text(client.get(f"/support/{account.pk}/"))
    assert "Tenantry support" in page and staff.email not in page
    client.post(f"/support/{account.pk}/", {"action": "reply", "body": "It worked."})
    account.refresh_from_db()
    assert account.state == Ticket.State.OPEN
    desk.post(f"/desk/{billing.pk}/", {"action": "close"})
    billing.refresh_from_db()
    assert billing.state == Ticket.State.CLOSED


def _ticket_about(database: Database, owner: User, capture: Any) -> Ticket:
    send_request(client_for(owner), capture, database=database.name)
    return Ticket.objects.get()


def _support_entry(database: Database, kind: str) -> Activity:
    entry = Activity.objects.filter(database=database, kind=kind).first()
    assert entry is not None
    assert entry.actor == "support" and entry.channel == "support"
    return entry


def test_support_changes_a_users_login_and_it_signs_in_with_it(
    engine_kind: str,
    shop: Database,
    owner: User,
    member: User,
    staff: User,
    django_capture_on_commit_callbacks: Any,
) -> None:
    ticket = _ticket_about(shop, owner, django_capture_on_commit_callbacks)
    desk = desk_client(staff)
    page = text(desk.get(f"/desk/{ticket.pk}/"))
    assert f"{member.email} signs in as <code>{member.email}</code>" in page
    taken = desk.post(
        f"/desk/{ticket.pk}/",
        {"action": "login", "account": member.email, "login": owner.email},
    )
    assert "is the login of another user" in text(taken)
    done = desk.post(
        f"/desk/{ticket.pk}/",
        {"action": "login", "account": member.email, "login": "Sales@Example.com"},
    )
    assert done.status_code == 302
    entry = _support_entry(shop, "login")
    assert entry.account == staff
    assert f"{member.email}: login {member.email} → sales@example.com" == entry.detail
    client = visitor("shop")
    assert sign_in_db(client, "sales@example.com", PASSWORD) == "/"
    assert sign_in_db(visitor("shop"), member.email, PASSWORD) != "/"
    # The owner sees who did it as "support", not the staff member.
    log = text(client_for(owner).get("/databases/shop/activity/"))
    assert "support" in log and staff.email not in log


@pytest.mark.parametrize("engine_kind", ["sqlite"], indirect=True)
def test_support_extends_an_expired_trial_and_it_is_served_again(
    shop: Database, owner: User, staff: User, django_capture_on_commit_callbacks: Any
) -> None:
    Database.objects.filter(pk=shop.pk).update(
        expires_at=timezone.now() - timedelta(days=1), expired=True
    )
    assert visitor("shop").get("/login/").status_code != 200
    ticket = _ticket_about(shop, owner, django_capture_on_commit_callbacks)
    desk = desk_client(staff)
    refused = desk.post(f"/desk/{ticket.pk}/", {"action": "extend", "days": "500"})
    assert "Ensure this value is less than or equal to 90." in text(refused)
    desk.post(f"/desk/{ticket.pk}/", {"action": "extend", "days": "10"})
    shop.refresh_from_db()
    assert not shop.is_expired and not shop.expired
    assert shop.expires_at is not None
    assert timedelta(days=9) < shop.expires_at - timezone.now() <= timedelta(days=10)
    assert visitor("shop").get("/login/").status_code == 200
    assert "until" in _support_entry(shop, "expiry").detail


@pytest.mark.parametrize("engine_kind", ["sqlite"], indirect=True)
def test_support_unlinks_a_subscription_that_its_owner_left(
    shop: Database,
    owner: User,
    staff: User,
    django_capture_on_commit_callbacks: Any,
) -> None:
    subscription = subscribed(shop, owner)
    ticket = _ticket_about(shop, owner, django_capture_on_commit_callbacks)
    desk = desk_client(staff)
    refused = desk.post(f"/desk/{ticket.pk}/", {"action": "extend", "days": "5"})
    assert f"paid for by the subscription {subscription.code}" in text(refused)
    desk.post(f"/desk/{ticket.pk}/", {"action": "unlink"})
    shop.refresh_from_db()
    assert shop.subscription is None
    assert _support_entry(shop, "subscription").detail == f"unlinked from {subscription.code}"


@pytest.mark.parametrize("engine_kind", ["sqlite"], indirect=True)
def test_support_lifts_a_failed_upgrade_and_starts_it_again(
    engine_kind: str, owner: User, staff: User, django_capture_on_commit_callbacks: Any
) -> None:
    for version in ("1.0", "1.1"):
        releases.publish(version, timezone.now() - timedelta(days=1))
    shop = lifecycle.create("shop", by=owner)
    assert shop.release == "1.1"
    for version in ("2.0", "2.1"):
        releases.publish(version, timezone.now() - timedelta(minutes=1))
    Database.objects.filter(pk=shop.pk).update(upgrade_failed_at=timezone.now())
    ticket = _ticket_about(shop, owner, django_capture_on_commit_callbacks)
    desk = desk_client(staff)
    assert "Start the upgrade again" in text(desk.get(f"/desk/{ticket.pk}/"))
    desk.post(f"/desk/{ticket.pk}/", {"action": "upgrade"})
    shop.refresh_from_db()
    assert shop.upgrade_failed_at is None
    operation = Operation.objects.get(kind="upgrade")
    assert _support_entry(shop, "upgrade").operation == operation
    run_pending()
    shop.refresh_from_db()
    assert shop.release == "2.1"
    again = desk.post(f"/desk/{ticket.pk}/", {"action": "upgrade"})
    assert "has not failed" in text(again)


@pytest.mark.parametrize("engine_kind", ["sqlite"], indirect=True)
def test_a_customer_cannot_do_supports_actions(
    shop: Database, owner: User, django_capture_on_commit_callbacks: Any
) -> None:
    ticket = _ticket_about(shop, owner, django_capture_on_commit_callbacks)
    client = desk_client(owner)
    for data in [
        {"action": "extend", "days": "30"},
        {"action": "login", "account": owner.email, "login": "me@example.com"},
    ]:
        assert client.post(f"/desk/{ticket.pk}/", data).status_code == 404
    shop.refresh_from_db()
    assert not Activity.objects.filter(database=shop, kind__in=["expiry", "login"]).exists()


def test_the_staff_command(alice: User) -> None:
    call_command("staff", "add", "ALICE@example.com")
    alice.refresh_from_db()
    assert alice.is_staff
    with pytest.raises(CommandError, match="already staff"):
        call_command("staff", "add", alice.email)
    with pytest.raises(CommandError, match="There is no account nobody@example.com"):
        call_command("staff", "add", "nobody@example.com")
    call_command("staff", "remove", alice.email)
    alice.refresh_from_db()
    assert not alice.is_staff


def test_an_accounts_deletion_takes_its_requests_files(
    alice: User, django_capture_on_commit_callbacks: Any
) -> None:
    attachment = SimpleUploadedFile("notes.txt", b"private")
    send_request(client_for(alice), django_capture_on_commit_callbacks, attachments=[attachment])
    stored = Attachment.objects.get()
    storage, name = stored.file.storage, stored.file.name
    assert storage.exists(name)
    alice.delete()
    assert not Ticket.objects.exists() and not storage.exists(name)


@pytest.mark.parametrize("engine_kind", ["sqlite"], indirect=True)
def test_staff_reach_requests_only_at_the_desk_and_no_databases_data(
    shop: Database, owner: User, staff: User, django_capture_on_commit_callbacks: Any
) -> None:
    ticket = _ticket_about(shop, owner, django_capture_on_commit_callbacks)
    client = desk_client(staff)
    assert client.get(f"/support/{ticket.pk}/").status_code == 404  # the customer's page
    for path in [
        "/databases/shop/users/",
        "/databases/shop/activity/",
        "/databases/shop/download/",
    ]:
        assert client.get(path).status_code == 404
    assert client.post("/databases/shop/connect/").status_code == 404
    page = text(client.get(f"/desk/{ticket.pk}/"))
    assert "Connect to" not in page and "/databases/shop/" not in page
