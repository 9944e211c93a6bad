"""The workspace app's models. They live in each tenant database, never in the control plane.

Each release of the app is a point in these migrations (see releases.py).
"""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class Settings(models.Model):
    """One row: who this database is."""

    uuid = models.UUIDField()
    created_at = models.DateTimeField(default=timezone.now)
    is_test_copy = models.BooleanField(default=False)
    expires_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "workspace_settings"


class User(models.Model):
    login = models.CharField(max_length=254, unique=True)
    name = models.CharField(max_length=150, blank=True)
    contact_email = models.EmailField(blank=True)
    # Optional: the account password of the linked account works beside it.
    password = models.CharField(max_length=200, blank=True)
    account_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    is_admin = models.BooleanField(default=False)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "workspace_user"

    def __str__(self) -> str:
        return self.login


class Company(models.Model):
    """Since release 2.0 (in 1.1, a contact's company was free text)."""

    name = models.CharField(max_length=200, unique=True)
    domain = models.CharField(max_length=253, blank=True)  # since release 2.1
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "workspace_company"
        ordering = ["name", "id"]

    def __str__(self) -> str:
        return self.name


class Contact(models.Model):
    name = models.CharField(max_length=200)
    email = models.EmailField(blank=True)
    phone = models.CharField(max_length=40, blank=True)
    # Since release 2.0; in 1.1 a text field of the same name (see releases.model).
    company = models.ForeignKey(
        Company, models.SET_NULL, null=True, blank=True, related_name="contacts"
    )
    notes = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "workspace_contact"
        ordering = ["name", "id"]

    def __str__(self) -> str:
        return self.name


class Attachment(models.Model):
    """A file in the database's filestore, addressed by the SHA-256 of its content."""

    name = models.CharField(max_length=255)
    sha256 = models.CharField(max_length=64, db_index=True)
    size = models.BigIntegerField()
    mimetype = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "workspace_attachment"


class Mail(models.Model):
    class State(models.TextChoices):
        QUEUED = "queued"
        SENT = "sent"
        HELD = "held"  # a neutralized database keeps its mail

    to = models.CharField(max_length=500)
    subject = models.CharField(max_length=300)
    body = models.TextField()
    state = models.CharField(max_length=10, choices=State.choices, default=State.QUEUED)
    created_at = models.DateTimeField(default=timezone.now)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "workspace_mail"


class MailServer(models.Model):
    """Outgoing mail switch: neutralization turns it off."""

    active = models.BooleanField(default=True)

    class Meta:
        db_table = "workspace_mail_server"


class PaymentProvider(models.Model):
    class State(models.TextChoices):
        ENABLED = "enabled"
        TEST = "test"
        DISABLED = "disabled"

    name = models.CharField(max_length=100)
    state = models.CharField(max_length=10, choices=State.choices, default=State.DISABLED)

    class Meta:
        db_table = "workspace_payment_provider"


class DeliveryCarrier(models.Model):
    name = models.CharField(max_length=100)
    production = models.BooleanField(default=False)

    class Meta:
        db_table = "workspace_delivery_carrier"


class ScheduledJob(models.Model):
    name = models.CharField(max_length=100, unique=True)
    active = models.BooleanField(default=True)
    interval_minutes = models.PositiveIntegerField(default=60)
    next_run_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "workspace_scheduled_job"
