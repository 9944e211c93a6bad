"""Sign-in lock-outs that an attacker elsewhere cannot cause, and how long they last.

Failed passwords are counted per account *and* client address (ASVS): guesses from one
address lock that address out of that account, never the owner at theirs. A per-address
limit across accounts (the "/ip" rates) keeps one address from guessing many accounts. The
counts live in allauth's rate limits (ACCOUNT_RATE_LIMITS); this module names their keys and
reads them back to say when to try again.
"""

from __future__ import annotations

import math
import time

from allauth.core.internal import ratelimit
from django.core.cache import cache
from django.http import HttpRequest

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
