"""Signing in to a database: its own session on its own host, never valid on another.

A database user signs in with the account password of the linked account or with a
database-specific password, then, either way, the account's 2FA code when it has one. The
session keeps a hash of the password it was opened with, so changing that password, or "Log
out from all devices" for the account, ends it.

Failures are counted per login (and per account) *and* client address, so guesses from
elsewhere never lock the owner out (see accounts.lockout).
"""

from __future__ import annotations

from typing import Any

from allauth.core import ratelimit
from allauth.mfa.models import Authenticator
from django.contrib.auth.hashers import check_password, make_password
from django.http import HttpRequest
from django.utils.crypto import constant_time_compare, salted_hmac

from tenantry.accounts import lockout
from tenantry.accounts.models import User as Account
from tenantry.workspace import models as ws

SESSION_KEY = "workspace"
PENDING_KEY = "workspace_pending"
WRONG = "Wrong login or password."
PASSKEY_ONLY = "Your account signs in with a passkey. Use Connect in your database manager."
# Second factors the database's sign-in page can ask for (passkeys belong to the portal).
CODE_TYPES = [Authenticator.Type.TOTP, Authenticator.Type.RECOVERY_CODES]


class SignInError(Exception):
    """The sentence to show on the sign-in page."""


def _password_hash(user: ws.User) -> str:
    return salted_hmac("tenantry.workspace.session", user.password, algorithm="sha256").hexdigest()


def _limit_key(request: HttpRequest, login: str) -> str:
    return lockout.key(request, request.database.pk, login.strip().lower())  # type: ignore[attr-defined]


def _refuse_if_limited(request: HttpRequest, action: str, key: str) -> None:
    if not ratelimit.consume(request, action=action, key=key, dry_run=True):
        raise SignInError(lockout.refusal(request, action, key=key))


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
    _refuse_if_limited(request, "workspace_login_failed", _limit_key(request, login))
    user = ws.User.objects.using(db).filter(login__iexact=login.strip(), is_active=True).first()
    if user is None:
        make_password(password)  # as long as a real check: the timing tells nothing
        raise _failed(request, login)
    account = linked_account(user)
    if user.password and check_password(password, user.password):
        # A database password is no way around the account's second factor.
        return _second_factor(request, user, account, login, by_database_password=True)
    if account is None:
        raise _failed(request, login)
    # The account password is tried in every database the account is in: its failures from
    # this address count across them all, besides this database's own.
    account_key = lockout.key(request, account.pk)
    _refuse_if_limited(request, "workspace_account_failed", account_key)
    if not account.check_password(password):
        ratelimit.consume(request, action="workspace_account_failed", key=account_key)
        raise _failed(request, login)
    return _second_factor(request, user, account, login, by_database_password=False)


def confirm_password(request: HttpRequest, user: ws.User, password: str) -> None:
    """The signed-in user's current password again (before their database password changes):
    their database password or their account's. Its failures count as the sign-in's do, so a
    session (one opened with a database password someone shared) is no way to guess the
    account's password without limit. Raises SignInError with the reason."""
    _refuse_if_limited(request, "workspace_login_failed", _limit_key(request, user.login))
    if user.password and check_password(password, user.password):
        return
    account = linked_account(user)
    if account is not None:
        account_key = lockout.key(request, account.pk)
        _refuse_if_limited(request, "workspace_account_failed", account_key)
        if account.check_password(password):
            return
        ratelimit.consume(request, action="workspace_account_failed", key=account_key)
    raise _failed(request, user.login, "This is not your current password.")


def _second_factor(
    request: HttpRequest,
    user: ws.User,
    account: Account | None,
    login: str,
    *,
    by_database_password: bool,
) -> bool:
    """After the right password: sign in, or ask for the account's code (False)."""
    # The session of a database password is tied to that password, not to the account.
    session_account = None if by_database_password else account
    if account is None or not Authenticator.objects.filter(user=account).exists():
        sign_in(request, user, session_account)
        return True
    if not Authenticator.objects.filter(user=account, type__in=CODE_TYPES).exists():
        # Counted as a failure: no unlimited tries to learn which password is right.
        raise _failed(request, login, PASSKEY_ONLY)
    request.session[PENDING_KEY] = {
        "db": request.database.pk,  # type: ignore[attr-defined]
        "host": request.get_host(),  # a sign-in begun on one host finishes there (see sign_in)
        "user": user.pk,
        "account": account.pk,
        "login": login,
        # The database password it was opened with, if any: changed meanwhile, start again.
        "hash": _password_hash(user) if by_database_password else None,
    }
    return False


def pending(request: HttpRequest) -> dict[str, Any] | None:
    data = request.session.get(PENDING_KEY)
    host = request.get_host()
    if data and data["db"] == request.database.pk and data.get("host", host) == host:  # type: ignore[attr-defined]
        return data  # type: ignore[no-any-return]
    return None


def check_code(request: HttpRequest, db: str, code: str) -> None:
    """The second step: a code of the account's authenticator app, or a recovery code."""
    data = pending(request)
    if data is None:
        raise SignInError("Start again with your login and password.")
    _refuse_if_limited(request, "workspace_login_failed", _limit_key(request, data["login"]))
    account = Account.objects.filter(pk=data["account"], is_active=True).first()
    user = ws.User.objects.using(db).filter(pk=data["user"], is_active=True).first()
    by_database_password = data.get("hash") is not None
    if (
        account is None
        or user is None
        or (by_database_password and not constant_time_compare(data["hash"], _password_hash(user)))
    ):
        raise SignInError("Start again with your login and password.")
    code = code.strip().replace(" ", "")
    for authenticator in Authenticator.objects.filter(user=account, type__in=CODE_TYPES):
        if code and authenticator.wrap().validate_code(code):
            del request.session[PENDING_KEY]
            sign_in(request, user, None if by_database_password else account)
            return
    raise _failed(request, data["login"], "Wrong code. Try again.")


def sign_in(request: HttpRequest, user: ws.User, account: Account | None) -> None:
    request.session.cycle_key()
    request.session[SESSION_KEY] = {
        "db": request.database.pk,  # type: ignore[attr-defined]
        # A database's hosts (`<name>.<base domain>`, its custom domains) each have their own
        # sessions: a session carried to another host is not valid there.
        "host": request.get_host(),
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
    if data.get("host", request.get_host()) != request.get_host():  # sessions before hosts: good
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
