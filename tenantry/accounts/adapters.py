"""How allauth fits Tenantry: our mail context, our redirects, encrypted MFA secrets."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from allauth.account.adapter import DefaultAccountAdapter
from allauth.core import context as allauth_context
from allauth.mfa.adapter import DefaultMFAAdapter
from django.conf import settings
from django.core.exceptions import ValidationError
from django.http import HttpRequest
from django.utils.http import url_has_allowed_host_and_scheme

from tenantry import crypto
from tenantry.accounts import lockout

SITE = SimpleNamespace(name="Tenantry", domain=settings.PORTAL_URL.split("://", 1)[-1])


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


class MFAAdapter(DefaultMFAAdapter):
    def encrypt(self, text: str) -> str:
        return crypto.encrypt(text)

    def decrypt(self, encrypted_text: str) -> str:
        return crypto.decrypt(encrypted_text)
