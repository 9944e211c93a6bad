"""Signing in to a database: its own session on its own host, never valid on another.

A database user signs in with the account password of the linked account (then the
account's 2FA code when it has one), or with a database-specific password. The session keeps
a hash of what it was opened with, so changing that password, or "Log out from all devices"
for the account, ends it.
"""

from __future__ import annotations

from typing import Any

from allauth.core import ratelimit
from allauth.mfa.models import Authenticator
from django.contrib.auth.hashers import check_password, make_password
from django.http import HttpRequest
from django.utils.crypto import constant_time_compare, salted_hmac

from tenantry.accounts.models import User as Account
from tenantry.workspace import models as ws

SESSION_KEY = "workspace"
PENDING_KEY = "workspace_pending"
WRONG = "Wrong login or password."
TOO_MANY = "Too many failed sign-in attempts. Wait a few minutes and try again."
# Second factors the database's sign-in page can ask for (passkeys belong to the portal).
CODE_TYPES = [Authenticator.Type.TOTP, Authenticator.Type.RECOVERY_CODES]


class SignInError(Exception):
    """The sentence to show on the sign-in page."""


def _password_hash(user: ws.User) -> str:
    return salted_hmac("tenantry.workspace.session", user.password, algorithm="sha256").hexdigest()


def _limit_key(request: HttpRequest, login: str) -> str:
    return f"{request.database.pk}:{login.strip().lower()}"  # type: ignore[attr-defined]


def _refuse_if_limited(request: HttpRequest, login: str) -> None:
    key = _limit_key(request, login)
    if not ratelimit.consume(request, action="workspace_login_failed", key=key, dry_run=True):
        raise SignInError(TOO_MANY)


def _failed(request: HttpRequest, login: str, message: str = WRONG) -> SignInError:
    ratelimit.consume(request, action="workspace_login_failed", key=_limit_key(request, login))
    return SignInError(message)


def linked_account(user: ws.User) -> Account | None:
    """The active account the database user is linked to, if any."""
    if user.account_id is None:
        return None
    return Account.objects.filter(pk=user.account_id, is_active=True).first()


def check_credentials(request: HttpRequest, db: str, login: str, password: str) -> bool:
    """Sign in with a login and password. True when done; False when the account's 2FA code
    must follow (see check_code). Raises SignInError with the reason otherwise."""
    _refuse_if_limited(request, login)
    user = ws.User.objects.using(db).filter(login__iexact=login.strip(), is_active=True).first()
    if user is None:
        make_password(password)  # as long as a real check: the timing tells nothing
        raise _failed(request, login)
    if user.password and check_password(password, user.password):
        sign_in(request, user, account=None)
        return True
    account = linked_account(user)
    # The account password is tried in every database the account is in: its failures count
    # across them all, besides this database's own.
    limit = {"action": "workspace_account_failed", "key": str(account.pk) if account else ""}
    if account and not ratelimit.consume(request, dry_run=True, **limit):
        raise SignInError(TOO_MANY)
    if account is None or not account.check_password(password):
        if account:
            ratelimit.consume(request, **limit)
        raise _failed(request, login)
    authenticators = Authenticator.objects.filter(user=account)
    if not authenticators.exists():
        sign_in(request, user, account)
        return True
    if not authenticators.filter(type__in=CODE_TYPES).exists():
        raise _failed(
            request, login,
            "Your account signs in with a passkey. Use Connect in your database manager, "
            "or set a database password in My Preferences.",
        )  # fmt: skip
    request.session[PENDING_KEY] = {
        "db": request.database.pk,  # type: ignore[attr-defined]
        "user": user.pk,
        "account": account.pk,
        "login": login,
    }
    return False


def pending(request: HttpRequest) -> dict[str, Any] | None:
    data = request.session.get(PENDING_KEY)
    if data and data["db"] == request.database.pk:  # type: ignore[attr-defined]
        return data  # type: ignore[no-any-return]
    return None


def check_code(request: HttpRequest, db: str, code: str) -> None:
    """The second step: a code of the account's authenticator app, or a recovery code."""
    data = pending(request)
    if data is None:
        raise SignInError("Start again with your login and password.")
    _refuse_if_limited(request, data["login"])
    account = Account.objects.filter(pk=data["account"], is_active=True).first()
    user = ws.User.objects.using(db).filter(pk=data["user"], is_active=True).first()
    if account is None or user is None:
        raise SignInError("Start again with your login and password.")
    code = code.strip().replace(" ", "")
    for authenticator in Authenticator.objects.filter(user=account, type__in=CODE_TYPES):
        if code and authenticator.wrap().validate_code(code):
            del request.session[PENDING_KEY]
            sign_in(request, user, account)
            return
    raise _failed(request, data["login"], "Wrong code. Try again.")


def sign_in(request: HttpRequest, user: ws.User, account: Account | None) -> None:
    request.session.cycle_key()
    request.session[SESSION_KEY] = {
        "db": request.database.pk,  # type: ignore[attr-defined]
        "user": user.pk,
        "account": account.pk if account else None,
        "hash": account.get_session_auth_hash() if account else _password_hash(user),
    }


def refresh(request: HttpRequest, user: ws.User) -> None:
    """Keep the session of a person who has just changed their own database password."""
    data = request.session.get(SESSION_KEY)
    if data and data["account"] is None:
        request.session[SESSION_KEY] = {**data, "hash": _password_hash(user)}


def current_user(request: HttpRequest, db: str) -> ws.User | None:
    """The signed-in user of this database, if the session is still good for it."""
    data = request.session.get(SESSION_KEY)
    if not data or data.get("db") != request.database.pk:  # type: ignore[attr-defined]
        return None
    user = ws.User.objects.using(db).filter(pk=data["user"], is_active=True).first()
    if user is None:
        return None
    if data["account"] is None:
        good = bool(user.password) and constant_time_compare(data["hash"], _password_hash(user))
    else:
        account = Account.objects.filter(pk=data["account"], is_active=True).first()
        good = (
            account is not None
            and user.account_id == account.pk
            and constant_time_compare(data["hash"], account.get_session_auth_hash())
        )
    return user if good else None


def sign_out(request: HttpRequest) -> None:
    request.session.flush()
