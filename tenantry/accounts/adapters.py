"""How allauth fits Tenantry: our mail context, our redirects, encrypted MFA secrets."""

from __future__ import annotations

import base64
import hashlib
from types import SimpleNamespace
from typing import Any

from allauth.account.adapter import DefaultAccountAdapter
from allauth.core import context as allauth_context
from allauth.mfa.adapter import DefaultMFAAdapter
from cryptography.fernet import Fernet, MultiFernet
from django.conf import settings

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


def _fernet() -> MultiFernet:
    # Keys derived from the secret key (and its fallbacks, so a key rotation can still read
    # what the previous key wrote): a stolen database alone does not reveal TOTP seeds.
    keys = [str(settings.SECRET_KEY), *map(str, settings.SECRET_KEY_FALLBACKS)]
    digests = [hashlib.sha256(f"tenantry.mfa:{key}".encode()).digest() for key in keys]
    return MultiFernet([Fernet(base64.urlsafe_b64encode(d)) for d in digests])


class MFAAdapter(DefaultMFAAdapter):
    def encrypt(self, text: str) -> str:
        return _fernet().encrypt(text.encode()).decode()

    def decrypt(self, encrypted_text: str) -> str:
        return _fernet().decrypt(encrypted_text.encode()).decode()
