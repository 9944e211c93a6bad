"""How allauth fits Tenantry: our mail context, our redirects, encrypted MFA secrets."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from allauth.account.adapter import DefaultAccountAdapter
from allauth.core import context as allauth_context
from allauth.mfa.adapter import DefaultMFAAdapter
from django.conf import settings
from django.utils.http import url_has_allowed_host_and_scheme

from tenantry import crypto

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


class MFAAdapter(DefaultMFAAdapter):
    def encrypt(self, text: str) -> str:
        return crypto.encrypt(text)

    def decrypt(self, encrypted_text: str) -> str:
        return crypto.decrypt(encrypted_text)
