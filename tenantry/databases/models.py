"""Databases (the records of the tenant plane) and who may reach them."""

from __future__ import annotations

import math
import re
import secrets
import uuid
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.dispatch import Signal
from django.utils import timezone

from tenantry.accounts.models import User, hash_key

COPY_LIFETIME = timedelta(days=15)
MAX_LIVE_COPIES = 5
RESERVED_NAMES = {
    "www", "api", "admin", "mail", "smtp", "imap", "pop", "ftp", "portal", "app", "static",
    "media", "support", "help", "status", "docs", "blog", "accounts", "account", "login",
    "auth", "billing", "cdn", "ns1", "ns2", "localhost", "tenantry", "test", "dev",
}  # fmt: skip
NAME_CHARS = re.compile(r"^[a-z0-9-]+$")


def normalize_name(typed: str) -> str:
    """The name a typed name makes: trimmed and lowercase (a host name has no case). The API and
    the CLI take it so and answer with the name made; the portal shows it before using it."""
    return typed.strip().lower()


def validate_name(name: str) -> None:
    """The rules of a DNS label, one clear sentence for each broken rule."""
    if not 3 <= len(name) <= 63:
        raise ValidationError("A database name has 3 to 63 characters.")
    if not NAME_CHARS.match(name):
        raise ValidationError(
            "A database name may only contain lowercase letters, digits and hyphens."
        )
    if name.startswith("-") or name.endswith("-"):
        raise ValidationError("A database name cannot start or end with a hyphen.")
    if name[2:4] == "--":  # "xn--": punycode, which browsers show as look-alike letters
        raise ValidationError(
            "A database name cannot have hyphens in third and fourth place "
            "(“xn--” and the like are kept for internationalized names)."
        )
    if name in RESERVED_NAMES:
        raise ValidationError(f"The name “{name}” is reserved. Choose another one.")
    if Database.objects.filter(name=name).exists():
        raise taken(name)


def taken(name: str) -> ValidationError:
    return ValidationError(f"The name “{name}” is already taken. Choose another one.", code="taken")


# Sent with the names of the databases an update() changed (and the new name, if it sets one),
# as saving and deleting send post_save and post_delete: whoever keeps something by name (the
# gateway's cache) listens, so no update anywhere can leave it stale.
updated = Signal()


class DatabaseQuerySet(models.QuerySet["Database"]):
    def for_account(self, user: User) -> DatabaseQuerySet:
        """The databases the account may see: those it is a member of."""
        return self.filter(memberships__user=user).exclude(name=None)

    def update(self, **kwargs: Any) -> int:
        names = [name for name in self.values_list("name", flat=True) if name]
        count = super().update(**kwargs)
        updated.send(Database, names=[*names, kwargs.get("name")])
        return count


class Database(models.Model):
    class Status(models.TextChoices):
        CREATING = "creating", "Being created"
        ACTIVE = "active", "Active"
        DELETING = "deleting", "Being deleted"

    class Engine(models.TextChoices):
        SQLITE = "sqlite", "SQLite"
        POSTGRESQL = "postgresql", "PostgreSQL"

    # None once deletion starts: the name is free again at once.
    name = models.CharField(max_length=63, null=True, unique=True)  # noqa: DJ001
    # Stable for the database's life: a rename never moves data.
    physical_name = models.CharField(max_length=40, unique=True)
    uuid = models.UUIDField(default=uuid.uuid4)
    engine = models.CharField(max_length=20, choices=Engine.choices)
    server = models.ForeignKey(
        "engines.Server", models.PROTECT, null=True, blank=True, related_name="databases"
    )
    release = models.CharField(max_length=20)
    status = models.CharField(
        max_length=20, choices=Status.choices, default=Status.CREATING, db_index=True
    )
    source = models.ForeignKey(
        "self", models.SET_NULL, null=True, blank=True, related_name="copies"
    )
    is_test_copy = models.BooleanField(default=False)
    # A copy's end (15 days), or a trial's, while no subscription pays for the database.
    expires_at = models.DateTimeField(null=True, blank=True, db_index=True)
    expiry_warned_at = models.DateTimeField(null=True, blank=True)
    # Set by the sweep once expires_at has passed (by the sweep's clock, which `tenantry sweep
    # --at` moves), or when its subscription ends; cleared when a live subscription takes it.
    expired = models.BooleanField(default=False)
    # The last trial reminder sent (7, then 1 day before).
    trial_reminded_days = models.PositiveSmallIntegerField(null=True, blank=True)
    # A subscribed database cannot be deleted.
    subscription = models.ForeignKey(
        "billing.Subscription", models.SET_NULL, null=True, blank=True, related_name="databases"
    )
    # The verified custom domain its other hosts redirect to (domains.verbs.make_primary).
    primary_domain = models.CharField(max_length=253, blank=True)
    # A partner's trial project it belongs to (its production or a staging copy).
    project = models.ForeignKey(
        "billing.Project", models.SET_NULL, null=True, blank=True, related_name="databases"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, models.SET_NULL, null=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    size_bytes = models.BigIntegerField(default=0)
    # An automatic upgrade failed then: the sweep tries no other until support lifts this.
    upgrade_failed_at = models.DateTimeField(null=True, blank=True)
    # The upgrade reminders sent: for which major release, and the last (30, 7 or 1 days).
    reminded_for = models.CharField(max_length=20, blank=True)
    reminded_days = models.PositiveSmallIntegerField(null=True, blank=True)

    objects = DatabaseQuerySet.as_manager()
    loaded_name: str | None = None

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name or f"(deleted {self.physical_name})"

    @classmethod
    def from_db(cls, *args: Any, **kwargs: Any) -> Database:
        database = super().from_db(*args, **kwargs)
        database.loaded_name = database.__dict__.get("name")  # the gateway forgets it on a rename
        return database

    @property
    def url(self) -> str:
        portal = urlsplit(settings.PORTAL_URL)
        port = f":{portal.port}" if portal.port else ""
        return f"{portal.scheme}://{self.name}.{settings.BASE_DOMAIN}{port}"

    @property
    def is_expired(self) -> bool:
        return self.expired_at(timezone.now())

    def expired_at(self, now: datetime) -> bool:
        """Expired by then (the sweep asks with its own clock)."""
        return self.expired or (self.expires_at is not None and self.expires_at <= now)

    @property
    def is_trial(self) -> bool:
        """A database of its own (not a copy) that no subscription pays for yet."""
        return self.source_id is None and self.subscription_id is None and bool(self.expires_at)  # type: ignore[attr-defined]

    @property
    def trial_days_left(self) -> int | None:
        if not self.is_trial:
            return None
        assert self.expires_at is not None
        left = (self.expires_at - timezone.now()).total_seconds()
        return max(0, math.ceil(left / 86400))

    @property
    def subscription_code(self) -> str:
        return self.subscription.code if self.subscription_id else ""  # type: ignore[attr-defined, union-attr]

    @property
    def status_label(self) -> str:
        if self.status != self.Status.ACTIVE:
            return self.get_status_display()
        if self.is_expired:
            return "Expired"
        if (days := self.trial_days_left) is not None:
            return f"Trial: {days} day{'' if days == 1 else 's'} left"
        if self.expires_at:
            kind = "Test copy" if self.is_test_copy else "Copy"
            return f"{kind} until {self.expires_at:%Y-%m-%d}"
        return "Active"

    def role_of(self, user: User) -> str | None:
        membership = self.memberships.filter(user=user).first()  # type: ignore[attr-defined]
        return membership.role if membership else None

    def expiry_refusal(self) -> str | None:
        """An expired database may only be downloaded, backed up and linked to a subscription:
        every other action is refused with this sentence, which says how to bring it back."""
        if not self.is_expired:
            return None
        if self.source_id is not None:  # type: ignore[attr-defined]
            then = "Contact support to bring it back."
        elif self.subscription_id is not None:  # type: ignore[attr-defined]
            then = (
                "Pay its subscription's invoices, or link it to a live subscription, to bring "
                "it back."
            )
        else:
            then = "Its trial has ended: link it to a subscription to bring it back."
        return f"“{self.name}” has expired: it can only be downloaded or backed up. {then}"

    def refuse_if_expired(self) -> None:
        if refusal := self.expiry_refusal():
            raise ValidationError(refusal, code="expired")

    def deletion_refusal(self) -> str | None:
        if refusal := self.expiry_refusal():
            return refusal
        if self.subscription_code:
            return (
                f"“{self.name}” is linked to the subscription {self.subscription_code}, which "
                "pays for it: a database a subscription pays for cannot be deleted. Unlink it "
                "first (My subscriptions)."
            )
        return None

    def live_copies(self) -> models.QuerySet[Database]:
        return self.copies.exclude(status=self.Status.DELETING)  # type: ignore[attr-defined, no-any-return]


class Membership(models.Model):
    class Role(models.TextChoices):
        ADMIN = "admin", "Administrator"
        USER = "user", "User"

    database = models.ForeignKey(Database, models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.USER)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["database", "user"], name="one_membership_per_user")
        ]

    def __str__(self) -> str:
        return f"{self.user} in {self.database} ({self.role})"


def sole_admin_refusal(user: User) -> str | None:
    """Refuses an account deletion while it is the only administrator of a live database."""
    admins = Membership.objects.filter(role=Membership.Role.ADMIN, database__name__isnull=False)
    mine = admins.filter(user=user).values_list("database_id", flat=True)
    alone = (
        Database.objects.filter(pk__in=mine)
        .exclude(Q(pk__in=admins.exclude(user=user).values("database_id")))
        .values_list("name", flat=True)
    )
    names = [n for n in alone if n]
    if names:
        return (
            "You are the only administrator of "
            + ", ".join(f"“{n}”" for n in names)
            + ". Delete these databases or make someone else an administrator first."
        )
    return None


CONNECT_TOKEN_LIFETIME = timedelta(seconds=60)


class ConnectToken(models.Model):
    """Opens a database signed in as the account's user there: single-use, short-lived, and
    only its hash is kept."""

    database = models.ForeignKey(Database, models.CASCADE, related_name="+")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, models.CASCADE, related_name="+")
    token_hash = models.CharField(max_length=64, unique=True)
    expires_at = models.DateTimeField(db_index=True)

    def __str__(self) -> str:
        return f"Connect token for {self.user_id} to {self.database_id}"

    @classmethod
    def issue(cls, database: Database, user: User) -> str:
        token = secrets.token_urlsafe(32)
        cls.objects.filter(expires_at__lte=timezone.now()).delete()
        cls.objects.create(
            database=database, user=user, token_hash=hash_key(token),
            expires_at=timezone.now() + CONNECT_TOKEN_LIFETIME,
        )  # fmt: skip
        return token

    @classmethod
    def redeem(cls, database: Database, token: str) -> User | None:
        """The account the token was issued to, once: a second use finds nothing."""
        found = cls.objects.filter(
            token_hash=hash_key(token), database=database, expires_at__gt=timezone.now()
        ).first()
        if found is None or cls.objects.filter(pk=found.pk).delete()[0] != 1:
            return None
        if not Membership.objects.filter(database=database, user=found.user_id).exists():
            return None
        return found.user  # type: ignore[no-any-return]


INVITATION_LIFETIME = timedelta(days=7)


class Invitation(models.Model):
    """An email invited to a database with a role; its link works once, for 7 days."""

    database = models.ForeignKey(Database, models.CASCADE, related_name="invitations")
    email = models.EmailField()
    role = models.CharField(max_length=10, choices=Membership.Role.choices)
    token_hash = models.CharField(max_length=64, unique=True)
    invited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, models.SET_NULL, null=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(db_index=True)
    accepted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["email"]

    def __str__(self) -> str:
        return f"{self.email} to {self.database} ({self.role})"

    @property
    def is_expired(self) -> bool:
        return self.expires_at <= timezone.now()

    def new_token(self) -> str:
        """A fresh link (the previous one stops working) valid for another 7 days."""
        token = secrets.token_urlsafe(32)
        self.token_hash = hash_key(token)
        self.expires_at = timezone.now() + INVITATION_LIFETIME
        return token

    @classmethod
    def find(cls, token: str) -> Invitation | None:
        return cls.objects.select_related("database").filter(token_hash=hash_key(token)).first()


class Activity(models.Model):
    """One action on a database: who, what, when, from where, and how it ended. Kept after the
    database is deleted (its name and uuid are in the entry), for its owner and operators."""

    class Kind(models.TextChoices):
        CREATE = "create", "Created"
        RENAME = "rename", "Renamed"
        DUPLICATE = "duplicate", "Duplicated"
        DELETE = "delete", "Deleted"
        MOVE = "move", "Moved"
        RESTORE = "restore", "Restored"
        DOWNLOAD = "download", "Downloaded"
        BACKUP = "backup", "Backed up"
        INVITE = "invite", "Invited"
        ACCEPT = "accept", "Joined"
        REMOVE = "remove", "Removed users"
        ROLE = "role", "Changed roles"
        UPGRADE = "upgrade", "Upgraded"
        SUBSCRIPTION = "subscription", "Subscription"
        DOMAIN = "domain", "Domain"
        LOGIN = "login", "Changed a login"
        EXPIRY = "expiry", "Extended"

    class Channel(models.TextChoices):
        PORTAL = "portal", "Portal"
        API = "api", "API"
        CLI = "cli", "CLI"
        SWEEP = "sweep", "Sweep"
        SUPPORT = "support", "Support desk"

    class Result(models.TextChoices):
        DONE = "done", "Done"
        STARTED = "started", "Started"
        REFUSED = "refused", "Refused"
        FAILED = "failed", "Failed"

    database = models.ForeignKey(
        Database, models.SET_NULL, null=True, blank=True, related_name="activity"
    )
    database_name = models.CharField(max_length=63)
    database_uuid = models.UUIDField()
    # The database's owner (its creator) when it happened: who still sees it once deleted.
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, models.SET_NULL, null=True, blank=True, related_name="+"
    )
    account = models.ForeignKey(
        settings.AUTH_USER_MODEL, models.SET_NULL, null=True, blank=True, related_name="+"
    )
    # The account's email then, "Tenantry", or "support" (a staff member at the support desk,
    # who is `account`).
    actor = models.CharField(max_length=254)
    kind = models.CharField(max_length=20, choices=Kind.choices)
    detail = models.CharField(max_length=500, blank=True)
    channel = models.CharField(max_length=10, choices=Channel.choices)
    ip = models.GenericIPAddressField(null=True, blank=True)
    result = models.CharField(max_length=10, choices=Result.choices)
    reason = models.TextField(blank=True)  # the refusal's sentence, or the failure's
    operation = models.ForeignKey(
        "operations.Operation", models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "activity"

    def __str__(self) -> str:
        return f"{self.actor}: {self.get_kind_display()} {self.database_name} ({self.result})"
