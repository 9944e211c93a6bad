"""A real SMTP server for tests, so mail goes through Django's SMTP backend end to end.

Use the `smtp_mail` fixture: it starts the server and points Django's default mailer at it
for the duration of one test. `smtp_server` alone gives the server without touching settings.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from pytest_django.fixtures import Settings

from tests.postgres import HOST, free_port


def text_body(message: EmailMessage) -> str:
    """The plain-text body, decoded (quoted-printable soft line breaks joined again)."""
    part = message.get_body(preferencelist=("plain",))
    assert part is not None, f"no text/plain part in {message['Subject']!r}"
    return str(part.get_content())


@dataclass(frozen=True)
class Mail:
    """One received message with its envelope recipients (RCPT TO: Bcc included)."""

    recipients: list[str]
    message: EmailMessage

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])

    @property
    def text(self) -> str:
        return text_body(self.message)

    def is_to(self, address: str) -> bool:
        return address.lower() in (r.lower() for r in self.recipients)


class SMTPServer:
    """Collects every message it receives; thread-safe, since aiosmtpd runs in its own thread."""

    def __init__(self) -> None:
        self.messages: list[Mail] = []
        self._received = threading.Condition()
        self.port = free_port()
        self._controller = Controller(self, hostname=HOST, port=self.port)

    # aiosmtpd handler hook: called once per message, after the DATA command.
    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or envelope.content or b""
        if isinstance(content, str):
            content = content.encode()
        message: EmailMessage = message_from_bytes(content, policy=policy.default)  # type: ignore[assignment]
        with self._received:
            self.messages.append(Mail(list(envelope.rcpt_tos), message))
            self._received.notify_all()
        return "250 Message accepted for delivery"

    def start(self) -> None:
        self._controller.start()

    def stop(self) -> None:
        self._controller.stop()

    def messages_to(self, address: str) -> list[Mail]:
        with self._received:
            return [m for m in self.messages if m.is_to(address)]

    def wait_for(self, address: str, timeout: float = 10.0, skip: int = 0) -> Mail:
        """The next message to `address` after the first `skip` ones; fails after `timeout` s."""
        deadline = time.monotonic() + timeout
        with self._received:
            while True:
                found = self.messages_to(address)
                if len(found) > skip:
                    return found[skip]
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    subjects = [(m.recipients, m.subject) for m in self.messages]
                    raise AssertionError(
                        f"no mail to {address} within {timeout} s; received: {subjects}"
                    )
                self._received.wait(remaining)


@pytest.fixture
def smtp_server() -> Iterator[SMTPServer]:
    server = SMTPServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def smtp_mail(smtp_server: SMTPServer, settings: Settings) -> SMTPServer:
    """Django's default mailer sends to `smtp_server` during this test.

    Django's test setup replaces MAILERS with locmem, so this must be set per test.
    """
    options: dict[str, Any] = {"host": HOST, "port": smtp_server.port, "timeout": 10}
    settings.MAILERS = {
        "default": {"BACKEND": "django.core.mail.backends.smtp.EmailBackend", "OPTIONS": options}
    }
    return smtp_server
