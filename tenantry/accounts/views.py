from __future__ import annotations

import secrets
import time

from allauth.account.adapter import get_adapter
from allauth.account.decorators import reauthentication_required
from allauth.account.models import EmailAddress
from allauth.mfa.models import Authenticator
from allauth.usersessions.internal.flows.sessions import end_other_sessions
from allauth.usersessions.models import UserSession
from django.contrib import messages
from django.contrib.auth import update_session_auth_hash
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_POST

from tenantry.accounts.forms import (
    ApiKeyForm,
    DeleteAccountForm,
    EmailChangeForm,
    EmailCodeForm,
    ProfileForm,
)
from tenantry.accounts.models import ApiKey, SecurityEvent, User, hash_key

Kind = SecurityEvent.Kind

# The pending email change lives in the session: the new address only takes effect once
# its code is entered, within EMAIL_CODE_TTL seconds and EMAIL_CODE_TRIES attempts.
EMAIL_CHANGE_KEY = "tenantry.email_change"
EMAIL_CODE_TTL = 15 * 60
EMAIL_CODE_TRIES = 5


@login_required
def account_info(request: HttpRequest) -> HttpResponse:
    user: User = request.user  # type: ignore[assignment]
    form = ProfileForm(request.POST or None, instance=user)
    if request.method == "POST" and form.is_valid():
        form.save()
        messages.success(request, "Your details were saved.")
        return redirect("account_info")
    ctx = {
        "form": form,
        "email_form": EmailChangeForm(user),
        "pending_email": request.session.get(EMAIL_CHANGE_KEY, {}).get("email"),
    }
    return render(request, "accounts/account_info.html", ctx)


@login_required
@require_POST
@reauthentication_required
def email_change(request: HttpRequest) -> HttpResponse:
    user: User = request.user  # type: ignore[assignment]
    form = EmailChangeForm(user, request.POST)
    if not form.is_valid():
        ctx = {"form": ProfileForm(instance=user), "email_form": form}
        return render(request, "accounts/account_info.html", ctx, status=400)
    email = form.cleaned_data["email"]
    code = get_adapter(request).generate_email_verification_code()
    request.session[EMAIL_CHANGE_KEY] = {
        "email": email,
        "code": hash_key(code),  # the session is stored in the database: no secret in clear
        "at": time.time(),
        "tries": 0,
    }
    get_adapter(request).send_mail(
        "account/email/email_change_code", email, {"user": user, "code": code}
    )
    return redirect("account_email_confirm")


@login_required
@sensitive_post_parameters("code")
def email_confirm(request: HttpRequest) -> HttpResponse:
    pending = request.session.get(EMAIL_CHANGE_KEY)
    if not pending:
        return redirect("account_info")
    form = EmailCodeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        pending["tries"] += 1
        request.session[EMAIL_CHANGE_KEY] = pending
        if time.time() - pending["at"] > EMAIL_CODE_TTL or pending["tries"] > EMAIL_CODE_TRIES:
            del request.session[EMAIL_CHANGE_KEY]
            messages.error(request, "That code has expired. Ask for a new one.")
            return redirect("account_info")
        if not secrets.compare_digest(hash_key(form.cleaned_data["code"]), pending["code"]):
            form.add_error("code", "That code is not right. Check the email and try again.")
        else:
            del request.session[EMAIL_CHANGE_KEY]
            # Only the account's sign-in changes: database users keep the login they were
            # created with (each database stores its own users' emails).
            address = EmailAddress(user=request.user, email=pending["email"])
            get_adapter(request).confirm_email(request, address)
            return redirect("account_info")
    return render(request, "accounts/email_confirm.html", {"form": form, "email": pending["email"]})


@login_required
def security(request: HttpRequest) -> HttpResponse:
    user: User = request.user  # type: ignore[assignment]
    ctx = {
        "sessions": UserSession.objects.purge_and_list(user),
        "authenticators": {a.type: a for a in Authenticator.objects.filter(user=user)},
        "api_keys": user.api_keys.all() if user.developer_mode else [],
        "events": user.security_events.all()[:20],
        "current_session_key": request.session.session_key,
    }
    return render(request, "accounts/security.html", ctx)


@login_required
@require_POST
def logout_all(request: HttpRequest) -> HttpResponse:
    user: User = request.user  # type: ignore[assignment]
    # The epoch ends every other session, listed or not; then the current one is re-stamped
    # so it survives, and the listed ones are removed from the store at once.
    user.bump_session_epoch()
    update_session_auth_hash(request, user)
    end_other_sessions(request, user)
    SecurityEvent.record(user, Kind.LOGGED_OUT_ALL, request)
    messages.success(request, "Every other session of your account has been signed out.")
    return redirect("account_security")


@login_required
@require_POST
# Turning it on brings back API keys made before: the password again for that.
@reauthentication_required(enabled=lambda request: request.POST.get("enabled") == "1")
def developer_mode(request: HttpRequest) -> HttpResponse:
    user: User = request.user  # type: ignore[assignment]
    user.developer_mode = request.POST.get("enabled") == "1"
    user.save(update_fields=["developer_mode"])
    state = "on" if user.developer_mode else "off"
    SecurityEvent.record(user, Kind.DEVELOPER_MODE, request, state)
    if user.developer_mode:
        messages.success(request, "Developer mode is on: you can now create API keys.")
    else:
        messages.success(
            request, "Developer mode is off: your API keys stop working until it is on again."
        )
    return redirect("account_security")


@login_required
@reauthentication_required
def apikey_create(request: HttpRequest) -> HttpResponse:
    user: User = request.user  # type: ignore[assignment]
    if not user.developer_mode:
        messages.error(request, "Turn on developer mode to create API keys.")
        return redirect("account_security")
    form = ApiKeyForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        name, expires_at = form.cleaned_data["name"], form.expires_at()
        key, raw = ApiKey.objects.issue(user, name, expires_at, request)
        return render(request, "accounts/apikey_created.html", {"key": key, "raw": raw})
    return render(request, "accounts/apikey_form.html", {"form": form})


@login_required
@require_POST
@reauthentication_required
def apikey_revoke(request: HttpRequest, key_id: int) -> HttpResponse:
    user: User = request.user  # type: ignore[assignment]
    key = get_object_or_404(user.api_keys, pk=key_id, revoked_at=None)
    key.revoke()
    SecurityEvent.record(user, Kind.KEY_REVOKED, request, key.name)
    messages.success(request, f"The key “{key.name}” was revoked.")
    return redirect("account_security")


@login_required
@reauthentication_required
def delete_account(request: HttpRequest) -> HttpResponse:
    user: User = request.user  # type: ignore[assignment]
    form = DeleteAccountForm(user, request.POST or None)
    if request.method == "POST" and form.is_valid():
        email, sessions = user.email, list(UserSession.objects.filter(user=user))
        try:
            # Deleting the user deletes its API keys, sessions and 2FA devices with it, and
            # deactivates its users in its databases (databases.members), which may refuse.
            with transaction.atomic():  # a refusal undoes all of it
                user.delete()
        except ValidationError as error:
            form.add_error(None, error)
        else:
            for session in sessions:
                session.end()
            # Signed out without logout()'s signal: it would record a security event for an
            # account that is no more.
            request.session.flush()
            request.user = AnonymousUser()
            get_adapter().send_mail("account/email/account_deleted", email, {"email": email})
            messages.success(request, "Your account was deleted.")
            return redirect("account_login")
    return render(
        request, "accounts/delete.html", {"form": form, "refusals": user.deletion_refusals()}
    )
