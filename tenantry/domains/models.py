"""A database's custom domains, verified through DNS before they are served."""

from __future__ import annotations

import secrets

from django.db import models
from django.utils import timezone


def new_token() -> str:
    return secrets.token_hex(16)


class Domain(models.Model):
    class State(models.TextChoices):
        PENDING = "pending", "Pending"
        VERIFIED = "verified", "Verified"
        FAILED = "failed", "Failed"

    database = models.ForeignKey("databases.Database", models.CASCADE, related_name="domains")
    # In ASCII (IDNA): what DNS and the Host header carry; shown in Unicode (`display`).
    # Several databases may have it pending: the first to verify it wins (the DNS proves who
    # controls it), so nobody holds a name of someone else's by adding it first.
    name = models.CharField(max_length=253, db_index=True)
    # The value of the TXT record `_tenantry-challenge.<name>`: this database's and name's.
    token = models.CharField(max_length=64, default=new_token)
    state = models.CharField(max_length=10, choices=State.choices, default=State.PENDING)
    # Why it is not verified, as a person reads it ("no CNAME record", ...).
    reason = models.CharField(max_length=300, blank=True)
    primary = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now)
    verified_at = models.DateTimeField(null=True, blank=True)
    checked_at = models.DateTimeField(null=True, blank=True)
    checks = models.PositiveIntegerField(default=0)  # checks while pending: the backoff's
    next_check_at = models.DateTimeField(default=timezone.now, db_index=True)
    # The CNAME target it was last verified by: a rename's former name stays good for it.
    target = models.CharField(max_length=253, blank=True)
    # A verified domain whose records are gone: since when (served again if they come back).
    lost_since = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["database", "name"], name="domain_once_a_database"),
            models.UniqueConstraint(
                fields=["name"], condition=models.Q(state="verified"), name="domain_verified_once"
            ),
        ]

    def __str__(self) -> str:
        return self.display

    @property
    def display(self) -> str:
        try:
            return self.name.encode().decode("idna")
        except UnicodeError:
            return self.name
