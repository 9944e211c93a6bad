"""Plans, subscriptions and their invoices. No card is processed: the operator marks invoices
paid (`tenantry invoices pay ID`)."""

from __future__ import annotations

import secrets
from datetime import datetime
from decimal import Decimal

from django.conf import settings
from django.db import models
from django.utils import timezone

from tenantry.releases.models import add_months

# Codes are read aloud and typed: no 0/O or 1/I.
CODE_LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"


class Plan(models.Model):
    name = models.CharField(max_length=100, unique=True)
    # Per user: a month, and a year.
    price_month = models.DecimalField(max_digits=10, decimal_places=2)
    price_year = models.DecimalField(max_digits=10, decimal_places=2)
    # Bytes of the linked databases and their filestores, together.
    storage_bytes = models.BigIntegerField()
    max_databases = models.PositiveIntegerField()
    # Inviting past the subscription's number of users adds users to it instead of refusing.
    grows = models.BooleanField(default=False)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def price(self, period: str) -> Decimal:
        return self.price_year if period == Subscription.Period.YEAR else self.price_month


class Subscription(models.Model):
    class State(models.TextChoices):
        TRIAL = "trial", "Trial"
        ACTIVE = "active", "Active"
        PAST_DUE = "past_due", "Past due"
        CANCELLED = "cancelled", "Cancelled"
        EXPIRED = "expired", "Expired"

    class Period(models.TextChoices):
        MONTH = "month", "Monthly"
        YEAR = "year", "Yearly"

    code = models.CharField(max_length=20, unique=True)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, models.CASCADE, related_name="subscriptions"
    )
    plan = models.ForeignKey(Plan, models.PROTECT, related_name="subscriptions")
    period = models.CharField(max_length=10, choices=Period.choices, default=Period.MONTH)
    users = models.PositiveIntegerField(default=1)
    state = models.CharField(max_length=10, choices=State.choices, default=State.ACTIVE)
    created_at = models.DateTimeField(default=timezone.now)
    # The end of the period paid for: the next invoice is issued then.
    renews_at = models.DateTimeField(db_index=True)
    # Cancelled by its owner: it ends at renews_at instead of renewing.
    cancel_at_period_end = models.BooleanField(default=False)

    class Meta:
        ordering = ["code"]

    def __str__(self) -> str:
        return self.code

    @staticmethod
    def new_code(period: str, now: datetime) -> str:
        """M2611-4F7Q: the period's letter, the year and month, four random letters."""
        letters = "".join(secrets.choice(CODE_LETTERS) for _ in range(4))
        return f"{'Y' if period == Subscription.Period.YEAR else 'M'}{now:%y%m}-{letters}"

    def next_renewal(self, after: datetime) -> datetime:
        return add_months(after, 12 if self.period == self.Period.YEAR else 1)

    @property
    def is_live(self) -> bool:
        """Its databases are served: paid, or within the grace period."""
        return self.state in LIVE_STATES


LIVE_STATES = (Subscription.State.TRIAL, Subscription.State.ACTIVE, Subscription.State.PAST_DUE)


class Invoice(models.Model):
    subscription = models.ForeignKey(Subscription, models.CASCADE, related_name="invoices")
    issued_at = models.DateTimeField(default=timezone.now)
    period_start = models.DateTimeField()
    period_end = models.DateTimeField()
    # As they were when it was issued: a later change shows on the next invoice.
    plan_name = models.CharField(max_length=100)
    users = models.PositiveIntegerField()
    unit_price = models.DecimalField(max_digits=10, decimal_places=2)
    amount = models.DecimalField(max_digits=12, decimal_places=2)
    paid_at = models.DateTimeField(null=True, blank=True, db_index=True)

    class Meta:
        ordering = ["-issued_at", "-pk"]

    def __str__(self) -> str:
        return self.number

    @property
    def number(self) -> str:
        return f"INV-{self.pk:06d}"


class Project(models.Model):
    """A partner's trial project: a production database and at most two staging copies of it,
    1 GB in all, until a client's subscription pays for the production database."""

    partner = models.ForeignKey(settings.AUTH_USER_MODEL, models.CASCADE, related_name="projects")
    production = models.OneToOneField(
        "databases.Database", models.SET_NULL, null=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    # The last usage mail sent to the partner: 80 or 100 (% of the limit); 0 below.
    warned_percent = models.PositiveSmallIntegerField(default=0)

    def __str__(self) -> str:
        return f"Trial project {self.production or self.pk}"
