"""Mail written as files, for a machine with no mail server (TENANTRY_EMAIL_URL unset).

Django's file backend writes the MIME source, where quoted-printable cuts a long link in two
(`confirm-emai=` / `l/...`). These files hold what a mail reader would show: the headers a
person reads and the decoded text, one file a mail, and each new path is logged so that
`tenantry serve` prints it.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Sequence
from email.message import EmailMessage as MIMEMessage
from pathlib import Path

from django.core.mail import EmailMessage
from django.core.mail.backends.filebased import EmailBackend
from django.utils import timezone

logger = logging.getLogger(__name__)


class FileBackend(EmailBackend):
    def send_messages(self, email_messages: Sequence[EmailMessage]) -> int:
        for message in email_messages:
            path = self._new_path()
            path.write_text(readable(message.message()), encoding="utf-8")
            logger.info("Mail to %s written to %s", ", ".join(message.recipients()), path)
        return len(email_messages)

    def _new_path(self) -> Path:
        stamp = timezone.localtime().strftime("%Y%m%d-%H%M%S")
        return Path(self.file_path) / f"{stamp}-{secrets.token_hex(3)}.txt"


def readable(message: MIMEMessage) -> str:
    """The headers a person reads, then the plain text decoded, then the attachments' names."""
    lines = [f"{name}: {message[name]}" for name in ("From", "To", "Cc", "Subject", "Date")]
    lines = [line for line in lines if not line.endswith(": None")]
    body = message.get_body(preferencelist=("plain", "html"))
    text = body.get_content() if body is not None else ""
    files = [part.get_filename() for part in message.iter_attachments()]
    if files:
        text += "\n\nAttached: " + ", ".join(str(name) for name in files)
    return "\n".join(lines) + "\n\n" + text.rstrip() + "\n"
