"""Records the account's security activity from allauth's and Django's signals."""

from __future__ import annotations

from typing import Any

from allauth.account import signals as account_signals
from allauth.account.authentication import get_authentication_records
from allauth.mfa import signals as mfa_signals
from allauth.mfa.models import Authenticator
from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_out, user_login_failed
from django.dispatch import receiver
from django.http import HttpRequest

from tenantry.accounts.models import SecurityEvent, User

Kind = SecurityEvent.Kind


@receiver(account_signals.user_logged_in)
def on_logged_in(request: HttpRequest, user: User, **kwargs: Any) -> None:
    methods = {r["method"] for r in get_authentication_records(request, user)}
    SecurityEvent.record(user, Kind.SIGNED_IN, request, "with 2FA" if "mfa" in methods else "")


@receiver(user_login_failed)
def on_login_failed(
    credentials: dict[str, Any], request: HttpRequest | None = None, **kw: Any
) -> None:
    email = credentials.get("email") or credentials.get("username") or ""
    user = get_user_model().objects.filter(email__iexact=email).first()
    if user is not None:
        SecurityEvent.record(user, Kind.SIGN_IN_FAILED, request, "wrong password")


@receiver(mfa_signals.authentication_failed)
def on_mfa_failed(request: HttpRequest, user: User, **kwargs: Any) -> None:
    SecurityEvent.record(user, Kind.SIGN_IN_FAILED, request, "wrong 2FA code")


@receiver(user_logged_out)
def on_logged_out(request: HttpRequest, user: User | None, **kwargs: Any) -> None:
    if user is not None:
        SecurityEvent.record(user, Kind.SIGNED_OUT, request)


@receiver(account_signals.password_changed)
@receiver(account_signals.password_set)
def on_password_changed(request: HttpRequest, user: User, **kwargs: Any) -> None:
    SecurityEvent.record(user, Kind.PASSWORD_CHANGED, request)


@receiver(account_signals.password_reset)
def on_password_reset(request: HttpRequest, user: User, **kwargs: Any) -> None:
    SecurityEvent.record(user, Kind.PASSWORD_RESET, request)


@receiver(account_signals.email_changed)
def on_email_changed(request: HttpRequest, user: User, **kwargs: Any) -> None:
    old, new = kwargs.get("from_email_address"), kwargs.get("to_email_address")
    # allauth also calls the first verification after sign-up a change, from nothing.
    if old is not None and new is not None:
        SecurityEvent.record(user, Kind.EMAIL_CHANGED, request, f"{old.email} → {new.email}")


def _authenticator_name(authenticator: Authenticator) -> str:
    return str(Authenticator.Type(authenticator.type).label)


@receiver(mfa_signals.authenticator_added)
def on_authenticator_added(
    request: HttpRequest, user: User, authenticator: Authenticator, **kw: Any
) -> None:
    if authenticator.type != Authenticator.Type.RECOVERY_CODES:
        SecurityEvent.record(user, Kind.MFA_ENABLED, request, _authenticator_name(authenticator))


@receiver(mfa_signals.authenticator_removed)
def on_authenticator_removed(
    request: HttpRequest, user: User, authenticator: Authenticator, **kw: Any
) -> None:
    SecurityEvent.record(user, Kind.MFA_DISABLED, request, _authenticator_name(authenticator))


@receiver(mfa_signals.authenticator_reset)
def on_authenticator_reset(
    request: HttpRequest, user: User, authenticator: Authenticator, **kw: Any
) -> None:
    SecurityEvent.record(
        user, Kind.MFA_CHANGED, request, f"{_authenticator_name(authenticator)} regenerated"
    )
