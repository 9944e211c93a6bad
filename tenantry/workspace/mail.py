"""The workspace's outgoing mail: queued in the database, sent by its scheduled job."""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.mail import EmailMessage
from django.utils import timezone

from tenantry.workspace import models as ws

logger = logging.getLogger(__name__)


def queue_mail(db: str, to: str, subject: str, body: str) -> ws.Mail:
    """Queue a mail; a neutralized database holds it instead, marked so."""
    on = ws.MailServer.objects.using(db).filter(active=True).exists()
    state = ws.Mail.State.QUEUED if on else ws.Mail.State.HELD
    return ws.Mail.objects.using(db).create(to=to, subject=subject, body=body, state=state)


def send_queued(db: str, sender: str) -> int:
    """Send what is queued through TENANTRY_EMAIL_URL; returns how many went."""
    queued = ws.Mail.objects.using(db).filter(state=ws.Mail.State.QUEUED).order_by("id")
    if not ws.MailServer.objects.using(db).filter(active=True).exists():
        queued.update(state=ws.Mail.State.HELD)
        return 0
    sent = 0
    for mail in queued:
        subject = " ".join(mail.subject.split())  # a header is one line
        try:
            EmailMessage(subject, mail.body, sender, [mail.to]).send()
        except ValueError:  # an address no header can hold: the others still go
            logger.warning("Mail %s to %r cannot be sent; it stays queued", mail.pk, mail.to)
            continue
        mail.state, mail.sent_at = ws.Mail.State.SENT, timezone.now()
        mail.save(using=db, update_fields=["state", "sent_at"])
        sent += 1
    return sent


def sender_for(name: str) -> str:
    """From: the database's name beside the platform's address."""
    address = settings.DEFAULT_FROM_EMAIL.rsplit("<", 1)[-1].rstrip(">")
    return f"{name} <{address}>"
