"""The workspace's outgoing mail: queued in the database, sent by its scheduled job.

A mail is HELD in two cases, told apart by the database's mail switch: outgoing mail is off
(a neutralized test copy: it stays held), or the database is a restored copy and the mail was
queued in the original at backup time (it waits until an administrator releases it).
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.mail import EmailMessage
from django.utils import timezone

from tenantry.workspace import models as ws

logger = logging.getLogger(__name__)


def is_on(db: str) -> bool:
    """Whether the database sends mail at all (neutralization turns it off)."""
    return ws.MailServer.objects.using(db).filter(active=True).exists()


def queue_mail(db: str, to: str, subject: str, body: str) -> ws.Mail:
    """Queue a mail; a neutralized database holds it instead, marked so."""
    state = ws.Mail.State.QUEUED if is_on(db) else ws.Mail.State.HELD
    return ws.Mail.objects.using(db).create(to=to, subject=subject, body=body, state=state)


def hold_queued(db: str) -> int:
    """A restored copy: the mails the original had queued at backup time were (or will be)
    sent from the original, to the same people; they wait here for an administrator."""
    queued = ws.Mail.objects.using(db).filter(state=ws.Mail.State.QUEUED)
    return queued.update(state=ws.Mail.State.HELD)


def release_held(db: str) -> int:
    """Queue the held mails again, for the next run of the sending job; refused while the
    database's mail is off, as the job would only hold them again."""
    if not is_on(db):
        raise ValidationError(
            "Outgoing mail is off in this database (a test copy): its held mails cannot be "
            "released.",
            code="mail_off",
        )
    held = ws.Mail.objects.using(db).filter(state=ws.Mail.State.HELD)
    return held.update(state=ws.Mail.State.QUEUED)


def discard_held(db: str) -> int:
    deleted, _ = ws.Mail.objects.using(db).filter(state=ws.Mail.State.HELD).delete()
    return deleted


def send_queued(db: str, sender: str) -> int:
    """Send what is queued through TENANTRY_EMAIL_URL; returns how many went."""
    queued = ws.Mail.objects.using(db).filter(state=ws.Mail.State.QUEUED).order_by("id")
    if not is_on(db):
        queued.update(state=ws.Mail.State.HELD)
        return 0
    sent = 0
    for mail in queued.iterator():
        # Claimed first: marked sent by this sender only, so no other worker sends it too. A
        # worker that dies between the claim and the send loses that one mail, rather than
        # two workers sending it twice.
        claim = ws.Mail.objects.using(db).filter(pk=mail.pk, state=ws.Mail.State.QUEUED)
        if not claim.update(state=ws.Mail.State.SENT, sent_at=timezone.now()):
            continue
        subject = " ".join(mail.subject.split())  # a header is one line
        try:
            EmailMessage(subject, mail.body, sender, [mail.to]).send()
        except ValueError:  # an address no header can hold: the others still go
            logger.warning("Mail %s to %r cannot be sent; it stays queued", mail.pk, mail.to)
            _unclaim(db, mail)
            continue
        except Exception:  # the mail server: this one and the rest wait for the next run
            _unclaim(db, mail)
            raise
        sent += 1
    return sent


def _unclaim(db: str, mail: ws.Mail) -> None:
    ws.Mail.objects.using(db).filter(pk=mail.pk).update(state=ws.Mail.State.QUEUED, sent_at=None)


def sender_for(name: str) -> str:
    """From: the database's name beside the platform's address."""
    address = settings.DEFAULT_FROM_EMAIL.rsplit("<", 1)[-1].rstrip(">")
    return f"{name} <{address}>"
