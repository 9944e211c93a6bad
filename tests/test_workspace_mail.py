"""A database's outgoing mail beyond sending: a test copy holds it and says so, a restored copy
holds what the original had queued at backup time until an administrator releases or discards
it (Outgoing mail), and a restore marked "moved" keeps it queued.

Workspace requests go through the gateway (`<name>.localhost`); mail goes to a real SMTP server.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from tenantry.accounts.models import User
from tenantry.backups import restore, store
from tenantry.backups.models import Backup
from tenantry.databases import lifecycle
from tenantry.databases.models import Database
from tenantry.operations.models import Operation
from tenantry.operations.tasks import run_operation
from tenantry.workspace import jobs, tenant
from tenantry.workspace import models as ws
from tenantry.workspace.mail import queue_mail
from tenantry.workspace.releases import model
from tests.conftest import client_for
from tests.helpers import host, run_due_jobs, run_pending, signed_in
from tests.smtp import SMTPServer

CUSTOMER = "customer@example.com"


@pytest.fixture
def shop(engine_kind: str, owner: User) -> Database:
    """A live database with a mail queued when its backup is made (the job has not run yet)."""
    database = lifecycle.create("shop", by=owner)
    with tenant.using(database) as db:
        queue_mail(db, CUSTOMER, "Your invoice", "Attached.")
    return database


def restored(backup: Backup, target: Database | str, owner: User, **options: bool) -> Database:
    restore.start(backup, target, by=owner, **options)
    run_pending()
    operation = Operation.objects.filter(kind="restore").order_by("pk").last()
    assert operation is not None and operation.state == "done", operation and operation.error
    return Database.objects.get(name=target if isinstance(target, str) else target.name)


def states(database: Database) -> dict[str, str]:
    with tenant.using(database) as db:
        return dict(ws.Mail.objects.using(db).values_list("subject", "state"))


def run_jobs(days: int) -> None:
    """The scheduled jobs of every live database, `days` ahead: each job is due by then."""
    run_due_jobs(timezone.now() + timedelta(days=days))


def add_user(database: Database, user: User) -> None:
    """`user` as a plain (not administrator) user of the database."""
    with tenant.using(database) as db:
        ws.User.objects.using(db).create(login=user.email, account_id=user.pk)


def test_a_message_from_a_test_copy_says_it_is_held(shop: Database, owner: User) -> None:
    operation = lifecycle.start_duplicate(shop, "shop-test", for_testing=True, by=owner)
    run_operation.call(operation.pk)
    copy = Database.objects.get(name="shop-test")

    def send(database: Database) -> str:
        with tenant.using(database) as db:
            contact = (
                model(database.release, "Contact")
                .objects.using(db)
                .create(name="Ada", email=CUSTOMER)
            )
        message = {"action": "send", "subject": "Hello", "body": "Hi"}
        response = signed_in(database, owner).post(f"/contacts/{contact.pk}/", message, follow=True)
        return response.content.decode()

    page = send(copy)
    assert f"The message to {CUSTOMER} is held: this is a test copy, external mail is off." in page
    assert "is queued" not in page
    assert f"The message to {CUSTOMER} is queued." in send(shop)


def test_a_restored_copy_holds_the_queued_mails_until_an_administrator_releases_them(
    shop: Database, owner: User, member: User, smtp_mail: SMTPServer
) -> None:
    backup = store.make(shop, Backup.Kind.DAILY)
    copy = restored(backup, "shop-copy", owner)
    assert states(copy) == {"Your invoice": "held"}
    run_jobs(days=1)
    # The original sends its mail, once; the copy sends none.
    smtp_mail.wait_for(CUSTOMER)
    assert [m.message["From"].split(" <")[0] for m in smtp_mail.messages] == ["shop"]
    assert states(shop) == {"Your invoice": "sent"} and states(copy) == {"Your invoice": "held"}

    # A user who is not an administrator neither sees the page nor releases.
    add_user(copy, member)
    as_member = signed_in(copy, member)
    assert "Outgoing mail" not in as_member.get("/").content.decode()
    response = as_member.get("/mail/")
    assert response.status_code == 403 and b"Only administrators" in response.content
    assert as_member.post("/mail/", {"action": "release"}).status_code == 403
    # Nor does a post without the CSRF token, even an administrator's session.
    forged = Client(HTTP_HOST=host("shop-copy"), enforce_csrf_checks=True)
    forged.cookies = signed_in(copy, owner).cookies
    assert forged.post("/mail/", {"action": "release"}).status_code == 403
    run_jobs(days=2)
    assert states(copy) == {"Your invoice": "held"} and len(smtp_mail.messages) == 1

    as_owner = signed_in(copy, owner)
    page = as_owner.get("/").content.decode()
    assert 'href="/mail/">Outgoing mail</a>' in page
    page = as_owner.get("/mail/").content.decode()
    assert CUSTOMER in page and "Your invoice" in page and "held here until you release" in page
    response = as_owner.post("/mail/", {"action": "release"}, follow=True)
    assert "1 mail released: sent at the next run of the sending job." in response.content.decode()
    assert states(copy) == {"Your invoice": "queued"}
    run_jobs(days=3)
    smtp_mail.wait_for(CUSTOMER, skip=1)
    assert [m.message["From"].split(" <")[0] for m in smtp_mail.messages] == ["shop", "shop-copy"]
    assert states(copy) == {"Your invoice": "sent"}


def test_a_restore_over_a_database_as_a_copy_holds_them_too_and_they_can_be_discarded(
    shop: Database, owner: User, smtp_mail: SMTPServer
) -> None:
    backup = store.make(shop, Backup.Kind.DAILY)
    run_jobs(days=1)  # the original sends it before the restore
    smtp_mail.wait_for(CUSTOMER)
    shop = restored(backup, shop, owner, as_copy=True)
    assert states(shop) == {"Your invoice": "held"}
    run_jobs(days=2)
    assert len(smtp_mail.messages) == 1

    response = signed_in(shop, owner).post("/mail/", {"action": "discard"}, follow=True)
    assert "1 held mail discarded." in response.content.decode()
    assert states(shop) == {}


def test_a_moved_restore_keeps_the_queued_mails_and_sends_them(
    shop: Database, owner: User, smtp_mail: SMTPServer
) -> None:
    backup = store.make(shop, Backup.Kind.DAILY)
    moved = restored(backup, "shop-moved", owner, as_copy=False)
    assert states(moved) == {"Your invoice": "queued"}
    jobs.run_due(moved, timezone.now() + timedelta(days=1))
    assert smtp_mail.wait_for(CUSTOMER).message["From"].startswith("shop-moved <")
    assert states(moved) == {"Your invoice": "sent"}


def test_a_neutralized_restore_holds_its_mails_and_cannot_release_them(
    shop: Database, owner: User, smtp_mail: SMTPServer
) -> None:
    backup = store.make(shop, Backup.Kind.DAILY)
    copy = restored(backup, "shop-test", owner, neutralize=True)
    client = signed_in(copy, owner)
    page = client.get("/mail/").content.decode()
    assert "Outgoing mail is off in this database (a test copy)" in page
    assert 'value="release"' not in page
    response = client.post("/mail/", {"action": "release"}, follow=True)
    assert "its held mails cannot be released" in response.content.decode()
    assert states(copy) == {"Your invoice": "held"}


def test_the_restore_page_says_a_copy_holds_the_queued_mails(owner: User) -> None:
    page = client_for(owner).get("/databases/restore/").content.decode()
    assert "A copy holds the mails queued at backup time until an administrator" in page


def test_a_live_duplicate_holds_the_queued_mails_too(
    shop: Database, owner: User, smtp_mail: SMTPServer
) -> None:
    operation = lifecycle.start_duplicate(shop, "shop-live", for_testing=False, by=owner)
    run_operation.call(operation.pk)
    copy = Database.objects.get(name="shop-live")
    assert states(copy) == {"Your invoice": "held"}
    run_jobs(days=1)
    smtp_mail.wait_for(CUSTOMER)
    assert [m.message["From"].split(" <")[0] for m in smtp_mail.messages] == ["shop"]
    assert states(copy) == {"Your invoice": "held"}
    page = signed_in(copy, owner).get("/mail/").content.decode()
    assert "Release 1 held mail" in page


def test_a_restore_over_a_test_copy_keeps_its_mail_off(shop: Database, owner: User) -> None:
    backup = store.make(shop, Backup.Kind.DAILY)
    operation = lifecycle.start_duplicate(shop, "shop-test", for_testing=True, by=owner)
    run_operation.call(operation.pk)
    copy = restored(backup, Database.objects.get(name="shop-test"), owner)
    assert copy.is_test_copy and states(copy) == {"Your invoice": "held"}
    with tenant.using(copy) as db:
        assert not ws.MailServer.objects.using(db).filter(active=True).exists()
