"""The account: a person's central identity, their API keys and their security activity."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser, BaseUserManager
from django.contrib.auth.models import PermissionsMixin
from django.db import models
from django.db.models import F
from django.http import HttpRequest
from django.utils import timezone
from django.utils.crypto import salted_hmac


class UserManager(BaseUserManager["User"]):
    def create_user(self, email: str, password: str | None = None, **fields: object) -> User:
        user = self.model(email=self.normalize_email(email).lower(), **fields)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_superuser(self, email: str, password: str | None = None, **fields: object) -> User:
        fields.update(is_staff=True, is_superuser=True)
        return self.create_user(email, password, **fields)


class User(AbstractBaseUser, PermissionsMixin):
    """An account. The email is the sign-in identifier and is unique."""

    email = models.EmailField(unique=True)
    name = models.CharField(max_length=150, blank=True)
    company = models.CharField(max_length=150, blank=True)
    phone = models.CharField(max_length=40, blank=True)
    country = models.CharField(max_length=80, blank=True)
    developer_mode = models.BooleanField(default=False)
    # A partner's code (`tenantry partners add`): it starts trial projects (billing.projects).
    partner_code = models.CharField(max_length=20, blank=True)
    # Bumped by "Log out from all devices": it is part of the session hash, so every
    # session stamped with an older epoch stops authenticating, wherever it is stored.
    session_epoch = models.PositiveIntegerField(default=0)
    # Invitation mails sent on that day (UTC): limited a day, counted with one atomic update.
    invitations_day = models.DateField(null=True, blank=True)
    invitations_sent = models.PositiveIntegerField(default=0)
    is_active = models.BooleanField(default=True)
    is_staff = models.BooleanField(default=False)
    date_joined = models.DateTimeField(default=timezone.now)

    objects = UserManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS = []

    def __str__(self) -> str:
        return self.email

    def get_full_name(self) -> str:
        return self.name or self.email

    def get_short_name(self) -> str:
        return self.name.split(" ")[0] if self.name else self.email

    def get_session_auth_hash(self) -> str:
        return self._session_hash()

    def get_session_auth_fallback_hash(self):  # type: ignore[no-untyped-def]
        for secret in settings.SECRET_KEY_FALLBACKS:
            yield self._session_hash(secret)

    def _session_hash(self, secret: str | None = None) -> str:
        # Django logs out a session whose stored hash no longer matches: changing the
        # password or the epoch therefore ends every session that was not re-stamped.
        value = f"{self.password}:{self.session_epoch}"
        salt = "tenantry.accounts.User.get_session_auth_hash"
        return salted_hmac(salt, value, secret=secret, algorithm="sha256").hexdigest()

    def spend_invitations(self, count: int, limit: int) -> bool:
        """Count `count` invitation mails against today's `limit`; False (and nothing counted)
        when they do not fit. One conditional update: parallel requests cannot both fit."""
        today = timezone.now().date()
        User.objects.filter(pk=self.pk).exclude(invitations_day=today).update(
            invitations_day=today, invitations_sent=0
        )
        fits = User.objects.filter(
            pk=self.pk, invitations_day=today, invitations_sent__lte=limit - count
        )
        return fits.update(invitations_sent=F("invitations_sent") + count) == 1

    def invitations_left(self, limit: int) -> int:
        self.refresh_from_db(fields=["invitations_day", "invitations_sent"])
        sent = self.invitations_sent if self.invitations_day == timezone.now().date() else 0
        return max(limit - sent, 0)

    def bump_session_epoch(self) -> None:
        User.objects.filter(pk=self.pk).update(session_epoch=F("session_epoch") + 1)
        self.refresh_from_db(fields=["session_epoch"])

    @property
    def has_2fa(self) -> bool:
        from allauth.mfa.utils import is_mfa_enabled

        return is_mfa_enabled(self)

    def deletion_refusals(self) -> list[str]:
        """Why this account may not be deleted now: one sentence per reason, empty if it may."""
        return [reason for check in DELETION_CHECKS if (reason := check(self))]


# Rules that refuse an account deletion, each returning a sentence or None. Other apps add
# theirs in AppConfig.ready() (the databases app: "sole administrator of a live database").
DELETION_CHECKS: list[Callable[[User], str | None]] = []


KEY_PREFIX = "tnt_"


def hash_key(raw: str) -> str:
    # A key is 256 random bits, so a fast unsalted hash is enough: nothing to brute-force.
    return hashlib.sha256(raw.encode()).hexdigest()


class ApiKeyManager(models.Manager["ApiKey"]):
    def issue(
        self,
        user: User,
        name: str,
        expires_at: datetime | None = None,
        request: HttpRequest | None = None,
    ) -> tuple[ApiKey, str]:
        """Create a key and return it with its secret, which is never stored nor shown again.

        The account is told by email, so a key made behind its owner's back does not go unseen.
        """
        from allauth.account.adapter import get_adapter

        raw = KEY_PREFIX + secrets.token_urlsafe(32)
        key = self.create(
            user=user, name=name, key_hash=hash_key(raw), last_four=raw[-4:], expires_at=expires_at
        )
        SecurityEvent.record(user, SecurityEvent.Kind.KEY_CREATED, request, detail=name)
        get_adapter(request).send_mail(
            "account/email/api_key_created", user.email, {"user": user, "key": key}
        )
        return key, raw

    def authenticate(self, raw: str) -> ApiKey | None:
        """The live key matching `raw`, for an active account in developer mode, or None."""
        if not raw.startswith(KEY_PREFIX):
            return None
        key = (
            self.select_related("user")
            .filter(key_hash=hash_key(raw), revoked_at=None, user__is_active=True)
            .first()
        )
        if key is None or key.is_expired or not key.user.developer_mode:
            return None
        now = timezone.now()
        # One write a minute at most: last-used is for people, not an access log.
        if key.last_used_at is None or now - key.last_used_at > timedelta(minutes=1):
            ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
            key.last_used_at = now
        return key


class ApiKey(models.Model):
    user = models.ForeignKey(User, models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100)
    key_hash = models.CharField(max_length=64, unique=True)
    last_four = models.CharField(max_length=4)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = ApiKeyManager()

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.masked})"

    @property
    def masked(self) -> str:
        return f"{KEY_PREFIX}…{self.last_four}"

    @property
    def is_expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= timezone.now()

    @property
    def is_live(self) -> bool:
        return self.revoked_at is None and not self.is_expired

    def revoke(self) -> None:
        if self.revoked_at is None:
            self.revoked_at = timezone.now()
            self.save(update_fields=["revoked_at"])


class SecurityEvent(models.Model):
    """A line of the account's recent security activity."""

    class Kind(models.TextChoices):
        SIGNED_IN = "signed_in", "Signed in"
        SIGN_IN_FAILED = "sign_in_failed", "Failed sign-in"
        SIGNED_OUT = "signed_out", "Signed out"
        PASSWORD_CHANGED = "password_changed", "Password changed"
        PASSWORD_RESET = "password_reset", "Password reset"
        EMAIL_CHANGED = "email_changed", "Email changed"
        MFA_ENABLED = "mfa_enabled", "Two-factor authentication enabled"
        MFA_DISABLED = "mfa_disabled", "Two-factor authentication disabled"
        MFA_CHANGED = "mfa_changed", "Two-factor authentication changed"
        KEY_CREATED = "key_created", "API key created"
        KEY_REVOKED = "key_revoked", "API key revoked"
        LOGGED_OUT_ALL = "logged_out_all", "Logged out from all devices"
        DEVELOPER_MODE = "developer_mode", "Developer mode changed"

    user = models.ForeignKey(User, models.CASCADE, related_name="security_events")
    kind = models.CharField(max_length=32, choices=Kind.choices)
    detail = models.CharField(max_length=200, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        kind = self.get_kind_display()
        return f"{kind}: {self.detail}" if self.detail else kind

    @classmethod
    def record(
        cls, user: User, kind: str, request: HttpRequest | None = None, detail: str = ""
    ) -> SecurityEvent:
        ip, agent = None, ""
        if request is not None:
            from allauth.account.adapter import get_adapter

            ip = get_adapter().get_client_ip(request)
            agent = request.META.get("HTTP_USER_AGENT", "")[:300]
        return cls.objects.create(user=user, kind=kind, detail=detail, ip=ip, user_agent=agent)
