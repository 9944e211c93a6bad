"""Support requests: opening one, replying, closing. The portal, the API and the support desk
call these and nothing else.

A refusal is a ValidationError with its sentence. The mails go out from a task once the
change is committed: to TENANTRY_SUPPORT_EMAIL (the request, its database's details and the
files) and to the customer (the acknowledgement, then staff's answers).
"""

from __future__ import annotations

import logging
import re
import smtplib
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from allauth.account.adapter import get_adapter
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files import File
from django.db import transaction
from django.db.models import QuerySet
from django.http import Http404
from django.tasks import task
from django.template.defaultfilters import filesizeformat
from django.utils import timezone

from tenantry.accounts.models import User
from tenantry.databases.models import Database
from tenantry.support.models import Attachment, Message, Ticket

logger = logging.getLogger(__name__)

MAX_FILES = 5
MAX_FILE_BYTES = 10 * 1024 * 1024
MAX_BODY = 20_000
# Files are attached to the support team's mail up to this much in all (mail servers refuse
# large messages, often past 25 MB); the others are listed with the desk's link.
MAIL_FILES_BYTES = 15 * 1024 * 1024

# A request's database, as support reads it: (key in Ticket.details, label).
DETAILS = [
    ("name", "Name"),
    ("uuid", "UUID"),
    ("url", "URL"),
    ("release", "Release"),
    ("engine", "Engine"),
    ("size", "Size"),
    ("status", "Status"),
    ("subscription", "Subscription"),
]


def details(database: Database) -> dict[str, str]:
    """Read from its record: what the customer sees on the form, and what is saved."""
    return {
        "name": database.name or "",
        "uuid": str(database.uuid),
        "url": database.url,
        "release": database.release,
        "engine": database.engine,
        "size": filesizeformat(database.size_bytes),
        "status": database.status_label,
        "subscription": database.subscription_code,
    }


def labelled(found: dict[str, str]) -> list[tuple[str, str]]:
    return [(label, found[key]) for key, label in DETAILS if found.get(key)]


def requests_of(user: User) -> QuerySet[Ticket]:
    return Ticket.objects.filter(account=user)


def get_ticket(user: User, ticket_id: int, *, staff: bool = False) -> Ticket:
    """The account's own request (any request for staff at the desk), or 404."""
    found = Ticket.objects.all() if staff and user.is_staff else requests_of(user)
    ticket = found.select_related("account").filter(pk=ticket_id).first()
    if ticket is None:
        raise Http404(f"No support request #{ticket_id}.")
    return ticket


def clean_name(name: str) -> str:
    """The file's own name, whatever folder the client sent with it ("../../x", "C:\\a\\x")."""
    base = re.split(r"[/\\]", name or "")[-1]
    base = "".join(c for c in base if c.isprintable()).strip(" .")
    return base[:255] or "attachment"


def check_files(files: Sequence[File]) -> None:  # type: ignore[type-arg]
    if len(files) > MAX_FILES:
        raise ValidationError(f"Attach at most {MAX_FILES} files, not {len(files)}.")
    for file in files:
        name = clean_name(file.name or "")
        if not file.size:
            raise ValidationError(f"“{name}” is empty: attach a file with something in it.")
        if file.size > MAX_FILE_BYTES:
            raise ValidationError(
                f"“{name}” is {filesizeformat(file.size)}: a file may be at most "
                f"{MAX_FILE_BYTES // 1024 // 1024} MB."
            )


def _check_text(subject: str | None, body: str) -> None:
    if subject is not None and not subject.strip():
        raise ValidationError("Say what the request is about in its subject.")
    if subject is not None and len(subject) > 200:
        raise ValidationError("A subject has at most 200 characters.")
    if not body.strip():
        raise ValidationError("Write a message.")
    if len(body) > MAX_BODY:
        raise ValidationError(f"A message has at most {MAX_BODY:,} characters.")


def _add_message(
    ticket: Ticket,
    author: User,
    body: str,
    files: Sequence[File],  # type: ignore[type-arg]
    *,
    by_staff: bool,
) -> Message:
    message = Message.objects.create(
        ticket=ticket, author=author, body=body.strip(), by_staff=by_staff,
        mail_due_at=timezone.now() + MAIL_RETRY,
    )  # fmt: skip
    for file in files:
        attachment = Attachment(message=message, name=clean_name(file.name or ""), size=file.size)
        attachment.file.save(attachment.name, file, save=False)
        attachment.save()
    transaction.on_commit(lambda: mail.enqueue(message.pk))
    return message


def open_request(
    account: User,
    *,
    subject: str,
    body: str,
    category: str,
    database: Database | None = None,
    files: Sequence[File] = (),  # type: ignore[type-arg]
) -> Ticket:
    """A new request. `database` is one the caller found through the account's memberships;
    its details are taken from its record now."""
    _check_text(subject, body)
    if category not in Ticket.Category.values:
        choices = ", ".join(Ticket.Category.values)
        raise ValidationError(f"The category is one of {choices}, not “{category}”.")
    check_files(files)
    with transaction.atomic():
        ticket = Ticket.objects.create(
            account=account,
            database=database,
            details=details(database) if database is not None else {},
            subject=subject.strip(),
            category=category,
        )
        _add_message(ticket, account, body, files, by_staff=False)
    return ticket


def reply(
    ticket: Ticket,
    author: User,
    body: str,
    files: Sequence[File] = (),  # type: ignore[type-arg]
    *,
    by_staff: bool = False,
) -> Message:
    """The customer's reply reopens the request; staff's answers it."""
    _check_text(None, body)
    check_files(files)
    with transaction.atomic():
        message = _add_message(ticket, author, body, files, by_staff=by_staff)
        ticket.state = Ticket.State.ANSWERED if by_staff else Ticket.State.OPEN
        ticket.updated_at = message.created_at
        ticket.save(update_fields=["state", "updated_at"])
    return message


def close(ticket: Ticket) -> None:
    if ticket.state == Ticket.State.CLOSED:
        raise ValidationError(f"The request {ticket.number} is already closed.")
    ticket.state, ticket.updated_at = Ticket.State.CLOSED, timezone.now()
    ticket.save(update_fields=["state", "updated_at"])


# A message's mails are tried again this long after a try that failed, doubled each time,
# for MAIL_TRIES tries (three and a half days), then left: the request stays on the desk.
MAIL_RETRY = timedelta(minutes=10)
MAIL_TRIES = 10


@task
def mail(message_id: int) -> None:
    """Send the message's mails, once: claimed first, so that two workers (the task and the
    sweep's retry) never both send them; given back with a later try when sending fails."""
    now = timezone.now()
    if not Message.objects.filter(pk=message_id, mailed_at=None).update(mailed_at=now):
        return  # sent, or being sent, or gone
    message = Message.objects.select_related("ticket__account").get(pk=message_id)
    try:
        _send(message)
    except (OSError, smtplib.SMTPException) as error:
        tries = message.mail_tries + 1
        logger.warning(
            "Support mails of message %s not sent (try %s): %s", message.pk, tries, error
        )
        due = now + MAIL_RETRY * 2 ** (tries - 1) if tries < MAIL_TRIES else None
        Message.objects.filter(pk=message.pk).update(
            mailed_at=None, mail_tries=tries, mail_due_at=due
        )
        return
    Message.objects.filter(pk=message.pk).update(mail_due_at=None)


def retry_mails(now: datetime) -> None:
    """The sweep's step: messages whose mails failed, or whose task was lost, are sent again."""
    due = Message.objects.filter(mailed_at=None, mail_due_at__lte=now)
    for pk in due.values_list("pk", flat=True)[:100]:
        # Pushed on first, so that the next pass does not queue it again meanwhile.
        Message.objects.filter(pk=pk).update(mail_due_at=now + MAIL_RETRY)
        mail.enqueue(pk)


def _send(message: Message) -> None:
    """The customer's messages to the support team, with their files; the acknowledgement of a
    new request and staff's answers to the customer."""
    ticket = message.ticket
    context: dict[str, Any] = {
        "ticket": ticket,
        "message": message,
        "details": labelled(ticket.details),
        "first": not ticket.messages.filter(pk__lt=message.pk).exists(),  # type: ignore[attr-defined]
        "link": f"{settings.PORTAL_URL}/support/{ticket.pk}/",
        "desk_link": f"{settings.PORTAL_URL}/desk/{ticket.pk}/",
        "files": list(message.attachments.all()),  # type: ignore[attr-defined]
    }
    adapter = get_adapter()
    if message.by_staff:
        adapter.send_mail("support/email/answer", ticket.account.email, context)
        return
    attached, room = [], MAIL_FILES_BYTES
    for attachment in context["files"]:
        if attachment.size <= room:
            attached.append(attachment)
            room -= attachment.size
    context["left_out"] = [a for a in context["files"] if a not in attached]
    email = adapter.render_mail("support/email/request", settings.SUPPORT_EMAIL, context)
    email.reply_to = [ticket.account.email]
    for attachment in attached:
        with attachment.file.open("rb") as stored:
            email.attach(attachment.name, stored.read())
    email.send()
    if context["first"]:
        adapter.send_mail("support/email/received", ticket.account.email, context)
