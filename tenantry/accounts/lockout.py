"""Sign-in lock-outs that an attacker elsewhere cannot cause, and how long they last.

Failed passwords are counted per account *and* client address (ASVS): guesses from one
address lock that address out of that account, never the owner at theirs. A per-address
limit across accounts (the "/ip" rates) keeps one address from guessing many accounts. And
guesses at one account spread over many addresses count together ("login_failed_account"),
past which only the devices the account has signed in from before may try: the browser of a
full sign-in keeps a signed cookie naming the account, so the owner is never locked out by
others. The counts live in allauth's rate limits (ACCOUNT_RATE_LIMITS); this module names
their keys and reads them back to say when to try again.
"""

from __future__ import annotations

import math
import time

from allauth.core.internal import ratelimit
from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse

APP = "allauth.account"  # where allauth.core.ratelimit reads its rates (ACCOUNT_RATE_LIMITS)


def client_address(request: HttpRequest) -> str:
    """The address the "/ip" rates count: allauth's, so the proxy setting
    (ALLAUTH_TRUSTED_PROXY_COUNT) is honoured and an IPv6 client is its /64."""
    return ratelimit.get_ip(request)


def key(request: HttpRequest, *parts: object) -> str:
    """A rate limit key for `parts` (an account, a login) as seen from this client address."""
    return ":".join([*(str(part) for part in parts), client_address(request)])


def retry_after(request: HttpRequest, action: str, *, key: str) -> float:
    """Seconds until `action` is allowed again for `key` and this address (0 when it is)."""
    now, wait = time.time(), 0.0
    for rate in ratelimit.get_rates(app=APP, action=action):
        cache_key = ratelimit.get_cache_key(request, app=APP, action=action, rate=rate, key=key)
        recent = [t for t in cache.get(cache_key, []) if t > now - rate.duration]  # newest first
        if len(recent) >= rate.amount:
            # Allowed again once the oldest of the last `amount` failures leaves the window.
            wait = max(wait, recent[rate.amount - 1] + rate.duration - now)
    return wait


def refusal(request: HttpRequest, action: str, *, key: str) -> str:
    """The sentence for a locked-out sign-in: when to try again, in minutes rounded up."""
    minutes = max(1, math.ceil(retry_after(request, action, key=key) / 60))
    unit = "minute" if minutes == 1 else "minutes"
    return f"Too many failed attempts. Try again in {minutes} {unit}."


DEVICE_COOKIE = "tenantry_device"
DEVICE_SALT = "tenantry.accounts.device"
DEVICE_SECONDS = 400 * 24 * 60 * 60  # as long as browsers keep a cookie


def mark_device(response: HttpResponse, user_pk: int) -> None:
    """This browser signed in fully (password and second factor) to the account."""
    response.set_signed_cookie(
        DEVICE_COOKIE,
        str(user_pk),
        salt=DEVICE_SALT,
        max_age=DEVICE_SECONDS,
        httponly=True,
        secure=settings.HTTPS,
        samesite="Lax",
    )


def is_known_device(request: HttpRequest, user_pk: int | None) -> bool:
    if user_pk is None:
        return False
    found = request.get_signed_cookie(
        DEVICE_COOKIE, default="", salt=DEVICE_SALT, max_age=DEVICE_SECONDS
    )
    return bool(found == str(user_pk))
