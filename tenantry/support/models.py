"""Support requests: a customer's question, the database it is about (its details as they were
when it was asked), and the conversation with Tenantry's staff."""

from __future__ import annotations

import secrets
from pathlib import PurePosixPath
from typing import Any

from django.conf import settings
from django.core.files.storage import storages
from django.db import models
from django.db.models.signals import post_delete
from django.dispatch import receiver
from django.utils import timezone


class Ticket(models.Model):
    class Category(models.TextChoices):
        TECHNICAL = "technical", "Technical"
        BILLING = "billing", "Billing"
        ACCOUNT = "account", "Account"
        OTHER = "other", "Other"

    class State(models.TextChoices):
        OPEN = "open", "Open"  # waiting for support
        ANSWERED = "answered", "Answered"  # waiting for the customer
        CLOSED = "closed", "Closed"

    account = models.ForeignKey(
        settings.AUTH_USER_MODEL, models.CASCADE, related_name="support_requests"
    )
    # Kept when the database is deleted: its details say what it was.
    database = models.ForeignKey(
        "databases.Database", models.SET_NULL, null=True, blank=True, related_name="+"
    )
    # Read from the database's record when the request was saved, never from the form.
    details = models.JSONField(default=dict, blank=True)
    subject = models.CharField(max_length=200)
    category = models.CharField(max_length=10, choices=Category.choices)
    state = models.CharField(max_length=10, choices=State.choices, default=State.OPEN)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-updated_at", "-id"]
        indexes = [models.Index(fields=["state", "category"])]

    def __str__(self) -> str:
        return f"#{self.pk} {self.subject}"

    @property
    def number(self) -> str:
        return f"#{self.pk}"


class Message(models.Model):
    ticket = models.ForeignKey(Ticket, models.CASCADE, related_name="messages")
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, models.SET_NULL, null=True, blank=True, related_name="+"
    )
    by_staff = models.BooleanField(default=False)
    body = models.TextField()
    created_at = models.DateTimeField(default=timezone.now)
    # Its mails: sent (or being sent) since; else when the sweep sends them again, if a try
    # failed (the mail server down) or the task that sends them was lost.
    mailed_at = models.DateTimeField(null=True, blank=True)
    mail_due_at = models.DateTimeField(null=True, blank=True, db_index=True)
    mail_tries = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.ticket.number}, {self.created_at:%Y-%m-%d %H:%M}"


def _stored_name(attachment: Attachment, filename: str) -> str:
    """A name of ours: the customer's name is only shown, never used as a path."""
    suffix = PurePosixPath(attachment.name).suffix.lower()[:16]
    return f"{timezone.now():%Y/%m}/{secrets.token_hex(16)}{suffix if suffix.isascii() else ''}"


def _storage() -> Any:
    return storages["support"]


class Attachment(models.Model):
    message = models.ForeignKey(Message, models.CASCADE, related_name="attachments")
    file = models.FileField(upload_to=_stored_name, storage=_storage, max_length=200)
    name = models.CharField(max_length=255)  # as the customer named it, without any folder
    size = models.PositiveBigIntegerField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.name


@receiver(post_delete, sender=Attachment)
def remove_file(sender: Any, instance: Attachment, **kwargs: Any) -> None:
    """A request goes with its account (deleted): its files with it."""
    instance.file.delete(save=False)
