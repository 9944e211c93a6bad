"""How allauth fits Tenantry: our mail context, our redirects, encrypted MFA secrets."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from allauth.account.adapter import DefaultAccountAdapter
from allauth.core import context as allauth_context
from allauth.core.internal import ratelimit
from allauth.mfa.adapter import DefaultMFAAdapter
from django.conf import settings
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.utils.http import url_has_allowed_host_and_scheme

from tenantry import crypto
from tenantry.accounts import lockout
from tenantry.accounts.models import User

# Failed sign-ins at one account from any address (ACCOUNT_RATE_LIMITS); see accounts.lockout.
ACCOUNT_FAILED = "login_failed_account"

SITE = SimpleNamespace(name="Tenantry", domain=settings.PORTAL_URL.split("://", 1)[-1])
# The links of allauth's mails (email confirmation, password reset, sign-up). allauth builds
# them from the request's Host header, which anyone sends as another of the portal's hosts with
# any port ("localhost:6666"): a mailed link is always at TENANTRY_PORTAL_URL.
LINKS = ("activate_url", "password_reset_url", "signup_url")


def _at_portal(url: str) -> str:
    """The same path, query and fragment at the portal's address."""
    parts, portal = urlsplit(url), urlsplit(settings.PORTAL_URL)
    return urlunsplit((portal.scheme, portal.netloc, parts.path, parts.query, parts.fragment))


class AccountAdapter(DefaultAccountAdapter):
    def send_mail(self, template_prefix: str, email: str, context: dict[str, Any]) -> None:
        # Also used outside a request (the CLI, the worker), where allauth's own version
        # would need the sites framework to name the site.
        ctx: dict[str, Any] = {
            "request": allauth_context.request,
            "email": email,
            "current_site": SITE,
            "portal_url": settings.PORTAL_URL,
        }
        ctx.update(context)
        for name in LINKS:
            if isinstance(ctx.get(name), str):
                ctx[name] = _at_portal(ctx[name])
        self.render_mail(template_prefix, email, ctx).send()

    def is_safe_url(self, url: str) -> bool:
        # The portal only: ALLOWED_HOSTS also lets in every subdomain of the base domain (the
        # databases' hosts), which allauth would take as safe to send a person to.
        host = allauth_context.request.get_host()
        return url_has_allowed_host_and_scheme(url, allowed_hosts={host})

    def _get_login_attempts_cache_key(self, request: HttpRequest, **credentials: Any) -> str:
        # The "login_failed" key (the lock-out, and what a password reset clears): the email
        # *and* the client address, so guesses from elsewhere cannot lock the owner out. The
        # re-authentication before deleting a database goes through here too.
        return lockout.key(request, super()._get_login_attempts_cache_key(request, **credentials))

    def pre_authenticate(self, request: HttpRequest, **credentials: Any) -> None:
        try:
            super().pre_authenticate(request, **credentials)
        except ValidationError as error:
            # allauth's sentence says "later": say when.
            key = self._get_login_attempts_cache_key(request, **credentials)
            message = lockout.refusal(request, "login_failed", key=key)
            raise ValidationError(message, code="too_many_login_attempts") from error
        self._account_usage = None
        login = credentials.get("email", credentials.get("username", "")).strip().lower()
        account = User.objects.filter(email__iexact=login).values_list("pk", flat=True).first()
        # Guesses from everywhere at once: past their limit, only a device that signed in to
        # the account before, or the signed-in person confirming their password, may try.
        if request.user.is_authenticated or lockout.is_known_device(request, account):
            return
        self._account_usage = ratelimit.consume(
            request, app="allauth.account", action=ACCOUNT_FAILED, key=login
        )
        if not self._account_usage:
            self._rollback_login_failed_rl_usage()  # not this address's failure
            wait = lockout.refusal(request, ACCOUNT_FAILED, key=login)
            raise ValidationError(
                f"{wait.removesuffix('.')}, or sign in from a device you have used before: "
                "this account had too many failed attempts from elsewhere.",
                code="too_many_login_attempts",
            )

    def _rollback_login_failed_rl_usage(self) -> None:
        super()._rollback_login_failed_rl_usage()
        usage = getattr(self, "_account_usage", None)
        if usage:
            usage.rollback()

    def post_login(self, request: HttpRequest, user: Any, **kwargs: Any) -> HttpResponse:
        response = super().post_login(request, user, **kwargs)
        lockout.mark_device(response, user.pk)
        return response


class MFAAdapter(DefaultMFAAdapter):
    def encrypt(self, text: str) -> str:
        return crypto.encrypt(text)

    def decrypt(self, encrypted_text: str) -> str:
        return crypto.decrypt(encrypted_text)
